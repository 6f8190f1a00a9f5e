"""The writer's output format: the fields it writes, their bounds, and the one conversion of a
real trial into that format.

The writer writes the fields its grounding data has (`DraftSpec.from_trials`): grounded on TOP it
writes phase, conditions, interventions and inclusion/exclusion criteria, the fields TOP has;
grounded on full ClinicalTrials.gov records it writes title, summary, design, enrollment and
primary outcomes too. Eligibility is written as the registry writes it: an inclusion list and an
exclusion list of criteria, terse items such as "ECOG 0-1" or "Pregnancy" included. The bounds
(items per list, characters per item) are measured on the grounding trials so that at least 95% of
them fit whole; they keep a grammar-constrained small model from rambling, and `draft_from_trial`
trims real trials to the same bounds (few-shot answers, adaptation targets).

Keys come in schema order, all required: the order in which llama.cpp's JSON-schema grammar
emits them, which is also the order of the adaptation targets.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, Field, create_model
from synthtrials.tools.records.fields import field_set
from synthtrials.tools.records.trial import (
    Design,
    Eligibility,
    Intervention,
    InterventionType,
    Outcome,
    Phase,
    Trial,
    trim_text,
)

#: draft keys per field, in the order the writer writes them
DRAFT_KEYS: dict[str, tuple[str, ...]] = {
    "title": ("brief_title",),
    "phase": ("phase",),
    "conditions": ("conditions",),
    "interventions": ("interventions",),
    "summary": ("brief_summary",),
    "eligibility": ("inclusion_criteria", "exclusion_criteria"),
    "enrollment": ("enrollment",),
    "design": ("allocation", "masking", "primary_purpose"),
    "primary_outcomes": ("primary_outcomes",),
}
#: fields every drug trial draft has, whatever the grounding data
ALWAYS: tuple[str, ...] = ("phase", "conditions", "interventions")
WRITABLE: tuple[str, ...] = tuple(DRAFT_KEYS)
ALLOCATIONS = ("randomized", "non-randomized", "not applicable")
MASKINGS = ("none", "single", "double", "triple", "quadruple")
PURPOSES = ("treatment", "prevention", "diagnostic", "supportive care", "screening", "health services research",
            "basic science", "other")


def _text(limit: int) -> Any:
    return Annotated[str, BeforeValidator(lambda v: trim_text(v, limit)), Field(min_length=1, max_length=limit)]


def _items(limit: int) -> BeforeValidator:
    """Drop whitespace-only items (small models write them; an all-blank list still fails) and keep
    the first `limit` (a grammar without the bound may write more)."""
    def keep(value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in value if not (isinstance(item, str) and not item.strip())][:limit]
        return value

    return BeforeValidator(keep)


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


class DraftBounds(BaseModel):
    """Items per list and characters per item of the writer's output."""

    conditions: int = Field(4, ge=1)
    interventions: int = Field(4, ge=1)
    criteria: int = Field(8, ge=1, description="items per eligibility list (inclusion, exclusion)")
    min_inclusion: int = Field(1, ge=0)
    min_exclusion: int = Field(1, ge=0)
    condition_chars: int = Field(120, ge=8)
    criterion_chars: int = Field(300, ge=8)
    intervention_chars: int = Field(120, ge=8)
    outcomes: int = Field(3, ge=1)
    title_chars: int = 300
    summary_chars: int = 1200
    sentence_chars: int = 300


