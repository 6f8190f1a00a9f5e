"""Lone UTF-16 surrogates: half of a character, which a Python str can hold and no UTF-8 encoder takes.

A model that cuts an emoji or a symbol in two writes a JSON escape such as "\\ud83d" without its pair;
`json.loads` turns it into a lone surrogate, and the encoder's tokenizer, SQLite and parquet then fail on
the text. Model answers are cleaned (`without_lone_surrogates`, in `tools.llm.client`); a user's file
that holds one is refused with one line (`first_lone_surrogate`, in the JSONL reader).
"""

from __future__ import annotations

import re
from typing import Any

LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def without_lone_surrogates(value: Any) -> Any:
    """`value` (a str, or JSON data: lists and dicts of them) with every lone surrogate dropped."""
    if isinstance(value, str):
        return LONE_SURROGATE.sub("", value)
    if isinstance(value, list):
        return [without_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {without_lone_surrogates(k): without_lone_surrogates(v) for k, v in value.items()}
    return value


def first_lone_surrogate(value: Any) -> str | None:
    """The first lone surrogate in `value` (JSON data), as its escape (e.g. '\\ud83d'); None where it has none."""
    if isinstance(value, str):
        found = LONE_SURROGATE.search(value)
        return f"\\u{ord(found.group()):04x}" if found else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = first_lone_surrogate(key) if isinstance(key, str) else None
        if found or (found := first_lone_surrogate(item)):
            return found
    return None
