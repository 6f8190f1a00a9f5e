"""How many trials the content check's restated-criteria rule trips: real phase_I_train trials
(its false alarms on real data) and the accepted trials of a run folder.

    python benchmarks/bench_repeated_criteria.py [--run benchmarks/out/run_central]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, TOP, print_table  # noqa: E402
from synthtrials.scripts.demo import load_synthetic_or_empty  # noqa: E402
from synthtrials.tools.knowledge.checks import repeated_criteria  # noqa: E402
from synthtrials.tools.readers import read_trials  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", default=str(OUT / "run_central"), help="a run folder whose accepted trials to check")
    args = parser.parse_args()
    sets = {"real phase_I_train": read_trials([TOP / "phase_I_train.csv"]),
            f"accepted in {args.run}": load_synthetic_or_empty(Path(args.run))}
    rows = []
    for name, trials in sets.items():
        tripped = sum(repeated_criteria(t.eligibility.inclusion, t.eligibility.exclusion)
                      for t in trials if t.eligibility)
        rows.append([name, len(trials), tripped, f"{tripped / max(1, len(trials)):.1%}"])
    print_table("Content check: criteria that restate themselves", ["trials", "n", "tripped", "share"], rows)


if __name__ == "__main__":
    main()
