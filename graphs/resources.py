"""What the nodes share and the checkpoints do not hold: the store, the LLM, the accepted-synthetic index."""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
from synthtrials.tools.knowledge.calibration import build_knowledge
from synthtrials.tools.knowledge.domain import DomainKnowledge
from synthtrials.tools.knowledge.label_fit import LabelFit
from synthtrials.tools.llm.client import LLMClient
from synthtrials.tools.store.protocol import TrialFilter, TrialStore


class SyntheticIndex:
    """Embeddings of the synthetic trials accepted so far (near-duplicate checks), thread-safe."""

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._vectors: list[np.ndarray] = []
        self._lock = threading.Lock()

    def add(self, trial_id: str, vector: np.ndarray) -> None:
        with self._lock:
            if trial_id not in self._ids:
                self._ids.append(trial_id)
                self._vectors.append(np.asarray(vector, dtype=np.float32))

    def most_similar(self, vector: np.ndarray, exclude: str | None = None) -> tuple[str | None, float]:
        with self._lock:
            pairs = [(i, v) for i, v in zip(self._ids, self._vectors) if i != exclude]
        if not pairs:
            return None, 0.0
        matrix = np.stack([v for _, v in pairs])
        scores = matrix @ np.asarray(vector, dtype=np.float32)
        best = int(np.argmax(scores))
        return pairs[best][0], float(scores[best])

    def __len__(self) -> int:
        return len(self._ids)


@dataclass
class Resources:
    """The store, the model of the reasoner and critic (`llm`) and the writer's model (`writer_llm`:
    the same unless the writer was adapted, see `agents.writer_adaptation`)."""

    store: TrialStore
    llm: LLMClient
    writer_llm: LLMClient | None = None
    synthetic: SyntheticIndex = field(default_factory=SyntheticIndex)
    _knowledge: dict[tuple[tuple[str, ...], tuple[str, ...] | None], DomainKnowledge] = field(default_factory=dict,
                                                                                             repr=False)
    _knowledge_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _label_fits: dict[tuple[TrialFilter, tuple[str, ...]], LabelFit] = field(default_factory=dict, repr=False)

    @property
    def embeddings(self):
        return self.store.embeddings

    @property
    def writer(self) -> LLMClient:
        return self.writer_llm or self.llm

    def knowledge(self, splits: list[str], sample: list[str] | None = None) -> DomainKnowledge:
        """The critic's domain knowledge of the grounding splits (a `--ground-sample` of them), built once per process."""
        key = (tuple(sorted(splits)), tuple(sorted(sample)) if sample is not None else None)
        with self._knowledge_lock:
            if key not in self._knowledge:
                self._knowledge[key] = build_knowledge(self.store, list(key[0]), sample=sample)
            return self._knowledge[key]

    def label_fit(self, grounding: TrialFilter, fields: Collection[str]) -> LabelFit:
        """The label-consistency classifier of the grounding trials (`--label-fit`), fit once per process."""
        key = (grounding, tuple(fields))
        with self._knowledge_lock:
            if key not in self._label_fits:
                self._label_fits[key] = LabelFit(fields).fit(self.store.filter(grounding))
            return self._label_fits[key]
