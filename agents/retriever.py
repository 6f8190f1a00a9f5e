"""The retriever agent: k real trials of the target intervention and label as examples.

The paper's rule, sampled anew per draw (seeded by the run seed and the draw's index, without
replacement), plus semantic neighbours with the same label as a fallback (fewer than k trials)
or an addition. Examples are rendered compactly and trimmed to fit the model's context. Only the
real trials of the grounding splits are read (`GenerationConfig.grounding`): examples,
neighbours and the intervention's vocabulary alike.
"""

from __future__ import annotations

import random
from typing import Literal

from langgraph.runtime import Runtime
from synthtrials.agents.writer import ADAPTED_EXAMPLES
from synthtrials.graphs.config import GenerationConfig
from synthtrials.graphs.context import RunContext
from synthtrials.graphs.resources import Resources
from synthtrials.graphs.state import GenerationState, StepTimer
from synthtrials.tools.llm.config import backend_of
from synthtrials.tools.records.trial import render_for_classifier, render_for_embedding
from synthtrials.tools.seeds import stream
from synthtrials.tools.store.protocol import TrialFilter, TrialStore

PROMPT_OVERHEAD_TOKENS = 700  # system prompt, instructions, reasons and feedback


def example_budget_chars(config: GenerationConfig, n_examples: int) -> int:
    """Characters per example so that the writer prompt fits the model's context."""
    llm = config.llm
    if not backend_of(llm).knows_window or n_examples == 0:
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


def draw_examples(store: TrialStore, grounding: TrialFilter, drug: str, label: int, k: int, rng: random.Random, *,
                  neighbours: Literal["off", "fallback", "add"] = "fallback", n_neighbours: int = 2,
                  exclude: frozenset[str] = frozenset(), query: str | None = None) -> tuple[list[str], list[str], int]:
    """The examples of one draw: k grounding trials of the drug and label, sampled without replacement
    (ids in sorted order, so the draw depends on `rng` alone), plus semantic neighbours with the same label
    (`fallback`: as many as are missing; `add`: `n_neighbours` more). `exclude`: trials never chosen (the
    trial an adaptation prompt is made from, an anchored target's anchor); `query`: what neighbours are found by
    (default the drug's name; the anchor's or the trial's own text for anchored draws). Returns (chosen,
    neighbours, the size of the drug's pool).
    The retriever and the adaptation's training prompts draw through this one function."""
    pool = sorted(set(store.filter_ids(grounding.narrowed(intervention=drug, label=label))) - exclude)
    chosen = rng.sample(pool, min(k, len(pool)))
    wanted = n_neighbours if neighbours == "add" else (k - len(chosen) if neighbours == "fallback" else 0)
    found: list[str] = []
    if wanted > 0:
        hits = store.search(query or drug, k=wanted,
                            flt=grounding.narrowed(label=label, exclude_ids=frozenset(chosen) | exclude))
        found = [h.trial.nct_id for h in hits]
    return chosen, found, len(pool)


def make_retrieve_node(resources: Resources):
    def retrieve(state: GenerationState, runtime: Runtime[RunContext]) -> dict:
        cfg = runtime.context.generation
        timer = StepTimer("retrieve")
        target = state.target
        grounding = cfg.grounding()
        anchor = resources.store.get(target.anchor) if target.anchor else None
        # an adapted writer's prompt shows at most ADAPTED_EXAMPLES: provenance lists only what it is shown (the
        # first draws of the same seeded sample: the examples `k` gave its prompt before)
        k = min(cfg.k, ADAPTED_EXAMPLES) if cfg.writer_adapter else cfg.k
        chosen, neighbours, pool = draw_examples(
            resources.store, grounding, target.intervention, target.label, k,
            stream(cfg.seed, "examples", target.index), neighbours=cfg.neighbours, n_neighbours=cfg.n_neighbours,
            exclude=frozenset({anchor.nct_id}) if anchor else frozenset(),
            query=render_for_embedding(anchor) if anchor else None)
        ids = chosen + neighbours
        if anchor is not None:  # the anchor fixes the conditions and the phase (never shown itself)
            vocabulary = {"conditions": target.conditions, "phases": [target.phase] if target.phase else []}
        else:
            vocabulary = intervention_vocabulary(resources, grounding, target.intervention)
        trials = {t.nct_id: t for t in resources.store.get_many(ids)}
        budget = example_budget_chars(cfg, len(ids))
        texts = [render_for_classifier(trials[i], cfg.draft.fields if cfg.draft else None)[:budget] for i in ids if i in trials]
        return {
            "examples": [i for i in ids if i in trials],
            "neighbours": [i for i in neighbours if i in trials],
            "example_texts": texts,
            "vocabulary": vocabulary,
            "log": timer.log(read={"intervention": target.intervention, "label": target.label, "pool": pool},
                             wrote={"examples": chosen, "neighbours": neighbours, "chars_per_example": budget}),
        }

    return retrieve
