"""The run's settled configuration, handed to every node as LangGraph's runtime context.

A run settles its configuration once (`graphs.resolve.settle_generation`) and invokes the graph
with `context=RunContext(...)`; nodes read `runtime.context`, never settle again. A context can
only hold a settled configuration: building one from an unsettled configuration fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from synthtrials.graphs.config import GenerationConfig


@dataclass(frozen=True)
class RunContext:
    generation: GenerationConfig  #: settled: grounding splits, draft format, thresholds, critic and reasoner modes
    run_id: str = "adhoc"  #: the run folder's id (part of synthetic trial ids and of their provenance)

    def __post_init__(self) -> None:
        missing = self.generation.unsettled()
        if missing:
            raise ValueError(f"the generation configuration is not settled ({', '.join(missing)}): "
                             "settle it with synthtrials.graphs.resolve.settle_generation first")
