"""The one record type: `Trial`, for real and synthetic clinical trials alike.

Shaped after ClinicalTrials.gov. Readers produce `Trial`s, the writer agent asks an LLM for a
`TrialDraft` (the LLM-writable content of a trial, with tight length bounds so that small models
cannot ramble) and turns it into a `Trial`. Every classifier reads `render_for_classifier`, which
never includes the overall status, why-stopped, the label or results.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

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
    provenance: dict[str, Any] = Field(default_factory=dict)

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


# --- What an LLM is asked to write: the content of a trial, tightly bounded ------------------

def _trimmed(limit: int):
    """Trim an over-long string at a word boundary (models without a grammar overrun limits)."""

    def trim(value: Any) -> Any:
        if isinstance(value, str):
            value = " ".join(value.split())
            if len(value) > limit:
                value = value[:limit].rsplit(" ", 1)[0].rstrip(",;:") or value[:limit]
        return value

    return BeforeValidator(trim)


Short = Annotated[str, _trimmed(120), Field(min_length=1, max_length=120)]
Sentence = Annotated[str, _trimmed(300), Field(min_length=1, max_length=300)]
Paragraph = Annotated[str, _trimmed(1200), Field(min_length=1, max_length=1200)]


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _drop_blank_items(value: Any) -> Any:
    """Small models write whitespace-only list items; drop them (an all-blank list still fails)."""
    if isinstance(value, list):
        return [item for item in value if not (isinstance(item, str) and not item.strip())]
    return value


NoBlanks = BeforeValidator(_drop_blank_items)


class InterventionDraft(BaseModel):
    name: Short
    type: InterventionType = InterventionType.DRUG
    description: Annotated[Sentence | None, BeforeValidator(_blank_to_none)] = None


class OutcomeDraft(BaseModel):
    measure: Sentence
    time_frame: Annotated[Short | None, BeforeValidator(_blank_to_none)] = None


class TrialDraft(BaseModel):
    """The LLM-writable part of a `Trial`: no id, status, why-stopped, label or provenance.

    Every list and string is bounded (maxItems, maxLength) and categorical fields are enums, so a
    grammar-constrained small model terminates.
    """

    brief_title: Sentence
    phase: Phase
    conditions: Annotated[list[Short], NoBlanks, Field(min_length=1, max_length=4)]
    interventions: Annotated[list[InterventionDraft], Field(min_length=1, max_length=4)]
    brief_summary: Paragraph
    inclusion_criteria: Annotated[list[Sentence], NoBlanks, Field(min_length=1, max_length=8)]
    exclusion_criteria: Annotated[list[Sentence], NoBlanks, Field(min_length=1, max_length=8)]
    enrollment: Annotated[int, Field(ge=1, le=100000)]
    allocation: Literal["randomized", "non-randomized", "not applicable"]
    masking: Literal["none", "single", "double", "triple", "quadruple"]
    primary_purpose: Literal[
        "treatment", "prevention", "diagnostic", "supportive care", "screening",
        "health services research", "basic science", "other",
    ]
    primary_outcomes: Annotated[list[OutcomeDraft], Field(min_length=1, max_length=3)]

    def to_trial(self, nct_id: str, *, label: Literal[0, 1] | None, provenance: dict[str, Any]) -> Trial:
        return Trial(
            nct_id=nct_id,
            brief_title=self.brief_title,
            phase=self.phase,
            conditions=list(self.conditions),
            interventions=[
                Intervention(name=i.name, type=i.type, description=i.description) for i in self.interventions
            ],
            brief_summary=self.brief_summary,
            eligibility=Eligibility(inclusion=list(self.inclusion_criteria), exclusion=list(self.exclusion_criteria)),
            enrollment=self.enrollment,
            design=Design(allocation=self.allocation, masking=self.masking, primary_purpose=self.primary_purpose),
            primary_outcomes=[Outcome(measure=o.measure, time_frame=o.time_frame) for o in self.primary_outcomes],
            label=label,
            label_source="synthetic:requested",
            source="synthetic",
            provenance=provenance,
        )


def draft_from_trial(trial: Trial) -> TrialDraft:
    """A real trial in the writer's output format (for few-shot examples), trimmed to the bounds."""

    def enum(value: str | None, allowed: tuple[str, ...], default: str) -> str:
        text = (value or "").lower()
        return next((a for a in allowed if a in text), default)

    design = trial.design or Design()
    eligibility = trial.eligibility or Eligibility()
    allocation = (design.allocation or "").lower()
    return TrialDraft.model_validate({
        "brief_title": trial.brief_title or trial.official_title or f"A study of {', '.join(trial.intervention_names[:2])}"
                       f" in {', '.join(trial.conditions[:2]) or 'patients'}",
        "phase": trial.phase or Phase.PHASE_1,
        "conditions": (trial.conditions or ["unspecified condition"])[:4],
        "interventions": [{"name": i.name, "type": i.type, "description": i.description}
                          for i in trial.interventions[:4]] or [{"name": "unspecified"}],
        "brief_summary": trial.brief_summary or trial.detailed_description
                         or f"A {trial.phase.value if trial.phase else ''} study of {', '.join(trial.intervention_names[:3])}.",
        "inclusion_criteria": [c for c in eligibility.inclusion if c.strip()][:8] or ["See eligibility text"],
        "exclusion_criteria": [c for c in eligibility.exclusion if c.strip()][:8] or ["None listed"],
        "enrollment": max(1, min(trial.enrollment or 30, 100000)),
        "allocation": "non-randomized" if "non" in allocation else ("randomized" if "random" in allocation else "not applicable"),
        "masking": enum(design.masking, ("quadruple", "triple", "double", "single"), "none"),
        "primary_purpose": enum(design.primary_purpose, ("treatment", "prevention", "diagnostic", "supportive care",
                                                          "screening", "health services research", "basic science"), "treatment"),
        "primary_outcomes": [{"measure": o.measure, "time_frame": o.time_frame} for o in trial.primary_outcomes[:3]]
                            or [{"measure": "Safety and tolerability", "time_frame": None}],
    })


