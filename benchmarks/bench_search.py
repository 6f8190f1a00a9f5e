"""Filtered semantic search latency on the real store and on 100,000 replicated trials.

The 100,000-trial store replicates the real trials (ids rewritten, vectors copied with small
noise so they stay distinct). Target: p95 under 50 ms at 100,000 on the local store.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import TOP, peak_rss_mib, print_table  # noqa: E402
from synthtrials.tools.store.embeddings import get_embeddings  # noqa: E402
from synthtrials.tools.store.ingest import ingest  # noqa: E402
from synthtrials.tools.store.protocol import (
    TrialFilter,
    eligible,
)
from synthtrials.tools.store.trial_store import open_store
from synthtrials.tools.records.trial import render_for_embedding  # noqa: E402

N_BIG = int(os.environ.get("BENCH_TRIALS", "100000"))
QUERIES = 200


def replicate(real_store, target_path: Path, n: int):
    rng = np.random.default_rng(0)
    real = real_store.filter()
    base = np.stack([np.asarray(real_store.vectorstore._matrix[real_store.vectorstore.row_of(t.nct_id)]) for t in real])
    big = open_store(target_path)
    batch = 10_000
    for start in range(0, n, batch):
        trials, vectors = [], []
        for i in range(start, min(start + batch, n)):
            src = real[i % len(real)]
            trials.append(src.model_copy(update={"nct_id": f"NCT{90_000_000 + i:08d}"}))
            vectors.append(base[i % len(real)] + rng.normal(0, 0.02, base.shape[1]).astype(np.float32))
        big.upsert(trials, vectors=np.stack(vectors))
    return big


def latencies(store, query_vectors, filters) -> list[float]:
    out = []
    for i, vector in enumerate(query_vectors):
        flt = filters[i % len(filters)]
        start = time.perf_counter()
        hits = store.search_by_vector(vector, k=5, flt=flt)
        out.append((time.perf_counter() - start) * 1000)
        assert hits or flt is not None
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        real_store = open_store(Path(tmp) / "real")
        ingest(real_store, sorted(TOP.glob("*.csv")))
        sample = real_store.filter()[:QUERIES]
        texts = [render_for_embedding(t) for t in sample]
        encoder = get_embeddings()
        start = time.perf_counter()
        query_vectors = [encoder.embed_query(t) for t in texts]
        embed_ms = (time.perf_counter() - start) * 1000 / len(texts)
        drugs = [e.intervention for e in eligible(real_store, k=3)]
        filters = [TrialFilter(label=1), TrialFilter(label=0, phase="phase 1"),
                   TrialFilter(intervention=drugs[0], label=1), TrialFilter(intervention=drugs[5], label=0),
                   TrialFilter(condition="breast cancer")]
        rows = []
        start = time.perf_counter()
        big = replicate(real_store, Path(tmp) / "big", N_BIG)
        build_s = time.perf_counter() - start
        for name, store in (("real (TOP)", real_store), (f"replicated x{N_BIG // real_store.count()}", big)):
            for label, flts in (("no filter", [None]), ("filters (label / phase / intervention / condition)", filters)):
                ms = np.asarray(latencies(store, query_vectors, flts))
                rows.append([name, store.count(), label, float(np.percentile(ms, 50)), float(np.percentile(ms, 95)),
                             float(ms.max())])
        print_table("Semantic search latency, k=5, query vectors precomputed (ms)",
                    ["store", "trials", "filter", "p50 ms", "p95 ms", "max ms"], rows)
        print(f"\nquery embedding: {embed_ms:.1f} ms per query (add to the above for text queries); "
              f"building the {N_BIG}-trial store took {build_s:.0f} s; peak RSS {peak_rss_mib():.0f} MiB")
        print("target: p95 under 50 ms at 100,000 trials")


if __name__ == "__main__":
    main()
