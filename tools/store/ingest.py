"""Ingest: read sources, validate everything, then write the store in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from synthtrials.tools.atomic import write_jsonl_atomic
from synthtrials.tools.errors import InputError
from synthtrials.tools.knowledge.domain import trial_sections
from synthtrials.tools.progress import ProgressFn
from synthtrials.tools.readers import dedupe_trials, read_sources
from synthtrials.tools.records.splits import (
    GROUNDING_CANDIDATES,
    Split,
    check_split,
    is_stricter,
    split_from_source_name,
)
from synthtrials.tools.store.protocol import (
    TrialStore,
    grounding_filter,
)


@dataclass
class IngestReport:
    read: int = 0
    stored: int = 0
    inserted: int = 0
    updated: int = 0
    embedded: int = 0
    duplicates: int = 0
    label_conflicts: list[dict] = field(default_factory=list)
    #: trials given a stricter split than before (in an earlier file of this ingest, or in the store)
    split_upgrades: list[dict] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)
    sections: int = 0
    rejected: list[InputError] = field(default_factory=list)
    rejected_file: Path | None = None


def ingest(store: TrialStore, sources: Sequence[str | Path], *, labels_csv: str | Path | None = None,
           split: str | None = None, embed_sections: bool = True, skip_bad: bool = False, rejected_path: str | Path | None = None,
           on_record: Callable[[int], None] | None = None, on_embed: ProgressFn | None = None,
           on_sections: ProgressFn | None = None) -> IngestReport:
    """Read every source, then upsert the good trials.

    Strict by default: the first bad record or source raises `InputError` and nothing is written.
    With `skip_bad`, bad records (and unreadable sources) are collected and written with their
    reasons to `rejected_path`, and the good ones are stored.

    Each trial's split is `split`, else the one its file name implies (`split_from_source_name`);
    a trial read from several files, or already stored, keeps the strictest split it was given.
    The sections of the trials that may ground generation by default (train, pool) are embedded
    for the critic's domain knowledge (`tools.knowledge.domain`), once, and kept with the store.
    """
    report = IngestReport()
    forced = check_split(split) if split else None
    read, report.rejected = read_sources(sources, labels_csv, skip_bad=skip_bad, on_record=on_record)
    report.read = len(read)
    trials = [trial for _, trial in read]
    splits: dict[str, Split] = {}
    split_source: dict[str, str] = {}
    for source, trial in read:
        given = forced or split_from_source_name(source)
        earlier = splits.get(trial.nct_id)
        if earlier is None or is_stricter(given, earlier):
            if earlier is not None:
                report.split_upgrades.append({"nct_id": trial.nct_id, "old": earlier, "new": given, "because": source})
            splits[trial.nct_id] = given
            split_source[trial.nct_id] = source
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
    upserted = store.upsert(kept, progress=on_embed, splits=splits)
    report.split_upgrades += [{"nct_id": u.nct_id, "old": u.old, "new": u.new, "because": split_source[u.nct_id]}
                              for u in upserted.split_upgrades]
    report.stored = len(kept)
    report.inserted, report.updated, report.embedded = upserted.inserted, upserted.updated, upserted.embedded
    report.splits = store.split_counts()
    if embed_sections:
        grounding = set(store.filter_ids(grounding_filter(GROUNDING_CANDIDATES)))
        texts = [text for t in kept if t.nct_id in grounding for _, text in trial_sections(t)]
        store.section_vectors(texts, progress=on_sections)
        report.sections = len(set(texts))
    return report