class DraftSpec(BaseModel):
    """What the writer writes: a field set (see `tools.records.fields`) and bounds."""

    fields: tuple[str, ...] = WRITABLE
    bounds: DraftBounds = Field(default_factory=DraftBounds)
    coverage: float | None = Field(None, description="share of the grounding trials that fit the bounds whole")

    @classmethod
    def from_trials(cls, trials: list[Trial], coverage: float = 0.95) -> DraftSpec:
        """The fields most grounding trials have, and bounds that fit `coverage` of them whole."""
        present = set(field_set(trials))
        fields = tuple(f for f in WRITABLE if f in ALWAYS or f in present)
        bounds, covered = _covering_bounds(_trial_sizes(trials), coverage)
        if "eligibility" in fields:
            # The critic accepts no trial without criteria (`check_content`), so a draft has at least
            # one inclusion criterion, even where some grounding trials list none (9.6% of TOP phase I
            # train: an adapter trained on them learnt to write empty lists); the exclusion list,
            # often empty in the grounding data, may be empty.
            empty_exclusion = np.mean([not (t.eligibility and t.eligibility.exclusion) for t in trials])
            bounds.min_inclusion = 1
            bounds.min_exclusion = 0 if empty_exclusion > 1 - coverage else 1
        return cls(fields=fields, bounds=bounds, coverage=round(covered, 4))

    def keys(self) -> tuple[str, ...]:
        return tuple(key for f in WRITABLE if f in self.fields for key in DRAFT_KEYS[f])

    def model(self) -> type[BaseModel]:
        """The pydantic model that validates a draft of this spec."""
        return _draft_model(self.model_dump_json())

    def json_schema(self) -> dict[str, Any]:
        return self.model().model_json_schema()

    def to_trial(self, draft: BaseModel, nct_id: str, *, label: Literal[0, 1] | None,
                 provenance: dict[str, Any]) -> Trial:
        """A validated draft of this spec as a synthetic `Trial`."""
        d = draft.model_dump()
        design = (Design(allocation=d["allocation"], masking=d["masking"], primary_purpose=d["primary_purpose"])
                  if "design" in self.fields else None)
        eligibility = (Eligibility(inclusion=list(d["inclusion_criteria"]), exclusion=list(d["exclusion_criteria"]))
                       if "eligibility" in self.fields else None)
        return Trial(
            nct_id=nct_id, brief_title=d.get("brief_title"), phase=d["phase"], conditions=list(d["conditions"]),
            interventions=[Intervention(name=i["name"], type=i.get("type") or InterventionType.DRUG,
                                        description=i.get("description")) for i in d["interventions"]],
            brief_summary=d.get("brief_summary"), eligibility=eligibility, enrollment=d.get("enrollment"),
            design=design,
            primary_outcomes=[Outcome(measure=o["measure"], time_frame=o.get("time_frame"))
                              for o in d.get("primary_outcomes") or []],
            label=label, label_source="synthetic:requested", source="synthetic", provenance=provenance,
        )

    def answer_of(self, trial: Trial) -> dict[str, Any] | None:
        """`trial` as the writer would write it, trimmed to the bounds (keys in writing order).

        The one real-to-writer-format conversion (few-shot answers, adaptation targets). None when
        the trial lacks a field the spec writes: no placeholder is ever invented.
        """
        b = self.bounds
        elig = trial.eligibility or Eligibility()
        design = trial.design or Design()
        described = "intervention_descriptions" in self.fields
        values: dict[str, Any] = {
            "brief_title": trim_text(trial.brief_title or trial.official_title, b.title_chars),
            "phase": trial.phase.value if trial.phase else None,
            "conditions": [trim_text(c, b.condition_chars) for c in trial.conditions[:b.conditions]],
            "interventions": [{"name": trim_text(i.name, b.intervention_chars), "type": i.type.value,
                               **({"description": trim_text(i.description, b.sentence_chars)} if described else {})}
                              for i in trial.interventions[:b.interventions]],
            "brief_summary": trim_text(trial.brief_summary, b.summary_chars),
            "inclusion_criteria": [trim_text(c, b.criterion_chars) for c in elig.inclusion if c.strip()][:b.criteria],
            "exclusion_criteria": [trim_text(c, b.criterion_chars) for c in elig.exclusion if c.strip()][:b.criteria],
            "enrollment": trial.enrollment,
            "allocation": _choice(design.allocation, ALLOCATIONS),
            "masking": _choice(design.masking, MASKINGS),
            "primary_purpose": _choice(design.primary_purpose, PURPOSES),
            "primary_outcomes": [{"measure": trim_text(o.measure, b.sentence_chars), "time_frame": o.time_frame}
                                 for o in trial.primary_outcomes[:b.outcomes]],
        }
        answer = {key: values[key] for key in self.keys()}
        if any(value in (None, []) for key, value in answer.items()
               if key not in ("inclusion_criteria", "exclusion_criteria")):
            return None
        if len(answer.get("inclusion_criteria", [None])) < b.min_inclusion:
            return None
        if len(answer.get("exclusion_criteria", [None])) < b.min_exclusion:
            return None
        return answer

    def answer_json(self, trial: Trial) -> str | None:
        """`answer_of` as the JSON text a model is trained to write."""
        answer = self.answer_of(trial)
        return None if answer is None else json.dumps(answer, ensure_ascii=False)


