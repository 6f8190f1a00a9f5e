"""``llamacpp`` (the offline default): langchain-community `ChatLlamaCpp` in this process, on a GGUF
model shipped in a PyPI package (``smollm2``, the default; ``gemma3-270m``) or any local GGUF, and
optionally a writer's LoRA adapter; structured output through llama.cpp's JSON-schema grammar
(`grammar_schema` adapts schemas to it)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from synthtrials.tools.llm.backends.shared import checked_adapter, llm_cache
from synthtrials.tools.llm.config import ChatBackend, LLMConfig, resolve_gguf
from synthtrials.tools.llm.errors import LLMConfigError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel


class LlamaCppBackend(ChatBackend):
    structured = "json_object_schema"
    in_process = True
    local_gguf = True
    grammar = True
    knows_window = True
    default_concurrency = 1
    adapts = True
    summary = "offline default, in process"

    @classmethod
    def make_chat_model(cls, config: LLMConfig) -> BaseChatModel:
        from synthtrials.tools.llm.llamacpp_chat import ChatLlamaCppWithUsage

        cache = llm_cache(config)
        path = resolve_gguf(config.model_path)
        lora_path, adapter_hash = checked_adapter(config, path)
        try:
            return ChatLlamaCppWithUsage(
                model_path=path, n_ctx=config.n_ctx, temperature=config.temperature, max_tokens=config.max_tokens,
                n_threads=config.n_threads or max(1, os.cpu_count() or 1), n_batch=512,
                verbose=False, cache=cache, streaming=False, lora_path=lora_path, repeat_penalty=config.repeat_penalty,
                adapter_sha256=adapter_hash,
            )
        except ValueError as exc:
            raise LLMConfigError(f"{path}: llama.cpp cannot load it ({' '.join(str(exc).split())[:160]})") from None

    @classmethod
    def count_tokens(cls, model: Any, text: str) -> int:
        return len(model.client.tokenize(text.encode("utf-8"), add_bos=False))  # the model's own vocabulary
