"""The sampling plan: which (intervention, label) each planned synthetic trial targets.

The plan is a deterministic sequence: target i depends only on the run seed, the mode and the
eligible interventions, so a resumed or extended run draws exactly the same targets.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, Field
from synthtrials.graphs.state import Target
from synthtrials.tools.eligibility import EligibleIntervention
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.normalize import normalize_intervention

PlanMode = Literal["uniform", "proportional", "list"]

#: eligible by the counting rule (TOP lists placebo as a drug) but not something to write a trial *of*
NOT_A_TARGET = ("placebo", "sham", "saline", "vehicle")


def is_target(name: str) -> bool:
    return not any(word in name.split() for word in NOT_A_TARGET)


class SamplingPlan(BaseModel):
    run_id: str
    seed: int
    mode: PlanMode = "uniform"
    balanced_labels: bool = True
    interventions: list[EligibleIntervention] = Field(default_factory=list)

    @classmethod
    def create(cls, run_id: str, seed: int, eligible: list[EligibleIntervention], mode: PlanMode = "uniform",
               only: list[str] | None = None, balanced_labels: bool = True) -> SamplingPlan:
        if not eligible:
            raise ConfigError("no eligible intervention: lower --k or ingest more labelled trials")
        if mode == "list":
            if not only:
                raise ConfigError("--plan list needs --intervention NAME (repeatable)")
            by_name = {e.intervention: e for e in eligible}
            wanted = [normalize_intervention(n) for n in only]
            missing = [n for n in wanted if n not in by_name]
            if missing:
                raise ConfigError(f"not eligible at this k: {', '.join(missing)} (see `synthtrials store eligible`)")
            eligible = [by_name[n] for n in wanted]
        if mode != "list":
            eligible = [e for e in eligible if is_target(e.intervention)]
            if not eligible:
                raise ConfigError("no eligible active intervention (only placebo-like comparators)")
        ordered = sorted(eligible, key=lambda e: e.intervention)
        return cls(run_id=run_id, seed=seed, mode=mode, balanced_labels=balanced_labels, interventions=ordered)

    def target(self, index: int) -> Target:
        rng = random.Random(f"{self.seed}:plan:{index}")
        if self.balanced_labels:
            # each consecutive pair holds one success and one failure, in a seeded order
            first = random.Random(f"{self.seed}:pair:{index // 2}").randint(0, 1)
            label = first if index % 2 == 0 else 1 - first
        else:
            label = rng.randint(0, 1)
        if self.mode == "proportional":
            weights = [e.successes if label == 1 else e.failures for e in self.interventions]
            choice = rng.choices(self.interventions, weights=weights, k=1)[0]
        else:
            choice = rng.choice(self.interventions)
        return Target(index=index, intervention=choice.intervention, label=label)  # type: ignore[arg-type]