def _choice(value: str | None, allowed: tuple[str, ...]) -> str | None:
    text = (value or "").lower().replace("_", " ")
    if not text:
        return None
    if allowed is ALLOCATIONS and "non" in text:
        return "non-randomized"
    return next((a for a in allowed if a in text), allowed[-1])


@lru_cache(maxsize=32)
def _draft_model(spec_json: str) -> type[BaseModel]:
    spec = DraftSpec.model_validate_json(spec_json)
    b = spec.bounds
    described = "intervention_descriptions" in spec.fields
    intervention = create_model(
        "InterventionDraft", name=(_text(b.intervention_chars), ...), type=(InterventionType, InterventionType.DRUG),
        **({"description": (Annotated[_text(b.sentence_chars) | None, BeforeValidator(_blank_to_none)], None)}
           if described else {}))
    outcome = create_model("OutcomeDraft", measure=(_text(b.sentence_chars), ...),
                           time_frame=(Annotated[_text(120) | None, BeforeValidator(_blank_to_none)], None))
    criteria = _text(b.criterion_chars)
    definitions: dict[str, Any] = {
        "brief_title": (_text(b.title_chars), ...),
        "phase": (Phase, ...),
        "conditions": (Annotated[list[_text(b.condition_chars)], _items(b.conditions),  # type: ignore[valid-type]
                                 Field(min_length=1, max_length=b.conditions)], ...),
        "interventions": (Annotated[list[intervention], _items(b.interventions),
                                    Field(min_length=1, max_length=b.interventions)], ...),
        "brief_summary": (_text(b.summary_chars), ...),
        "inclusion_criteria": (Annotated[list[criteria], _items(b.criteria),  # type: ignore[valid-type]
                                         Field(min_length=b.min_inclusion, max_length=b.criteria)], ...),
        "exclusion_criteria": (Annotated[list[criteria], _items(b.criteria),  # type: ignore[valid-type]
                                         Field(min_length=b.min_exclusion, max_length=b.criteria)], ...),
        "enrollment": (Annotated[int, Field(ge=1, le=100000)], ...),
        "allocation": (Literal[ALLOCATIONS], ...),  # type: ignore[valid-type]
        "masking": (Literal[MASKINGS], ...),  # type: ignore[valid-type]
        "primary_purpose": (Literal[PURPOSES], ...),  # type: ignore[valid-type]
        "primary_outcomes": (Annotated[list[outcome], _items(b.outcomes),
                                       Field(min_length=1, max_length=b.outcomes)], ...),
    }
    name = "TrialDraft" if set(spec.fields) == set(WRITABLE) else "TrialDraft_" + "_".join(spec.fields)
    return create_model(name, **{key: definitions[key] for key in spec.keys()})


# --- bounds that cover the grounding trials -------------------------------------------------------

_SIZE_KEYS = ("conditions", "interventions", "criteria", "condition_chars", "criterion_chars", "intervention_chars")


def _trial_sizes(trials: list[Trial]) -> np.ndarray:
    """Per trial: items and longest item of each bounded list (0 where absent)."""
    rows = []
    for t in trials:
        elig = t.eligibility or Eligibility()
        criteria = [c for c in elig.inclusion + elig.exclusion if c.strip()]
        rows.append([
            len(t.conditions), len(t.interventions), max(len(elig.inclusion), len(elig.exclusion)),
            max((len(" ".join(c.split())) for c in t.conditions), default=0),
            max((len(" ".join(c.split())) for c in criteria), default=0),
            max((len(" ".join(i.name.split())) for i in t.interventions), default=0),
        ])
    return np.asarray(rows, dtype=float).reshape(-1, len(_SIZE_KEYS))


def _covering_bounds(sizes: np.ndarray, coverage: float) -> tuple[DraftBounds, float]:
    """The smallest per-dimension quantile whose bounds fit `coverage` of the trials whole."""
    if len(sizes) == 0:
        return DraftBounds(), 0.0
    defaults = DraftBounds()
    for q in np.linspace(coverage, 1.0, 51):
        limits = np.ceil(np.quantile(sizes, q, axis=0))
        limits = np.maximum(limits, [1, 1, 1, 8, 8, 8])
        covered = float(np.mean(np.all(sizes <= limits, axis=1)))
        if covered >= coverage:
            break
    values = dict(zip(_SIZE_KEYS, (int(v) for v in limits)))
    return defaults.model_copy(update=values), covered


#: the draft of a full registry record (every writable field, default bounds)
TrialDraft = DraftSpec().model()
