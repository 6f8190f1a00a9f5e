"""Ingest: read sources, validate everything, then write the store in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from synthtrials.tools.atomic import write_jsonl_atomic
from synthtrials.tools.errors import InputError
from synthtrials.tools.readers import dedupe_trials, iter_sources, read_labels_csv
from synthtrials.tools.store import ProgressFn, TrialStoreBackend
from synthtrials.tools.trial import Trial


@dataclass
class IngestReport:
    read: int = 0
    stored: int = 0
    inserted: int = 0
    updated: int = 0
    embedded: int = 0
    duplicates: int = 0
    label_conflicts: list[dict] = field(default_factory=list)
    rejected: list[InputError] = field(default_factory=list)
    rejected_file: Path | None = None


def ingest(store: TrialStoreBackend, sources: Sequence[str | Path], *, labels_csv: str | Path | None = None,
           skip_bad: bool = False, rejected_path: str | Path | None = None,
           on_record: Callable[[int], None] | None = None, on_embed: ProgressFn | None = None) -> IngestReport:
    """Read every source, then upsert the good trials.

    Strict by default: the first bad record or source raises `InputError` and nothing is written.
    With `skip_bad`, bad records (and unreadable sources) are collected and written with their
    reasons to `rejected_path`, and the good ones are stored.
    """
    report = IngestReport()
    labels = read_labels_csv(labels_csv) if labels_csv else None
    trials: list[Trial] = []
    for source in sources:
        try:
            for item in iter_sources([source], labels, str(labels_csv or "")):
                if isinstance(item, InputError):
                    if not skip_bad:
                        raise item
                    report.rejected.append(item)
                    continue
                trials.append(item)
                report.read += 1
                if on_record:
                    on_record(report.read)
        except InputError as exc:
            if not skip_bad:
                raise
            if exc not in report.rejected:
                report.rejected.append(exc)
    kept, conflicts = dedupe_trials(trials)
    report.duplicates = len(trials) - len(kept)
    report.label_conflicts = [
        {"nct_id": a.nct_id, "kept_label": a.label, "kept_from": a.provenance.get("file"),
         "other_label": b.label, "other_from": b.provenance.get("file")}
        for a, b in conflicts
    ]
    if skip_bad and report.rejected:
        report.rejected_file = Path(rejected_path) if rejected_path else None
        if report.rejected_file is not None:
            write_jsonl_atomic(report.rejected_file, (
                {"source": e.source, "where": e.where, "problem": e.problem} for e in report.rejected))
    upserted = store.upsert(kept, progress=on_embed)
    report.stored = len(kept)
    report.inserted, report.updated, report.embedded = upserted.inserted, upserted.updated, upserted.embedded
    return report
