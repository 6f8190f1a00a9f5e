"""Two coherence scores that need no neighbours, measured on the grounding split alone (issue 20).

Phase II trials escape the swap checks because phase I train does not know their conditions, so the
learnt coherence scores fall to the average there. Two scores that read only the trial itself:
- `condition_mention`: for each condition, its closest inclusion criterion (MiniLM cosine), averaged
  over the conditions (a swapped condition list or swapped eligibility names other diseases);
- `criterion_disease_margin`: for each inclusion criterion, its closeness to the trial's own
  conditions minus its closeness to any grounding trial's condition (leave-one-out), the worst
  criterion deciding (a criterion that names another disease).
Each is scored on the grounding trials and their spoiled copies (`calibration_scores`, as the
calibration makes them). Printed per spoiled kind: its AUC against the real trials, the share caught
at the score's 2% real quantile alone, and the share caught there that the shipped calibration's
checks miss (version 5 when RESULTS.md's first table was made, version 6 since); then the
calibration's allocation (`allocate_budget`) with the score added. Nothing of phase
II is read: whether to add a score is decided on these figures.

    python benchmarks/bench_knowledge_free_scores.py --store demo_out/store

Run with SYNTHTRIALS_EMBEDDING_PRECISION=float32 to compare with RESULTS.md.
"""

from __future__ import annotations

import argparse

import numpy as np

QUANTILE = 0.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    args = parser.parse_args()

    from sklearn.metrics import roc_auc_score
    from synthtrials.tools.knowledge.calibration import (
        allocate_scores as allocate_budget,  # calibration versions 5-6's allocation
        _rejected,
        build_knowledge,
        calibration_scores,
        spoiled_grounding_trials,
    )
    from synthtrials.tools.knowledge.domain import _TrialSections
    from synthtrials.tools.records.trial import Trial
    from synthtrials.tools.store.protocol import default_grounding_splits
    from synthtrials.tools.store.trial_store import open_store

    store = open_store(args.store, create=False)
    knowledge = build_knowledge(store, default_grounding_splits(store))
    real, spoiled, spoiled_of = calibration_scores(knowledge)  # embeds the spoiled copies' sections too
    spoiled_trials = spoiled_grounding_trials(knowledge)  # the same copies, in the same order (seeded)

    def scores(trial: Trial) -> tuple[float, float]:
        sections = _TrialSections(knowledge, trial, trial.nct_id)
        conditions, criteria = sections.vectors.get("condition"), sections.vectors.get("criterion")
        if conditions is None or criteria is None or not len(conditions) or not sections.inclusion:
            return np.nan, np.nan
        inclusion = criteria[:sections.inclusion]
        to_own = inclusion @ conditions.T
        to_any = sections.sims("criterion", "condition")[:sections.inclusion].max(axis=1)
        return float(to_own.max(axis=0).mean()), float((to_own.max(axis=1) - to_any).min())

    names = ("condition_mention", "criterion_disease_margin")
    new_real = np.asarray([scores(t) for t in knowledge.trials])
    new_spoiled = {kind: np.asarray([scores(t) for t in trials]) for kind, trials in spoiled_trials.items()}
    _, thresholds, _, _ = allocate_budget(real, spoiled, spoiled_of)
    missed = {kind: ~_rejected(values, thresholds) for kind, values in spoiled.items()}

    kinds = list(spoiled)
    print(f"| score | {' | '.join(kinds)} |")
    print("|---|" + "---|" * len(kinds))
    for column, name in enumerate(names):
        values = new_real[:, column]
        limit = np.nanquantile(values, QUANTILE)
        cells = []
        for kind in kinds:
            theirs = new_spoiled[kind][:, column]
            both = np.isfinite(values), np.isfinite(theirs)
            auc = roc_auc_score(np.r_[np.ones(both[0].sum()), np.zeros(both[1].sum())],
                                np.r_[values[both[0]], theirs[both[1]]])
            caught = np.nan_to_num(theirs, nan=np.inf) < limit
            cells.append(f"AUC {auc:.2f}, {caught.mean():.0%} at {QUANTILE:.0%}, {(caught & missed[kind]).mean():.0%} beyond the gate")
        print(f"| {name} | " + " | ".join(cells) + " |")

    print()
    print(f"| allocation | real | {' | '.join(kinds)} | the score's quantile |")
    print("|---|---|" + "---|" * len(kinds) + "---|")
    _, _, rate, _ = allocate_budget(real, spoiled, spoiled_of)
    print(f"| the gate | {rate:.1%} | " + " | ".join(f"{1 - missed[k].mean():.1%}" for k in kinds) + " | - |")
    for column, name in enumerate(names):
        with_real = real | {name: new_real[:, column]}
        with_spoiled = {kind: values | {name: new_spoiled[kind][:, column]} for kind, values in spoiled.items()}
        quantiles, limits, rate, _ = allocate_budget(with_real, with_spoiled, spoiled_of)
        print(f"| the gate + {name} | {rate:.1%} | "
              + " | ".join(f"{_rejected(with_spoiled[k], limits).mean():.1%}" for k in kinds)
              + f" | {quantiles[name]:.4f} |")


if __name__ == "__main__":
    main()
