"""The sampling plan: which (drug, label) each planned synthetic trial targets, and for an anchored
plan which real grounding trial it is modelled on.

The plan is a deterministic sequence: target i depends only on the run seed, the mode and the
eligible drugs (or the grounding trials), so a resumed or extended run draws exactly the same targets.
Modes (`PLAN_MODES`, each with when to use it):

- ``anchored`` (default): target i is a labelled real grounding trial (every one once before any
  twice); it fixes the drug, label, conditions and phase (and the other interventions), and its examples are other grounding trials
  of the same drug and label. The synthetic set then keeps the real data's P(label | drug, condition).
- ``contrastive``: every eligible drug equally often, both outcomes pair by pair (the seed paper's
  design): for studying what separates success from failure within a drug, not for training a
  classifier on the synthetic data alone (it sets P(success | drug) to one half for every drug).
- ``proportional``, ``list``: contrastive over drugs weighted by their trials, or over named drugs.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field
from synthtrials.graphs.state import Target
from synthtrials.tools.records.eligibility import EligibleIntervention, first_drug
from synthtrials.tools.records.trial import Trial
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.records.normalize import normalize_intervention
from synthtrials.tools.seeds import stream

#: bumped whenever a mode's targets change for the same seed (part of a run's fingerprint: a resumed run
#: never silently re-targets its draws)
PLAN_VERSION = 3

#: eligible by the counting rule (TOP lists placebo as a drug) but not something to write a trial *of*
NOT_A_TARGET = ("placebo", "sham", "saline", "vehicle")


def is_target(name: str) -> bool:
    return not any(word in name.split() for word in NOT_A_TARGET)


class Anchor(BaseModel):
    """A labelled real grounding trial an anchored target is modelled on (never shown to the writer)."""

    nct_id: str
    drug: str
    label: Literal[0, 1]
    conditions: list[str] = Field(default_factory=list)
    phase: str | None = None
    inclusion: int = Field(0, ge=0, description="its number of inclusion criteria")
    exclusion: int = Field(0, ge=0, description="its number of exclusion criteria")
    interventions: list[tuple[str, str]] = Field(
        default_factory=list, description="its interventions as (name, type), the drug first; empty in plans made "
                                          "before they were recorded")


def anchor_interventions(trial: Trial, drug: str) -> list[tuple[str, str]]:
    """A trial's interventions as (name, type), its drug (normalised, as the plan names it) first and the others
    in listed order: what `--writer-interventions anchor` holds a draft to."""
    others = [(i.name.strip(), i.type.value) for i in trial.interventions if i.name.strip()]
    first = next((k for k, (name, _) in enumerate(others) if normalize_intervention(name) == drug), None)
    if first is not None:
        others.pop(first)
    return [(drug, "drug"), *others]


def anchors_of(trials: list[Trial]) -> list[Anchor]:
    """Every labelled grounding trial with a drug that can be a target, in id order."""
    out = []
    for trial in sorted(trials, key=lambda t: t.nct_id):
        drug = first_drug(trial)
        if trial.label in (0, 1) and drug and is_target(drug):
            out.append(Anchor(nct_id=trial.nct_id, drug=drug, label=trial.label,  # type: ignore[arg-type]
                              conditions=[c.strip()[:120] for c in trial.conditions if c.strip()][:10],
                              phase=trial.phase.value if trial.phase is not None else None,
                              inclusion=len(trial.eligibility.inclusion) if trial.eligibility else 0,
                              exclusion=len(trial.eligibility.exclusion) if trial.eligibility else 0,
                              interventions=anchor_interventions(trial, drug)))
    return out


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


def no_drugs(eligible: list[EligibleIntervention], only: list[str] | None) -> list[EligibleIntervention]:
    """An anchored plan draws trials, not drugs."""
    return []


def balanced_label(plan: SamplingPlan, index: int) -> int:
    """Each consecutive pair of targets holds one success and one failure, in a seeded order."""
    first = stream(plan.seed, "pair", index // 2).randint(0, 1)
    return first if index % 2 == 0 else 1 - first


def uniform_target(plan: SamplingPlan, index: int) -> Target:
    """Every planned drug equally often, both labels pair by pair."""
    drug = stream(plan.seed, "plan", index).choice(plan.interventions)
    return Target(index=index, intervention=drug.intervention, label=balanced_label(plan, index))  # type: ignore[arg-type]


def proportional_target(plan: SamplingPlan, index: int) -> Target:
    """A drug drawn in proportion to its grounding trials with the target's label (labels pair by pair)."""
    label = balanced_label(plan, index)
    weights = [e.successes if label == 1 else e.failures for e in plan.interventions]
    drug = stream(plan.seed, "plan", index).choices(plan.interventions, weights=weights, k=1)[0]
    return Target(index=index, intervention=drug.intervention, label=label)  # type: ignore[arg-type]


