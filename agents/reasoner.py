"""The reasoning agent: the justification that guides the writer, grounded in the registry facts of
the drug's grounding trials (`tools.knowledge.evidence`) and checked like every other agent's output.

Modes (`GenerationConfig.reasoner`, settled per run):
- ``evidence``: the reasons are templated from the evidence, deterministically (the offline default:
  the embedded model's own reasons were measured invalid most of the time);
- ``llm``: the model writes them from the examples and the evidence; each reason is validated (a
  sentence close to the real criteria or the evidence, by the critic's calibrated typicality);
  invalid ones are asked for again once with feedback, then dropped; a draw left with none goes on
  with the evidence reasons, marked as such;
- ``none``: no reasons (the ablation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import numpy as np
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field
from synthtrials.agents.prompting import OUTCOME_PAST, OUTCOME_VERBS, render_messages
from synthtrials.graphs.config import GenerationConfig
from synthtrials.graphs.context import RunContext
from synthtrials.graphs.resources import Resources
from synthtrials.graphs.state import GenerationState, StepTimer
from synthtrials.tools.knowledge.domain import DomainKnowledge
from synthtrials.tools.knowledge.evidence import (
    DrugEvidence,
    drug_evidence,
    evidence_anchors,
    evidence_facts,
    evidence_reasons,
    reason_problem,
)
from synthtrials.tools.llm.client import LLMClient, StructuredOutputError
from synthtrials.tools.records.trial import Sentence, render_for_classifier
from synthtrials.tools.seeds import llm_seed
from synthtrials.tools.store.protocol import (
    TrialStore,
    eligible,
)


class Reasons(BaseModel):
    reasons: Annotated[list[Sentence], Field(min_length=1, max_length=10)]


def reasons_schema(n: int) -> dict:
    schema = Reasons.model_json_schema()
    schema["properties"]["reasons"].update(minItems=n, maxItems=n)
    return schema


def reason_problems(reasons: list[str], evidence: DrugEvidence, knowledge: DomainKnowledge,
                    embed: Callable[[list[str]], np.ndarray], threshold: float, n_reasons: int = 5,
                    references: list[str] | None = None) -> list[str | None]:
    """Per reason, why it is unusable (None: usable): a sentence of plain words, stating no outcome,
    naming the drug or a condition or criterion of its grounding trials, and close to the real
    criteria or to the evidence's templated reasons (the critic's calibrated criterion typicality).
    `references`: those templated reasons where the caller already has them."""
    if not reasons:
        return []
    evidence_sentences = evidence_reasons(evidence, n_reasons) if references is None else references
    anchors = evidence_anchors(evidence)
    vectors = embed(reasons)
    similarity = knowledge.index["criterion"].similarities(vectors).max(axis=1)
    if evidence_sentences:
        similarity = np.maximum(similarity, (vectors @ embed(evidence_sentences).T).max(axis=1))
    return [reason_problem(r, float(s), threshold, anchors) for r, s in zip(reasons, similarity)]


def measure_reason_validity(llm: LLMClient, store: TrialStore, config: GenerationConfig, knowledge: DomainKnowledge,
                            draws: int = 4) -> float:
    """The share of valid reasons the model writes on a few draws (drugs of the grounding splits)."""
    grounding = config.grounding()
    drugs = [e.intervention for e in eligible(store, k=1, flt=grounding)][:draws]
    threshold = config.thresholds.calibrated.get("typicality_criterion", 0.0)
    valid = asked = 0
    for number, drug in enumerate(drugs):
        label = number % 2
        trials = store.filter(grounding.narrowed(intervention=drug))
        evidence = drug_evidence(trials, drug, label)
        examples = [render_for_classifier(t)[:600] for t in trials if t.label == label][:2]
        try:
            reasons = llm_reasons(llm, evidence, examples, config.n_reasons, config.reasoner_temperature)[0]
        except StructuredOutputError:
            reasons = []
        verdicts = reason_problems(reasons, evidence, knowledge, store.embeddings.embed_array, threshold,
                                   config.n_reasons)
        asked += config.n_reasons
        valid += sum(v is None for v in verdicts)
    return valid / max(1, asked)


def llm_reasons(llm: LLMClient, evidence: DrugEvidence, examples: list[str], n: int, temperature: float,
                feedback: str = "", *, seed: int = 0) -> tuple[list[str], str, str, int]:
    """The model's reasons (raises StructuredOutputError), with the prompt, answer and tokens."""
    phrase, verb = OUTCOME_PAST[evidence.label], OUTCOME_VERBS[evidence.label]
    messages = render_messages("reasoner", intervention=evidence.drug, outcome_phrase=phrase, outcome_verb=verb,
                               examples=examples, facts=evidence_facts(evidence), n_reasons=n, feedback=feedback)
    result = llm.structured(messages, Reasons, seed=seed, temperature=temperature,
                            json_schema=reasons_schema(n))
    return result.value.reasons[:n], "\n\n".join(str(m.content) for m in messages), result.raw, result.usage.total_tokens


def make_reason_node(resources: Resources):
    def reason(state: GenerationState, runtime: Runtime[RunContext]) -> dict:
        cfg = runtime.context.generation
        timer = StepTimer("reason")
        target = state.target
        drug_trials = resources.store.filter(cfg.grounding().narrowed(intervention=target.intervention))
        # an anchored target's anchor is never shown to the writer, as the adaptation's prompts never show their answer
        evidence = drug_evidence(drug_trials, target.intervention, target.label, exclude=target.anchor)
        templated = evidence_reasons(evidence, cfg.n_reasons)
        prompt = answer = None
        tokens = asked = 0
        problems: list[str] = []
        if cfg.reasoner == "none":
            reasons, source = [], "none"
        elif cfg.reasoner == "evidence":
            reasons, source = templated, "evidence"
        else:
            threshold = cfg.thresholds.calibrated.get("typicality_criterion", 0.0)
            reasons, feedback = [], ""
            for attempt in range(2):  # once more with feedback, then invalid reasons are dropped
                try:
                    answer_reasons, prompt, answer, used = llm_reasons(
                        resources.llm, evidence, state.example_texts, cfg.n_reasons, cfg.reasoner_temperature, feedback,
                        seed=llm_seed(cfg.seed, "reasoner", target.index, attempt))
                except StructuredOutputError as exc:
                    answer, used, answer_reasons = exc.raw, exc.usage.total_tokens if exc.usage else 0, []
                    problems = [str(exc)]
                tokens += used
                asked += len(answer_reasons)
                verdicts = reason_problems(answer_reasons, evidence, resources.knowledge(cfg.ground_on or [], cfg.ground_sample_ids),
                                           resources.embeddings.embed_array, threshold, cfg.n_reasons,
                                           references=templated)
                reasons += [r for r, p in zip(answer_reasons, verdicts) if p is None and r not in reasons]
                problems = [p for p in verdicts if p] or problems
                if len(reasons) >= cfg.n_reasons or attempt == 1:
                    break
                feedback = "; ".join(problems[:3]) or "the answer was not valid JSON"
            reasons = reasons[:cfg.n_reasons]
            source = "llm" if reasons else "evidence-fallback"
            reasons = reasons or templated
        return {"reasons": reasons, "reasons_source": source, "evidence": evidence.model_dump(),
                "log": timer.log(read={"examples": state.examples, "grounding_trials_of_drug": len(drug_trials)},
                                 wrote={"reasons": reasons, "source": source, "asked": asked,
                                        "valid": len(reasons) if source == "llm" else 0, "problems": problems[:5]},
                                 prompt=prompt, answer=answer, tokens=tokens)}

    return reason
