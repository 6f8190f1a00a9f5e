"""Reader for legacy ClinicalTrials.gov XML (`clinical_study`, the AllPublicXML format)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from synthtrials.tools.errors import InputError, describe
from synthtrials.tools.records.normalize import parse_phase
from synthtrials.tools.readers.text import (
    clean,
    clean_block,
    parse_criteria,
    parse_date,
)
from synthtrials.tools.records.trial import (
    Arm,
    Design,
    Eligibility,
    Intervention,
    InterventionType,
    Outcome,
    Trial,
)


def _text(node: ET.Element | None, path: str) -> str | None:
    if node is None:
        return None
    found = node.find(path)
    if found is None:
        return None
    return clean("".join(found.itertext()))


def _raw(node: ET.Element, path: str) -> str | None:
    found = node.find(path)
    if found is None:
        return None
    return "".join(found.itertext())


def _block(node: ET.Element, path: str) -> str | None:
    return clean_block(_raw(node, path))


def _intervention_type(text: str | None) -> InterventionType:
    key = (text or "other").strip().lower()
    try:
        return InterventionType(key)
    except ValueError:
        return InterventionType.OTHER


def _outcomes(root: ET.Element, tag: str) -> list[Outcome]:
    out = []
    for node in root.findall(tag):
        measure = _text(node, "measure")
        if measure:
            out.append(Outcome(measure=measure, time_frame=_text(node, "time_frame"), description=_text(node, "description")))
    return out


def _yes_no(text: str | None) -> bool | None:
    if text is None:
        return None
    return text.strip().lower() in {"yes", "true", "accepts healthy volunteers"}


def element_fields(root: ET.Element) -> dict[str, Any]:
    """The `Trial` fields a `clinical_study` element holds: all but the id, source, label and provenance."""
    if root.tag != "clinical_study":
        raise ValueError(f"root element is <{root.tag}>, expected <clinical_study>")
    eligibility = parse_criteria(_raw(root, "eligibility/criteria/textblock"))  # its lines mark the items
    elig_node = root.find("eligibility")
    if elig_node is not None:
        eligibility = eligibility or Eligibility()
        eligibility.sex = _text(elig_node, "gender")
        eligibility.minimum_age = _text(elig_node, "minimum_age")
        eligibility.maximum_age = _text(elig_node, "maximum_age")
        eligibility.healthy_volunteers = _yes_no(_text(elig_node, "healthy_volunteers"))
    enrollment_text = _text(root, "enrollment")
    design_node = root.find("study_design_info")
    interventions = [
        Intervention(
            name=_text(node, "intervention_name") or "",
            type=_intervention_type(_text(node, "intervention_type")),
            description=_text(node, "description"),
            other_names=[clean(o.text) or "" for o in node.findall("other_name") if clean(o.text)],
        )
        for node in root.findall("intervention")
        if _text(node, "intervention_name")
    ]
    arms = [
        Arm(
            label=_text(node, "arm_group_label") or "",
            type=_text(node, "arm_group_type"),
            description=_text(node, "description"),
            interventions=[
                _text(i, "intervention_name") or ""
                for i in root.findall("intervention")
                if _text(node, "arm_group_label") in [clean(a.text) for a in i.findall("arm_group_label")]
            ],
        )
        for node in root.findall("arm_group")
        if _text(node, "arm_group_label")
    ]
    design = Design(
        allocation=_text(design_node, "allocation"),
        masking=_text(design_node, "masking"),
        primary_purpose=_text(design_node, "primary_purpose"),
        intervention_model=_text(design_node, "intervention_model"),
        arms=arms,
    )
    return dict(
        brief_title=_text(root, "brief_title"),
        official_title=_text(root, "official_title"),
        phase=parse_phase(_text(root, "phase")),
        conditions=[c for c in (clean(n.text) for n in root.findall("condition")) if c],
        interventions=interventions,
        keywords=[k for k in (clean(n.text) for n in root.findall("keyword")) if k],
        brief_summary=_block(root, "brief_summary/textblock"),
        detailed_description=_block(root, "detailed_description/textblock"),
        eligibility=eligibility,
        enrollment=int(enrollment_text) if enrollment_text and enrollment_text.isdigit() else None,
        design=design,
        primary_outcomes=_outcomes(root, "primary_outcome"),
        secondary_outcomes=_outcomes(root, "secondary_outcome"),
        sponsor=_text(root, "sponsors/lead_sponsor/agency"),
        start_date=parse_date(_text(root, "start_date")),
        completion_date=parse_date(_text(root, "completion_date") or _text(root, "primary_completion_date")),
        overall_status=_text(root, "overall_status"),
        why_stopped=_text(root, "why_stopped"),
    )


def element_to_trial(root: ET.Element, source_name: str) -> Trial:
    fields = element_fields(root)
    nct_id = _text(root, "id_info/nct_id")
    if not nct_id:
        raise ValueError("no id_info/nct_id")
    return Trial(nct_id=nct_id, **fields, source="real", provenance={"reader": "ctgov_xml", "file": source_name})


def read_ctgov_xml_bytes(data: bytes, source_name: str) -> Trial | InputError:
    """Parse one `clinical_study` document; a bad document becomes an `InputError` (not raised)."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        return InputError(source_name, f"corrupt or truncated XML ({exc})")
    try:
        return element_to_trial(root, source_name)
    except ValueError as exc:
        return InputError(source_name, describe(exc))
