"""bench_critic with more grounding trials: does the critic catch more phase II swaps when its
domain knowledge holds more trials (issue 20)?

The phase II swaps escape more than swaps among phase_I_train trials do, and one explanation is that
phase I train does not know phase II's conditions. This bench grounds a copy of the store on more
training trials (`--extra`, ingested as `train`; TOP's toy_train by default: 1,028 trials of phases 1
to 4, 169 of them already in phase_I_train) and runs bench_critic (deterministic critic, `--llm-n 0
--drafts 0`) on both stores with the same positives. Trials of every `--exclude` file are dropped
from the extra trials first: the bench's phase II positives and every TOP validation or test split,
so nothing held out grounds anything, and the store's own valid/test trials keep their split (a
trial keeps the strictest split it was ever given). The copy is recalibrated
(`synthtrials store calibrate`) and kept in `--out`.

    python benchmarks/bench_critic_more_grounding.py --store demo_out/store

Run with SYNTHTRIALS_EMBEDDING_PRECISION=float32 to compare with RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, TOP, print_table  # noqa: E402

HELD_OUT = ("phase_I_valid.csv", "phase_I_test.csv", "phase_II_valid.csv", "phase_III_valid.csv", "toy_valid.csv",
            "toy_test.csv")


def ids_of(path: Path) -> set[str]:
    with path.open(newline="") as handle:
        return {row["nctid"] for row in csv.DictReader(handle)}


def bench(store: Path) -> dict:
    subprocess.run([sys.executable, str(Path(__file__).parent / "bench_critic.py"), "--store", str(store),
                    "--llm-n", "0", "--drafts", "0"], check=True, stdout=subprocess.DEVNULL)
    return json.loads((OUT / "bench_critic.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--extra", type=Path, default=TOP / "toy_train.csv")
    parser.add_argument("--exclude", type=Path, nargs="*", default=[TOP / name for name in HELD_OUT])
    parser.add_argument("--out", type=Path, default=OUT / "store_more_grounding")
    args = parser.parse_args()

    held = set().union(*(ids_of(path) for path in args.exclude))
    with args.extra.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = [row for row in rows if row["nctid"] not in held]
    synthtrials = str(Path(sys.executable).with_name("synthtrials"))
    shutil.rmtree(args.out, ignore_errors=True)
    shutil.copytree(args.store, args.out)
    with tempfile.TemporaryDirectory() as folder:
        extra = Path(folder) / args.extra.name
        with extra.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(kept)
        subprocess.run([synthtrials, "ingest", str(extra), "--store", str(args.out), "--split", "train"], check=True)
    subprocess.run([synthtrials, "store", "calibrate", "--store", str(args.out)], check=True, stdout=subprocess.DEVNULL)

    base, more = bench(Path(args.store)), bench(args.out)
    grounding = {name: grounding_count(store) for name, store in (("base", Path(args.store)), ("more", args.out))}
    table = []
    for kind, row in base["kinds"].items():
        other = more["kinds"][kind]
        table.append([kind, row["n"], f"{row['correct']:.1%} [{row['ci95'][0]:.1%}, {row['ci95'][1]:.1%}]",
                      f"{other['correct']:.1%} [{other['ci95'][0]:.1%}, {other['ci95'][1]:.1%}]"])
    print(f"{args.extra.name}: {len(rows)} trials, {len(rows) - len(kept)} dropped as held out, {len(kept)} ingested as train")
    print_table(f"python benchmarks/bench_critic_more_grounding.py --store {args.store} --extra {args.extra}",
                ["kind", "trials", f"critic right, grounded on {grounding['base']} trials",
                 f"critic right, grounded on {grounding['more']} trials"], table)


def grounding_count(store: Path) -> int:
    """How many trials the store grounds on."""
    from synthtrials.tools.store.protocol import default_grounding_splits, grounding_filter
    from synthtrials.tools.store.trial_store import open_store

    opened = open_store(str(store), create=False)
    try:
        return len(opened.filter_ids(grounding_filter(default_grounding_splits(opened))))
    finally:
        opened.close()


if __name__ == "__main__":
    main()
