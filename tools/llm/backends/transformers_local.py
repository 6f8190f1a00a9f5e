"""``transformers``: a local Hugging Face causal LM (a folder, a hub id already cached, or a GGUF file
that transformers dequantises: 3-5x the RAM of llama.cpp, 2-4x slower, for where llama.cpp is not
available) wrapped as a LangChain chat model (`tools.llm.transformers_chat`); a writer's adapter
is applied as its PEFT weights."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthtrials.tools.llm.backends.shared import checked_adapter, llm_cache
from synthtrials.tools.llm.config import (
    BUNDLED_GGUF,
    ChatBackend,
    LLMConfig,
    resolve_gguf,
)
from synthtrials.tools.llm.errors import LLMConfigError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel


class TransformersBackend(ChatBackend):
    structured = "prompt"
    in_process = True
    local_gguf = False
    grammar = False
    knows_window = True
    default_concurrency = 1
    adapts = True
    summary = "a Hugging Face model folder in process"

    @classmethod
    def make_chat_model(cls, config: LLMConfig) -> BaseChatModel:
        cache = llm_cache(config)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import transformers
        from synthtrials.tools.llm.transformers_chat import TransformersChatModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        transformers.utils.logging.set_verbosity_error()
        target = config.model or config.model_path
        if not target:
            raise LLMConfigError("the transformers backend needs --model FOLDER (or a GGUF file)")
        kwargs: dict[str, Any] = {}
        path = Path(target).expanduser()
        if target in BUNDLED_GGUF or path.suffix == ".gguf":
            gguf = Path(resolve_gguf(target))
            folder, kwargs["gguf_file"] = str(gguf.parent), gguf.name
        elif path.exists():
            folder = str(path)
        elif target.startswith((".", "/", "~")):
            raise LLMConfigError(f"{target}: model folder not found")
        else:
            folder = target  # a hub id, usable only where it is already cached (offline)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(folder, **kwargs).eval()
        except (OSError, ValueError, ImportError) as exc:
            raise LLMConfigError(f"{target}: transformers cannot load it ({' '.join(str(exc).split())[:160]})") from None
        base = Path(folder) / kwargs["gguf_file"] if "gguf_file" in kwargs else Path(folder)
        _, adapter_hash = checked_adapter(config, str(base) if base.exists() else None)  # a hub id: not checkable
        if config.adapter:
            from peft import PeftModel
            from synthtrials.tools.llm.adapter_folder import PEFT_DIR

            model = PeftModel.from_pretrained(model, str(Path(config.adapter) / PEFT_DIR)).eval()
        return TransformersChatModel.wrapping(
            tokenizer, model, model_id=str(target), temperature=config.temperature, max_tokens=config.max_tokens,
            cache=cache, adapter_sha256=adapter_hash)

    @classmethod
    def count_tokens(cls, model: Any, text: str) -> int:
        return model.count_tokens(text)  # `TransformersChatModel`: the tokenizer's own vocabulary
