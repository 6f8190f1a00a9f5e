"""Helpers for benchmark scripts: the real data folder and a plain table printer."""

from __future__ import annotations

import argparse
import os
import re
import resource
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SYNTHTRIALS_DATA", ROOT.parent / "shared" / "data")).resolve()
TOP = DATA / "top"
XML_FILE = DATA / "ctgov-xml" / "NCT00000378.xml"
OUT = ROOT / "benchmarks" / "out"


def fixed_draws(options):
    """Run exactly `options.n` draws (max_draws_factor 1) and return the run's summary, however many
    were accepted (the runner reports a shortfall as an error: here it is the measurement)."""
    from synthtrials.graphs.runner import run_generation
    from synthtrials.tools.errors import ConfigError
    from synthtrials.tools.run_folder import read_summary

    try:
        return run_generation(options)
    except ConfigError as exc:
        summary = read_summary(options.out)
        if summary is None:
            raise
        print(f"  ({exc})", flush=True)
        return summary


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    """A Markdown table (pastes straight into RESULTS.md)."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(_fmt(c) for c in row) + " |")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def normal_text(text: str) -> str:
    """Lowercased, punctuation as spaces: how the criteria benches compare texts."""
    return re.sub(r"\W+", " ", text.lower()).strip()


def trial_criteria(trial) -> list[str]:
    """A trial's inclusion and exclusion criteria, each `normal_text`."""
    e = trial.eligibility
    return [normal_text(c) for c in (e.inclusion + e.exclusion)] if e else []


def store_and_runs(doc: str):
    """The criteria benches' command line, `--store STORE --run RUN [--run ...]`: the opened store and the runs."""
    import argparse

    from synthtrials.tools.store.trial_store import open_store

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--run", type=Path, action="append", required=True)
    args = parser.parse_args()
    return open_store(args.store, create=False), args.run


def grounding_criteria_texts(store) -> dict[str, str]:
    """Each phase_I_train (grounding) trial's criteria, `normal_text`, joined by " | "."""
    from synthtrials.tools.store.protocol import grounding_filter

    return {t.nct_id: " | ".join(trial_criteria(t)) for t in store.filter(grounding_filter(["train"]))}


def phase2_arguments(doc: str) -> argparse.Namespace:
    """The arguments of a bench that judges bench_critic's phase II trials: --store, --n (the positives) and
    --seed, as bench_critic draws them."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--n", type=int, default=150, help="phase II positives, as bench_critic")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def critic_rejects(store, splits: list[str], knowledge):
    """A function of trials -> which of them the store's calibrated critic rejects (numpy bools), as `check` judges
    them: the benches that ask whether a score adds to the critic compare with it."""
    import numpy as np
    from synthtrials.agents.critic import check_trials
    from synthtrials.tools.knowledge.calibration import load_or_calibrate
    from synthtrials.tools.records.writer_format import DraftSpec
    from synthtrials.tools.store.protocol import grounding_filter

    thresholds = load_or_calibrate(store, splits, knowledge).critic_thresholds()
    fields = DraftSpec.from_trials(store.filter(grounding_filter(splits))).fields

    def rejects(trials: list) -> np.ndarray:
        verdicts = check_trials(trials, store=store, splits=splits, knowledge=knowledge, thresholds=thresholds,
                                fields=fields)
        return np.array([v.verdict == "reject" for v in verdicts])

    return rejects


def train_pair_epoch(model, optimiser, batches) -> float:
    """One epoch of a one-logit cross-encoder on (encoded pairs, labels) batches, binary cross-entropy; the mean
    loss (bench_cross_encoder, bench_criterion_cross_encoder)."""
    import torch

    model.train()
    total, seen = 0.0, 0
    for encoded, y in batches:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(**encoded).logits.squeeze(-1), y)
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        total, seen = total + loss.item() * len(y), seen + len(y)
    return total / max(seen, 1)


def held_out_spoils(trials, test: list[int], unrelated) -> dict[str, list]:
    """The per-criterion benches' spoiled copies of the held-out trials (rows `test` of `trials`), each with a donor
    `unrelated(i, test)` from the same fold (None: no copy): one off-topic criterion inserted (no copy where the
    donor has no criterion about its own conditions, `off_topic_criteria`: before stop 54 one of its other
    criteria, one that names none of its conditions; drawn as before, so the other kinds are unchanged), one sentence from
    outside medicine inserted, the donor's conditions (bench_criterion_cross_encoder, bench_criterion_fit)."""
    import random

    from synthtrials.tools.knowledge.calibration import (
        foreign_sentences,
        off_topic_criteria,
        with_inserted_criterion,
        with_off_topic_criterion,
    )

    rng = random.Random(1)
    foreign = list(foreign_sentences())
    spoiled: dict[str, list] = {"off_topic": [], "foreign": [], "swap_cond": []}
    for i in test:
        j = unrelated(i, test)
        if j is None:
            continue
        off = with_off_topic_criterion(trials[i], trials[j], rng)
        if off_topic_criteria(trials[i], trials[j]):
            spoiled["off_topic"].append(off)
        spoiled["foreign"].append(with_inserted_criterion(trials[i], foreign, rng))
        spoiled["swap_cond"].append(trials[i].model_copy(update={"conditions": trials[j].conditions}))
    return spoiled
