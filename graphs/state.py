"""The generation state: one typed model, one per graph thread (one synthetic trial)."""

from __future__ import annotations

import operator
import time
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from langchain_core.messages import BaseMessage
from pydantic import BaseModel, Field
from synthtrials.tools.records.trial import Trial


class Target(BaseModel):
    """What one thread must produce: a trial of `intervention` with outcome `label`; in an anchored plan
    also the conditions and phase of the grounding trial `anchor` it is modelled on (never shown)."""

    index: int
    intervention: str
    label: Literal[0, 1]
    anchor: str | None = None
    conditions: list[str] = Field(default_factory=list)
    phase: str | None = None
    criteria: tuple[int, int] | None = Field(None, description="the anchor's numbers of inclusion and exclusion criteria")
    interventions: list[tuple[str, str]] = Field(default_factory=list,
                                                 description="the anchor's interventions as (name, type), the drug first")


class Critique(BaseModel):
    round: int
    verdict: Literal["accept", "revise", "reject"]
    problems: list[str] = Field(default_factory=list)
    failed_checks: list[str] = Field(default_factory=list)
    llm_problems: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    neighbours: list[str] = Field(default_factory=list, description="real trials the draft was compared with")


class StepLog(BaseModel):
    """One node's step, for trace inspection: what it read and wrote, its prompt and answer."""

    node: str
    seconds: float
    read: dict[str, Any] = Field(default_factory=dict)
    wrote: dict[str, Any] = Field(default_factory=dict)
    prompt: str | None = None
    answer: str | None = None
    tokens: int = 0


class StepTimer:
    """Times one node's step and builds its trace record (every node's boilerplate, once)."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.start = time.perf_counter()

    def log(self, *, read: dict[str, Any] | None = None, wrote: dict[str, Any] | None = None,
            prompt: Sequence[BaseMessage] | str | None = None, answer: str | None = None, tokens: int = 0) -> list[StepLog]:
        """The node's `log` update: one `StepLog` (messages are joined into the prompt text)."""
        if prompt is not None and not isinstance(prompt, str):
            prompt = "\n\n".join(str(m.content) for m in prompt)
        return [StepLog(node=self.node, seconds=time.perf_counter() - self.start, read=read or {}, wrote=wrote or {},
                        prompt=prompt, answer=answer, tokens=tokens)]


class GenerationState(BaseModel):
    target: Target
    examples: list[str] = Field(default_factory=list, description="NCT ids of the real examples (neighbours included)")
    neighbours: list[str] = Field(default_factory=list, description="the examples found by semantic search")
    example_texts: list[str] = Field(default_factory=list)
    vocabulary: dict[str, list[str]] = Field(
        default_factory=dict, description="conditions and phases of the real trials of the intervention")
    reasons: list[str] = Field(default_factory=list)
    reasons_source: str | None = Field(None, description="llm, evidence, evidence-fallback or none")
    evidence: dict[str, Any] = Field(default_factory=dict, description="the drug's registry facts the reasoner used")
    draft: Trial | None = None
    draft_error: str | None = None
    critiques: Annotated[list[Critique], operator.add] = Field(default_factory=list)
    revision: int = 0
    verdict: Literal["pending", "accept", "reject"] = "pending"
    reject_reasons: list[str] = Field(default_factory=list, description="why a draw was rejected: the failed checks")
    provenance: dict[str, Any] = Field(default_factory=dict)
    log: Annotated[list[StepLog], operator.add] = Field(default_factory=list)
