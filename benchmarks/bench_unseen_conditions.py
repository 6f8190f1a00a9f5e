"""The critic on conditions its grounding split does not hold, measured on the grounding split alone (issue 20).

bench_critic's phase II trials escape the swap checks more than spoiled phase_I_train trials do, and
the reason given is that phase I train does not know their conditions. This bench reproduces that
situation without reading a phase II trial: the grounding trials are clustered by their conditions'
centroid (k-means, `--groups`), and each cluster's real trials and their spoiled copies
(`spoiled_grounding_trials`, as the calibration makes them) are scored by the domain knowledge of the
other clusters only, so neither their conditions nor their neighbours' are known.

Rows: the thresholds of the shipped calibration (read leave-one-trial-out, `allocate_budget`) judged
on the ordinary leave-one-out scores and on the held-out-cluster scores; then thresholds allocated on
the held-out-cluster scores themselves (a calibration for unseen conditions), judged both ways. The
quantiles of that second allocation are printed too.

    python benchmarks/bench_unseen_conditions.py --store demo_out/store [--groups 10]

Run with SYNTHTRIALS_EMBEDDING_PRECISION=float32 to compare with RESULTS.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from sklearn.cluster import KMeans
    from synthtrials.tools.knowledge.calibration import (
        allocate_scores as allocate_budget,  # calibration versions 5-6's allocation
        _rejected,
        build_knowledge,
        calibration_scores,
        score_matrix,
        spoiled_grounding_trials,
    )
    from synthtrials.tools.knowledge.domain import DomainKnowledge
    from synthtrials.tools.store.protocol import default_grounding_splits
    from synthtrials.tools.store.trial_store import open_store

    start = time.perf_counter()
    store = open_store(args.store, create=False)
    knowledge = build_knowledge(store, default_grounding_splits(store))
    real, spoiled, spoiled_of = calibration_scores(knowledge)  # embeds the spoiled copies' new sections too
    spoiled_trials = spoiled_grounding_trials(knowledge)  # the same copies, in the same order (seeded)

    model = knowledge.coherence
    clusters = KMeans(args.groups, n_init=4, random_state=args.seed).fit_predict(model.conditions)
    group = dict(zip(model.ids, (int(c) for c in clusters)))
    rng = np.random.default_rng(args.seed)
    for trial in knowledge.trials:  # trials without conditions or criteria: a random cluster
        group.setdefault(trial.nct_id, int(rng.integers(args.groups)))
    print(f"command: python benchmarks/bench_unseen_conditions.py --store {args.store} --groups {args.groups}")
    print(f"{len(knowledge.trials)} grounding trials; cluster sizes {sorted(np.bincount(list(group.values())).tolist())}")

    held_real = {name: np.full(len(values), np.nan) for name, values in real.items()}
    held_spoiled = {kind: {name: np.full(len(values), np.nan) for name, values in scores.items()}
                    for kind, scores in spoiled.items()}

    def fill(target: dict[str, np.ndarray], rows: list[int], scores: dict[str, np.ndarray]) -> None:
        for name, values in scores.items():
            if name in target:
                target[name][rows] = values

    for g in range(args.groups):
        # the other clusters' knowledge; every section's vector comes from the whole split's (no re-encoding)
        others = DomainKnowledge([t for t in knowledge.trials if group[t.nct_id] != g], knowledge.vectors,
                                 encode=knowledge.vectors)
        rows = [i for i, t in enumerate(knowledge.trials) if group[t.nct_id] == g]
        fill(held_real, rows, score_matrix(others, trials=[knowledge.trials[i] for i in rows]))
        for kind, trials in spoiled_trials.items():
            rows = [i for i, t in enumerate(trials) if group[t.nct_id] == g]
            fill(held_spoiled[kind], rows, score_matrix(others, trials=[trials[i] for i in rows]))

    kinds = list(spoiled)
    print(f"\n| thresholds read from | judged on | real rejected | {' | '.join(kinds)} |")
    print("|---|---|---|" + "---|" * len(kinds))

    def row(read_from: str, thresholds: dict[str, float], judged: str, scores: dict[str, np.ndarray],
            spoiled_scores: dict[str, dict[str, np.ndarray]]) -> None:
        print(f"| {read_from} | {judged} | {_rejected(scores, thresholds).mean():.1%} | "
              + " | ".join(f"{_rejected(spoiled_scores[k], thresholds).mean():.1%}" for k in kinds) + " |")

    _, shipped, _, _ = allocate_budget(real, spoiled, spoiled_of)
    unseen_quantiles, unseen, _, cross_fitted = allocate_budget(held_real, held_spoiled, spoiled_of)
    for label, thresholds in (("leave-one-trial-out (shipped)", shipped), ("held-out clusters", unseen)):
        row(label, thresholds, "leave-one-trial-out", real, spoiled)
        row(label, thresholds, "held-out clusters", held_real, held_spoiled)
    print(f"\nallocation on held-out clusters: cross-fitted real rejection {cross_fitted:.1%}; quantiles "
          + ", ".join(f"{name} {q:.4f}" for name, q in unseen_quantiles.items()))
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
