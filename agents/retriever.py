"""The retriever agent: k real trials of the target intervention and label as examples.

The paper's rule, sampled anew per draw (seeded by the run seed and the draw's index, without
replacement), plus semantic neighbours with the same label as a fallback (fewer than k trials)
or an addition. Examples are rendered compactly and trimmed to fit the model's context. Only the
real trials of the grounding splits are read (`GenerationConfig.grounding`): examples,
neighbours and the intervention's vocabulary alike.
"""

from __future__ import annotations

import random

from langchain_core.runnables import RunnableConfig
from synthtrials.graphs.config import GenerationConfig
from synthtrials.graphs.resources import Resources
from synthtrials.graphs.state import GenerationState, StepTimer
from synthtrials.tools.llm_config import traits
from synthtrials.tools.store import TrialFilter
from synthtrials.tools.trial import render_for_classifier

PROMPT_OVERHEAD_TOKENS = 700  # system prompt, instructions, reasons and feedback


def example_budget_chars(config: GenerationConfig, n_examples: int) -> int:
    """Characters per example so that the writer prompt fits the model's context."""
    llm = config.llm
    if not traits(llm.backend).knows_window or n_examples == 0:
        return config.example_chars
    tokens = max(200, llm.n_ctx - llm.max_tokens - PROMPT_OVERHEAD_TOKENS)
    return max(200, min(config.example_chars, tokens * 3 // n_examples))  # ~3 characters a token, conservatively


def intervention_vocabulary(resources: Resources, grounding: TrialFilter, intervention: str,
                            limit: int = 60) -> dict[str, list[str]]:
    """Conditions and phases of every grounding trial of the intervention (either label)."""
    trials = resources.store.filter(grounding.narrowed(intervention=intervention))
    conditions: dict[str, None] = {}
    phases: dict[str, None] = {}
    for trial in trials:
        for condition in trial.conditions:
            if len(conditions) < limit:
                conditions.setdefault(condition.strip()[:120], None)
        if trial.phase is not None:
            phases.setdefault(trial.phase.value, None)
    return {"conditions": sorted(conditions), "phases": sorted(phases)}


def make_retrieve_node(resources: Resources):
    def retrieve(state: GenerationState, config: RunnableConfig) -> dict:
        cfg = resources.settle(GenerationConfig.from_runnable_config(config))
        timer = StepTimer("retrieve")
        target = state.target
        grounding = cfg.grounding()
        rng = random.Random(f"{cfg.seed}:examples:{target.index}")
        pool = sorted(resources.store.filter_ids(grounding.narrowed(intervention=target.intervention,
                                                                    label=target.label)))
        chosen = rng.sample(pool, min(cfg.k, len(pool)))
        neighbours: list[str] = []
        wanted = cfg.n_neighbours if cfg.neighbours == "add" else (cfg.k - len(chosen) if cfg.neighbours == "fallback" else 0)
        if wanted > 0:
            hits = resources.store.search(target.intervention, k=wanted, flt=grounding.narrowed(
                label=target.label, exclude_ids=frozenset(chosen)))
            neighbours = [h.trial.nct_id for h in hits]
        ids = chosen + neighbours
        vocabulary = intervention_vocabulary(resources, grounding, target.intervention)
        trials = {t.nct_id: t for t in resources.store.get_many(ids)}
        budget = example_budget_chars(cfg, len(ids))
        texts = [render_for_classifier(trials[i], cfg.draft.fields if cfg.draft else None)[:budget] for i in ids if i in trials]
        return {
            "examples": [i for i in ids if i in trials],
            "neighbours": [i for i in neighbours if i in trials],
            "example_texts": texts,
            "vocabulary": vocabulary,
            "log": timer.log(read={"intervention": target.intervention, "label": target.label, "pool": len(pool)},
                             wrote={"examples": chosen, "neighbours": neighbours, "chars_per_example": budget}),
        }

    return retrieve
