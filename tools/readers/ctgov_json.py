"""Reader for ClinicalTrials.gov API v2 JSON (`protocolSection` modules).

Accepts a single study, a `{"studies": [...]}` page, or a list of studies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
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
    Intervention,
    InterventionType,
    Outcome,
    Phase,
    Trial,
)

_PHASES = {
    "EARLY_PHASE1": Phase.EARLY_PHASE_1,
    "PHASE1": Phase.PHASE_1,
    "PHASE2": Phase.PHASE_2,
    "PHASE3": Phase.PHASE_3,
    "PHASE4": Phase.PHASE_4,
    "NA": Phase.NOT_APPLICABLE,
}


def _phase(phases: Any) -> Phase | None:
    if not phases:
        return None
    if not isinstance(phases, list):
        raise ValueError("designModule.phases is not a list")
    keys = sorted(str(p).upper() for p in phases)
    if keys == ["PHASE1", "PHASE2"]:
        return Phase.PHASE_1_2
    if keys == ["PHASE2", "PHASE3"]:
        return Phase.PHASE_2_3
    if len(keys) == 1 and keys[0] in _PHASES:
        return _PHASES[keys[0]]
    return parse_phase(" / ".join(keys))


def _dict(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} is not an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{where} is not a list")
    return value


def _intervention_type(text: Any) -> InterventionType:
    key = str(text or "OTHER").strip().lower().replace("_", " ")
    try:
        return InterventionType(key)
    except ValueError:
        return InterventionType.OTHER


def _outcomes(items: list[Any], where: str) -> list[Outcome]:
    out = []
    for item in items:
        item = _dict(item, where)
        if clean(item.get("measure")):
            out.append(Outcome(measure=clean(item.get("measure")) or "", time_frame=clean(item.get("timeFrame")),
                               description=clean(item.get("description"))))
    return out


def study_to_trial(study: Any, source_name: str) -> Trial:
    study = _dict(study, "study")
    protocol = _dict(study.get("protocolSection"), "protocolSection")
    if not protocol:
        raise ValueError("no protocolSection")
    ident = _dict(protocol.get("identificationModule"), "identificationModule")
    status = _dict(protocol.get("statusModule"), "statusModule")
    sponsors = _dict(protocol.get("sponsorCollaboratorsModule"), "sponsorCollaboratorsModule")
    desc = _dict(protocol.get("descriptionModule"), "descriptionModule")
    conds = _dict(protocol.get("conditionsModule"), "conditionsModule")
    design = _dict(protocol.get("designModule"), "designModule")
    arms_mod = _dict(protocol.get("armsInterventionsModule"), "armsInterventionsModule")
    outcomes = _dict(protocol.get("outcomesModule"), "outcomesModule")
    elig = _dict(protocol.get("eligibilityModule"), "eligibilityModule")
    info = _dict(design.get("designInfo"), "designModule.designInfo")
    masking = _dict(info.get("maskingInfo"), "designInfo.maskingInfo")
    enrollment = _dict(design.get("enrollmentInfo"), "designModule.enrollmentInfo").get("count")
    if enrollment is not None and (not isinstance(enrollment, int) or isinstance(enrollment, bool)):
        raise ValueError("enrollmentInfo.count is not an integer")

    nct_id = ident.get("nctId")
    if not isinstance(nct_id, str) or not nct_id:
        raise ValueError("no identificationModule.nctId")
    eligibility = parse_criteria(elig.get("eligibilityCriteria") if isinstance(elig.get("eligibilityCriteria"), str) else None)
    if eligibility is not None:
        eligibility.sex = clean(elig.get("sex"))
        eligibility.minimum_age = clean(elig.get("minimumAge"))
        eligibility.maximum_age = clean(elig.get("maximumAge"))
        hv = elig.get("healthyVolunteers")
        eligibility.healthy_volunteers = hv if isinstance(hv, bool) else None
    interventions = []
    for item in _list(arms_mod.get("interventions"), "armsInterventionsModule.interventions"):
        item = _dict(item, "intervention")
        name = clean(item.get("name"))
        if name:
            interventions.append(Intervention(
                name=name, type=_intervention_type(item.get("type")), description=clean(item.get("description")),
                other_names=[str(o) for o in _list(item.get("otherNames"), "otherNames")],
            ))
    arms = []
    for item in _list(arms_mod.get("armGroups"), "armsInterventionsModule.armGroups"):
        item = _dict(item, "armGroup")
        label = clean(item.get("label"))
        if label:
            arms.append(Arm(label=label, type=clean(item.get("type")), description=clean(item.get("description")),
                            interventions=[str(x) for x in _list(item.get("interventionNames"), "interventionNames")]))
    lead = _dict(sponsors.get("leadSponsor"), "leadSponsor")
    completion = _dict(status.get("completionDateStruct"), "completionDateStruct") or _dict(
        status.get("primaryCompletionDateStruct"), "primaryCompletionDateStruct")
    return Trial(
        nct_id=nct_id,
        brief_title=clean(ident.get("briefTitle")),
        official_title=clean(ident.get("officialTitle")),
        phase=_phase(design.get("phases")),
        conditions=[str(c) for c in _list(conds.get("conditions"), "conditionsModule.conditions") if str(c).strip()],
        keywords=[str(c) for c in _list(conds.get("keywords"), "conditionsModule.keywords")],
        interventions=interventions,
        brief_summary=clean_block(desc.get("briefSummary")),
        detailed_description=clean_block(desc.get("detailedDescription")),
        eligibility=eligibility,
        enrollment=enrollment,
        design=Design(
            allocation=_enum_text(info.get("allocation")),
            masking=_enum_text(masking.get("masking")),
            primary_purpose=_enum_text(info.get("primaryPurpose")),
            intervention_model=_enum_text(info.get("interventionModel")),
            arms=arms,
        ),
        primary_outcomes=_outcomes(_list(outcomes.get("primaryOutcomes"), "primaryOutcomes"), "primaryOutcome"),
        secondary_outcomes=_outcomes(_list(outcomes.get("secondaryOutcomes"), "secondaryOutcomes"), "secondaryOutcome"),
        sponsor=clean(lead.get("name")),
        start_date=parse_date(_dict(status.get("startDateStruct"), "startDateStruct").get("date")),
        completion_date=parse_date(completion.get("date")),
        overall_status=_enum_text(status.get("overallStatus")),
        why_stopped=clean(status.get("whyStopped")),
        source="real",
        provenance={"reader": "ctgov_json", "file": source_name},
    )


def _enum_text(value: Any) -> str | None:
    """API v2 enums (`NON_RANDOMIZED`) to the legacy spelling (`non randomized`)."""
    if value is None:
        return None
    return clean(str(value).replace("_", " ").lower())


def read_ctgov_json_bytes(data: bytes, source_name: str) -> Iterator[Trial | InputError]:
    """Yield a `Trial` per study in the document, or an `InputError` per bad study.

    Raises `InputError` when the document is not JSON or has no recognisable shape.
    """
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(source_name, f"corrupt or truncated JSON ({exc})") from None
    if isinstance(doc, dict) and "studies" in doc:
        studies = doc["studies"]
        if not isinstance(studies, list):
            raise InputError(source_name, "'studies' is not a list")
    elif isinstance(doc, dict) and "protocolSection" in doc:
        studies = [doc]
    elif isinstance(doc, list):
        studies = doc
    else:
        raise InputError(source_name, "not a ClinicalTrials.gov API v2 study, page or list of studies")
    for index, study in enumerate(studies):
        try:
            yield study_to_trial(study, source_name)
        except (ValueError, TypeError, AttributeError) as exc:
            yield InputError(source_name, describe(exc), where=f"study {index}")
