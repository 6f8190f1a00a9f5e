"""Where a finished run's written criteria come from: each accepted trial's eligibility criteria, matched against
the grounding trials' criteria. A writer that restates its grounding data copies criteria of its drug's real trials
(what the `echo` control holds); a writer that adds nothing of its own writes criteria no real trial has.

    python benchmarks/bench_criteria_echo.py --store STORE --run runs/v6_noleak_s0 [--run ...]

A criterion counts as copied where its first 40 characters (lowercased, punctuation as spaces; criteria shorter
than 20 characters are left out) occur in a criterion of the trials named; "shown" means the examples the writer's
prompt held (provenance), "drug" every grounding trial of the target's drug and label, "any" every grounding trial.
Beside each run, the same for the real trials its trials stand for (their anchors), each matched against the other
grounding trials only: how much real trials of a drug share their criteria."""

from __future__ import annotations

from statistics import median

from common import grounding_criteria_texts, print_table, store_and_runs, trial_criteria as criteria

from synthtrials.evals.data import load_synthetic
from synthtrials.tools.store.protocol import grounding_filter

KEY_CHARS = 40
MIN_CHARS = 20


def main() -> None:
    store, runs = store_and_runs(__doc__)
    grounding = grounding_filter(["train"])
    text_of = grounding_criteria_texts(store)
    everything = " || ".join(text_of.values())
    drug_pools: dict[tuple[str, int], tuple[list[str], str]] = {}  # the ids of a drug's trials of a label, their text

    def row(name: str, matched: list[list[tuple[bool, bool, bool]]]) -> list:
        """`matched`: per trial, per criterion, whether it is found in the examples shown, in the drug's trials of
        the label and in any grounding trial."""
        n = max(1, sum(len(trial) for trial in matched))
        shares = [sum(found[j] for trial in matched for found in trial) / n for j in range(3)]
        return [name, len(matched), median(len(trial) for trial in matched) if matched else 0, n,
                *(f"{share:.1%}" for share in shares), f"{1 - shares[2]:.1%}"]

    rows = []
    for run in runs:
        written: list[list[tuple[bool, bool, bool]]] = []
        anchors: list[list[tuple[bool, bool, bool]]] = []
        for trial in load_synthetic(run):
            target = trial.provenance.get("target") or {}
            drug, label = target.get("intervention"), trial.label
            if drug is None or label is None:
                continue
            if (drug, label) not in drug_pools:
                ids = store.filter_ids(grounding.narrowed(intervention=drug, label=label))
                drug_pools[(drug, label)] = ids, " || ".join(text_of.get(i, "") for i in ids)
            pool, drug_text = drug_pools[(drug, label)]
            shown = " || ".join(text_of.get(i, "") for i in trial.provenance.get("examples") or [])
            keys = [c[:KEY_CHARS] for c in criteria(trial) if len(c) >= MIN_CHARS]
            written.append([(key in shown, key in drug_text, key in everything) for key in keys])
            anchor = trial.provenance.get("anchor")
            if anchor in text_of:  # the real trial, matched against every other grounding trial
                own = text_of[anchor]
                others = " || ".join(text_of.get(i, "") for i in pool if i != anchor)
                anchors.append([(key in shown, key in others, everything.count(key) > own.count(key))
                                for key in (c[:KEY_CHARS] for c in own.split(" | ") if len(c) >= MIN_CHARS)])
        rows.append(row(f"{run}: written", written))
        if anchors:
            rows.append(row(f"{run}: their anchors (real)", anchors))
    print_table("Where the accepted trials' criteria come from (first 40 characters found in grounding criteria)",
                ["run", "trials", "criteria per trial (median)", "criteria", "in the examples shown",
                 "in the drug's trials of the label", "in any grounding trial", "in none"], rows)


if __name__ == "__main__":
    main()
