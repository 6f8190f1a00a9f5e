"""What the critic's revisions did in a finished run: for each check that sent a draft back, what the next draft
of the same trial was (accepted, sent back or rejected for the same check, or for another one), read from the
run's checkpoints (the traces `synthtrials trace` shows).

    python benchmarks/bench_revisions.py --run runs/v6_pin2_s0 [--run runs/OTHER ...]

Prints one markdown table per run."""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

from synthtrials.graphs.trace import list_trials, trial_trace


def revision_outcomes(run: Path) -> tuple[dict[str, Counter], int]:
    """Per check that asked for a revision: the next critique's outcome; and the number of threads read."""
    outcomes: dict[str, Counter] = defaultdict(Counter)
    threads = list_trials(run)
    for listed in threads:
        steps = trial_trace(run, listed.plan_index).steps
        critiques = [s for s in steps if s.node == "critique"]
        for critique, after in zip(critiques, critiques[1:]):
            if critique.wrote.get("verdict") != "revise":
                continue
            verdict, failed = after.wrote.get("verdict"), set(after.wrote.get("failed_checks", []))
            for check in critique.wrote.get("failed_checks", []):
                outcome = "accepted" if verdict == "accept" else (
                    "the same check again" if check in failed else "another check")
                outcomes[check][outcome] += 1
    return outcomes, len(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, action="append", required=True)
    args = parser.parse_args()
    for run in args.run:
        outcomes, threads = revision_outcomes(run)
        print(f"\n### Revisions in {run} ({threads} threads)\n")
        print("| check that sent the draft back | revisions | next draft accepted | the same check fails again "
              "| another check fails |")
        print("|---|---|---|---|---|")
        for check, counts in sorted(outcomes.items(), key=lambda kv: -sum(kv[1].values())):
            total = sum(counts.values())
            print(f"| {check} | {total} | " + " | ".join(
                f"{counts[k]} ({counts[k] / total:.0%})" for k in ("accepted", "the same check again", "another check"))
                  + " |")


if __name__ == "__main__":
    main()
