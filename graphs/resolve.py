"""Defaults that depend on the data or the model, settled in one place.

A run settles them once, when it starts, and records the settled configuration in its folder, so
a resumed run keeps them even if the store changes (re-ingest, re-calibration). Scripts that
invoke the graph directly get the same settlement through `Resources.settle`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from synthtrials.graphs.config import GenerationConfig
from synthtrials.tools.calibration import load_or_calibrate
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.llm import LLMClient, LLMConfig
from synthtrials.tools.progress import SayFn
from synthtrials.tools.store import (
    TrialStore,
    default_grounding_splits,
    grounding_filter,
)
from synthtrials.tools.writer_format import DraftSpec

#: models whose LLM-critic judgement was measured no better than chance (benchmarks/bench_critic.py:
#: SmolLM2 called every real and every spoiled trial consistent, AUC 0.50 on each kind): their
#: judgement is recorded, never enforced, unless the user asks (`--llm-critic enforce`)
ADVISORY_CRITIC_MODELS = ("SmolLM2-135M-Instruct.Q4_1.gguf",)


def default_llm_critic(llm: LLMConfig) -> str:
    return "advisory" if Path(llm.model_label()).name in ADVISORY_CRITIC_MODELS else "enforce"


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
    from synthtrials.tools.calibration import build_knowledge
    from synthtrials.tools.evidence import REASON_VALIDATOR_VERSION

    key = f"reasons:{config.thresholds.calibration}:{config.llm.model_label()}"
    saved = store.load_calibration(key)
    if saved is None or saved.get("validator") != REASON_VALIDATOR_VERSION:  # measured by older rules: again
        if say:
            say(f"measuring the validity of {config.llm.model_label()}'s reasons on a few draws (once per store and model)")
        validity = measure_reason_validity(llm(), store, config, build_knowledge(store, config.ground_on or []))
        saved = {"validity": round(validity, 3), "threshold": MIN_REASON_VALIDITY, "validator": REASON_VALIDATOR_VERSION}
        store.save_calibration(key, saved)
    return "llm" if saved["validity"] >= MIN_REASON_VALIDITY else "evidence"


def resolve_generation(config: GenerationConfig, store: TrialStore, say: SayFn | None = None,
                       llm: Callable[[], LLMClient] | None = None) -> GenerationConfig:
    """`config` with the grounding splits, the writer's output format, the critic's calibrated
    thresholds, the LLM critic's mode and the reasoner's mode settled for `store` and the model."""
    ground_on = list(config.ground_on or default_grounding_splits(store))
    grounding = grounding_filter(ground_on)
    ids = store.filter_ids(grounding)
    if not ids:
        counts = store.split_counts()
        raise ConfigError(f"--ground-on {' '.join(ground_on)}: the store has no real trials in that split "
                          f"(it has {', '.join(f'{n} {s}' for s, n in counts.items()) or 'none'})")
    draft = config.draft or DraftSpec.from_trials(store.get_many(ids))
    thresholds = config.thresholds
    if not thresholds.calibrated:
        calibration = load_or_calibrate(store, ground_on, say=say)
        thresholds = thresholds.model_copy(update={"calibrated": calibration.thresholds,
                                                   "calibration": calibration.key})
    settled = config.model_copy(update={"ground_on": ground_on, "draft": draft, "thresholds": thresholds,
                                        "llm_critic": config.llm_critic or default_llm_critic(config.llm)})
    return settled.model_copy(update={"reasoner": settle_reasoner(settled, store, llm, say)})
