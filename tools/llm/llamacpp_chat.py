"""langchain-community's `ChatLlamaCpp`, reporting token usage like the other chat models, and
identified by its LoRA adapter too.

`ChatLlamaCpp` keeps llama.cpp's usage in `llm_output`, which `BaseChatModel` drops when it
combines results; this subclass also puts it on the message as `usage_metadata`. Its identifying
parameters (LangChain's LLM cache key) name the model path and sampling only: a cached answer of
the base model would be returned for an adapted one, so the adapter's path and hash join them.
"""

from __future__ import annotations

from typing import Any

from langchain_community.chat_models import ChatLlamaCpp
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatResult


class ChatLlamaCppWithUsage(ChatLlamaCpp):
    adapter_sha256: str | None = None

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {**super()._identifying_params, "lora_path": self.lora_path, "adapter_sha256": self.adapter_sha256}

    def _create_chat_result(self, response: dict) -> ChatResult:
        result = super()._create_chat_result(response)
        usage = response.get("usage") or {}
        for generation in result.generations:
            message = generation.message
            if isinstance(message, AIMessage) and usage:
                message.usage_metadata = {
                    "input_tokens": int(usage.get("prompt_tokens", 0)),
                    "output_tokens": int(usage.get("completion_tokens", 0)),
                    "total_tokens": int(usage.get("total_tokens", 0)),
                }
        return result

    def _combine_llm_outputs(self, llm_outputs: list[dict | None]) -> dict:
        prompt = completion = 0
        for output in llm_outputs:
            usage = (output or {}).get("token_usage") or {}
            prompt += int(usage.get("prompt_tokens", 0))
            completion += int(usage.get("completion_tokens", 0))
        return {"token_usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                "total_tokens": prompt + completion}}
