"""The mapping of backend exceptions onto the LLM layer's one-line errors (the API key never appears)."""

from __future__ import annotations

import os

from synthtrials.tools.llm.config import LLMConfig
from synthtrials.tools.llm.errors import LLMConfigError, LLMError


def classify(exc: Exception, config: LLMConfig) -> LLMError:
    """Map backend exceptions to one-line `LLMError`s (the API key never appears)."""
    where = config.base_url or config.backend
    try:
        import openai
    except ImportError:  # pragma: no cover - langchain-openai depends on it
        openai = None  # type: ignore[assignment]
    if openai is not None:
        if isinstance(exc, openai.AuthenticationError):
            return LLMConfigError(f"{where}: the API key in {config.api_key_env} was refused (HTTP 401)")
        if isinstance(exc, openai.PermissionDeniedError):
            return LLMConfigError(f"{where}: access denied (HTTP 403)")
        if isinstance(exc, openai.NotFoundError):
            return LLMConfigError(f"{where}: model {config.model!r} not found (HTTP 404)")
        if isinstance(exc, openai.APITimeoutError):
            return LLMError(f"{where}: no answer within {config.timeout_s:g} s (after {config.max_retries} retries)")
        if isinstance(exc, openai.APIConnectionError):
            return LLMError(f"{where}: cannot reach the server (after {config.max_retries} retries)")
        if isinstance(exc, openai.RateLimitError):
            return LLMError(f"{where}: rate limited (HTTP 429) after {config.max_retries} retries")
        if isinstance(exc, openai.BadRequestError):
            return LLMError(f"{where}: request refused (HTTP 400): {short(exc, config)}")
        if isinstance(exc, openai.APIStatusError):
            return LLMError(f"{where}: HTTP {exc.status_code} after {config.max_retries} retries")
    if isinstance(exc, LLMError):
        return exc
    return LLMError(f"{where}: {type(exc).__name__}: {short(exc, config)}")


def malformed_answer(exc: Exception) -> bool:
    """A server answer that could not be parsed (truncated body, HTML instead of JSON...)."""
    try:
        import openai
    except ImportError:  # pragma: no cover
        return False
    if isinstance(exc, openai.APIResponseValidationError):
        return True
    if isinstance(exc, openai.APIError) or isinstance(exc, LLMError):
        return False
    return isinstance(exc, (ValueError, KeyError, TypeError, AttributeError))


def short(exc: Exception, config: LLMConfig | None = None) -> str:
    text = " ".join(str(exc).split())
    key = os.environ.get(config.api_key_env if config else "OPENAI_API_KEY")
    if key and len(key) > 4:
        text = text.replace(key, "***")
    return text[:200]
