"""Ingest all of ../shared/data/top into a new local store, embeddings included (target < 60 s)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import TOP, peak_rss_mib, print_table  # noqa: E402
from synthtrials.tools.store.ingest import ingest  # noqa: E402
from synthtrials.tools.store.trial_store import open_store


def main() -> None:
    files = sorted(TOP.glob("*.csv"))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        store = open_store(Path(tmp) / "store")
        report = ingest(store, files)
        total = time.perf_counter() - start
        start = time.perf_counter()
        again = ingest(store, files)
        reingest = time.perf_counter() - start
        store.close()
    print_table("Ingest of ../shared/data/top (8 CSVs) into a new local store", ["step", "trials", "embedded", "seconds", "trials/s"], [
        ["first ingest", report.stored, report.embedded, total, report.stored / total],
        ["re-ingest (unchanged)", again.stored, again.embedded, reingest, again.stored / reingest],
    ])
    print(f"\npeak RSS {peak_rss_mib():.0f} MiB; target: first ingest under 60 s")


if __name__ == "__main__":
    main()
