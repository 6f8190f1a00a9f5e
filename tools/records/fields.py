"""Which fields of a `Trial` a data set carries: the basis of like-for-like comparisons.

TOP trials carry interventions, conditions, phase and eligibility criteria only; full
ClinicalTrials.gov records add titles, summaries, design, outcomes and enrollment. A classifier
that reads fields only one side has learns the format, not the content, so evaluation renders
real and synthetic trials with the same field set, and the writer writes the fields its grounding
data has. A field counts for a data set when at least half of its trials have it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from synthtrials.tools.records.trial import Trial

#: every field a rendering can show, in rendering order
FIELDS: tuple[str, ...] = (
    "interventions", "intervention_descriptions", "conditions", "phase", "eligibility", "design", "arms",
    "primary_outcomes", "secondary_outcomes", "enrollment", "title", "summary",
)
ALL_FIELDS = frozenset(FIELDS)

_PRESENT: dict[str, Callable[[Trial], bool]] = {
    "interventions": lambda t: bool(t.interventions),
    "intervention_descriptions": lambda t: any(i.description for i in t.interventions),
    "conditions": lambda t: bool(t.conditions),
    "phase": lambda t: t.phase is not None,
    "eligibility": lambda t: bool(t.eligibility and (t.eligibility.inclusion or t.eligibility.exclusion
                                                     or t.eligibility.raw)),
    "design": lambda t: bool(t.design and (t.design.allocation or t.design.masking or t.design.primary_purpose
                                           or t.design.intervention_model)),
    "arms": lambda t: bool(t.design and t.design.arms),
    "primary_outcomes": lambda t: bool(t.primary_outcomes),
    "secondary_outcomes": lambda t: bool(t.secondary_outcomes),
    "enrollment": lambda t: t.enrollment is not None,
    "title": lambda t: bool(t.brief_title or t.official_title),
    "summary": lambda t: bool(t.brief_summary),
}


def has_field(trial: Trial, name: str) -> bool:
    return _PRESENT[name](trial)


def field_shares(trials: Sequence[Trial]) -> dict[str, float]:
    """Per field, the share of `trials` that have it."""
    n = max(1, len(trials))
    return {name: sum(has(t) for t in trials) / n for name, has in _PRESENT.items()}


def field_set(trials: Sequence[Trial], min_share: float = 0.5) -> tuple[str, ...]:
    """The fields at least `min_share` of the trials have, in rendering order."""
    shares = field_shares(trials)
    return tuple(name for name in FIELDS if shares[name] >= min_share)


def ordered(fields: Iterable[str]) -> tuple[str, ...]:
    wanted = set(fields)
    unknown = wanted - ALL_FIELDS
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))} (known: {', '.join(FIELDS)})")
    return tuple(name for name in FIELDS if name in wanted)
