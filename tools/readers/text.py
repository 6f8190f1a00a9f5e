"""Shared text helpers for readers: criteria splitting, dates, whitespace."""

from __future__ import annotations

import re
from datetime import datetime

from synthtrials.tools.records.trial import Eligibility

_INCLUSION = re.compile(r"inclusion\s+criteria\s*:?", re.IGNORECASE)
_EXCLUSION = re.compile(r"exclusion\s+criteria\s*:?", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*•·]|\d{1,2}[.)])\s+")


def clean(text: str | None) -> str | None:
    """Collapse whitespace (``&#xD;`` and indentation included); '' -> None."""
    if text is None:
        return None
    out = " ".join(str(text).split())
    return out or None


def clean_block(text: str | None) -> str | None:
    """Keep paragraph breaks of a text block, collapse the rest."""
    if text is None:
        return None
    paragraphs = re.split(r"\n\s*\n", str(text).replace("\r", ""))
    out = "\n\n".join(p for p in (" ".join(par.split()) for par in paragraphs) if p)
    return out or None


def clean_lines(text: str | None) -> str | None:
    """Keep line structure (for criteria lists), strip each line, squeeze blank-line runs."""
    if text is None:
        return None
    lines = [" ".join(line.split()) for line in str(text).replace("\r", "").split("\n")]
    out = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return out or None


def _items(block: str) -> list[str]:
    items: list[str] = []
    current: list[str] = []
    for line in block.replace("\r", "").split("\n"):
        if not line.strip():
            if current:
                items.append(" ".join(current))
                current = []
            continue
        if _BULLET.match(line):
            if current:
                items.append(" ".join(current))
            current = [_BULLET.sub("", line).strip()]
        else:
            current.append(line.strip())
    if current:
        items.append(" ".join(current))
    return [" ".join(i.split()) for i in items if i.strip(" -")]


def parse_criteria(raw: str | None) -> Eligibility | None:
    """Split free-text eligibility criteria into inclusion and exclusion items; keep the raw text."""
    if raw is None or not raw.strip():
        return None
    text = raw.replace("\r", "")
    inc = _INCLUSION.search(text)
    exc = _EXCLUSION.search(text)
    inclusion: list[str] = []
    exclusion: list[str] = []
    if exc:
        start = inc.end() if inc and inc.start() < exc.start() else 0
        inclusion = _items(text[start:exc.start()])
        exclusion = _items(text[exc.end():])
    elif inc:
        inclusion = _items(text[inc.end():])
    return Eligibility(inclusion=inclusion, exclusion=exclusion, raw=clean_lines(text))


_DATE_FORMATS = ("%B %d, %Y", "%B %Y", "%Y-%m-%d", "%Y-%m", "%b %d, %Y", "%b %Y")


def parse_date(text: str | None) -> str | None:
    """'July 1997' -> '1997-07', 'November 2, 1999' -> '1999-11-02'; unparseable text kept as is."""
    value = clean(text)
    if value is None:
        return None
    for fmt in _DATE_FORMATS:
        try:
            parsed = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return parsed.strftime("%Y-%m-%d" if "%d" in fmt else "%Y-%m")
    return value
