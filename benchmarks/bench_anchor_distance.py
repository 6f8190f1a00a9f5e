"""How close anchored trials are to their anchors beyond the fields the plan pins, and how close real grounding
trials are to each other there (what the critic's near-copy threshold is read against).

    python benchmarks/bench_anchor_distance.py --store /work/store_v6 [--run runs/v6_fix_s0 ...]

Prints two markdown tables."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from synthtrials.agents.critic import beyond_plan, copy_rendering
from synthtrials.tools.knowledge.checks import CriticThresholds, ngram_overlap
from synthtrials.tools.readers import read_trials
from synthtrials.tools.records.trial import render_for_classifier
from synthtrials.tools.store.protocol import TrialFilter
from synthtrials.tools.store.trial_store import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--run", type=Path, action="append", default=[])
    args = parser.parse_args()
    store = open_store(args.store, create=False)
    threshold = CriticThresholds().max_real_similarity
    n = CriticThresholds().ngram

    train = list(store.filter(TrialFilter(splits=frozenset({"train"}))))
    print(f"\n### Real train trials: cosine to the nearest other train trial ({len(train)} trials)\n")
    print("| rendering | median | 90th percentile | 99th percentile | share above the near-copy threshold |")
    print("|---|---|---|---|---|")
    for name, anchored in (("whole trial", False), ("beyond the plan's fields", True)):
        vectors = store.embeddings.embed_array([copy_rendering(t, anchored) for t in train])
        sims = vectors @ vectors.T
        np.fill_diagonal(sims, -1.0)
        nearest = sims.max(axis=1)
        q = np.quantile(nearest, [0.5, 0.9, 0.99])
        print(f"| {name} | {q[0]:.3f} | {q[1]:.3f} | {q[2]:.3f} | {(nearest > threshold).mean():.2%} (> {threshold}) |")

    if not args.run:
        return
    print("\n### Accepted anchored trials against their anchors, beyond the plan's fields\n")
    print(f"| run | trials | sharing any {n}-gram | largest {n}-gram share | cosine median | cosine largest |")
    print("|---|---|---|---|---|---|")
    for run in args.run:
        trials = read_trials([run / "trials.jsonl"])
        anchors = store.get_many([t.provenance["anchor"] for t in trials])
        overlaps = np.array([ngram_overlap(render_for_classifier(beyond_plan(t)), render_for_classifier(beyond_plan(a)), n)
                             for t, a in zip(trials, anchors)])
        vectors = store.embeddings.embed_array([copy_rendering(x, True) for pair in zip(trials, anchors) for x in pair])
        cosines = (vectors[0::2] * vectors[1::2]).sum(axis=1)
        print(f"| {run} | {len(trials)} | {int((overlaps > 0).sum())} | {overlaps.max():.1%} | "
              f"{np.median(cosines):.3f} | {cosines.max():.3f} |")


if __name__ == "__main__":
    main()
