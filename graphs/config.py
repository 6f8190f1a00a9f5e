"""Every tunable of a generation run, with its default in one place.

Read by every node from ``RunnableConfig["configurable"]["generation"]`` (a dict or a
`GenerationConfig`), so a script can change k, the number of reasons, revisions, temperatures
or thresholds per invocation without rebuilding the graph.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, Field

from synthtrials.tools.llm import LLMConfig


class CriticThresholds(BaseModel):
    """Documented thresholds of the deterministic critic checks."""

    ngram: int = Field(8, description="word n-gram length for copy detection")
    max_ngram_overlap: float = Field(0.35, description="share of the draft's n-grams found in one real trial")
    max_real_similarity: float = Field(0.97, description="cosine similarity to the closest real trial")
    max_synthetic_similarity: float = Field(0.98, description="cosine similarity to an accepted synthetic trial")
    real_neighbours: int = Field(5, description="closest real trials checked beyond the examples")
    min_title_words: int = 3
    min_item_words: int = 2


class GenerationConfig(BaseModel):
    k: int = Field(3, ge=1, le=10, description="real examples per draw (the paper: 3)")
    neighbours: Literal["off", "fallback", "add"] = Field(
        "fallback", description="semantic neighbours with the same label: only when fewer than k examples, or always added")
    n_neighbours: int = Field(2, ge=0, le=10)
    example_chars: int = Field(900, ge=200, description="each example's rendering is trimmed to this many characters")
    n_reasons: int = Field(5, ge=1, le=10, description="reasons per draw (the paper: 5)")
    max_revisions: int = Field(2, ge=0, le=5, description="critic -> writer loops before a draft is rejected")
    writer_temperature: float = Field(0.7, ge=0, le=2)
    reasoner_temperature: float = Field(0.3, ge=0, le=2)
    critic_temperature: float = Field(0.0, ge=0, le=2)
    llm_critic: Literal["off", "advisory", "enforce"] = Field(
        "enforce", description="the LLM domain-consistency judgement: ignored, recorded, or able to send drafts back")
    constrain_vocabulary: Literal["auto", "on", "off"] = Field(
        "auto", description="restrict the writer's conditions and phase to those of the intervention's real trials, "
                            "and enrollment to 1-999, in the output schema (auto: on for llama.cpp's grammar)")
    thresholds: CriticThresholds = Field(default_factory=CriticThresholds)
    seed: int = 0
    llm: LLMConfig = Field(default_factory=LLMConfig)

    @classmethod
    def from_runnable_config(cls, config: RunnableConfig | None) -> GenerationConfig:
        value: Any = ((config or {}).get("configurable") or {}).get("generation")
        if value is None:
            return cls()
        return value if isinstance(value, cls) else cls.model_validate(value)

    def vocabulary_constrained(self) -> bool:
        if self.constrain_vocabulary == "auto":
            return self.llm.backend == "llamacpp"
        return self.constrain_vocabulary == "on"

    #: LLM settings that change where and how calls travel, not what a run produces
    TRANSPORT_FIELDS: ClassVar[tuple[str, ...]] = ("cache_path", "base_url", "api_key_env", "timeout_s", "max_retries", "requests_per_second",
                        "max_concurrency", "n_threads", "price_prompt_per_m", "price_completion_per_m")

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a run folder to be resumed: everything that shapes the trials."""
        data = self.model_dump(mode="json")
        for name in self.TRANSPORT_FIELDS:
            data["llm"].pop(name, None)
        return data
