"""What the nodes share and the checkpoints do not hold: the store, the LLM, the accepted-synthetic index."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from synthtrials.tools.calibration import build_knowledge
from synthtrials.tools.domain import DomainKnowledge
from synthtrials.tools.llm import LLMClient
from synthtrials.tools.store import TrialStore

if TYPE_CHECKING:
    from synthtrials.graphs.config import GenerationConfig


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
    _settled: dict[str, GenerationConfig] = field(default_factory=dict, repr=False)
    _knowledge: dict[tuple[str, ...], DomainKnowledge] = field(default_factory=dict, repr=False)
    _knowledge_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def embeddings(self):
        return self.store.embeddings

    @property
    def writer(self) -> LLMClient:
        return self.writer_llm or self.llm

    def knowledge(self, splits: list[str]) -> DomainKnowledge:
        """The critic's domain knowledge of the grounding splits, built once per process."""
        key = tuple(sorted(splits))
        with self._knowledge_lock:
            if key not in self._knowledge:
                self._knowledge[key] = build_knowledge(self.store, list(key))
            return self._knowledge[key]

    def settle(self, config: GenerationConfig) -> GenerationConfig:
        """`config` with its data-dependent defaults settled against the store (see `graphs.resolve`).

        A run settles them when it starts; this serves scripts that invoke the graph directly.
        """
        if config.ground_on is not None and config.draft is not None and config.thresholds.calibrated \
                and config.llm_critic is not None and config.reasoner != "auto":
            return config
        key = config.model_dump_json()
        if key not in self._settled:
            from synthtrials.graphs.resolve import resolve_generation

            self._settled[key] = resolve_generation(config, self.store, llm=lambda: self.llm)
        return self._settled[key]
