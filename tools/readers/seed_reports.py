"""Reader for the seed paper's released synthetic reports (Xu et al. 2024, arXiv 2410.12476).

The release (github.com/XuZR3x/Retrieval_Reasoning_Clinical_Trial_Generation, `data/synthetic/`)
holds 3,358 reports `retrieval_reasoning_reports/synthetic_clinical_report_{0..3357}.txt` and their
labels `retrieval_reasoning_label.txt`, one 0/1 per line in report-number order (1: the model was
asked for a successful trial, 0: a failed one): report n (the number at the end of its file name)
takes the label on line n + 1, so any subset of the release imports with the full labels file. Each report is gpt-4o-mini's raw answer: a legacy
ClinicalTrials.gov record as xmltodict-style JSON (`{"clinical_study": {...}}`), often in a markdown
code fence, sometimes with `//` comments or one closing brace too many or too few.

`read_seed_reports` repairs what can be repaired safely, maps the fields with the legacy XML
reader's own mapping (the JSON is turned back into a `clinical_study` element), keeps only the
protocol (no status, why-stopped, dates, people, locations or results: the label would leak) and
returns synthetic `Trial`s with `SYN-` ids plus one `InputError` per report it had to skip.
"""

from __future__ import annotations

import hashlib
import json
import re
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from synthtrials.tools.errors import InputError, describe
from synthtrials.tools.readers.ctgov_xml import element_fields
from synthtrials.tools.readers.text import clean
from synthtrials.tools.records.trial import Trial

__all__ = ["SeedImport", "read_seed_reports", "read_seed_labels", "load_report_json", "REPORT_SUFFIXES"]

REPORT_SUFFIXES = (".json", ".txt")

FENCE = "code fence"
COMMENTS = "// comments"
STRAY_BRACE = "stray closing brace"
MISSING_BRACE = "missing closing brace"
LIST_FOR_ONE = "list for a single field"
PLAIN_BLOCK = "text block as plain string"

#: the `clinical_study` fields kept: the protocol. Everything else (status, why-stopped, dates,
#: contacts, locations, investigators, responsible party, results...) is dropped unread.
KEPT_FIELDS = ("id_info", "brief_title", "official_title", "sponsors", "brief_summary", "detailed_description",
               "phase", "study_design_info", "primary_outcome", "secondary_outcome", "enrollment", "condition",
               "arm_group", "intervention", "eligibility", "keyword")
#: dropped fields that name the outcome; counted so the summary can say how often they were there
LEAKAGE_FIELDS = ("overall_status", "why_stopped", "clinical_results")

#: elements the XML mapping reads once: given as a list, their values are merged
_SINGLE = frozenset({
    "id_info", "nct_id", "org_study_id", "brief_title", "official_title", "sponsors", "lead_sponsor", "agency",
    "brief_summary", "detailed_description", "textblock", "phase", "study_design_info", "allocation", "masking",
    "primary_purpose", "intervention_model", "enrollment", "eligibility", "criteria", "gender", "minimum_age",
    "maximum_age", "healthy_volunteers", "measure", "time_frame", "description", "intervention_name",
    "intervention_type", "arm_group_type",
})
_BLOCKS = frozenset({"brief_summary", "detailed_description", "criteria"})
_JOINERS = {"phase": "/", "textblock": "\n\n", **{tag: "\n\n" for tag in _BLOCKS}}
_FENCED = re.compile(r"```[\w-]*[ \t]*\r?\n(?P<body>.*?)(?:```|\Z)", re.DOTALL)
_NUMBER = re.compile(r"\d+")
_DECODER = json.JSONDecoder()


@dataclass
class SeedImport:
    """What an import produced: trials, skipped reports and what was repaired or dropped."""

    reports: int = 0
    trials: list[Trial] = field(default_factory=list)
    problems: list[InputError] = field(default_factory=list)
    repaired: int = 0
    repairs: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class _Report:
    name: str  # as shown in problems: the path, or ZIP!MEMBER
    file_name: str  # the base name: in the provenance and the id
    data: bytes | InputError


# --- Lenient JSON ------------------------------------------------------------------------------

