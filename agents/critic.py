"""The critic agent: deterministic checks plus an LLM judgement of domain consistency.

Verdict: accept (no problem), revise (problems, revisions remain: back to the writer with the
problems as feedback) or reject (problems, no revision left; kept with its reasons).
"""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, Field

from synthtrials.agents.prompting import render_messages
from synthtrials.agents.writer import OUTCOME_PHRASES
from synthtrials.graphs.config import GenerationConfig
from synthtrials.graphs.resources import Resources
from synthtrials.graphs.state import Critique, GenerationState, StepLog
from synthtrials.tools.checks import (
    Problem, check_copying, check_intervention, check_leakage, check_plausibility, check_privacy, outcome_word_counts,
)
from synthtrials.tools.llm import StructuredOutputError
from synthtrials.tools.store import TrialFilter
from synthtrials.tools.trial import Sentence, Trial, render_for_classifier, render_for_embedding


class CriticJudgement(BaseModel):
    consistent: bool
    problems: Annotated[list[Sentence], Field(max_length=4)] = Field(default_factory=list)


def deterministic_problems(draft: Trial, state: GenerationState, cfg: GenerationConfig,
                           resources: Resources) -> tuple[list[Problem], dict[str, float]]:
    th = cfg.thresholds
    problems = check_intervention(draft, state.target.intervention)
    problems += check_plausibility(draft, th.min_title_words, th.min_item_words)
    problems += check_leakage(draft)
    problems += check_privacy(draft)
    vector = np.asarray(resources.embeddings.embed_array([render_for_embedding(draft)])[0])
    neighbours = resources.store.search_by_vector(vector, k=th.real_neighbours, flt=TrialFilter(source="real"))
    sources = resources.store.get_many(state.examples) + [h.trial for h in neighbours]
    copy_problems, overlap = check_copying(draft, sources, th.ngram, th.max_ngram_overlap)
    problems += copy_problems
    real_similarity = max((h.score for h in neighbours), default=0.0)
    if real_similarity > th.max_real_similarity:
        problems.append(Problem("near_copy", f"too close to real trial {neighbours[0].trial.nct_id} "
                                             f"(similarity {real_similarity:.3f}); write a different trial"))
    other, synthetic_similarity = resources.synthetic.most_similar(vector, exclude=draft.nct_id)
    if synthetic_similarity > th.max_synthetic_similarity:
        problems.append(Problem("near_duplicate", f"too close to synthetic trial {other} "
                                                  f"(similarity {synthetic_similarity:.3f}); vary it"))
    metrics = {"ngram_overlap": round(overlap, 4), "real_similarity": round(real_similarity, 4),
               "synthetic_similarity": round(synthetic_similarity, 4),
               "outcome_words": float(sum(outcome_word_counts(draft).values()))}
    return problems, metrics


def make_critique_node(resources: Resources):
    def critique(state: GenerationState, config: RunnableConfig) -> dict:
        cfg = GenerationConfig.from_runnable_config(config)
        start = time.perf_counter()
        draft = state.draft
        llm_problems: list[str] = []
        prompt = answer = None
        tokens = 0
        if draft is None:
            problems = [Problem("schema", f"the answer was not a valid trial ({state.draft_error})")]
            metrics: dict[str, float] = {}
        else:
            problems, metrics = deterministic_problems(draft, state, cfg, resources)
            if not problems and cfg.llm_critic != "off":
                messages = render_messages("critic", intervention=state.target.intervention,
                                           outcome_phrase=OUTCOME_PHRASES[state.target.label],
                                           draft=render_for_classifier(draft))
                prompt = "\n\n".join(str(m.content) for m in messages)
                try:
                    result = resources.llm.structured(messages, CriticJudgement, sample_index=state.target.index * 16
                                                      + state.revision, temperature=cfg.critic_temperature)
                    judgement = result.value
                    answer, tokens = result.raw, result.usage.total_tokens
                    if not judgement.consistent:
                        llm_problems = judgement.problems or ["the drug, condition, phase and eligibility do not fit together"]
                except StructuredOutputError as exc:
                    answer = exc.raw
                    llm_problems = []  # an unreadable judgement does not count against the draft
                if cfg.llm_critic == "enforce":
                    problems += [Problem("domain", p) for p in llm_problems]
        if not problems:
            verdict = "accept"
        elif state.revision < cfg.max_revisions:
            verdict = "revise"
        else:
            verdict = "reject"
        record = Critique(round=state.revision, verdict=verdict, problems=[p.message for p in problems],
                          failed_checks=sorted({p.check for p in problems}), llm_problems=llm_problems, metrics=metrics)
        return {
            "critiques": [record],
            "revision": state.revision + (1 if verdict == "revise" else 0),
            "log": [StepLog(node="critique", seconds=time.perf_counter() - start,
                            read={"draft": draft.nct_id if draft else None, "round": state.revision},
                            wrote={"verdict": verdict, "failed_checks": record.failed_checks, "problems": record.problems,
                                   "metrics": metrics}, prompt=prompt, answer=answer, tokens=tokens)],
        }

    return critique


def route_after_critique(state: GenerationState) -> str:
    """Back to the writer while the critic asks for a revision, else finalize."""
    return "write" if state.critiques and state.critiques[-1].verdict == "revise" else "finalize"
