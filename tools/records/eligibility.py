"""The paper's selection rule, once: drugs with at least k successful and k failed real trials.

One pure function over (label, interventions) rows serves every store backend, the paper split
of the evaluation and the benchmarks.

- rule ``first``: each trial counts its first-listed drug (the paper's code); ``any``: every
  listed drug, once per trial.
- names ``normalized``: case, whitespace and dose text removed ("raltegravir 400 mg" is
  raltegravir); ``lowercase``: lower-cased only, as the seed paper counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple

from pydantic import BaseModel
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.records.normalize import normalize_intervention
from synthtrials.tools.records.trial import InterventionType, Trial

EligibilityRule = Literal["first", "any"]
NameKey = Literal["normalized", "lowercase"]

#: intervention types that count as drugs for the paper's selection rule
DRUG_TYPES = (InterventionType.DRUG.value, InterventionType.BIOLOGICAL.value)


def trial_drugs(trial: Trial) -> list[str]:
    """A trial's drugs: its drug- and biological-typed interventions, normalised, in listed order. The one
    definition every part uses (plan, retriever, critic, adaptation, evaluation)."""
    return [normalize_intervention(i.name) for i in trial.interventions if i.type.value in DRUG_TYPES and i.name.strip()]


def first_drug(trial: Trial) -> str | None:
    """A trial's drug: its first-listed drug (`trial_drugs`), as the selection rule ``first`` counts it."""
    drugs = trial_drugs(trial)
    return drugs[0] if drugs else None


class InterventionKey(NamedTuple):
    """An intervention as the store indexes it."""

    normalized: str
    lowercase: str
    type: str


class EligibleIntervention(BaseModel):
    """An intervention with enough successful and failed trials to draw examples from."""

    intervention: str
    successes: int
    failures: int


def intervention_keys(trial: Trial) -> list[InterventionKey]:
    return [InterventionKey(normalize_intervention(i.name), i.name.strip().lower(), i.type.value)
            for i in trial.interventions]


def check_rule(rule: str, names: str) -> None:
    if rule not in ("first", "any"):
        raise ConfigError(f"unknown eligibility rule {rule!r} (first or any)")
    if names not in ("normalized", "lowercase"):
        raise ConfigError(f"unknown name matching {names!r} (normalized or lowercase)")


def counted_drugs(interventions: Sequence[InterventionKey], rule: EligibilityRule = "first",
                  names: NameKey = "normalized") -> list[str]:
    """The drug names one trial counts for under `rule` and `names`."""
    drugs = [getattr(i, names) for i in interventions if i.type in DRUG_TYPES and getattr(i, names)]
    return drugs[:1] if rule == "first" else sorted(set(drugs))


def label_counts(rows: Iterable[tuple[int | None, Sequence[InterventionKey]]], rule: EligibilityRule = "first",
                 names: NameKey = "normalized") -> dict[str, Counter]:
    """Per drug name, the number of trials labelled 1 and 0 (unlabelled rows are skipped)."""
    check_rule(rule, names)
    counts: dict[str, Counter] = {}
    for label, interventions in rows:
        if label not in (0, 1):
            continue
        for name in counted_drugs(interventions, rule, names):
            counts.setdefault(name, Counter())[int(label)] += 1
    return counts


def eligible_from_counts(counts: dict[str, Counter], k: int) -> list[EligibleIntervention]:
    """The paper's rule: at least k successful and k failed trials; most trials first."""
    out = [EligibleIntervention(intervention=name, successes=c[1], failures=c[0])
           for name, c in counts.items() if c[1] >= k and c[0] >= k]
    return sorted(out, key=lambda e: (-(e.successes + e.failures), e.intervention))


def eligible_trials(trials: Iterable[Trial], k: int, rule: EligibilityRule = "first",
                    names: NameKey = "normalized") -> list[EligibleIntervention]:
    """The rule applied to in-memory trials (the paper split, benchmarks)."""
    return eligible_from_counts(label_counts(((t.label, intervention_keys(t)) for t in trials), rule, names), k)