def _blank(text: str) -> str:
    """Spaces for every character but newlines: repairs keep error positions true to the file."""
    return re.sub(r"[^\n]", " ", text)


def _unfence(text: str) -> str | None:
    """The body of the first markdown code fence, blanked around; None when there is no fence."""
    if text.lstrip().startswith("{"):
        return None
    match = _FENCED.search(text)
    if match is None:
        return None
    return _blank(text[:match.start("body")]) + match.group("body") + _blank(text[match.end("body"):])


def _blank_line_comments(text: str) -> str:
    """Blank `//` comments that stand outside JSON strings (a URL inside a string is kept)."""
    chars = list(text)
    in_string = False
    i = 0
    while i < len(text):
        char = text[i]
        if in_string:
            if char == "\\":
                i += 2
                continue
            in_string = char != '"'
        elif char == '"':
            in_string = True
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = len(text) if end == -1 else end
            chars[i:end] = " " * (end - i)
            i = end
            continue
        i += 1
    return "".join(chars)


def _decode(text: str, repairs: list[str]) -> Any:
    """One JSON value; a missing last closing brace or stray closing braces after it are repaired."""
    start = len(text) - len(text.lstrip())
    body = text.rstrip()
    try:
        value, end = _DECODER.raw_decode(body, start)
    except json.JSONDecodeError as exc:
        if exc.pos != len(body) or not body.endswith("}"):
            raise
        try:
            value, _ = _DECODER.raw_decode(body + "}", start)
        except json.JSONDecodeError:
            raise exc from None
        repairs.append(MISSING_BRACE)
        return value
    rest = body[end:]
    if rest.strip():
        if rest.replace("}", "").strip():
            raise json.JSONDecodeError("Extra data", body, end + len(rest) - len(rest.lstrip()))
        repairs.append(STRAY_BRACE)
    return value


