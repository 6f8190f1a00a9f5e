"""The leakage guard: no trial of a test or validation set may have grounded, taught or tuned
what wrote the synthetic training data.

A synthetic trial's grounding is what it was written from: the real examples and semantic
neighbours in its provenance, the real trials the critic compared it with, and everything the run
read as a whole — the grounding splits of the store (the critic's domain knowledge and
calibration, the eligibility counts) and the training trials of an adapted writer — which the run
records in its folder (`grounding.json`). Trials imported from elsewhere (the seed paper's
reports) carry ``"grounding": "unknown"``: they are accepted with a warning.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.run_folder import RunGrounding, read_run_grounding
from synthtrials.tools.trial import Trial

#: provenance keys that list real trials a synthetic trial was written or checked with
PROVENANCE_ID_KEYS = ("examples", "neighbours", "critic_neighbours")


class LeakageReport(BaseModel):
    """What the guard found; recorded in metrics.json."""

    checked: int = 0
    unknown_grounding: int = 0
    without_provenance: int = 0
    provenance_check: bool = True
    run_grounding: list[str] = Field(default_factory=list, description="grounding.json files read")
    held_out_sets: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


def trial_grounding_ids(trial: Trial) -> set[str] | None:
    """The real trials this synthetic trial's provenance names; None when its grounding is unknown."""
    provenance = trial.provenance or {}
    if provenance.get("grounding") == "unknown":
        return None
    return {i for key in PROVENANCE_ID_KEYS for i in provenance.get(key) or []}


def has_provenance(trial: Trial) -> bool:
    provenance = trial.provenance or {}
    return provenance.get("grounding") == "unknown" or any(key in provenance for key in PROVENANCE_ID_KEYS)


def grounding_of(trials: list[Trial], run: RunGrounding | None) -> list[set[str] | None]:
    """Per synthetic trial: every real trial id it depends on (None: unknown grounding)."""
    shared = run.ids() if run is not None else set()
    out: list[set[str] | None] = []
    for trial in trials:
        own = trial_grounding_ids(trial)
        out.append(None if own is None else own | shared)
    return out


def guard(trials: list[Trial], synthetic_path: str, held_out: dict[str, set[str]], *,
          provenance_check: bool = True) -> LeakageReport:
    """Refuse (one-line `ConfigError`) synthetic trials whose grounding touches a held-out set.

    `held_out` maps a name ("test set phase_I_test.csv") to its trial ids.
    """
    report = LeakageReport(checked=len(trials), provenance_check=provenance_check, held_out_sets=list(held_out))
    missing = [t for t in trials if not has_provenance(t)]
    report.without_provenance = len(missing)
    if missing and provenance_check:
        raise ConfigError(f"{synthetic_path}: {len(missing)} synthetic trials have no provenance (e.g. "
                          f"{missing[0].nct_id}), so their grounding cannot be checked against the held-out trials; "
                          "regenerate them with synthtrials, or pass --no-provenance-check (metrics.json records it)")
    if missing:
        report.warnings.append(f"{len(missing)} synthetic trials without provenance were not checked "
                               "(--no-provenance-check)")
    run = read_run_grounding(synthetic_path)
    if run is not None:
        report.run_grounding.append(str(synthetic_path))
    per_trial = grounding_of(trials, run)
    report.unknown_grounding = sum(ids is None for ids in per_trial)
    if report.unknown_grounding:
        report.warnings.append(f"{report.unknown_grounding} synthetic trials have unknown grounding (imported): "
                               "they may have been written from held-out trials")
    for name, ids in held_out.items():
        leaks = [(t, sorted(g & ids)) for t, g in zip(trials, per_trial) if g and g & ids]
        if leaks:
            trial, touched = leaks[0]
            raise ConfigError(
                f"{synthetic_path}: {len(leaks)} synthetic trials were grounded on trials of the {name} (e.g. "
                f"{trial.nct_id} on {touched[0]}); generate with --ground-on train from a store that holds the "
                "held-out files (ingest marks their trials valid/test), or evaluate against other trials")
    return report


def drop_grounded_on(trials: list[Trial], grounding: list[set[str] | None],
                     held_out: set[str]) -> tuple[list[Trial], int]:
    """The trials whose known grounding avoids `held_out` (paper split: per seed), and how many were dropped."""
    kept = [t for t, g in zip(trials, grounding) if not (g and g & held_out)]
    return kept, len(trials) - len(kept)
