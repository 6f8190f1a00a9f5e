"""Reader for JSONL files of `Trial`s (a run's trials.jsonl, `import-synthetic` output)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from synthtrials.tools.errors import InputError, describe
from synthtrials.tools.records.surrogates import first_lone_surrogate
from synthtrials.tools.records.trial import Trial


def read_trials_jsonl_bytes(data: bytes, source_name: str) -> Iterator[Trial | InputError]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(source_name, "not UTF-8 text") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield InputError(source_name, f"not a Trial ({describe(exc)})", where=f"line {number}")
            continue
        if surrogate := first_lone_surrogate(record):
            yield InputError(source_name, f"text holds half a character ('{surrogate}' without its pair): not valid "
                                          "Unicode; fix or drop that text", where=f"line {number}")
            continue
        try:
            yield Trial.model_validate(record)
        except ValueError as exc:
            yield InputError(source_name, f"not a Trial ({describe(exc)})", where=f"line {number}")