def load_report_json(data: bytes) -> tuple[Any, list[str]]:
    """Parse a report, repairing a code fence, `//` comments and a missing or stray closing brace.

    Returns the value and the repairs made; raises ValueError (with the line and column in the
    file) when the text cannot be repaired safely.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    repairs: list[str] = []
    unfenced = _unfence(text)
    if unfenced is not None:
        text = unfenced
        repairs.append(FENCE)
    try:
        return _decode(text, repairs), repairs
    except json.JSONDecodeError as exc:
        uncommented = _blank_line_comments(text)
        if uncommented == text:
            raise ValueError(_json_problem(exc)) from None
    try:
        value = _decode(uncommented, repairs)
    except json.JSONDecodeError as exc:
        raise ValueError(_json_problem(exc)) from None
    return value, [*repairs, COMMENTS]


def _json_problem(exc: json.JSONDecodeError) -> str:
    return f"not valid JSON, even repaired ({exc.msg}: line {exc.lineno} column {exc.colno})"


# --- xmltodict JSON -> clinical_study element ---------------------------------------------------

def _merge(tag: str, values: list[Any]) -> Any:
    """One value for an element given several times: objects merged, texts joined."""
    if len(values) == 1:
        return values[0]
    if all(isinstance(v, dict) for v in values):
        merged: dict[str, list[Any]] = {}
        for value in values:
            for key, item in value.items():
                merged.setdefault(key, []).append(item)
        return {key: items[0] if len(items) == 1 else items for key, items in merged.items()}
    if any(isinstance(v, (dict, list)) for v in values):
        raise ValueError(f"{tag} is given {len(values)} times, as text and as objects")
    return _JOINERS.get(tag, "; ").join(str(v) for v in values)


def _append(parent: ET.Element, tag: str, value: Any, repairs: list[str]) -> None:
    """Add `value` under `parent` the way xmltodict reads XML: lists repeat the element."""
    if isinstance(value, list):
        values = [v for v in value if v is not None]
        if tag not in _SINGLE:
            for item in values:
                _append(parent, tag, item, repairs)
            return
        repairs.append(LIST_FOR_ONE)
        if not values:
            return
        value = _merge(tag, values)
    if value is None:
        return
    if tag in _BLOCKS and not isinstance(value, dict):
        repairs.append(PLAIN_BLOCK)
        value = {"textblock": value}
    child = ET.SubElement(parent, tag)
    if not isinstance(value, dict):
        child.text = str(value)
        return
    for key, item in value.items():
        if key == "#text":
            child.text = str(item)
        elif key.startswith("@"):
            child.set(key[1:], str(item))
        else:
            _append(child, key, item, repairs)


def _study_element(study: dict[str, Any], repairs: list[str]) -> ET.Element:
    root = ET.Element("clinical_study")
    for key in KEPT_FIELDS:
        _append(root, key, study.get(key), repairs)
    return root


# --- Reports -> trials ---------------------------------------------------------------------------

def _synthetic_id(file_name: str, data: bytes) -> str:
    digest = hashlib.sha256(file_name.encode("utf-8") + b"\0" + data).hexdigest()
    return f"SYN-{digest[:16]}"


def _study(value: Any) -> dict[str, Any]:
    study = value.get("clinical_study") if isinstance(value, dict) else None
    if not isinstance(study, dict):
        raise ValueError("not a ClinicalTrials.gov report in xmltodict shape (no clinical_study object)")
    return study


def _to_trial(report: _Report, data: bytes, label: Literal[0, 1], label_source: str,
              result: SeedImport) -> Trial:
    value, repairs = load_report_json(data)
    study = _study(value)
    root = _study_element(study, repairs)
    trial = Trial(
        nct_id=_synthetic_id(report.file_name, data),
        **element_fields(root),
        label=label,
        label_source=label_source,
        source="synthetic",
        provenance={
            "imported_from": "seed-paper",
            "source_id": clean(root.findtext("id_info/nct_id")) or clean(root.findtext("id_info/org_study_id")),
            "source_file": report.file_name,
            "grounding": "unknown",
            "repairs": sorted(set(repairs)),
        },
    )
    result.dropped.update(key for key in LEAKAGE_FIELDS if key in study)
    if repairs:
        result.repaired += 1
        result.repairs.update(set(repairs))
    return trial


def _import(report: _Report, label: Literal[0, 1], label_source: str, result: SeedImport) -> None:
    if isinstance(report.data, InputError):
        result.problems.append(report.data)
        return
    try:
        result.trials.append(_to_trial(report, report.data, label, label_source, result))
    except ValueError as exc:  # pydantic's ValidationError included
        result.problems.append(InputError(report.name, describe(exc)))


# --- Files, folders, zips and the labels file ---------------------------------------------------

def read_seed_labels(path: str | Path) -> list[Literal[0, 1]]:
    """The labels file: one 0 or 1 per line, line n + 1 for report n (trailing blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "labels file not found")
    try:
        lines = path.read_text(encoding="utf-8-sig").rstrip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), f"cannot read the labels file ({exc})") from None
    labels: list[Literal[0, 1]] = []
    for number, line in enumerate(lines, start=1):
        value = line.strip()
        if value not in {"0", "1"}:
            raise InputError(str(path), f"label {value!r} is not 0 or 1", where=f"line {number}")
        labels.append(1 if value == "1" else 0)
    if not labels:
        raise InputError(str(path), "the labels file is empty")
    return labels


def _is_report(name: str) -> bool:
    base = Path(name)
    hidden = any(part.startswith((".", "__MACOSX")) for part in base.parts)
    return not hidden and base.suffix.lower() in REPORT_SUFFIXES


def _folder_reports(folder: Path, labels_path: Path) -> list[_Report]:
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and _is_report(str(p.relative_to(folder))) and p.resolve() != labels_path.resolve())
    if not files:
        raise InputError(str(folder), "folder holds no .json or .txt reports")
    return [_file_report(p) for p in files]


def _file_report(path: Path) -> _Report:
    try:
        data: bytes | InputError = path.read_bytes()
    except OSError as exc:
        data = InputError(str(path), f"cannot read ({exc.strerror})")
    return _Report(str(path), path.name, data)


