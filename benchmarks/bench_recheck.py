"""A finished run's drafts judged by two calibrations of the critic (issue 20: "the central run's accepted
trials re-checked: the share now rejected, with random examples of what the new checks reject").

Each draw of the run ends with a draft: the accepted trial, or the last draft of a rejected draw; on the
way, the critic judged one draft per round (read from the thread's checkpoints). Each draft is scored
once (`DomainKnowledge.scores`, as the critique node scores a draft) and judged by the calibrated
checks of
- version 6: every score on its own threshold (`tools.knowledge.calibration.allocate_scores`, the
  whole 5% budget, read from the store's grounding trials now), and
- the store's calibration (version 7: the scores one by one on part of the budget, the joint score
  `coherence_joint` on the rest).
With `--baseline-store`, the first is that store's own calibration instead of version 6 (e.g. the same store
calibrated without the cross-encoder, against one calibrated with it: `store calibrate --cross-encoder`). With
`--baseline-calibration KEY`, it is the calibration saved under KEY in the baseline store (default: --store), e.g.
one of an earlier calibration version, whose thresholds and joint score read today's scores (a score it has no
threshold for is left out, as the critic of its version did not have it).
Only the calibrated checks differ between the two; the copy, privacy and leakage checks are the same
and are left out here. Printed: the 2 x 2 table of the two verdicts for the accepted trials and for the
rejected draws' last drafts and for every draft judged, which checks of the store's calibration reject
drafts version 6 passes, and random examples of those (seeded).

    python benchmarks/bench_recheck.py --run runs/v7_s0 --store STORE [--baseline-store STORE0] [--examples 4] [--seed 0]
        [--score coherence_criterion_fit] [--baseline-calibration KEY]

`--score NAME` also counts the drafts that one calibrated score of the store's calibration rejects on its own
threshold, whatever the other checks say, and prints random examples of them with the trial's conditions (what a new
check rejects in a writer's output).

Run with SYNTHTRIALS_EMBEDDING_PRECISION=float32 to compare with RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run_drafts(run: Path):
    """Per draw of the run: (plan index, the run's verdict, its final draft, every distinct draft the critic
    judged in it, in order), read from the thread's checkpoint history."""
    from synthtrials.graphs.runner import open_checkpointer, started_threads, thread_id
    from synthtrials.graphs.state import GenerationState

    checkpointer = open_checkpointer(run)
    try:
        out = []
        for index in started_threads(checkpointer):
            judged: dict[str, object] = {}
            final = None
            history = checkpointer.list({"configurable": {"thread_id": thread_id(index)}})
            for saved in reversed(list(history)):  # oldest first: `final` ends as the newest state
                values = {k: v for k, v in saved.checkpoint["channel_values"].items() if not k.startswith("__")}
                if "target" not in values:
                    continue
                final = GenerationState.model_validate(values)
                if final.draft is not None and final.log and final.log[-1].node == "critique":
                    judged.setdefault(final.draft.model_dump_json(), final.draft)
            if final is not None and final.draft is not None and final.verdict in ("accept", "reject"):
                out.append((index, final.verdict, final.draft, list(judged.values())))
        return out
    finally:
        checkpointer.conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--baseline-store", default=None,
                        help="judge the drafts first by this store's calibration (default: version 6 on --store)")
    parser.add_argument("--baseline-calibration", default=None,
                        help="judge the drafts first by the calibration saved under this key in the baseline store "
                             "(--baseline-store, default --store), e.g. an earlier version's")
    parser.add_argument("--examples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score", default=None, help="also count and show the drafts this calibrated score rejects")
    args = parser.parse_args()

    from synthtrials.tools.knowledge.calibration import (
        CALIBRATION_VERSION,
        Calibration,
        allocate_scores,
        build_knowledge,
        calibration_scores,
        load_or_calibrate,
    )
    from synthtrials.tools.knowledge.checks import check_domain, with_joint
    from synthtrials.tools.store.protocol import default_grounding_splits
    from synthtrials.tools.store.trial_store import open_store

    store = open_store(args.store, create=False)
    splits = default_grounding_splits(store)
    knowledge = build_knowledge(store, splits)
    calibration = load_or_calibrate(store, splits, knowledge, say=print)
    new = calibration.critic_thresholds()
    drawn = run_drafts(args.run)
    every = [draft for _, _, _, judged in drawn for draft in judged]
    knowledge.embed_with_sections([draft for _, _, draft, _ in drawn] + every)
    if args.baseline_store or args.baseline_calibration:
        base_store = open_store(args.baseline_store, create=False) if args.baseline_store else store
        base_knowledge = build_knowledge(base_store, splits) if args.baseline_store else knowledge
        if args.baseline_calibration:
            saved = base_store.load_calibration(args.baseline_calibration)
            if saved is None:
                sys.exit(f"{args.baseline_store or args.store}: no calibration saved under {args.baseline_calibration}")
            base = Calibration.model_validate(saved).critic_thresholds()
        else:
            base = load_or_calibrate(base_store, splits, base_knowledge).critic_thresholds()
        if args.baseline_store:
            base_knowledge.embed_with_sections([draft for _, _, draft, _ in drawn] + every)
        old_name = f"{args.baseline_store or args.store}'s calibration {base.calibration}"

        def old_verdict(draft) -> list:
            return check_domain(with_joint(base_knowledge.scores(draft), base.joint), base.calibrated)
    else:
        _, version6, _, _ = allocate_scores(*calibration_scores(knowledge))
        old_name = "version 6 on the same store"

        def old_verdict(draft) -> list:
            return check_domain(knowledge.scores(draft), version6)

    def verdicts(draft) -> tuple[list, list]:
        return old_verdict(draft), check_domain(with_joint(knowledge.scores(draft), new.joint), new.calibrated)

    table: Counter = Counter()
    failing: Counter = Counter()
    only_new: list[tuple[int, str, str, list[str]]] = []
    for index, verdict, draft, judged in drawn:
        old_problems, new_problems = verdicts(draft)
        table[verdict, bool(old_problems), bool(new_problems)] += 1
        for each in judged:
            old_each, new_each = verdicts(each)
            table["judged", bool(old_each), bool(new_each)] += 1
            if new_each and not old_each:
                failing.update({p.check for p in new_each})
                only_new.append((index, verdict, each.nct_id, [p.message for p in new_each]))

    print(f"\n### {args.run}: {len(drawn)} draws, {len(every)} drafts judged; calibration {calibration.key} (version "
          f"{CALIBRATION_VERSION}) against {old_name}, the calibrated checks only\n")
    first = "the baseline" if args.baseline_store or args.baseline_calibration else "version 6"
    print(f"| drafts | n | both pass | {first} rejects only | the store's calibration rejects only | both reject |")
    print("|---|---|---|---|---|---|")
    for key, label in (("accept", "accepted trials (final drafts of accepted draws)"),
                       ("reject", "final drafts of rejected draws"), ("judged", "every draft the critic judged")):
        cells = [table[key, old, new_] for old, new_ in ((False, False), (True, False), (False, True), (True, True))]
        print(f"| {label} | {sum(cells)} | " + " | ".join(str(c) for c in cells) + " |")
    print(f"\nchecks of the store's calibration that reject drafts {first} passes: "
          + (", ".join(f"{check} {n}" for check, n in failing.most_common()) or "none"))
    for index, verdict, trial_id, messages in random.Random(args.seed).sample(only_new, min(args.examples, len(only_new))):
        print(f"- draw {index} ({trial_id}, {'accepted' if verdict == 'accept' else 'rejected'} in the end): "
              + "; ".join(messages))
    if args.score:
        if args.score not in new.calibrated:
            raise SystemExit(f"--score {args.score}: not a calibrated score of {args.store} "
                             f"({', '.join(sorted(new.calibrated))})")
        one = {args.score: new.calibrated[args.score]}
        counts: Counter = Counter()
        caught: list[tuple[int, str, object, list[str]]] = []
        for index, verdict, draft, judged in drawn:
            counts[verdict, "n"] += 1
            counts[verdict, "rejected"] += bool(check_domain(knowledge.scores(draft), one))
            for each in judged:
                problems = check_domain(knowledge.scores(each), one)
                counts["judged", "n"] += 1
                counts["judged", "rejected"] += bool(problems)
                if problems:
                    caught.append((index, verdict, each, [p.message for p in problems]))
        print(f"\n`{args.score}` alone (threshold {one[args.score]:.3f}): "
              + ", ".join(f"{counts[key, 'rejected']} of {counts[key, 'n']} {label}" for key, label in (
                  ("accept", "accepted trials"), ("reject", "final drafts of rejected draws"),
                  ("judged", "drafts judged"))))
        for index, verdict, draft, messages in random.Random(args.seed).sample(caught, min(args.examples, len(caught))):
            print(f"- draw {index} ({'accepted' if verdict == 'accept' else 'rejected'} in the end), conditions "
                  f"{'; '.join(draft.conditions)[:80]!r}: " + "; ".join(messages))

if __name__ == "__main__":
    main()
