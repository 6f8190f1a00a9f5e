"""The leakage guard: no trial of a test or validation set may have grounded, taught or tuned
what wrote the synthetic training data.

A synthetic trial's grounding is what it was written from: the real examples and semantic
neighbours in its provenance, the real trials the critic compared it with, and everything the run
read as a whole — the grounding splits of the store (the critic's domain knowledge and
calibration, the eligibility counts) and the training trials of an adapted writer — which the run
records in its folder (`grounding.json`). Trials imported from elsewhere (the seed paper's
reports) carry ``"grounding": "unknown"``: they are accepted with a warning, but any real trial
their provenance does name is checked like any other (`tools.records.provenance`).
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.records.provenance import SyntheticProvenance
from synthtrials.tools.records.trial import Trial
from synthtrials.tools.run_folder import RunGrounding, read_run_grounding


class LeakageReport(BaseModel):
    """What the guard found; recorded in metrics.json."""

    checked: int = 0
    unknown_grounding: int = 0
    without_provenance: int = 0
    provenance_check: bool = True
    run_grounding: list[str] = Field(default_factory=list, description="grounding.json files read")
    held_out_sets: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


def has_provenance(trial: Trial) -> bool:
    provenance = SyntheticProvenance.of(trial)
    return provenance is not None and provenance.names_grounding()


def named_grounding(trials: list[Trial], run: RunGrounding | None) -> list[set[str]]:
    """Per synthetic trial: every real trial id it is known to depend on (its provenance's, the run's)."""
    shared = run.ids() if run is not None else set()
    return [(p.real_ids() if (p := SyntheticProvenance.of(t)) else set()) | shared for t in trials]


def grounding_of(trials: list[Trial], run: RunGrounding | None) -> list[set[str] | None]:
    """Per synthetic trial: every real trial id it depends on; None where that is unknown (imported trials,
    whose named ids `named_grounding` still gives)."""
    return [None if (p := SyntheticProvenance.of(t)) is not None and p.grounding == "unknown" else ids
            for t, ids in zip(trials, named_grounding(trials, run))]


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
    report.unknown_grounding = sum(ids is None for ids in grounding_of(trials, run))
    per_trial = named_grounding(trials, run)  # an imported trial that names a held-out trial is refused too
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


def drop_grounded_on(trials: list[Trial], grounding: list[set[str]],
                     held_out: set[str]) -> tuple[list[Trial], int]:
    """The trials whose named grounding (`named_grounding`) avoids `held_out` (paper split: per seed), and how
    many were dropped."""
    kept = [t for t, g in zip(trials, grounding) if not g & held_out]
    return kept, len(trials) - len(kept)
