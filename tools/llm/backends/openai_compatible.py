"""``openai``: langchain-openai `ChatOpenAI` against any OpenAI-compatible server (OpenAI, vLLM,
Ollama, llama.cpp server). The API key is read from the environment variable named by `api_key_env`
and never stored. Retries with exponential backoff honouring Retry-After are the OpenAI SDK's own
(`max_retries`); `InMemoryRateLimiter` spaces requests. Tokens are estimated (4 characters a token):
the server knows its window and answers 400 past it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from synthtrials.tools.llm.backends.shared import llm_cache
from synthtrials.tools.llm.config import ChatBackend, LLMConfig
from synthtrials.tools.llm.errors import LLMConfigError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel


class OpenAIBackend(ChatBackend):
    structured = "json_schema"
    in_process = False
    local_gguf = False
    grammar = False
    knows_window = False
    default_concurrency = 4
    adapts = False
    summary = "any OpenAI-compatible server"

    DEFAULT_MODEL = "gpt-4o-mini"

    @classmethod
    def make_chat_model(cls, config: LLMConfig) -> BaseChatModel:
        from langchain_core.rate_limiters import InMemoryRateLimiter
        from langchain_openai import ChatOpenAI

        cache = llm_cache(config)
        api_key = os.environ.get(config.api_key_env)
        if not api_key:
            if not config.base_url:
                raise LLMConfigError(f"set {config.api_key_env} (the API key) in the environment, or give --base-url")
            api_key = "not-needed"  # local OpenAI-compatible servers ignore the key
        limiter = (InMemoryRateLimiter(requests_per_second=config.requests_per_second, check_every_n_seconds=0.05,
                                       max_bucket_size=max(1, config.max_concurrency))
                   if config.requests_per_second else None)
        return ChatOpenAI(
            model=cls.model_label(config), base_url=config.base_url, api_key=api_key,
            temperature=config.temperature, max_tokens=config.max_tokens, timeout=config.timeout_s,
            max_retries=config.max_retries, rate_limiter=limiter, cache=cache,
        )

    @classmethod
    def model_label(cls, config: LLMConfig) -> str:
        return config.model or cls.DEFAULT_MODEL
