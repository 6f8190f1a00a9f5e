"""The writer agent: a new `Trial` of the target intervention and label.

Guided by the retrieved examples, the reasoner's reasons and, on revision, the critic's feedback.
The JSON schema sent to the model pins the first intervention to the requested name and type,
so even a small grammar-constrained model names the drug it was asked for; everything else is
the model's.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.runtime import Runtime
from synthtrials.agents.prompting import OUTCOME_PHRASES, render_messages
from synthtrials.graphs.context import RunContext
from synthtrials.graphs.resources import Resources
from synthtrials.graphs.state import GenerationState, StepTimer
from synthtrials.tools.knowledge.checks import scrub_trial
from synthtrials.tools.llm.client import (
    LLMClient,
    StructuredOutputError,
    StructuredResult,
)
from synthtrials.tools.records.trial import Phase, trim_text
from synthtrials.tools.records.writer_format import DraftSpec
from synthtrials.tools.seeds import llm_seed

DIVERSITY_HINTS = (
    "Make it clearly different from the examples: another condition, population or setting.",
    "Vary the design from the examples: another comparator, dosing schedule or phase.",
    "Vary the population from the examples: another age group, disease stage or line of therapy.",
    "Vary the outcome measures and eligibility from the examples.",
    "Choose a combination or comparator not used in the examples.",
)


def answer_keys_help(spec: DraftSpec) -> str:
    """What each key of the answer holds, for the keys `spec` writes, in writing order."""
    b = spec.bounds
    described = "intervention_descriptions" in spec.fields
    help_by_key = {
        "brief_title": "brief_title",
        "phase": f"phase ({', '.join(p.value for p in Phase)})",
        "conditions": f"conditions (1-{b.conditions} names)",
        "interventions": (f"interventions (1-{b.interventions} objects with name, type"
                          + (", description" if described else "") + "; the first is the requested drug)"),
        "brief_summary": "brief_summary (2-4 sentences)",
        "inclusion_criteria": f"inclusion_criteria (a list of criteria as a registry writes them, up to {b.criteria})",
        "exclusion_criteria": f"exclusion_criteria (a list of criteria, up to {b.criteria})",
        "enrollment": "enrollment (number of participants)",
        "allocation": "allocation (randomized, non-randomized or not applicable)",
        "masking": "masking (none, single, double, triple or quadruple)",
        "primary_purpose": "primary_purpose (treatment, prevention, diagnostic, supportive care, screening, "
                           "health services research, basic science or other)",
        "primary_outcomes": f"primary_outcomes (1-{b.outcomes} objects with measure and time_frame)",
    }
    return "; ".join(help_by_key[key] for key in spec.keys())


def writer_messages(spec: DraftSpec, intervention: str, label: int, examples: list[str], reasons: list[str],
                    feedback: list[str], variant: int = 0, conditions: list[str] | None = None,
                    phase: str | None = None) -> list[BaseMessage]:
    """The writer's prompt; `conditions` and `phase`: what an anchored target fixes."""
    return render_messages(
        "writer", intervention=intervention, outcome_phrase=OUTCOME_PHRASES[int(label)], examples=examples,
        conditions=conditions or [], phase=phase,
        reasons=reasons, feedback=feedback, diversity=DIVERSITY_HINTS[variant % len(DIVERSITY_HINTS)],
        keys_help=answer_keys_help(spec),
    )


#: the adapted writer's token budget (prompt + answer), the same at training and at generation
PROMPT_TOKENS = 256
ANSWER_TOKENS = 384
MIN_EXAMPLE_CHARS = 240
#: the most examples the adapted writer's prompt shows (the retriever draws no more for it)
ADAPTED_EXAMPLES = 2


