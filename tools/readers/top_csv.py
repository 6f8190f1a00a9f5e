"""Reader for the TOP clinical-trial outcome benchmark CSVs (HINT, Fu et al. 2022)."""

from __future__ import annotations

import ast
import csv
import io
from collections.abc import Iterator
from typing import IO

from synthtrials.tools.errors import InputError, describe
from synthtrials.tools.records.normalize import parse_phase
from synthtrials.tools.readers.text import clean, parse_criteria
from synthtrials.tools.records.trial import Intervention, InterventionType, Trial

REQUIRED_COLUMNS = ("nctid", "label", "phase", "diseases", "drugs", "criteria")
LABEL_SOURCE = "TOP benchmark (HINT, Fu et al. 2022)"

csv.field_size_limit(16 * 1024 * 1024)


def parse_list_literal(text: str, column: str) -> list[str]:
    """Parse a Python-literal list of strings safely (`ast.literal_eval`, never `eval`)."""
    value = (text or "").strip()
    if not value:
        return []
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError) as exc:
        raise ValueError(f"column {column!r} is not a valid list literal ({type(exc).__name__})") from None
    if not isinstance(parsed, (list, tuple)) or not all(isinstance(x, str) for x in parsed):
        raise ValueError(f"column {column!r} is not a list of strings")
    return [x.strip() for x in parsed if x.strip()]


def _label(text: str) -> int:
    value = (text or "").strip()
    if value in {"0", "1", "0.0", "1.0"}:
        return int(float(value))
    raise ValueError(f"label {value!r} is not 0 or 1")


def row_to_trial(row: dict[str, str], source_name: str, row_number: int) -> Trial:
    nct_id = (row.get("nctid") or "").strip()
    drugs = parse_list_literal(row.get("drugs", ""), "drugs")
    diseases = parse_list_literal(row.get("diseases", ""), "diseases")
    try:
        phase = parse_phase(row.get("phase"))
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return Trial(
        nct_id=nct_id,
        phase=phase,
        conditions=diseases,
        interventions=[Intervention(name=d, type=InterventionType.DRUG) for d in drugs],
        eligibility=parse_criteria(row.get("criteria")),
        overall_status=clean(row.get("status")),
        why_stopped=clean(row.get("why_stop")),
        label=_label(row.get("label", "")),  # type: ignore[arg-type]
        label_source=LABEL_SOURCE,
        source="real",
        provenance={"reader": "top_csv", "file": source_name, "row": row_number},
    )


def read_top_csv(stream: IO[str], source_name: str) -> Iterator[Trial | InputError]:
    """Yield a `Trial` per row, or an `InputError` for a bad row (the caller decides).

    Raises `InputError` when the file itself is unusable (no header, missing columns).
    """
    reader = csv.DictReader(stream)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise InputError(source_name, f"not a readable CSV ({exc})") from None
    if not header:
        raise InputError(source_name, "empty CSV (no header row)")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(source_name, f"missing column(s) {', '.join(missing)}; a TOP CSV needs {', '.join(REQUIRED_COLUMNS)}")
    row_number = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(source_name, f"CSV syntax error ({exc})", where=f"row {row_number + 1}") from None
        row_number += 1
        if None in row or any(v is None for v in row.values()):
            yield InputError(source_name, "wrong number of fields", where=f"row {row_number}")
            continue
        try:
            yield row_to_trial(row, source_name, row_number)
        except ValueError as exc:
            yield InputError(source_name, describe(exc), where=f"row {row_number} ({row.get('nctid', '?')})")


def read_top_csv_bytes(data: bytes, source_name: str) -> Iterator[Trial | InputError]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(source_name, "not UTF-8 text") from None
    return read_top_csv(io.StringIO(text, newline=""), source_name)

