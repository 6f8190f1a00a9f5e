"""A local Hugging Face causal LM as a LangChain chat model (the ``transformers`` backend).

Loads a model folder, or a GGUF file that transformers dequantises (3-5x the RAM of llama.cpp,
2-4x slower: use it where llama.cpp is not available). Uses the tokenizer's chat template.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, PrivateAttr


class TransformersChatModel(BaseChatModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_id: str
    adapter_sha256: str | None = None
    temperature: float = 0.7
    max_tokens: int = 512
    seed: int = 0
    _tokenizer: Any = PrivateAttr(default=None)
    _model: Any = PrivateAttr(default=None)

    @classmethod
    def load(cls, config: Any, cache: Any = None) -> TransformersChatModel:
        from synthtrials.tools.llm_backends import checked_adapter
        from synthtrials.tools.llm_config import resolve_gguf
        from synthtrials.tools.llm_errors import LLMConfigError

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        transformers.utils.logging.set_verbosity_error()
        target = config.model or config.model_path
        if not target:
            raise LLMConfigError("the transformers backend needs --model FOLDER (or a GGUF file)")
        kwargs: dict[str, Any] = {}
        path = Path(target).expanduser()
        if target in ("smollm2", "gemma3-270m") or path.suffix == ".gguf":
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
            from synthtrials.tools.adapter_folder import PEFT_DIR

            model = PeftModel.from_pretrained(model, str(Path(config.adapter) / PEFT_DIR)).eval()
        chat = cls(model_id=str(target), temperature=config.temperature, max_tokens=config.max_tokens,
                   seed=config.seed, cache=cache, adapter_sha256=adapter_hash)
        chat._tokenizer, chat._model = tokenizer, model
        return chat

    @property
    def _llm_type(self) -> str:
        return "transformers-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "temperature": self.temperature, "max_tokens": self.max_tokens,
                "adapter_sha256": self.adapter_sha256}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        import torch

        roles = {SystemMessage: "system", HumanMessage: "user", AIMessage: "assistant"}
        chat = [{"role": roles.get(type(m), "user"), "content": str(m.content)} for m in messages]
        if self._tokenizer.chat_template:
            prompt = self._tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        else:  # a base model: plain continuation
            prompt = "\n\n".join(c["content"] for c in chat) + "\n\n"
        inputs = self._tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        temperature = float(kwargs.get("temperature", self.temperature))
        torch.manual_seed(int(kwargs.get("seed", self.seed)))
        with torch.inference_mode():
            output = self._model.generate(
                **inputs, max_new_tokens=int(kwargs.get("max_tokens", self.max_tokens)),
                do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
                top_p=0.95 if temperature > 0 else None, pad_token_id=self._tokenizer.eos_token_id,
            )
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        text = self._tokenizer.decode(new_tokens, skip_special_tokens=True)
        for s in stop or []:
            text = text.split(s)[0]
        usage = {"prompt_tokens": int(inputs["input_ids"].shape[1]), "completion_tokens": int(new_tokens.shape[0])}
        message = AIMessage(content=text, usage_metadata={
            "input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"],
            "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]})
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"token_usage": usage})
