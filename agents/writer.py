"""The writer agent: a new `Trial` of the target intervention and label.

Guided by the retrieved examples, the reasoner's reasons and, on revision, the critic's feedback.
The JSON schema sent to the model pins the first intervention to the requested name and type,
so even a small grammar-constrained model names the drug it was asked for; everything else is
the model's.
"""

from __future__ import annotations

import copy
import hashlib
import time
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig

from synthtrials.agents.prompting import render_messages
from synthtrials.graphs.config import GenerationConfig
from synthtrials.graphs.resources import Resources
from synthtrials.graphs.state import GenerationState, StepLog
from synthtrials.tools.llm import LLMClient, StructuredOutputError, StructuredResult, _method
from synthtrials.tools.trial import Phase, TrialDraft

OUTCOME_PHRASES = {
    1: "succeeds (it completes and meets its primary endpoint)",
    0: "fails (it is terminated or withdrawn early, or misses its primary endpoint)",
}
DIVERSITY_HINTS = (
    "Make it clearly different from the examples: another condition, population or setting.",
    "Vary the design from the examples: another comparator, dosing schedule or phase.",
    "Vary the population from the examples: another age group, disease stage or line of therapy.",
    "Vary the outcome measures and eligibility from the examples.",
    "Choose a combination or comparator not used in the examples.",
)


def writer_messages(intervention: str, label: int, examples: list[str], reasons: list[str],
                    feedback: list[str], sample_index: int = 0) -> list[BaseMessage]:
    return render_messages(
        "writer", intervention=intervention, outcome_phrase=OUTCOME_PHRASES[int(label)], examples=examples,
        reasons=reasons, feedback=feedback, diversity=DIVERSITY_HINTS[sample_index % len(DIVERSITY_HINTS)],
        phases=", ".join(p.value for p in Phase),
    )


def writer_json_schema(intervention: str, method: str, max_interventions: int = 3,
                       vocabulary: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """`TrialDraft`'s schema with the first intervention fixed to `intervention` (a drug).

    With a `vocabulary`, conditions and phase are restricted to those of the intervention's real
    trials and enrollment to 1-999: what keeps a 135M-parameter model's records plausible.
    """
    schema = copy.deepcopy(TrialDraft.model_json_schema())
    if vocabulary:
        if vocabulary.get("conditions"):
            schema["properties"]["conditions"]["items"] = {"enum": vocabulary["conditions"]}
        if vocabulary.get("phases"):
            schema["properties"]["phase"] = {"enum": vocabulary["phases"]}
        schema["properties"]["enrollment"] = {"type": "integer", "minimum": 1, "maximum": 999}
    target = {"type": "object", "properties": {
        "name": {"const": intervention}, "type": {"const": "drug"},
        "description": {"type": "string", "maxLength": 300},
    }, "required": ["name", "type", "description"]}
    other = {"$ref": "#/$defs/InterventionDraft"}
    if method == "json_object_schema":
        # llama.cpp's grammar reads `items` lists as tuples; one tuple per allowed length
        schema["properties"]["interventions"] = {"anyOf": [
            {"type": "array", "items": [target] + [other] * n} for n in range(max_interventions)]}
    else:
        schema["properties"]["interventions"] = {
            "type": "array", "prefixItems": [target], "items": other, "minItems": 1, "maxItems": max_interventions}
    return schema


def write_draft(llm: LLMClient, intervention: str, label: int, examples: list[str], reasons: list[str],
                feedback: list[str], *, sample_index: int = 0, temperature: float | None = None,
                vocabulary: dict[str, list[str]] | None = None) -> tuple[list[BaseMessage], StructuredResult]:
    """Ask the model for one `TrialDraft`; returns the prompt and the structured result."""
    messages = writer_messages(intervention, label, examples, reasons, feedback, sample_index)
    result = llm.structured(messages, TrialDraft, sample_index=sample_index, temperature=temperature,
                            json_schema=writer_json_schema(intervention, _method(llm.config), vocabulary=vocabulary))
    return messages, result


def synthetic_id(run_id: str, index: int) -> str:
    """A stable id per planned trial (resume keeps it); never NCT-shaped."""
    return "SYN-" + hashlib.sha256(f"{run_id}:{index}".encode()).hexdigest()[:12]


def make_write_node(resources: Resources):
    def write(state: GenerationState, config: RunnableConfig) -> dict:
        cfg = GenerationConfig.from_runnable_config(config)
        start = time.perf_counter()
        target = state.target
        last = state.critiques[-1] if state.critiques else None
        feedback = last.problems if last is not None and last.verdict == "revise" else []
        sample_index = target.index * 16 + state.revision  # distinct, reproducible seed per draft
        run_id = ((config or {}).get("configurable") or {}).get("run_id", "adhoc")
        try:
            messages, result = write_draft(resources.llm, target.intervention, target.label, state.example_texts,
                                           state.reasons, feedback, sample_index=sample_index,
                                           temperature=cfg.writer_temperature,
                                           vocabulary=state.vocabulary if cfg.vocabulary_constrained() else None)
        except StructuredOutputError as exc:
            return {"draft": None, "draft_error": str(exc), "log": [StepLog(
                node="write", seconds=time.perf_counter() - start, read={"feedback": feedback},
                wrote={"error": str(exc)}, answer=exc.raw, tokens=exc.usage.total_tokens if exc.usage else 0)]}
        trial = result.value.to_trial(synthetic_id(run_id, target.index), label=target.label, provenance={})
        return {"draft": trial, "draft_error": None, "log": [StepLog(
            node="write", seconds=time.perf_counter() - start,
            read={"examples": state.examples, "reasons": len(state.reasons), "feedback": feedback},
            wrote={"draft": trial.nct_id, "attempts": result.attempts},
            prompt="\n\n".join(str(m.content) for m in messages), answer=result.raw, tokens=result.usage.total_tokens)]}

    return write
