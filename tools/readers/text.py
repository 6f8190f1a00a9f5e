"""Shared text helpers for readers: criteria splitting, dates, whitespace."""

from __future__ import annotations

import re
from datetime import datetime

from synthtrials.tools.records.trial import Eligibility

_INCLUSION = re.compile(r"inclusion\s+criteria\s*:?", re.IGNORECASE)
_EXCLUSION = re.compile(r"exclusion\s+criteria\s*:?", re.IGNORECASE)
#: the same headers written other ways, each alone at the start of a paragraph: "Inclusion", "INCLUSION:",
#: "Inclusions:", "Inc Criteria:", "Inclusion_Criteria:" (and their exclusion forms); a paragraph's start, so
#: that a criterion wrapped before its last word ("... do not result in\n exclusion") is no header
_INCLUSION_LINE = re.compile(r"(?:\A|\n[ \t]*\n)\s*(?:inclusions?|inc(?=[ \t_]+criteria))(?:[ \t_]+criteria)?[ \t]*(?::|$)",
                             re.IGNORECASE | re.MULTILINE)
_EXCLUSION_LINE = re.compile(r"(?:\A|\n[ \t]*\n)\s*(?:exclusions?|exc(?=[ \t_]+criteria))(?:[ \t_]+criteria)?[ \t]*(?::|$)",
                             re.IGNORECASE | re.MULTILINE)
_BULLET = re.compile(r"^\s*(?:[-*•·]|\d{1,2}[.)])\s+")
#: a section heading of criteria written without inclusion/exclusion headers: the NCI PDQ form's three, or a
#: lone "Criteria:" / "Eligibility:" over the list
_LIST_HEADING = r"(?:eligibility\s+)?criteria|eligibility"
_HEADING = re.compile(rf"^(?:(?:DISEASE|PATIENT)\s+CHARACTERISTICS|PRIOR\s+CONCURRENT\s+THERAPY|{_LIST_HEADING})\s*:\s*",
                      re.IGNORECASE)
_HEADING_ITEM = re.compile(rf"(?:{_LIST_HEADING})\s*:?", re.IGNORECASE)  # a bulleted "- Eligibility:"
#: the labels the PDQ form puts alone on a line over the items of a section ("Age", "Hepatic: ...")
PDQ_LABELS = frozenset({
    "age", "sex", "menopausal status", "performance status", "life expectancy", "hematopoietic", "hepatic",
    "renal", "cardiovascular", "pulmonary", "gastrointestinal", "immunologic", "endocrine", "neurologic", "other",
    "biologic therapy", "chemotherapy", "endocrine therapy", "radiotherapy", "surgery"})


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


def _first(*matches: re.Match[str] | None) -> re.Match[str] | None:
    """The match that starts first (a header written "Inclusion:" on its line before a criterion that
    mentions "additional inclusion criteria" is the header)."""
    found = [m for m in matches if m]
    return min(found, key=lambda m: m.start()) if found else None


def parse_criteria(raw: str | None) -> Eligibility | None:
    """Split free-text eligibility criteria into inclusion and exclusion items; keep the raw text."""
    if raw is None or not raw.strip():
        return None
    text = raw.replace("\r", "")
    inc = _first(_INCLUSION.search(text), _INCLUSION_LINE.search(text))
    exc = _first(_EXCLUSION.search(text), _EXCLUSION_LINE.search(text))
    inclusion: list[str] = []
    exclusion: list[str] = []
    if exc:
        start = inc.end() if inc and inc.start() < exc.start() else 0
        inclusion = _items(text[start:exc.start()])
        exclusion = _items(text[exc.end():])
    elif inc:
        inclusion = _items(text[inc.end():])
    else:
        inclusion = _items_without_headers(text)
    return Eligibility(inclusion=inclusion, exclusion=exclusion, raw=clean_lines(text))


def _items_without_headers(text: str) -> list[str]:
    """The items of criteria with no inclusion or exclusion header, all read as inclusion criteria, as
    the registry lists them (6% of TOP's trials, one in ten of phase_I_train's; most in the NCI PDQ form:
    "DISEASE CHARACTERISTICS:", "PATIENT CHARACTERISTICS:", "PRIOR CONCURRENT THERAPY:", each over
    bulleted items or one paragraph). Section headings are dropped (an inline one is cut off its
    paragraph); a label line over bulleted items (one of the PDQ form's `PDQ_LABELS`, or a short line
    ending with a colon: "Patients must be:") is put before the item that follows it ("Age: 18 and over")."""
    items: list[str] = []
    current: list[str] = []
    label: str | None = None
    lines = text.split("\n")

    def flush() -> None:
        nonlocal current, label
        if current:
            item = " ".join(" ".join(current).split())
            if label:
                item = f"{label}: {item}"
                label = None
            items.append(item)
        current = []

    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            flush()
            continue
        if _BULLET.match(line):
            flush()
            current = [_BULLET.sub("", line).strip()]
            continue
        heading = _HEADING.match(stripped)
        if heading:
            flush()
            label = None
            stripped = stripped[heading.end():].strip()
            if not stripped:
                continue
        if not current:
            name = stripped.rstrip(":").strip()
            is_label = name.lower() in PDQ_LABELS or (stripped.endswith(":") and len(stripped.split()) <= 4)
            if is_label and _BULLET.match(next((n for n in lines[number + 1:] if n.strip()), "")):
                label = name
                continue
        current.append(stripped)
    flush()
    return [i for i in items if i.strip(" -:") and not _HEADING_ITEM.fullmatch(i)]


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
