"""A local Hugging Face causal LM as a LangChain chat model (the ``transformers`` backend,
`tools.llm.backends.transformers_local`, loads it). Uses the tokenizer's chat template.
"""

from __future__ import annotations

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
    def wrapping(cls, tokenizer: Any, model: Any, **fields: Any) -> TransformersChatModel:
        """The chat model around a loaded tokenizer and causal LM (`backends.transformers_local` loads them)."""
        chat = cls(**fields)
        chat._tokenizer, chat._model = tokenizer, model
        return chat

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` in the model's own vocabulary (no special tokens)."""
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

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
