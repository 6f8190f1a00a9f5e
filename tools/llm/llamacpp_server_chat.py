"""`ChatOpenAI` in front of a llama-server that synthtrials started (`tools.llm.llama_server`).

The OpenAI client does not know the model's tokenizer (LangChain would reach for tiktoken, which
downloads its tables): tokens are counted with the GGUF's own vocabulary, loaded alone by
llama.cpp, so prompt budgets (the adapted writer's 256-token prompt) are the same as in process.
The adapter's hash joins the identifying parameters, the LLM cache key.

The server samples as the in-process backend does (`ChatLlamaCpp`'s defaults: repetition penalty 1.1
over the last 64 tokens, top-k 40, top-p 0.95). llama-server's own default has no repetition
penalty, and without it the adapted writer looped on one criterion until its token limit in 13 of
16 answers (benchmarks/RESULTS.md, writer speed).
"""

from __future__ import annotations

import threading
from typing import Any

from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr


#: `ChatLlamaCpp`'s sampling defaults, sent to llama-server in the request body
IN_PROCESS_SAMPLING: dict[str, float | int] = {"repeat_penalty": 1.1, "repeat_last_n": 64, "top_k": 40, "top_p": 0.95}


class ChatLlamaServer(ChatOpenAI):
    vocab_path: str
    adapter_sha256: str | None = None
    _vocab: Any = PrivateAttr(default=None)
    _vocab_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {**super()._identifying_params, "adapter_sha256": self.adapter_sha256}

    def _vocabulary(self) -> Any:
        with self._vocab_lock:
            if self._vocab is None:
                from llama_cpp import Llama

                self._vocab = Llama(model_path=self.vocab_path, vocab_only=True, verbose=False)
            return self._vocab

    def get_num_tokens(self, text: str) -> int:
        vocab = self._vocabulary()
        with self._vocab_lock:
            return len(vocab.tokenize(text.encode("utf-8"), add_bos=False))
