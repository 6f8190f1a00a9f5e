"""Loading real and synthetic trial sets for evaluation, with clear errors before any training."""

from __future__ import annotations

import json
from pathlib import Path

from synthtrials.tools.errors import ConfigError, InputError, describe
from synthtrials.tools.readers import read_trials
from synthtrials.tools.run_folder import TRIALS_FILE, trials_file
from synthtrials.tools.records.trial import Trial


def load_labelled(path: str | Path, labels_csv: str | Path | None = None, what: str = "real") -> list[Trial]:
    """Real trials in any reader format; every trial needs a 0/1 label."""
    trials = read_trials([path], labels_csv=labels_csv)
    if not trials:
        raise InputError(str(path), "no trials")
    unlabelled = [t.nct_id for t in trials if t.label is None]
    if unlabelled:
        raise InputError(str(path), f"{len(unlabelled)} {what} trials have no 0/1 label (e.g. {unlabelled[0]}); "
                                    "give --labels CSV")
    return trials


def load_synthetic(path: str | Path, *, both_labels: bool = True) -> list[Trial]:
    """Synthetic trials from a run folder (its trials.jsonl) or a JSONL of `Trial`s; `both_labels`: a
    training set, refused where every trial has the same label (a report describes any set)."""
    file = trials_file(path)
    if not file.is_file():
        raise InputError(str(file), f"no such file (a run folder holds {TRIALS_FILE})")
    trials = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            trial = Trial.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValueError) as exc:
            raise InputError(str(file), describe(exc), where=f"line {number}") from None
        if trial.label not in (0, 1):
            raise InputError(str(file), f"trial {trial.nct_id} has no 0/1 label", where=f"line {number}")
        trials.append(trial)
    if not trials:
        raise InputError(str(file), "no trials")
    labels = {t.label for t in trials}
    if both_labels and len(labels) < 2:
        raise ConfigError(f"{file}: every synthetic trial has label {labels.pop()}; a training set needs both labels")
    return trials


def labels_of(trials: list[Trial]) -> list[int]:
    return [int(t.label) for t in trials]  # type: ignore[arg-type]


def real_reference(trials: Path, real: Path | None) -> list[Trial]:
    """Real labelled trials to compare synthetic ones with: from `real`, else the real trials of the
    grounding splits of the run that wrote them (its store, as recorded in its folder)."""
    from synthtrials.tools.run_folder import read_run_config, read_run_grounding
    from synthtrials.tools.store.protocol import (
        TrialFilter,
        grounding_filter,
    )
    from synthtrials.tools.store.trial_store import open_store

    if real is not None:
        return [t for t in read_trials([real]) if t.label is not None]
    grounding = read_run_grounding(trials)
    config = read_run_config(trials)
    if grounding is not None:
        location, flt = grounding.store, grounding_filter(grounding.splits)
    elif config is not None:
        location, flt = config.store, TrialFilter(source="real")
    else:
        return []
    store = open_store(location, create=False)
    reference = [t for t in store.filter(flt) if t.label is not None]
    store.close()
    return reference
