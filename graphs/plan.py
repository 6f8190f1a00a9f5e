"""The sampling plan: which (intervention, label) each planned synthetic trial targets.

The plan is a deterministic sequence: target i depends only on the run seed, the mode and the
eligible interventions, so a resumed or extended run draws exactly the same targets.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field
from synthtrials.graphs.state import Target
from synthtrials.tools.records.eligibility import EligibleIntervention
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.records.normalize import normalize_intervention
from synthtrials.tools.seeds import stream

#: bumped whenever a mode's targets change for the same seed (part of a run's fingerprint: a resumed run
#: never silently re-targets its draws)
PLAN_VERSION = 2

#: eligible by the counting rule (TOP lists placebo as a drug) but not something to write a trial *of*
NOT_A_TARGET = ("placebo", "sham", "saline", "vehicle")


def is_target(name: str) -> bool:
    return not any(word in name.split() for word in NOT_A_TARGET)


# --- plan modes: each is one `PlanModeRule` and one line in PLAN_MODES -------------------------------------

def active_drugs(eligible: list[EligibleIntervention], only: list[str] | None) -> list[EligibleIntervention]:
    """Every eligible drug but placebo-like comparators."""
    kept = [e for e in eligible if is_target(e.intervention)]
    if not kept:
        raise ConfigError("no eligible active intervention (only placebo-like comparators)")
    return kept


def listed_drugs(eligible: list[EligibleIntervention], only: list[str] | None) -> list[EligibleIntervention]:
    """The drugs the user listed (`--intervention`, repeatable), each eligible."""
    if not only:
        raise ConfigError("--plan list needs --intervention NAME (repeatable)")
    by_name = {e.intervention: e for e in eligible}
    wanted = [normalize_intervention(n) for n in only]
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise ConfigError(f"not eligible at this k: {', '.join(missing)} (see `synthtrials store eligible`)")
    return [by_name[n] for n in wanted]


def uniform_choice(drugs: list[EligibleIntervention], label: int, rng: random.Random) -> EligibleIntervention:
    return rng.choice(drugs)


def proportional_choice(drugs: list[EligibleIntervention], label: int, rng: random.Random) -> EligibleIntervention:
    """A drug drawn in proportion to its grounding trials with the target's label."""
    weights = [e.successes if label == 1 else e.failures for e in drugs]
    return rng.choices(drugs, weights=weights, k=1)[0]


@dataclass(frozen=True)
class PlanModeRule:
    """A plan mode: which eligible drugs it plans, and how target i picks one for its label."""

    drugs: Callable[[list[EligibleIntervention], list[str] | None], list[EligibleIntervention]]
    choose: Callable[[list[EligibleIntervention], int, random.Random], EligibleIntervention]
    use: str  #: when a user wants it (shown by `generate --help` and the README)


PLAN_MODES: dict[str, PlanModeRule] = {
    "uniform": PlanModeRule(active_drugs, uniform_choice, "every eligible drug equally often: the seed paper's design"),
    "proportional": PlanModeRule(active_drugs, proportional_choice,
                                 "drugs as often as they have grounding trials of the label"),
    "list": PlanModeRule(listed_drugs, uniform_choice, "only the drugs named with --intervention"),
}


def check_plan_mode(mode: str) -> str:
    if mode not in PLAN_MODES:
        raise ConfigError(f"unknown plan mode {mode!r} ({', '.join(PLAN_MODES)})")
    return mode


PlanMode = Annotated[str, AfterValidator(check_plan_mode)]


class SamplingPlan(BaseModel):
    run_id: str
    seed: int
    mode: PlanMode = "uniform"
    balanced_labels: bool = True
    interventions: list[EligibleIntervention] = Field(default_factory=list)

    @classmethod
    def create(cls, run_id: str, seed: int, eligible: list[EligibleIntervention], mode: str = "uniform",
               only: list[str] | None = None, balanced_labels: bool = True) -> SamplingPlan:
        if not eligible:
            raise ConfigError("no eligible intervention: lower --k or ingest more labelled trials")
        drugs = PLAN_MODES[check_plan_mode(mode)].drugs(eligible, only)
        ordered = sorted(drugs, key=lambda e: e.intervention)
        return cls(run_id=run_id, seed=seed, mode=mode, balanced_labels=balanced_labels, interventions=ordered)

    def target(self, index: int) -> Target:
        rng = stream(self.seed, "plan", index)
        if self.balanced_labels:
            # each consecutive pair holds one success and one failure, in a seeded order
            first = stream(self.seed, "pair", index // 2).randint(0, 1)
            label = first if index % 2 == 0 else 1 - first
        else:
            label = rng.randint(0, 1)
        choice = PLAN_MODES[self.mode].choose(self.interventions, label, rng)
        return Target(index=index, intervention=choice.intervention, label=label)  # type: ignore[arg-type]
