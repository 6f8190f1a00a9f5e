"""The encoder's arithmetic (float32 or bfloat16 autocast) and the calibration's chunked scores, timed.

all-MiniLM-L6-v2 embeds the store's trials and sections at ingest, the critic's drafts, the report's
and the evaluation's trials. `TransformerEmbeddings` runs it under bfloat16 autocast where the CPU
multiplies bfloat16 natively (AMX or AVX512-BF16), float32 elsewhere
(SYNTHTRIALS_EMBEDDING_PRECISION overrides). For each workload: seconds in float32 and bfloat16
(best of `--repeats`, after a warm-up), the speed-up, and the lowest cosine between a text's two
vectors. With `--store`, the calibration's scores of `--trials` grounding trials one by one
(`DomainKnowledge.scores`) and in chunks (`scores_of`: one matrix product per chunk and pair of
section kinds), and the largest difference between the two.

    python benchmarks/bench_embedding_precision.py [--store demo_out/store] [--trials 300] [--repeats 2]
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import TOP  # noqa: E402


def workloads() -> dict[str, tuple[list[str], bool]]:
    """name -> (texts, whether the call is a small one: one draft's sections, on one thread)."""
    from synthtrials.tools.records.trial import render_for_embedding
    from synthtrials.tools.readers import read_trials

    with (TOP / "phase_I_train.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    criteria = [line.strip() for row in rows for line in row["criteria"].splitlines() if line.strip()][:2000]
    trials = [render_for_embedding(t) for t in read_trials([TOP / "phase_I_train.csv"])[:1000]]
    return {"2,000 criteria (ingest's sections)": (criteria, False),
            "1,000 rendered trials (ingest's trials)": (trials, False),
            "36 sections of one draft (the critic)": (criteria[:36], True)}


def timed(encoder, texts: list[str], repeats: int):
    encoder.embed_array(texts[:50])  # warm-up
    best, vectors = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        vectors = encoder.embed_array(texts)
        best = min(best, time.perf_counter() - start)
    return best, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default=None, help="a store with section vectors: time the calibration's scores")
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from synthtrials.tools.hardware import native_bfloat16
    from synthtrials.tools.store.embeddings import TransformerEmbeddings

    print(f"native bfloat16 on this CPU: {native_bfloat16('cpu')}")
    full, half = TransformerEmbeddings(precision="float32"), TransformerEmbeddings(precision="bfloat16")
    print("| workload | texts | float32 s | bfloat16 s | speed-up | lowest cosine |")
    print("|---|---|---|---|---|---|")
    for name, (texts, small) in workloads().items():
        repeats = args.repeats * (20 if small else 1)
        seconds_full, vectors_full = timed(full, texts, repeats)
        seconds_half, vectors_half = timed(half, texts, repeats)
        cosine = float((vectors_full * vectors_half).sum(axis=1).min())
        print(f"| {name} | {len(texts)} | {seconds_full:.3f} | {seconds_half:.3f} | "
              f"{seconds_full / seconds_half:.2f}x | {cosine:.6f} |")
    if args.store:
        from synthtrials.tools.knowledge.calibration import build_knowledge
        from synthtrials.tools.store.protocol import default_grounding_splits
        from synthtrials.tools.store.trial_store import open_store

        store = open_store(args.store, create=False)
        knowledge = build_knowledge(store, default_grounding_splits(store))
        trials = knowledge.trials[:args.trials]
        excludes = [t.nct_id for t in trials]
        start = time.perf_counter()
        alone = [knowledge.scores(t, exclude=e) for t, e in zip(trials, excludes)]
        one_by_one = time.perf_counter() - start
        start = time.perf_counter()
        together = list(knowledge.scores_of(trials, excludes))
        chunked = time.perf_counter() - start
        gap = max((abs(a[n].score - b[n].score) for a, b in zip(alone, together) for n in a
                   if a[n].score is not None and b[n].score is not None), default=0.0)
        print()
        print("| calibration scores | trials | one by one s | in chunks s | speed-up | largest difference |")
        print("|---|---|---|---|---|---|")
        print(f"| leave-one-out, {args.store} | {len(trials)} | {one_by_one:.2f} | {chunked:.2f} | "
              f"{one_by_one / chunked:.2f}x | {gap:.1e} |")


if __name__ == "__main__":
    main()
