"""Readers: every real-data format to `Trial`s.

`iter_sources` walks files, folders and zips and dispatches on the file type. It yields a `Trial`
per good record and an `InputError` per bad record; it raises `InputError` for a source that
cannot be read at all (missing file, corrupt zip, CSV without the needed columns).
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from synthtrials.tools.errors import InputError
from synthtrials.tools.readers.ctgov_json import read_ctgov_json_bytes
from synthtrials.tools.readers.ctgov_xml import read_ctgov_xml_bytes
from synthtrials.tools.readers.labels import apply_labels, read_labels_csv
from synthtrials.tools.readers.top_csv import read_top_csv_bytes
from synthtrials.tools.readers.trials_jsonl import read_trials_jsonl_bytes
from synthtrials.tools.records.trial import Trial

__all__ = ["iter_sources", "read_sources", "read_trials", "read_labels_csv", "apply_labels", "SUFFIXES"]

SUFFIXES = (".csv", ".xml", ".json", ".jsonl")


def _read_bytes(data: bytes, name: str) -> Iterator[Trial | InputError]:
    suffix = Path(name).suffix.lower()
    if suffix == ".xml":
        yield read_ctgov_xml_bytes(data, name)
    elif suffix == ".json":
        yield from read_ctgov_json_bytes(data, name)
    elif suffix == ".csv":
        yield from read_top_csv_bytes(data, name)
    elif suffix == ".jsonl":
        yield from read_trials_jsonl_bytes(data, name)


def _iter_zip(path: Path) -> Iterator[Trial | InputError]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(str(path), f"corrupt or truncated zip ({exc})") from None
    with archive:
        for info in archive.infolist():
            if info.is_dir() or Path(info.filename).suffix.lower() not in SUFFIXES:
                continue
            name = f"{path}!{info.filename}"
            try:
                data = archive.read(info)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                yield InputError(name, f"corrupt zip member ({exc})")
                continue
            yield from _read_bytes(data, name)


def _iter_path(path: Path) -> Iterator[Trial | InputError]:
    if not path.exists():
        raise InputError(str(path), "no such file or directory")
    if path.is_dir() and (path / "run.json").is_file():  # a generation run: its accepted trials
        yield from _iter_path(path / "trials.jsonl")
        return
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (*SUFFIXES, ".zip"))
        if not files:
            raise InputError(str(path), "folder holds no .csv, .xml, .json or .zip files")
        for file in files:
            yield from _iter_path(file)
        return
    suffix = path.suffix.lower()
    if suffix == ".zip":
        yield from _iter_zip(path)
    elif suffix in SUFFIXES:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(str(path), f"cannot read ({exc.strerror})") from None
        yield from _read_bytes(data, str(path))
    else:
        raise InputError(str(path), f"unknown file type {suffix or '(none)'}; expected .csv, .xml, .json, .jsonl or .zip")


def iter_sources(paths: Iterable[str | Path], labels: dict[str, int] | None = None,
                 labels_name: str = "") -> Iterator[Trial | InputError]:
    """Yield trials (with labels joined) and record-level errors from every source, in order."""
    for path in paths:
        for item in _iter_path(Path(path)):
            if labels and isinstance(item, Trial):
                item = apply_labels(item, labels, labels_name)
            yield item


def read_sources(paths: Iterable[str | Path], labels_csv: str | Path | None = None, *, skip_bad: bool = False,
                 on_record: Callable[[int], None] | None = None) -> tuple[list[tuple[str, Trial]], list[InputError]]:
    """Every (source, trial) of the sources in order, with the labels CSV joined, and the problems.

    Strict by default: the first bad record or unreadable source raises `InputError`. With
    `skip_bad`, bad records and unreadable sources are returned as problems instead.
    """
    labels = read_labels_csv(labels_csv) if labels_csv else None
    read: list[tuple[str, Trial]] = []
    problems: list[InputError] = []
    for source in paths:
        try:
            for item in iter_sources([source], labels, str(labels_csv or "")):
                if isinstance(item, InputError):
                    if not skip_bad:
                        raise item
                    problems.append(item)
                    continue
                read.append((str(source), item))
                if on_record:
                    on_record(len(read))
        except InputError as exc:
            if not skip_bad:
                raise
            if exc not in problems:
                problems.append(exc)
    return read, problems


def read_trials(paths: Iterable[str | Path], labels_csv: str | Path | None = None) -> list[Trial]:
    """Read every trial from the sources, strictly: the first bad record raises `InputError`.

    A trial seen twice keeps its first occurrence (see `dedupe_trials`).
    """
    return dedupe_trials(trial for _, trial in read_sources(paths, labels_csv)[0])[0]


def dedupe_trials(trials: Iterable[Trial]) -> tuple[list[Trial], list[tuple[Trial, Trial]]]:
    """Keep the first occurrence of each NCT id; return the kept trials and label conflicts.

    The TOP release labels 17 trials differently in its phase-I files and its toy files; the
    first source named wins (phase_* sorts before toy_*), and each conflict is reported.
    """
    kept: dict[str, Trial] = {}
    conflicts: list[tuple[Trial, Trial]] = []
    for trial in trials:
        first = kept.get(trial.nct_id)
        if first is None:
            kept[trial.nct_id] = trial
        elif first.label != trial.label and trial.label is not None:
            conflicts.append((first, trial))
    return list(kept.values()), conflicts