def trial_draft_json_schema() -> dict[str, Any]:
    """The JSON schema handed to LLMs for structured output (bounded, see `TrialDraft`)."""
    return TrialDraft.model_json_schema()


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


def render_for_classifier(trial: Trial) -> str:
    """Render a trial to the text every classifier reads.

    The informative fields come first (interventions, conditions, phase, eligibility, design,
    outcomes), then enrollment, title and summary. Identifiers, dates, sponsor, overall status,
    why-stopped, label, provenance and results are never included, and status words are removed
    from the text (`SCRUBBED_WORDS`), so real and synthetic trials render identically and the
    outcome cannot leak through the format.
    """
    parts: list[str | None] = []
    if trial.interventions:
        parts.append(
            "Interventions: "
            + "; ".join(f"{i.name} ({i.type.value})" + (f": {i.description}" if i.description else "") for i in trial.interventions)
        )
    parts.append(_section("Conditions", "; ".join(trial.conditions)))
    parts.append(_section("Phase", trial.phase.value if trial.phase else None))
    if trial.eligibility:
        e = trial.eligibility
        if e.inclusion or e.exclusion:
            parts.append(_section("Inclusion criteria", _bullets(e.inclusion)))
            parts.append(_section("Exclusion criteria", _bullets(e.exclusion)))
        else:
            parts.append(_section("Eligibility", e.raw))
    if trial.design:
        d = trial.design
        design = ", ".join(
            f"{k} {v}" for k, v in (
                ("allocation", d.allocation), ("masking", d.masking),
                ("purpose", d.primary_purpose), ("model", d.intervention_model),
            ) if v
        )
        parts.append(_section("Design", design))
        if d.arms:
            parts.append(_section("Arms", "; ".join(
                a.label + (f" ({a.type})" if a.type else "") + (f": {a.description}" if a.description else "")
                for a in d.arms
            )))
    parts.append(_section("Primary outcomes", "; ".join(o.measure for o in trial.primary_outcomes)))
    parts.append(_section("Secondary outcomes", "; ".join(o.measure for o in trial.secondary_outcomes)))
    parts.append(_section("Enrollment", str(trial.enrollment) if trial.enrollment is not None else None))
    parts.append(_section("Title", trial.official_title or trial.brief_title))
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
