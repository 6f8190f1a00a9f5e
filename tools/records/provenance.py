"""A synthetic trial's provenance: the contract between generation and evaluation.

Written by the graph's finalize step (and `synthtrials llm try`), read by the leakage guard,
fidelity and the report. A `Trial` stores it as JSON in `Trial.provenance` (real trials hold their
reader's record there instead); `SyntheticProvenance.of(trial)` reads it back typed, also from run
folders written before this model existed (`template` for `templates`, a comma-joined reject reason).

`grounding`: ``known`` when the generation recorded everything it read (the ids below plus the run's
`grounding.json`); ``unknown`` for trials imported from elsewhere (the seed paper's reports), whose
grounding cannot be checked — the ids they do list are still checked.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class AdapterRef(BaseModel):
    path: str | None = None
    sha256: str | None = None


class CriticRecord(BaseModel):
    """One round of the critic, as recorded."""

    model_config = ConfigDict(extra="allow")

    round: int
    verdict: Literal["accept", "revise", "reject"]
    problems: list[str] = Field(default_factory=list)
    failed_checks: list[str] = Field(default_factory=list)
    llm_problems: list[str] = Field(default_factory=list)
    metrics: dict[str, float | None] = Field(default_factory=dict)
    neighbours: list[str] = Field(default_factory=list)


class SyntheticProvenance(BaseModel):
    """What a synthetic trial was written from and by (see the module docstring)."""

    model_config = ConfigDict(extra="allow")  # fields of newer versions survive a round trip

    grounding: Literal["known", "unknown"] = "known"
    # what it was written from
    run_id: str | None = None
    plan_index: int | None = None
    target: dict[str, Any] | None = Field(None, description="the planned drug, label and index")
    anchor: str | None = Field(None, description="the grounding trial a plan anchored this draw on (never shown)")
    ground_on: list[str] | None = None
    examples: list[str] = Field(default_factory=list, description="real trials shown to the writer")
    neighbours: list[str] = Field(default_factory=list, description="the examples found by semantic search")
    critic_neighbours: list[str] = Field(default_factory=list, description="real trials the critic compared it with")
    reasons: list[str] = Field(default_factory=list)
    reasons_source: str | None = None
    # how it was judged
    critiques: list[CriticRecord] = Field(default_factory=list)
    revisions: int = 0
    reject_reasons: list[str] = Field(default_factory=list, description="failed checks of a rejected draw")
    calibration: str | None = None
    outcome_words: dict[str, int] = Field(default_factory=dict)
    # what wrote it
    backend: str | None = None
    model: str | None = None
    writer_adapter: AdapterRef | None = None
    templates: dict[str, str] = Field(default_factory=dict, description="prompt template versions by role")
    seed: int | None = Field(None, description="the run seed (every stream derives from it: tools.seeds)")
    seed_scheme: int | None = None
    attempts: int | None = None
    tokens: int = 0
    # imported trials
    imported_from: str | None = None
    source_id: str | None = None
    source_file: str | None = None
    repairs: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _older_shapes(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "template" in data and "templates" not in data:  # `llm try` before this model
            data["templates"] = {"writer": data.pop("template")}
        if isinstance(data.get("reject_reason"), str):
            data["reject_reasons"] = [r for r in data.pop("reject_reason").split(",") if r]
        return data

    @classmethod
    def of(cls, trial: Any) -> SyntheticProvenance | None:
        """The provenance of a synthetic `Trial`; None when it holds none (no key this model knows)."""
        raw = getattr(trial, "provenance", None) or {}
        if not set(raw) & (set(cls.model_fields) | {"template", "reject_reason"}):
            return None
        return cls.model_validate(raw)

    def real_ids(self) -> set[str]:
        """Every real trial it names: anchor, examples, neighbours, the critic's neighbours."""
        return {*self.examples, *self.neighbours, *self.critic_neighbours, *([self.anchor] if self.anchor else [])}

    def names_grounding(self) -> bool:
        """Whether it says what it was written from (ids, or that its grounding is unknown)."""
        return self.grounding == "unknown" or bool({"examples", "neighbours", "critic_neighbours"} & self.model_fields_set)

    def dump(self) -> dict[str, Any]:
        """The JSON stored in `Trial.provenance`."""
        return self.model_dump(mode="json", exclude_none=True)
