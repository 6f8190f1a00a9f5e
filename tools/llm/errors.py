"""The LLM layer's errors: one line each, safe to show (never the API key). The mapping of backend
exceptions onto them is `tools.llm.failures`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from synthtrials.tools.errors import ConfigError

if TYPE_CHECKING:
    from synthtrials.tools.llm.usage import Usage


class LLMError(Exception):
    """A model call that failed: one line, safe to show (never contains the API key)."""

    fatal = False  # fatal errors (bad key, wrong model, missing file) stop a whole batch


class LLMConfigError(LLMError, ConfigError):
    fatal = True


class CallsStopped(LLMError):
    """A call asked of a client whose caller has stopped its calls (`LLMClient.calls_stopped`): a run
    that has its trials ends the draws still in flight at their current call."""


class StructuredOutputError(LLMError):
    """The model did not produce a valid object after the allowed repair retries."""

    def __init__(self, message: str, raw: str = "", usage: Usage | None = None) -> None:
        super().__init__(message)
        self.raw = raw
        self.usage = usage
