"""How steady the critic's calibration is, and whether it keeps its budget on trials it did not see.

The calibration (`tools.knowledge.calibration.calibrate`) scores every grounding trial leave-one-out
and its spoiled copies, then spends a budget of real rejections (5%) among the checks. Two ways of
spending it are compared, on scores computed once:
- `greedy` (calibration version 4): one greedy allocation on all grounding trials
  (`allocate_thresholds`), the joint rejection on those trials at 5%;
- `bagged, cross-fitted` (version 5, the one shipped): each score's median quantile over the greedy
  allocations of 25 bootstrap resamples, their raises above the floor scaled so that the
  cross-fitted joint rejection is 5%
  (`allocate_budget`).

Tables:
1. split halves: each way allocates on a random half of the grounding trials (with their spoiled
   copies) and is judged on the other half: real trials rejected and spoiled trials caught, the
   mean and standard deviation over `--halves` splits. This is what a calibration does on trials it
   did not see, which the budget is meant to bound.
2. bootstrap resamples: each way re-run on `--resamples` resamples of all grounding trials and applied
   to all of them; the spread of the real and spoiled rates says how much the critic moves with
   which trials happen to ground it. Per score, the spread of the quantiles is printed too.

    python benchmarks/bench_calibration_stability.py --store demo_out/store [--halves 10] [--resamples 20] [--seed 0]

Run with SYNTHTRIALS_EMBEDDING_PRECISION=float32 to compare with RESULTS.md's float32 tables.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

Scores = dict[str, np.ndarray]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--halves", type=int, default=10)
    parser.add_argument("--resamples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from synthtrials.tools.knowledge.calibration import (
        _rejected,
        allocate_thresholds,
        build_knowledge,
        calibration_scores,
        resampled,
    )
    from synthtrials.tools.knowledge.calibration import allocate_scores as allocate_budget  # versions 5-6
    from synthtrials.tools.store.protocol import default_grounding_splits
    from synthtrials.tools.store.trial_store import open_store

    store = open_store(args.store, create=False)
    knowledge = build_knowledge(store, default_grounding_splits(store))
    start = time.perf_counter()
    real, spoiled, copy_of = calibration_scores(knowledge)
    print(f"scored {len(knowledge.trials)} grounding trials and "
          f"{sum(len(next(iter(s.values()))) for s in spoiled.values())} spoiled copies in {time.perf_counter() - start:.0f} s")

    def subset(rows: np.ndarray) -> tuple[Scores, dict[str, Scores], dict[str, np.ndarray]]:
        """The real trials `rows` (repeats allowed), their spoiled copies, and where each one's copy is."""
        return resampled(real, spoiled, copy_of, rows)

    ways: dict[str, Callable[[Scores, dict[str, Scores], dict[str, np.ndarray]], tuple[dict, dict]]] = {
        "greedy (version 4)": lambda r, s, c: allocate_thresholds(r, s)[:2],
        "bagged, cross-fitted (version 5)": lambda r, s, c: allocate_budget(r, s, c)[:2],
    }

    def rates(thresholds: dict[str, float], rows: np.ndarray) -> dict[str, float]:
        r, s, _ = subset(rows)
        return {"real": float(_rejected(r, thresholds).mean()),
                **{kind: float(_rejected(scores, thresholds).mean()) for kind, scores in s.items()}}

    every = np.arange(len(knowledge.trials))
    rng = np.random.default_rng(args.seed)
    halves: dict[str, list[dict[str, float]]] = {way: [] for way in ways}
    seen: dict[str, list[dict[str, float]]] = {way: [] for way in ways}
    start = time.perf_counter()
    for _ in range(args.halves):
        order = rng.permutation(every)
        fit, judged = order[: len(order) // 2], order[len(order) // 2:]
        for way, allocate in ways.items():
            _, thresholds = allocate(*subset(fit))
            halves[way].append(rates(thresholds, judged))
            seen[way].append(rates(thresholds, fit))
    print(f"{args.halves} split halves in {time.perf_counter() - start:.0f} s")
    kinds = list(halves[next(iter(ways))][0])
    print()
    print("| allocated on one half, judged on | " + " | ".join(kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for way in ways:
        for label, runs in ((f"{way}: the other half", halves[way]), (f"{way}: its own half", seen[way])):
            print(f"| {label} | " + " | ".join(
                f"{np.mean([r[k] for r in runs]):.1%} ± {np.std([r[k] for r in runs]):.1%}" for k in kinds) + " |")

    start = time.perf_counter()
    spread: dict[str, list[dict[str, float]]] = {way: [] for way in ways}
    quantiles: dict[str, list[dict[str, float]]] = {way: [] for way in ways}
    full: dict[str, tuple[dict, dict]] = {way: allocate(*subset(every)) for way, allocate in ways.items()}
    for _ in range(args.resamples):
        drawn = rng.integers(0, len(every), len(every))
        for way, allocate in ways.items():
            q, thresholds = allocate(*subset(drawn))
            quantiles[way].append(q)
            spread[way].append(rates(thresholds, every))
    print(f"\n{args.resamples} bootstrap resamples in {time.perf_counter() - start:.0f} s")
    print()
    print("| allocation (rejects, on all grounding trials) | " + " | ".join(kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for way in ways:
        on_all = rates(full[way][1], every)
        print(f"| {way}: on all trials | " + " | ".join(f"{on_all[k]:.1%}" for k in kinds) + " |")
        for label, pick in (("5%", 5), ("median", 50), ("95%", 95)):
            print(f"| {way}: resamples {label} | "
                  + " | ".join(f"{np.percentile([r[k] for r in spread[way]], pick):.1%}" for k in kinds) + " |")
    print()
    print("| score | " + " | ".join(f"{way}: quantile on all trials | resamples 5%-95%" for way in ways) + " |")
    print("|---|" + "---|---|" * len(ways))
    for name in full[next(iter(ways))][0]:
        cells = []
        for way in ways:
            values = [q.get(name, np.nan) for q in quantiles[way]]
            cells += [f"{full[way][0].get(name, np.nan):.4f}",
                      f"{np.nanpercentile(values, 5):.4f}-{np.nanpercentile(values, 95):.4f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
