"""Normalisation of the fields that are matched across sources: phases, intervention names."""

from __future__ import annotations

import re
import unicodedata

from synthtrials.tools.records.trial import Phase

_PHASE_ALIASES: dict[str, Phase] = {
    "early phase 1": Phase.EARLY_PHASE_1,
    "early_phase1": Phase.EARLY_PHASE_1,
    "early phase i": Phase.EARLY_PHASE_1,
    "phase 0": Phase.EARLY_PHASE_1,
    "phase 1": Phase.PHASE_1,
    "phase1": Phase.PHASE_1,
    "phase i": Phase.PHASE_1,
    "phase 1/phase 2": Phase.PHASE_1_2,
    "phase 1/2": Phase.PHASE_1_2,
    "phase1/phase2": Phase.PHASE_1_2,
    "phase1 phase2": Phase.PHASE_1_2,
    "phase i/ii": Phase.PHASE_1_2,
    "phase 2": Phase.PHASE_2,
    "phase2": Phase.PHASE_2,
    "phase ii": Phase.PHASE_2,
    "phase 2/phase 3": Phase.PHASE_2_3,
    "phase 2/3": Phase.PHASE_2_3,
    "phase2/phase3": Phase.PHASE_2_3,
    "phase2 phase3": Phase.PHASE_2_3,
    "phase ii/iii": Phase.PHASE_2_3,
    "phase 3": Phase.PHASE_3,
    "phase3": Phase.PHASE_3,
    "phase iii": Phase.PHASE_3,
    "phase 4": Phase.PHASE_4,
    "phase4": Phase.PHASE_4,
    "phase iv": Phase.PHASE_4,
    "n/a": Phase.NOT_APPLICABLE,
    "na": Phase.NOT_APPLICABLE,
    "not applicable": Phase.NOT_APPLICABLE,
}


def parse_phase(text: str | None) -> Phase | None:
    """Map any ClinicalTrials.gov / TOP spelling of a phase to `Phase`; '' -> None.

    Raises ValueError on an unknown phase.
    """
    if text is None:
        return None
    key = " ".join(str(text).strip().lower().replace("_", " ").replace(",", " ").split())
    if not key:
        return None
    key = key.replace(" / ", "/")
    if key in _PHASE_ALIASES:
        return _PHASE_ALIASES[key]
    compact = key.replace(" ", "")
    for alias, phase in _PHASE_ALIASES.items():
        if alias.replace(" ", "") == compact:
            return phase
    raise ValueError(f"unknown phase {text!r}")


_DOSE = re.compile(
    r"\b\d+(?:[.,]\d+)?\s*(?:mg/kg|mg/m2|mg/m²|mcg/kg|µg/kg|ug/kg|mg|mcg|µg|ug|ng|g|kg|ml|l|iu|units?|%|mmol|meq)"
    r"(?:\s*/\s*(?:day|d|kg|m2|dose|ml))?\b",
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s+")


def normalize_intervention(name: str) -> str:
    """Normalise an intervention name for matching: Unicode, case, whitespace and dose text.

    ``"  Aspirin 81 mg "`` -> ``"aspirin"``; ``"Sertraline  HCl"`` -> ``"sertraline hcl"``.
    """
    text = unicodedata.normalize("NFKC", name).lower()
    text = _DOSE.sub(" ", text)
    text = _SPACES.sub(" ", text).strip(" ,;:-")
    return text


def normalize_condition(name: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", name).lower()).strip()
