"""Which real trials the critic's plain checks reject (issue 20: real trials kept).

The plain checks are the ones no calibration sets: leakage (outcome statements), privacy (NCT ids,
e-mail addresses, phone numbers, web addresses, names) and plausibility (phase, enrollment, conditions,
content). On a real trial, each problem they find is either a right rejection for a synthetic trial (a
real criterion that names an NCT id or a web address) or a false alarm, which rejects the same text in a
synthetic trial and, under the anchored plan, every draft of an anchor that holds it. Status and
why-stopped are removed first, as the critic's positives in bench_critic have them removed.

Printed: per TOP file, the number of trials, and for each problem (its message up to the first quote)
how many trials it rejects, up to three of their NCT ids and the first one's message.

    python benchmarks/bench_plain_checks.py [--files phase_I_train.csv phase_II_valid.csv]
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict

from common import TOP
from synthtrials.tools.knowledge.checks import check_leakage, check_plausibility, check_privacy
from synthtrials.tools.readers import read_trials
from synthtrials.tools.records.fields import field_set


def problem_kind(message: str) -> str:
    """A problem's message without what it quotes: "the text states the outcome ('...')" -> one kind."""
    return re.split(r"[('\[]", message, maxsplit=1)[0].strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", nargs="+", default=["phase_I_train.csv", "phase_II_valid.csv"],
                        help="TOP files to read (default: the grounding split and bench_critic's positives)")
    args = parser.parse_args()
    print("| file | trials | check | problem | trials rejected | NCT ids | the first one's message |")
    print("|---|---|---|---|---|---|---|")
    for name in args.files:
        trials = read_trials([TOP / name])
        fields = field_set(trials)  # what the critic requires of a trial grounded on this file
        found: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for trial in trials:
            real = trial.model_copy(update={"overall_status": None, "why_stopped": None})
            problems = check_leakage(real) + check_privacy(real) + check_plausibility(real, fields)
            for problem in problems:
                hits = found[(problem.check, problem_kind(problem.message))]
                if trial.nct_id not in {nct_id for nct_id, _ in hits}:  # trials, not problems, are counted
                    hits.append((trial.nct_id, problem.message))
        if not found:
            print(f"| {name} | {len(trials)} | - | none | 0 | | |")
        for (check, kind), hits in sorted(found.items(), key=lambda item: -len(item[1])):
            ids = ", ".join(nct_id for nct_id, _ in hits[:3])
            first = hits[0][1][:100].replace("|", "/")
            print(f"| {name} | {len(trials)} | {check} | {kind[:60]} | {len(hits)} ({len(hits) / len(trials):.1%}) | {ids} | "
                  f"{first} |")


if __name__ == "__main__":
    main()
