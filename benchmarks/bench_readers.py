"""XML and JSON reader throughput on zips of 10,000 records made from the real XML / API v2 fixture.

Target: at least 300 records/s on one core, memory flat (the zip is streamed, never extracted).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, XML_FILE, peak_rss_mib, print_table  # noqa: E402
from synthtrials.tools.readers import iter_sources  # noqa: E402

N = int(os.environ.get("BENCH_RECORDS", "10000"))


def make_xml_zip(path: Path) -> None:
    template = XML_FILE.read_bytes()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(N):
            nct = f"NCT{10_000_000 + i:08d}"
            zf.writestr(f"{nct[:7]}xxxx/{nct}.xml", template.replace(b"NCT00000378", nct.encode()))


def make_json_zip(path: Path) -> None:
    study = json.loads((ROOT / "tests" / "fixtures" / "ctgov_v2_study.json").read_text())
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(N):
            nct = f"NCT{20_000_000 + i:08d}"
            study["protocolSection"]["identificationModule"]["nctId"] = nct
            zf.writestr(f"studies/{nct}.json", json.dumps(study))


def measure(path: Path) -> tuple[int, float, float, float]:
    start = time.perf_counter()
    count = 0
    rss_at_fifth = 0.0
    for item in iter_sources([path]):
        count += 1
        if count == N // 5:
            rss_at_fifth = peak_rss_mib()
    elapsed = time.perf_counter() - start
    return count, elapsed, rss_at_fifth, peak_rss_mib()


def main() -> None:
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    except (AttributeError, OSError):
        pass
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, maker in (("legacy XML", make_xml_zip), ("API v2 JSON", make_json_zip)):
            path = Path(tmp) / f"{name.split()[0]}.zip"
            maker(path)
            count, elapsed, rss_fifth, rss_end = measure(path)
            rows.append([name, count, f"{path.stat().st_size / 2**20:.1f}", elapsed, count / elapsed,
                         f"{rss_fifth:.0f}", f"{rss_end:.0f}"])
    print_table(f"Reader throughput, zip of {N} records, one core", [
        "format", "records", "zip MiB", "seconds", "records/s", f"peak RSS MiB at {N // 5}", f"peak RSS MiB at {N}"], rows)
    print("\ntarget: >= 300 records/s, memory flat")


if __name__ == "__main__":
    main()
