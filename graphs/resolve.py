"""Defaults that depend on the data or the model, settled in one place.

A run settles them once, when it starts, and records the settled configuration in its folder, so
a resumed run keeps them even if the store changes (re-ingest, re-calibration); the nodes read the
settled configuration from the run's context (`graphs.context.RunContext`). Each setting has one
function here, shared by every command that needs it: `generate` and scripts that invoke the graph
(`settle_generation`), `check` (the same), `store calibrate` and `adapt` (`settle_grounding`,
`settle_draft`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from synthtrials.agents.writer import PROMPT_TOKENS
from synthtrials.graphs.config import GenerationConfig
from synthtrials.tools.knowledge.calibration import load_or_calibrate
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.llm.adapter_folder import read_adapter
from synthtrials.tools.llm.client import LLMClient, LLMConfig
from synthtrials.tools.progress import SayFn
from synthtrials.tools.knowledge.checks import CriticThresholds
from synthtrials.tools.knowledge.domain import DomainKnowledge
from synthtrials.tools.records.splits import Split, check_split
from synthtrials.tools.store.protocol import (
    TrialStore,
    default_grounding_splits,
    grounding_filter,
)
from synthtrials.tools.records.writer_format import DraftSpec
from synthtrials.tools.seeds import stream

#: models whose LLM-critic judgement was measured no better than chance (benchmarks/bench_critic.py:
#: SmolLM2 called every real and every spoiled trial consistent, AUC 0.50 on each kind): they are not
#: asked by default (`--llm-critic advisory` records their judgement, `enforce` counts it). Recording
#: it cost a second llama-server beside the adapted writer's, 13 of a run's 29 CPU minutes.
CHANCE_CRITIC_MODELS = ("SmolLM2-135M-Instruct.Q4_1.gguf",)


def default_llm_critic(llm: LLMConfig) -> str:
    return "off" if Path(llm.model_label()).name in CHANCE_CRITIC_MODELS else "enforce"


#: the share of valid reasons above which `reasoner=auto` lets the model write them
MIN_REASON_VALIDITY = 0.5


def settle_reasoner(config: GenerationConfig, store: TrialStore, llm: Callable[[], LLMClient] | None,
                    say: SayFn | None = None) -> str:
    """`auto`: the model writes the reasons when most of its reasons are valid (measured once per
    store calibration, model and validator version, saved with the store), else they are templated
    from the evidence."""
    if config.reasoner != "auto":
        return config.reasoner
    if llm is None:
        return "evidence"
    from synthtrials.agents.reasoner import measure_reason_validity
    from synthtrials.tools.knowledge.calibration import build_knowledge
    from synthtrials.tools.knowledge.evidence import REASON_VALIDATOR_VERSION

    key = f"reasons:{config.thresholds.calibration}:{config.llm.model_label()}"
    saved = store.load_calibration(key)
    if saved is None or saved.get("validator") != REASON_VALIDATOR_VERSION:  # measured by older rules: again
        if say:
            say(f"measuring the validity of {config.llm.model_label()}'s reasons on a few draws (once per store and model)")
        validity = measure_reason_validity(llm(), store, config, build_knowledge(store, config.ground_on or [], sample=config.ground_sample_ids))
        saved = {"validity": round(validity, 3), "threshold": MIN_REASON_VALIDITY, "validator": REASON_VALIDATOR_VERSION}
        store.save_calibration(key, saved)
    return "llm" if saved["validity"] >= MIN_REASON_VALIDITY else "evidence"


def settle_grounding(store: TrialStore, ground_on: list[str] | None, what: str = "ground on") -> list[Split]:
    """The grounding splits: the ones given, else `train` when the store has one, else `pool`;
    refused when the store has no real trial in them."""
    splits = [check_split(s) for s in ground_on] if ground_on else default_grounding_splits(store)
    if not store.filter_ids(grounding_filter(splits)):
        counts = store.split_counts()
        raise ConfigError(f"--ground-on {' '.join(splits)}: the store has no real trials in that split to {what} "
                          f"(it has {', '.join(f'{n} {s}' for s, n in counts.items()) or 'none'})")
    return splits


def settle_ground_sample(store: TrialStore, splits: list[str], fraction: float | None, seed: int) -> list[str] | None:
    """`--ground-sample F`: a seeded, label-stratified fraction F of the grounding trials (at least one of each
    label present), the same for `generate` and `adapt` given the same splits, F and seed."""
    if fraction is None:
        return None
    if not 0 < fraction <= 1:
        raise ConfigError(f"--ground-sample must lie in (0, 1], got {fraction:g}")
    by_label: dict[int | None, list[str]] = {}
    for trial in store.filter(grounding_filter(splits)):
        by_label.setdefault(trial.label, []).append(trial.nct_id)
    chosen: list[str] = []
    for label in sorted(by_label, key=lambda value: -1 if value is None else value):
        ids = sorted(by_label[label])
        chosen += stream(seed, "ground_sample", label).sample(ids, max(1, round(fraction * len(ids))))
    return sorted(chosen)


def settle_draft(store: TrialStore, splits: list[str], sample: list[str] | None = None) -> DraftSpec:
    """The writer's output format, measured on the grounding trials."""
    return DraftSpec.from_trials(store.filter(grounding_filter(splits, sample)))


def settle_thresholds(thresholds: CriticThresholds, store: TrialStore, splits: list[str],
                      knowledge: DomainKnowledge | None = None, say: SayFn | None = None,
                      sample: list[str] | None = None) -> CriticThresholds:
    """The critic's thresholds with the store's calibration for `splits` (computed and saved once)."""
    if thresholds.calibrated:
        return thresholds
    calibration = load_or_calibrate(store, splits, knowledge, say=say, sample=sample)
    return calibration.critic_thresholds(thresholds)


def adapter_prompt_tokens(adapter: str | None) -> int | None:
    """The prompt budget an adapted writer was trained with (adapter.json); None without an adapter."""
    if not adapter:
        return None
    return int(read_adapter(adapter).options.get("prompt_tokens") or PROMPT_TOKENS)


def settle_generation(config: GenerationConfig, store: TrialStore, say: SayFn | None = None,
                      llm: Callable[[], LLMClient] | None = None) -> GenerationConfig:
    """`config` with the grounding splits, the writer's output format, the critic's calibrated
    thresholds, the LLM critic's mode and the reasoner's mode settled for `store` and the model:
    what `generate`, `check` and scripts that invoke the graph hand to the nodes (`RunContext`)."""
    if not config.unsettled():
        return config
    ground_on = settle_grounding(store, config.ground_on)
    sample = config.ground_sample_ids or settle_ground_sample(store, ground_on, config.ground_sample, config.seed)
    settled = config.model_copy(update={
        "ground_on": ground_on, "ground_sample_ids": sample, "draft": config.draft or settle_draft(store, ground_on, sample),
        "thresholds": settle_thresholds(config.thresholds, store, ground_on, say=say, sample=sample),
        "llm_critic": config.llm_critic or default_llm_critic(config.llm),
        "writer_prompt_tokens": config.writer_prompt_tokens or adapter_prompt_tokens(config.writer_adapter)})
    return settled.model_copy(update={"reasoner": settle_reasoner(settled, store, llm, say)})
