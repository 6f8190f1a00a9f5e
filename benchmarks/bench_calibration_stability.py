"""How steady the critic's calibration is: its thresholds over bootstrap resamples of the grounding trials.

The calibration (`tools.knowledge.calibration.calibrate`) scores every grounding trial leave-one-out
and its spoiled copies, then spends a budget of real rejections (5%) greedily among the checks
(`allocate_thresholds`). This bench scores once, then re-runs the allocation on `--resamples`
bootstrap resamples of the grounding trials (each trial drawn with its spoiled copies) and prints,
per score, the threshold on all trials and the spread of the resamples' thresholds (as quantiles of
the real scores, which are comparable between scores), and for each allocation the share of real
and spoiled grounding trials it rejects on all trials. A wide spread means the thresholds, and the
critic's figures on unseen trials (bench_critic), move with which trials happen to ground it.

    python benchmarks/bench_calibration_stability.py --store demo_out/store [--resamples 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--resamples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from synthtrials.tools.knowledge.calibration import (
        _rejected,
        allocate_thresholds,
        build_knowledge,
        score_matrix,
        spoiled_grounding_trials,
    )
    from synthtrials.tools.store.protocol import default_grounding_splits
    from synthtrials.tools.store.trial_store import open_store

    store = open_store(args.store, create=False)
    knowledge = build_knowledge(store, default_grounding_splits(store))
    start = time.perf_counter()
    real = score_matrix(knowledge)
    spoiled_trials = spoiled_grounding_trials(knowledge)
    knowledge.embed_with_sections([t for trials in spoiled_trials.values() for t in trials])
    spoiled = {kind: score_matrix(knowledge, trials=trials) for kind, trials in spoiled_trials.items()}
    print(f"scored {len(knowledge.trials)} grounding trials and "
          f"{sum(len(t) for t in spoiled_trials.values())} spoiled copies in {time.perf_counter() - start:.0f} s")
    ids = [t.nct_id for t in knowledge.trials]
    spoiled_rows = {kind: {trial.nct_id: row for row, trial in enumerate(trials)} for kind, trials in spoiled_trials.items()}

    def caught(thresholds: dict[str, float]) -> dict[str, float]:
        return {"real": float(_rejected(real, thresholds).mean()),
                **{kind: float(_rejected(scores, thresholds).mean()) for kind, scores in spoiled.items()}}

    full_quantiles, full_thresholds, _ = allocate_thresholds(real, spoiled)
    rng = np.random.default_rng(args.seed)
    resampled: list[dict[str, float]] = []
    rates: list[dict[str, float]] = []
    start = time.perf_counter()
    for _ in range(args.resamples):
        drawn = rng.integers(0, len(ids), len(ids))
        real_b = {name: values[drawn] for name, values in real.items()}
        spoiled_b = {}
        for kind, scores in spoiled.items():
            rows = np.asarray([spoiled_rows[kind][ids[i]] for i in drawn if ids[i] in spoiled_rows[kind]], dtype=int)
            spoiled_b[kind] = {name: values[rows] for name, values in scores.items()}
        quantiles, thresholds, _ = allocate_thresholds(real_b, spoiled_b)
        resampled.append(quantiles)
        rates.append(caught(thresholds))
    print(f"{args.resamples} allocations on resamples in {time.perf_counter() - start:.0f} s")
    print()
    print("| score | quantile on all trials | resamples: median | 5% | 95% | resamples that raise it above the floor |")
    print("|---|---|---|---|---|---|")
    for name in full_quantiles:
        values = np.asarray([q.get(name, np.nan) for q in resampled])
        raised = float((values > min(values.min(), full_quantiles[name]) + 1e-12).mean())
        print(f"| {name} | {full_quantiles[name]:.3f} | {np.nanmedian(values):.3f} | {np.nanpercentile(values, 5):.3f} | "
              f"{np.nanpercentile(values, 95):.3f} | {raised:.0%} |")
    print()
    full = caught(full_thresholds)
    kinds = list(full)
    print("| allocation (rejects, on all grounding trials) | " + " | ".join(kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    print("| on all trials | " + " | ".join(f"{full[k]:.1%}" for k in kinds) + " |")
    for label, pick in (("resamples: 5%", 5), ("resamples: median", 50), ("resamples: 95%", 95)):
        print(f"| {label} | " + " | ".join(f"{np.percentile([r[k] for r in rates], pick):.1%}" for k in kinds) + " |")


if __name__ == "__main__":
    main()