def adapted_writer_messages(intervention: str, label: int, examples: list[str], reasons: list[str],
                            feedback: list[str], count_tokens: Callable[[list[BaseMessage]], int],
                            budget: int = PROMPT_TOKENS) -> list[BaseMessage]:
    """The compact prompt of a writer adapted to the grounding trials (`agents.writer_adaptation`):
    the drug, the outcome, one or two examples trimmed so that the whole prompt fits `budget`
    tokens, up to two reasons, the critic's feedback. Training and generation both use it.

    Over budget, in this order: fewer reasons (down to one), shorter examples (down to
    `MIN_EXAMPLE_CHARS`), one example fewer, no reasons, no feedback, shorter examples still."""
    shown = examples[:ADAPTED_EXAMPLES]
    parts = {"examples": list(shown), "reasons": [r[:160] for r in reasons[:2]],
             "feedback": [item[:200] for item in feedback[:2]],
             "chars": max((len(e) for e in shown), default=0)}

    def render() -> list[BaseMessage]:
        chars = parts["chars"]
        trimmed = [e[:chars].rsplit(" ", 1)[0] if len(e) > chars else e for e in parts["examples"]] if chars else []
        return render_messages("writer_adapted", intervention=intervention, outcome_phrase=OUTCOME_PHRASES[int(label)],
                               examples=trimmed, reasons=parts["reasons"], feedback=parts["feedback"])

    def shorten(chars_floor: int) -> bool:
        if parts["chars"] > chars_floor:
            parts["chars"] = max(chars_floor, parts["chars"] * 4 // 5)
            return True
        return False

    steps = [lambda: len(parts["reasons"]) > 1 and bool(parts["reasons"].pop()),
             lambda: shorten(MIN_EXAMPLE_CHARS),
             lambda: len(parts["examples"]) > 1 and bool(parts["examples"].pop()),
             lambda: bool(parts["reasons"]) and bool(parts["reasons"].pop()),
             lambda: bool(parts["feedback"]) and bool(parts["feedback"].pop()),
             lambda: shorten(0)]
    messages = render()
    for step in steps:
        while count_tokens(messages) > budget and step():
            messages = render()
    return messages


def writer_json_schema(spec: DraftSpec, intervention: str,
                       vocabulary: dict[str, list[str]] | None = None,
                       criteria: tuple[int, int] | None = None,
                       conditions: list[str] | None = None, phase: str | None = None,
                       interventions: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The draft schema of `spec` with the first intervention fixed to `intervention` (a drug).

    With a `vocabulary`, conditions and phase are restricted to those of the intervention's real
    trials and enrollment to 1-999: what keeps a 135M-parameter model's records plausible. With
    `criteria` (numbers of inclusion and exclusion criteria: an anchor's), each list must have exactly
    that many items, within the spec's bounds (`criteria_counts`). With `conditions` and `phase` (an
    anchor's), the draft's conditions are exactly those (`pinned_conditions`: in order, within the
    spec's bounds) and its phase is that phase: the writer writes everything else after them. With
    `interventions` (an anchor's (name, type) pairs, the drug first), the draft's interventions are exactly
    those (`pinned_interventions`), the first one `intervention`; a spec with descriptions leaves them free.
    """
    schema = copy.deepcopy(spec.json_schema())
    properties = schema["properties"]
    if vocabulary:
        if vocabulary.get("conditions"):
            properties["conditions"]["items"] = {"enum": vocabulary["conditions"]}
        if vocabulary.get("phases"):
            properties["phase"] = {"enum": vocabulary["phases"]}
        if "enrollment" in properties:
            properties["enrollment"] = {"type": "integer", "minimum": 1, "maximum": 999}
    pinned: dict[str, Any] = {"name": {"const": intervention}, "type": {"const": "drug"}}
    if "intervention_descriptions" in spec.fields:
        pinned["description"] = {"type": "string", "maxLength": spec.bounds.sentence_chars}
    held = pinned_interventions(spec, intervention, interventions or [])
    if held:
        items = [{"type": "object", "properties": {**pinned, "name": {"const": name}, "type": {"const": kind}},
                  "required": list(pinned)} for name, kind in held]
        properties["interventions"] = {"type": "array", "prefixItems": items, "items": False,
                                       "minItems": len(items), "maxItems": len(items)}
    else:
        properties["interventions"] = {
            "type": "array", "prefixItems": [{"type": "object", "properties": pinned, "required": list(pinned)}],
            "items": {"$ref": "#/$defs/InterventionDraft"}, "minItems": 1, "maxItems": spec.bounds.interventions}
    if criteria is not None and "eligibility" in spec.fields:
        for key, count in zip(("inclusion_criteria", "exclusion_criteria"), criteria_counts(spec, criteria)):
            properties[key].update(minItems=count, maxItems=count)
    pinned_list = pinned_conditions(spec, conditions or [])
    if pinned_list:
        properties["conditions"] = {"type": "array", "prefixItems": [{"type": "string", "const": c} for c in pinned_list],
                                    "items": False, "minItems": len(pinned_list), "maxItems": len(pinned_list)}
    if phase is not None and "phase" in properties:
        properties["phase"] = {"type": "string", "enum": [phase]}
    return schema


def pinned_conditions(spec: DraftSpec, conditions: list[str]) -> list[str]:
    """An anchor's conditions as a draft holds them: each trimmed to the spec's length bound, blanks
    dropped, at most the spec's number of conditions (what `DraftSpec.answer_of` writes for a real trial)."""
    bounds = spec.bounds
    trimmed = [trim_text(c, bounds.condition_chars) for c in conditions]
    return [c for c in trimmed if c.strip()][:bounds.conditions]


def pinned_interventions(spec: DraftSpec, drug: str, interventions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """An anchor's interventions as a draft holds them: `drug` first (typed drug, as the plan names it), then the
    others with their names trimmed to the spec's bound and blanks dropped, at most the spec's number of
    interventions; empty where the anchor recorded none (a plan made before they were recorded)."""
    if not interventions:
        return []
    bounds = spec.bounds
    others = [(trim_text(name, bounds.intervention_chars), kind) for name, kind in interventions[1:]]
    return [(drug, "drug"), *[(name, kind) for name, kind in others if name.strip()]][:bounds.interventions]


def criteria_counts(spec: DraftSpec, criteria: tuple[int, int]) -> tuple[int, int]:
    """(inclusion, exclusion) `criteria` counts within the spec's bounds: at least its minimum per list (a
    draft has an inclusion criterion), at most its `criteria` items."""
    bounds = spec.bounds
    inclusion, exclusion = criteria
    return (min(max(inclusion, bounds.min_inclusion), bounds.criteria),
            min(max(exclusion, bounds.min_exclusion), bounds.criteria))


def write_draft(llm: LLMClient, spec: DraftSpec, intervention: str, label: int, examples: list[str],
                reasons: list[str], feedback: list[str], *, seed: int = 0, variant: int = 0, temperature: float | None = None,
                conditions: list[str] | None = None, phase: str | None = None,
                vocabulary: dict[str, list[str]] | None = None, criteria: tuple[int, int] | None = None,
                pin: bool = False, interventions: list[tuple[str, str]] | None = None,
                adapted: bool = False, prompt_tokens: int = PROMPT_TOKENS) -> tuple[list[BaseMessage], StructuredResult]:
    """Ask the model for one draft of `spec`; returns the prompt and the structured result.

    `adapted`: the model was adapted to the grounding trials, and gets the compact prompt it was
    trained on (`adapted_writer_messages`), within `prompt_tokens`. `criteria`: the numbers of inclusion and exclusion criteria
    the schema asks for (`writer_json_schema`). `pin`: the schema also holds the draft to `conditions` and
    `phase` (an adapted writer's prompt cannot name them). `interventions`: the anchor's interventions the schema
    holds the draft to (None: only the first, `intervention`)."""
    if adapted:
        messages = adapted_writer_messages(intervention, label, examples, reasons, feedback, llm.message_tokens,
                                           prompt_tokens)
    else:
        messages = writer_messages(spec, intervention, label, examples, reasons, feedback, variant, conditions, phase)
    result = llm.structured(messages, spec.model(), seed=seed, temperature=temperature,
                            json_schema=writer_json_schema(spec, intervention, vocabulary, criteria,
                                                           conditions if pin else None, phase if pin else None,
                                                           interventions))
    return messages, result


def synthetic_id(run_id: str, index: int) -> str:
    """A stable id per planned trial (resume keeps it); never NCT-shaped."""
    return "SYN-" + hashlib.sha256(f"{run_id}:{index}".encode()).hexdigest()[:12]


def make_write_node(resources: Resources):
    def write(state: GenerationState, runtime: Runtime[RunContext]) -> dict:
        cfg = runtime.context.generation
        spec = cfg.draft
        assert spec is not None  # settled
        timer = StepTimer("write")
        target = state.target
        last = state.critiques[-1] if state.critiques else None
        feedback = last.problems if last is not None and last.verdict == "revise" else []
        run_id = runtime.context.run_id
        try:
            messages, result = write_draft(resources.writer, spec, target.intervention, target.label,
                                           state.example_texts, state.reasons, feedback,
                                           seed=llm_seed(cfg.seed, "writer", target.index, state.revision),
                                           variant=target.index + state.revision,
                                           conditions=target.conditions if target.anchor else None,
                                           phase=target.phase if target.anchor else None,
                                           temperature=cfg.writer_temperature,
                                           vocabulary=state.vocabulary if cfg.vocabulary_constrained() else None,
                                           criteria=target.criteria if cfg.writer_criteria == "anchor" else None,
                                           pin=cfg.pins_conditions(bool(target.anchor)),
                                           interventions=(target.interventions
                                                          if cfg.pins_interventions(bool(target.anchor)) else None),
                                           adapted=cfg.writer_adapter is not None,
                                           prompt_tokens=cfg.writer_prompt_tokens or PROMPT_TOKENS)
        except StructuredOutputError as exc:
            return {"draft": None, "draft_error": str(exc), "log": timer.log(
                read={"feedback": feedback}, wrote={"error": str(exc)}, answer=exc.raw,
                tokens=exc.usage.total_tokens if exc.usage else 0)}
        # status words are scrubbed here, so that the critic checks exactly what may be accepted
        trial = scrub_trial(spec.to_trial(result.value, synthetic_id(run_id, target.index), label=target.label,
                                          provenance={}))
        return {"draft": trial, "draft_error": None, "log": timer.log(
            read={"examples": state.examples, "reasons": len(state.reasons), "feedback": feedback},
            wrote={"draft": trial.nct_id, "attempts": result.attempts}, prompt=messages, answer=result.raw,
            tokens=result.usage.total_tokens)}

    return write
