"""Outcome labels from a separate CSV (nctid,label), joined to trials by NCT id."""

from __future__ import annotations

import csv
from pathlib import Path

from synthtrials.tools.errors import InputError
from synthtrials.tools.records.trial import NCT_ID, Trial

_ID_COLUMNS = ("nctid", "nct_id", "nct id", "nctId")


def read_labels_csv(path: str | Path) -> dict[str, int]:
    """Read `nctid,label` (label 0/1). Raises `InputError` naming the file and row on bad input."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "labels file not found")
    labels: dict[str, int] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            id_column = next((c for c in header if c.strip() in _ID_COLUMNS), None)
            if id_column is None or "label" not in header:
                raise InputError(str(path), "a labels CSV needs the columns nctid and label")
            for row_number, row in enumerate(reader, start=2):
                nct_id = (row.get(id_column) or "").strip()
                value = (row.get("label") or "").strip()
                if not NCT_ID.match(nct_id):
                    raise InputError(str(path), f"{nct_id!r} is not an NCT id", where=f"row {row_number}")
                if value not in {"0", "1"}:
                    raise InputError(str(path), f"label {value!r} is not 0 or 1", where=f"row {row_number}")
                if nct_id in labels and labels[nct_id] != int(value):
                    raise InputError(str(path), f"{nct_id} has two different labels", where=f"row {row_number}")
                labels[nct_id] = int(value)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(str(path), f"not a readable CSV ({exc})") from None
    return labels


def apply_labels(trial: Trial, labels: dict[str, int], source_name: str) -> Trial:
    """Return the trial with its label taken from `labels` when the CSV names it."""
    if trial.nct_id not in labels:
        return trial
    return trial.model_copy(update={"label": labels[trial.nct_id], "label_source": f"labels CSV {source_name}"})
