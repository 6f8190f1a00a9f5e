"""Token usage and cost, per call and per client, from LangChain's LLM results."""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields
from typing import Any, Protocol

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult


class Prices(Protocol):
    """What a cost needs of the configuration (an `LLMConfig` has them)."""

    price_prompt_per_m: float
    price_completion_per_m: float


@dataclass
class Usage:
    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    failures: int = 0
    repairs: int = 0
    free_calls: int = 0  #: structured calls first decoded without the grammar (`LLMConfig.grammar`)
    grammar_fallbacks: int = 0  #: of those, answers that did not fit and were asked again under the grammar
    closed_at_limit: int = 0  #: constrained answers cut at the token limit, kept up to their last whole value

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def cost(self, config: Prices) -> float:
        return (self.prompt_tokens * config.price_prompt_per_m + self.completion_tokens * config.price_completion_per_m) / 1e6

    def as_dict(self, config: Prices | None = None) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in USAGE_FIELDS}
        out["total_tokens"] = self.total_tokens
        if config is not None:
            out["cost_usd"] = round(self.cost(config), 6)
        return out

    @classmethod
    def from_dict(cls, counts: dict[str, Any]) -> Usage:
        """A `Usage` from `as_dict`'s output (missing counts are zero)."""
        return cls(**{f.name: type(f.default)(counts.get(f.name) or 0) for f in fields(cls)})

    def add(self, other: Usage) -> None:
        for name in USAGE_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


#: the counts a `Usage` adds up (its fields)
USAGE_FIELDS = tuple(f.name for f in fields(Usage))


class UsageCallback(BaseCallbackHandler):
    """Accumulates token usage from LangChain LLM results (thread-safe)."""

    def __init__(self) -> None:
        self.usage = Usage()
        self._lock = threading.Lock()

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        prompt = completion = 0
        cached = False
        found = False
        for generations in response.generations:
            for gen in generations:
                meta = getattr(getattr(gen, "message", None), "usage_metadata", None)
                if meta is None:
                    continue
                found = True
                if "total_cost" in meta and not meta["total_cost"]:
                    cached = True  # LangChain zeroes the cost of a cache hit
                    continue
                prompt += int(meta.get("input_tokens") or 0)
                completion += int(meta.get("output_tokens") or 0)
        if not found:
            token_usage = (response.llm_output or {}).get("token_usage") or {}
            prompt = int(token_usage.get("prompt_tokens") or 0)
            completion = int(token_usage.get("completion_tokens") or 0)
            cached = prompt == 0 and completion == 0
        with self._lock:
            self.usage.calls += 1
            self.usage.cached_calls += int(cached)
            self.usage.prompt_tokens += prompt
            self.usage.completion_tokens += completion
