"""What every TrialStore backend implements (`TrialStore`), the filters they all understand, and the
helpers computed through that surface alone (eligibility, default grounding splits)."""


from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple, Protocol

import numpy as np
from pydantic import BaseModel
from synthtrials.tools.progress import ProgressFn
from synthtrials.tools.records.eligibility import (
    EligibilityRule,
    EligibleIntervention,
    InterventionKey,
    NameKey,
    check_rule,
    eligible_from_counts,
    intervention_keys,
    label_counts,
)
from synthtrials.tools.records.normalize import (
    normalize_condition,
    normalize_intervention,
    parse_phase,
)
from synthtrials.tools.records.splits import (
    Split,
    check_split,
)
from synthtrials.tools.records.trial import (
    Phase,
    Trial,
)
from synthtrials.tools.store.embeddings import (
    TransformerEmbeddings,
)

SearchMode = Literal["semantic", "bm25", "hybrid"]


@dataclass(frozen=True)
class TrialFilter:
    """Filters every backend understands. Names are normalised before matching."""

    intervention: str | None = None
    label: int | None = None
    phase: Phase | str | None = None
    condition: str | None = None
    source: Literal["real", "synthetic"] | None = None
    splits: frozenset[str] | None = None
    exclude_ids: frozenset[str] = frozenset()
    ids: frozenset[str] | None = None  #: only these trials (a `--ground-sample`); None: no restriction

    def normalised(self) -> TrialFilter:
        phase = parse_phase(self.phase) if isinstance(self.phase, str) else self.phase
        return TrialFilter(
            intervention=normalize_intervention(self.intervention) if self.intervention else None,
            label=self.label,
            phase=phase,
            condition=normalize_condition(self.condition) if self.condition else None,
            source=self.source,
            splits=frozenset(check_split(s) for s in self.splits) if self.splits is not None else None,
            exclude_ids=self.exclude_ids,
            ids=self.ids,
        )

    def narrowed(self, **changes: object) -> TrialFilter:
        """This filter with some fields replaced (a grounding filter narrowed to a drug, say)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def grounding_filter(splits: Iterable[str], ids: Iterable[str] | None = None) -> TrialFilter:
    """The real trials of the grounding splits (only `ids` of them, where given: a `--ground-sample`): all that
    generation may read."""
    return TrialFilter(source="real", splits=frozenset(splits), ids=frozenset(ids) if ids is not None else None)


class SearchHit(BaseModel):
    trial: Trial
    score: float


class SplitUpgrade(NamedTuple):
    nct_id: str
    old: str
    new: str


@dataclass
class UpsertReport:
    inserted: int = 0
    updated: int = 0
    embedded: int = 0
    split_upgrades: list[SplitUpgrade] = field(default_factory=list)


class TrialStore(Protocol):
    """Everything agents, runner, evals and CLI call on a store: every backend implements all of it.

    Open one with `open_store(location)`: `LocalTrialStore` or `WeaviateTrialStore`. A structural
    test fails when a backend lacks a method of this protocol.
    """

    embedding_model: str

    @property
    def embeddings(self) -> TransformerEmbeddings: ...
    def upsert(self, trials: Sequence[Trial], progress: ProgressFn | None = None, vectors: np.ndarray | None = None,
               splits: Mapping[str, Split] | None = None) -> UpsertReport: ...
    def get(self, nct_id: str) -> Trial | None: ...
    def get_many(self, ids: Sequence[str]) -> list[Trial]: ...
    def count(self) -> int: ...
    def filter(self, flt: TrialFilter | None = None, limit: int | None = None) -> list[Trial]: ...
    def filter_ids(self, flt: TrialFilter | None = None) -> list[str]: ...
    def search(self, query: str, k: int = 5, flt: TrialFilter | None = None,
               mode: SearchMode = "semantic") -> list[SearchHit]: ...
    def search_by_vector(self, vector: Sequence[float], k: int = 5,
                         flt: TrialFilter | None = None) -> list[SearchHit]: ...
    def intervention_rows(self, flt: TrialFilter | None = None) -> list[tuple[int | None, list[InterventionKey]]]: ...
    def split_counts(self) -> dict[str, int]: ...
    def section_vectors(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray: ...
    def load_calibration(self, key: str) -> dict | None: ...
    def save_calibration(self, key: str, data: dict) -> None: ...
    def calibrations(self) -> list[dict]: ...
    def stats(self) -> dict: ...
    def close(self) -> None: ...


def trial_index_fields(trial: Trial) -> tuple[list[tuple[int, str, str, str]], list[str]]:
    """(position, normalised name, lower-cased name, type) per intervention, and distinct conditions."""
    interventions = [(position, *key) for position, key in enumerate(intervention_keys(trial))]
    conditions = sorted({normalize_condition(c) for c in trial.conditions if c.strip()})
    return interventions, conditions


def intervention_label_counts(store: TrialStore, rule: EligibilityRule = "first", names: NameKey = "normalized",
                              flt: TrialFilter | None = None) -> dict[str, Counter]:
    """Per drug name, the store's real trials (matching `flt`) labelled 1 and 0."""
    check_rule(rule, names)
    return label_counts(store.intervention_rows(flt or TrialFilter(source="real")), rule, names)


def eligible(store: TrialStore, k: int = 3, rule: EligibilityRule = "first", names: NameKey = "normalized",
             flt: TrialFilter | None = None) -> list[EligibleIntervention]:
    """Drugs with at least k successful and k failed real trials among those matching `flt`."""
    return eligible_from_counts(intervention_label_counts(store, rule, names, flt), k)


def default_grounding_splits(store: TrialStore) -> list[Split]:
    """``train`` when the store has a train split, else ``pool``."""
    return ["train"] if store.split_counts().get("train") else ["pool"]


def stats_from(trials_by: dict[str, Counter], total: int, top: int = 20) -> dict:
    return {"trials": total, **{key: dict(c.most_common(top)) for key, c in trials_by.items()}}