def stratified_order(labels: list[int], rng: random.Random) -> list[int]:
    """A seeded order of the positions of `labels`: shuffled within each label, then interleaved so that every
    prefix holds the labels in their overall proportion (a small run gets both outcomes as the data has them)."""
    groups = {label: [i for i, value in enumerate(labels) if value == label] for label in sorted(set(labels))}
    for members in groups.values():
        rng.shuffle(members)
    order: list[int] = []
    taken = dict.fromkeys(groups, 0)
    for step in range(1, len(labels) + 1):
        # the label furthest behind its share of the first `step` targets (ties: the smaller label)
        label = max(groups, key=lambda g: (step * len(groups[g]) / len(labels) - taken[g], -g))
        order.append(groups[label][taken[label]])
        taken[label] += 1
    return order


def anchored_target(plan: SamplingPlan, index: int) -> Target:
    """Target i is grounding trial order_c[i mod n], order_c a seeded, label-stratified order per cycle c = i div n
    (`stratified_order`): every grounding trial once before any twice. It fixes the drug, label, conditions and
    phase, and carries the anchor's numbers of criteria (`--writer-criteria anchor` asks the writer for them) and its
    interventions (`--writer-interventions`, by default under this plan, holds the draft to them)."""
    cycle, position = divmod(index, len(plan.anchors))
    order = stratified_order([a.label for a in plan.anchors], stream(plan.seed, "plan", "cycle", cycle))
    anchor = plan.anchors[order[position]]
    return Target(index=index, intervention=anchor.drug, label=anchor.label, anchor=anchor.nct_id,
                  conditions=anchor.conditions, phase=anchor.phase, criteria=(anchor.inclusion, anchor.exclusion),
                  interventions=anchor.interventions)


@dataclass(frozen=True)
class PlanModeRule:
    """A plan mode: which eligible drugs it plans (or none: it draws grounding trials) and target i."""

    drugs: Callable[[list[EligibleIntervention], list[str] | None], list[EligibleIntervention]]
    target: Callable[[SamplingPlan, int], Target]
    use: str  #: when a user wants it (shown by `generate --help` and the README)
    anchored: bool = False  #: its targets are grounding trials (`Anchor`s), not drugs


PLAN_MODES: dict[str, PlanModeRule] = {
    "anchored": PlanModeRule(no_drugs, anchored_target, "each target a real labelled grounding trial (its drug, label, "
                             "conditions and phase; never shown): synthetic data distributed like the real data "
                             "(the default, for training classifiers)", anchored=True),
    "contrastive": PlanModeRule(active_drugs, uniform_target, "every eligible drug equally often with both outcomes "
                                "pair by pair: the seed paper's design (studying what separates success from failure "
                                "per drug; it erases the drug's outcome signal)"),
    "proportional": PlanModeRule(active_drugs, proportional_target,
                                 "contrastive, drugs as often as they have grounding trials of the label"),
    "list": PlanModeRule(listed_drugs, uniform_target, "contrastive over the drugs named with --intervention"),
}
DEFAULT_PLAN_MODE = "anchored"


def check_plan_mode(mode: str) -> str:
    if mode not in PLAN_MODES:
        raise ConfigError(f"unknown plan mode {mode!r} ({', '.join(PLAN_MODES)})")
    return mode


PlanMode = Annotated[str, AfterValidator(check_plan_mode)]


class SamplingPlan(BaseModel):
    run_id: str
    seed: int
    mode: PlanMode = DEFAULT_PLAN_MODE
    interventions: list[EligibleIntervention] = Field(default_factory=list)
    anchors: list[Anchor] = Field(default_factory=list)

    @classmethod
    def create(cls, run_id: str, seed: int, eligible: list[EligibleIntervention], mode: str = DEFAULT_PLAN_MODE,
               only: list[str] | None = None, anchors: list[Anchor] | None = None) -> SamplingPlan:
        rule = PLAN_MODES[check_plan_mode(mode)]
        if rule.anchored:
            if not anchors:
                raise ConfigError(f"--plan {mode}: the grounding split has no labelled trial with a drug to anchor on")
            return cls(run_id=run_id, seed=seed, mode=mode, anchors=anchors)
        if not eligible:
            raise ConfigError("no eligible intervention: lower --k or ingest more labelled trials")
        ordered = sorted(rule.drugs(eligible, only), key=lambda e: e.intervention)
        return cls(run_id=run_id, seed=seed, mode=mode, interventions=ordered)

    def target(self, index: int) -> Target:
        return PLAN_MODES[self.mode].target(self, index)
