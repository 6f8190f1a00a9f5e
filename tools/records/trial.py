"""The one record type: `Trial`, for real and synthetic clinical trials alike.

Shaped after ClinicalTrials.gov. Readers produce `Trial`s; the writer agent asks an LLM for a draft
in the writer's format (`synthtrials.tools.records.writer_format`) and turns it into a `Trial`. Every
classifier reads `render_for_classifier`, which never includes the overall status, why-stopped,
the label or results.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

NCT_ID = re.compile(r"^NCT\d{8}$")
NCT_ID_ANYWHERE = re.compile(r"NCT\d{8}", re.IGNORECASE)
SYNTHETIC_ID = re.compile(r"^SYN-[0-9a-f]{4,32}$")


class Phase(str, Enum):
    """ClinicalTrials.gov phases, normalised to one spelling."""

    EARLY_PHASE_1 = "early phase 1"
    PHASE_1 = "phase 1"
    PHASE_1_2 = "phase 1/2"
    PHASE_2 = "phase 2"
    PHASE_2_3 = "phase 2/3"
    PHASE_3 = "phase 3"
    PHASE_4 = "phase 4"
    NOT_APPLICABLE = "not applicable"


class InterventionType(str, Enum):
    DRUG = "drug"
    BIOLOGICAL = "biological"
    DEVICE = "device"
    PROCEDURE = "procedure"
    RADIATION = "radiation"
    BEHAVIORAL = "behavioral"
    GENETIC = "genetic"
    DIETARY_SUPPLEMENT = "dietary supplement"
    COMBINATION_PRODUCT = "combination product"
    DIAGNOSTIC_TEST = "diagnostic test"
    OTHER = "other"


class Intervention(BaseModel):
    name: str
    type: InterventionType = InterventionType.DRUG
    description: str | None = None
    other_names: list[str] = Field(default_factory=list)


class Eligibility(BaseModel):
    """Inclusion and exclusion kept apart when the source separates them, plus the raw text."""

    inclusion: list[str] = Field(default_factory=list)
    exclusion: list[str] = Field(default_factory=list)
    raw: str | None = None
    sex: str | None = None
    minimum_age: str | None = None
    maximum_age: str | None = None
    healthy_volunteers: bool | None = None


class Arm(BaseModel):
    label: str
    type: str | None = None
    description: str | None = None
    interventions: list[str] = Field(default_factory=list)


class Design(BaseModel):
    allocation: str | None = None
    masking: str | None = None
    primary_purpose: str | None = None
    intervention_model: str | None = None
    arms: list[Arm] = Field(default_factory=list)


class Outcome(BaseModel):
    measure: str
    time_frame: str | None = None
    description: str | None = None


class Trial(BaseModel):
    """A clinical trial, real or synthetic.

    `nct_id` holds a ClinicalTrials.gov identifier (NCT + 8 digits) for real trials and a
    `SYN-<hex>` identifier for synthetic ones: a synthetic trial can never carry a real-format id.
    """

    model_config = ConfigDict(extra="forbid")

    nct_id: str
    brief_title: str | None = None
    official_title: str | None = None
    phase: Phase | None = None
    conditions: list[str] = Field(default_factory=list)
    interventions: list[Intervention] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    brief_summary: str | None = None
    detailed_description: str | None = None
    eligibility: Eligibility | None = None
    enrollment: int | None = Field(default=None, ge=0)
    design: Design | None = None
    primary_outcomes: list[Outcome] = Field(default_factory=list)
    secondary_outcomes: list[Outcome] = Field(default_factory=list)
    sponsor: str | None = None
    start_date: str | None = None
    completion_date: str | None = None
    overall_status: str | None = None
    why_stopped: str | None = None
    label: Literal[0, 1] | None = None
    label_source: str | None = None
    source: Literal["real", "synthetic"] = "real"
    provenance: dict[str, Any] = Field(
        default_factory=dict, description="real trials: the reader's record (reader, file, row); synthetic trials: "
                                          "`tools.records.provenance.SyntheticProvenance` as JSON (read it with "
                                          "`SyntheticProvenance.of(trial)`)")

    @field_validator("nct_id")
    @classmethod
    def _strip_id(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _id_matches_source(self) -> Trial:
        if self.source == "real" and not NCT_ID.match(self.nct_id):
            raise ValueError(f"real trial id {self.nct_id!r} is not NCT + 8 digits")
        if self.source == "synthetic" and not SYNTHETIC_ID.match(self.nct_id):
            raise ValueError(f"synthetic trial id {self.nct_id!r} must look like SYN-<hex>")
        return self

    @property
    def intervention_names(self) -> list[str]:
        return [i.name for i in self.interventions]


# --- Bounded text for what LLMs write (drafts, reasons, judgements) -----------------------------

def trim_text(value: Any, limit: int) -> Any:
    """Collapse whitespace; cut an over-long string at a word boundary (models overrun limits)."""
    if isinstance(value, str):
        value = " ".join(value.split())
        if len(value) > limit:
            value = value[:limit].rsplit(" ", 1)[0].rstrip(",;:") or value[:limit]
    return value


def _trimmed(limit: int) -> BeforeValidator:
    return BeforeValidator(lambda value: trim_text(value, limit))


Short = Annotated[str, _trimmed(120), Field(min_length=1, max_length=120)]
Sentence = Annotated[str, _trimmed(300), Field(min_length=1, max_length=300)]
Paragraph = Annotated[str, _trimmed(1200), Field(min_length=1, max_length=1200)]


# --- The one classifier rendering --------------------------------------------------------------

#: words that name a registry status or an outcome in any context. The classifier rendering
#: removes them (whole words only: "unsuccessful" is not turned into "un") from real and
#: synthetic trials alike, so neither can carry them to a classifier. Context-dependent words
#: ("failed prior therapy", "heart failure", "completed chemotherapy") are kept and counted.
SCRUBBED_WORDS = ("terminated", "withdrawn", "suspended", "recruiting", "successful", "successfully",
                  "unsuccessful", "futility", "halted")
_SCRUBBED = re.compile(r"\b(?:" + "|".join(SCRUBBED_WORDS) + r")\b", re.IGNORECASE)


def scrub_status_words(text: str | None) -> str | None:
    if text is None:
        return None
    return re.sub(r"[ \t]{2,}", " ", _SCRUBBED.sub("", text)).strip() or None


def _section(title: str, body: str | None) -> str | None:
    if not body:
        return None
    return f"{title}: {body}"


def _bullets(items: list[str]) -> str:
    return " ".join(f"- {item}" for item in items)


def render_for_classifier(trial: Trial, fields: Collection[str] | None = None) -> str:
    """Render a trial to the text every classifier reads.

    The informative fields come first (interventions, conditions, phase, eligibility, design,
    outcomes), then enrollment, title and summary. Identifiers, dates, sponsor, overall status,
    why-stopped, label, provenance and results are never included, and status words are removed
    from the text (`SCRUBBED_WORDS`), so real and synthetic trials render identically and the
    outcome cannot leak through the format. `fields` (names from `synthtrials.tools.records.fields`)
    restricts the rendering to a field set, so that real and synthetic trials are compared
    like for like; None renders every field.
    """
    def shown(name: str) -> bool:
        return fields is None or name in fields

    parts: list[str | None] = []
    if trial.interventions and shown("interventions"):
        described = shown("intervention_descriptions")
        parts.append("Interventions: " + "; ".join(
            f"{i.name} ({i.type.value})" + (f": {i.description}" if i.description and described else "")
            for i in trial.interventions))
    if shown("conditions"):
        parts.append(_section("Conditions", "; ".join(trial.conditions)))
    if shown("phase"):
        parts.append(_section("Phase", trial.phase.value if trial.phase else None))
    if trial.eligibility and shown("eligibility"):
        e = trial.eligibility
        if e.inclusion or e.exclusion:
            parts.append(_section("Inclusion criteria", _bullets(e.inclusion)))
            parts.append(_section("Exclusion criteria", _bullets(e.exclusion)))
        else:
            parts.append(_section("Eligibility", e.raw))
    if trial.design:
        d = trial.design
        if shown("design"):
            design = ", ".join(
                f"{k} {v}" for k, v in (
                    ("allocation", d.allocation), ("masking", d.masking),
                    ("purpose", d.primary_purpose), ("model", d.intervention_model),
                ) if v
            )
            parts.append(_section("Design", design))
        if d.arms and shown("arms"):
            parts.append(_section("Arms", "; ".join(
                a.label + (f" ({a.type})" if a.type else "") + (f": {a.description}" if a.description else "")
                for a in d.arms
            )))
    if shown("primary_outcomes"):
        parts.append(_section("Primary outcomes", "; ".join(o.measure for o in trial.primary_outcomes)))
    if shown("secondary_outcomes"):
        parts.append(_section("Secondary outcomes", "; ".join(o.measure for o in trial.secondary_outcomes)))
    if shown("enrollment"):
        parts.append(_section("Enrollment", str(trial.enrollment) if trial.enrollment is not None else None))
    if shown("title"):
        parts.append(_section("Title", trial.official_title or trial.brief_title))
    if shown("summary"):
        parts.append(_section("Summary", trial.brief_summary))
    return "\n".join(" ".join(scrub_status_words(p).split()) for p in parts if p and scrub_status_words(p))


def render_for_embedding(trial: Trial, max_chars: int = 400) -> str:
    """A short rendering for the store's embeddings: the most discriminative fields only."""
    head = [
        "; ".join(trial.intervention_names),
        "; ".join(trial.conditions),
        trial.phase.value if trial.phase else "",
        trial.brief_title or "",
    ]
    text = " | ".join(h for h in head if h)
    if trial.eligibility:
        text += " | " + " ".join(trial.eligibility.inclusion[:6] or [trial.eligibility.raw or ""])
    return " ".join(text.split())[:max_chars]
