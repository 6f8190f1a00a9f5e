"""How often a finished anchored run showed its anchor to the writer: accepted trials whose reasons or whose critic
feedback (the texts the writer's prompts held beside the examples, read from provenance) quote a criterion of the
trial's anchor, and how many of the trials hold such a criterion themselves. The anchor is never to be shown
(issue 18); this counts what runs made before the reasoner's evidence and the feedback left it out did.

    python benchmarks/bench_anchor_exposure.py --store STORE --run runs/v6_rev3_s0 [--run ...]

A quote counts where its first 40 characters (lowercased, punctuation as spaces) occur in the anchor's criteria and
in no other grounding trial's (text that other trials write too is not the anchor's own)."""

from __future__ import annotations

import re

from common import grounding_criteria_texts, normal_text as normal, print_table, store_and_runs, trial_criteria as criteria

from synthtrials.evals.data import load_synthetic

QUOTE = re.compile(r"'([^']{20,})")


def main() -> None:
    store, runs = store_and_runs(__doc__)
    text_of = grounding_criteria_texts(store)
    everything = " || ".join(text_of.values())
    rows = []
    for run in runs:
        synthetic = load_synthetic(run)
        anchored = in_reasons = in_feedback = in_trial = 0
        for trial in synthetic:
            anchor_id = trial.provenance.get("anchor")
            if anchor_id not in text_of:
                continue
            anchored += 1
            own = text_of[anchor_id]

            def anchors_own(text: str) -> bool:
                key = normal(text)[:40]
                return len(key) >= 20 and key in own and everything.count(key) == own.count(key)

            reasons = trial.provenance.get("reasons") or []
            feedback = [p for c in trial.provenance.get("critiques") or [] for p in c.get("problems") or []]
            in_reasons += any(anchors_own(q) for r in reasons for q in QUOTE.findall(r))
            in_feedback += any(anchors_own(q) for p in feedback for q in QUOTE.findall(p))
            in_trial += any(len(c) >= 40 and anchors_own(c) for c in criteria(trial))
        rows.append([str(run), len(synthetic), anchored, in_reasons, in_feedback, in_trial])
    store.close()
    print_table("Anchored trials whose writer was shown a criterion of the anchor",
                ["run", "accepted trials", "anchored", "reasons quote the anchor", "feedback quotes the anchor",
                 "the trial holds a criterion of the anchor"], rows)


if __name__ == "__main__":
    main()