def _zip_reports(path: Path) -> list[_Report]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(str(path), f"corrupt or truncated zip ({exc})") from None
    reports = []
    with archive:
        for info in archive.infolist():
            if info.is_dir() or not _is_report(info.filename):
                continue
            name = f"{path}!{info.filename}"
            try:
                data: bytes | InputError = archive.read(info)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                data = InputError(name, f"corrupt zip member ({exc})")
            reports.append(_Report(name, Path(info.filename).name, data))
    if not reports:
        raise InputError(str(path), "zip holds no .json or .txt reports")
    return reports


def _report_number(file_name: str) -> int | None:
    """The release's report number: the last number in the file name's stem (`..._12.txt` -> 12)."""
    numbers = _NUMBER.findall(Path(file_name).stem)
    return int(numbers[-1]) if numbers else None


def _in_number_order(source: Path, reports: list[_Report]) -> tuple[list[tuple[int, _Report]], list[InputError]]:
    """(number, report) sorted by the number in their names (2 before 10); unnumbered ones set aside."""
    numbered: dict[int, _Report] = {}
    unnumbered = []
    for report in reports:
        number = _report_number(report.file_name)
        if number is None:
            unnumbered.append(InputError(report.name, "no report number in the file name, so no label; skipped"))
            continue
        if number in numbered:
            raise InputError(str(source), f"two reports numbered {number}: {numbered[number].name} and {report.name}")
        numbered[number] = report
    return [(n, numbered[n]) for n in sorted(numbered)], unnumbered


def _single_report(path: Path, labels: int) -> list[tuple[int, _Report]]:
    """One report file: its number from the name; an unnumbered one takes a one-label file's label."""
    number = _report_number(path.name)
    if number is None:
        if labels != 1:
            raise InputError(str(path), f"no report number in the file name, so no label among the {labels:,} "
                             "in the labels file (name it ..._<number>.json, or give a one-label file)")
        number = 0
    return [(number, _file_report(path))]


def _reports(path: Path, labels_path: Path, labels: int) -> tuple[list[tuple[int, _Report]], list[InputError]]:
    if not path.exists():
        raise InputError(str(path), "no such file or directory")
    if path.is_dir():
        return _in_number_order(path, _folder_reports(path, labels_path))
    if path.suffix.lower() == ".zip":
        return _in_number_order(path, _zip_reports(path))
    if path.suffix.lower() in REPORT_SUFFIXES:
        return _single_report(path, labels), []
    raise InputError(str(path), f"unknown file type {path.suffix or '(none)'}; expected .json, .txt, a folder or .zip")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def read_seed_reports(path: str | Path, labels: str | Path,
                      on_report: Callable[[int, int], None] | None = None) -> SeedImport:
    """Read a report file, a folder or a zip of reports with the seed paper's labels file.

    Report n (the number at the end of its file name, as the release numbers them from 0) takes
    the label on line n + 1, so any subset of the release imports with its full labels file. A
    report that cannot be repaired is skipped and reported in `problems` (the batch goes on); for
    a single-file input it raises. Raises `InputError` for input that cannot be read at all and
    for a report numbered beyond the labels file (nothing is imported then).
    `on_report(done, total)` is called after each report.
    """
    path, labels_path = Path(path), Path(labels)
    label_values = read_seed_labels(labels_path)
    reports, unnumbered = _reports(path, labels_path, len(label_values))
    beyond = [(number, report) for number, report in reports if number >= len(label_values)]
    if beyond:
        number, report = beyond[0]
        others = f" (and {_count(len(beyond) - 1, 'other report')})" if len(beyond) > 1 else ""
        raise InputError(report.name, f"report number {number} is beyond the labels file {labels_path} "
                         f"({_count(len(label_values), 'label')}, for reports 0-{len(label_values) - 1}){others}")
    result = SeedImport(reports=len(reports), problems=unnumbered)
    for index, (number, report) in enumerate(reports, start=1):
        _import(report, label_values[number], f"seed-paper labels file {labels_path.name}, line {number + 1}", result)
        if on_report:
            on_report(index, len(reports))
    if path.is_file() and path.suffix.lower() != ".zip" and result.problems:
        raise result.problems[0]
    return result
