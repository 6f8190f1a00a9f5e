"""Which swapped trials can a fit score see at all? The critic's swap kinds split by whether the
criteria name the conditions they were written for (issue 20).

A swapped trial (`unrelated_conditions`: another trial's conditions over these criteria;
`unrelated_eligibility`: another trial's criteria under these conditions) shows its error in its text
only where the criteria say what disease they are about. Criteria that name no word of their own
trial's conditions ("healthy adults aged 18-55", "ECOG 0-1, adequate organ function") fit most
conditions, and a swap that moves them is close to what real trials do. This bench splits each swap
kind by that flag: the criteria name a word (5 letters or more) of the conditions of the trial they
came from, as `tools.knowledge.calibration.off_topic_criteria` reads words.

- The grounding split: the calibration's spoiled phase_I_train trials, judged by the store's
  thresholds on their leave-one-trial-out scores (`allocate_budget`, as `store calibrate` reads them).
- bench_critic's phase II trials (the same seeded 150 positives and spoils), judged by the critic
  (`check_trials`). These trials tune nothing here: the bench only counts.

Printed: for each set, the share of real trials whose criteria name their conditions, and for each
swap kind the share caught where the criteria named their origin's conditions and where they did not.

    python benchmarks/bench_swap_detectability.py --store demo_out/store

Run with SYNTHTRIALS_EMBEDDING_PRECISION=float32 to compare with RESULTS.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_critic import doc_sentences, phase2_positives, spoil  # noqa: E402
from common import phase2_arguments, print_table  # noqa: E402


def names_conditions(criteria: list[str], conditions: list[str]) -> bool:
    from synthtrials.tools.knowledge.calibration import _words

    return bool(_words(conditions) & _words(criteria))


def criteria_of(trial) -> list[str]:
    return list(trial.eligibility.inclusion) + list(trial.eligibility.exclusion) if trial.eligibility else []


def split_rates(caught: np.ndarray, named: np.ndarray) -> list[str]:
    def rate(mask: np.ndarray) -> str:
        return f"{caught[mask].mean():.1%} (n={mask.sum()})" if mask.any() else "-"

    return [rate(named), rate(~named), f"{caught.mean():.1%}"]


def main() -> None:
    args = phase2_arguments(__doc__)

    from synthtrials.agents.critic import check_trials
    from synthtrials.tools.knowledge.calibration import (
        _rejected,
        allocate_budget,
        build_knowledge,
        calibration_scores,
        load_or_calibrate,
        spoiled_grounding_trials,
    )
    from synthtrials.tools.records.writer_format import DraftSpec
    from synthtrials.tools.store.protocol import default_grounding_splits, grounding_filter
    from synthtrials.tools.store.trial_store import open_store

    store = open_store(args.store, create=False)
    splits = default_grounding_splits(store)
    knowledge = build_knowledge(store, splits)
    by_id = {t.nct_id: t for t in knowledge.trials}
    rows = []

    # the grounding split: the calibration's spoils, the thresholds it allocates
    real, spoiled, spoiled_of = calibration_scores(knowledge)
    spoiled_trials = spoiled_grounding_trials(knowledge)
    budget = allocate_budget(real, spoiled, spoiled_of)
    thresholds, spoiled = budget.thresholds, budget.spoiled  # with the joint score's cross-fitted values
    own = np.array([names_conditions(criteria_of(t), t.conditions) for t in knowledge.trials if t.eligibility and t.conditions])
    rows.append(["phase_I_train (grounding)", "real trials: criteria name their conditions", f"{own.mean():.1%} (n={len(own)})", "", ""])
    for kind in ("unrelated_conditions", "unrelated_eligibility"):
        caught = _rejected(spoiled[kind], thresholds)
        trials = spoiled_trials[kind]
        if kind == "unrelated_conditions":  # the trial's own criteria, another trial's conditions
            named = [names_conditions(criteria_of(t), by_id[t.nct_id].conditions) for t in trials]
        else:  # the trial's own conditions, another's criteria: did those name the other's conditions?
            origin = {tuple(criteria_of(o)): o for o in knowledge.trials}
            named = [names_conditions(criteria_of(t), origin[tuple(criteria_of(t))].conditions) for t in trials]
        rows.append(["phase_I_train (grounding)", kind, *split_rates(caught, np.asarray(named))])

    # bench_critic's phase II positives and spoils, judged by the critic
    positives, why_stopped = phase2_positives(store, args.n, args.seed)
    kinds = spoil(positives, args.seed, why_stopped, doc_sentences(), store.embeddings.embed_array)
    calibration = load_or_calibrate(store, splits, knowledge)
    critic = calibration.critic_thresholds()
    spec = DraftSpec.from_trials(store.filter(grounding_filter(splits)))
    own = np.array([names_conditions(criteria_of(t), t.conditions) for t in positives if t.eligibility and t.conditions])
    rows.append(["phase II (bench_critic)", "real trials: criteria name their conditions", f"{own.mean():.1%} (n={len(own)})", "", ""])
    origin = {tuple(criteria_of(p)): p for p in positives}
    for kind in ("unrelated_conditions", "unrelated_eligibility"):
        trials = kinds[kind]
        verdicts = check_trials(trials, store=store, splits=splits, knowledge=knowledge, thresholds=critic,
                                fields=spec.fields)
        caught = np.array([v.verdict == "reject" for v in verdicts])
        if kind == "unrelated_conditions":
            named = [names_conditions(criteria_of(t), p.conditions) for t, p in zip(trials, positives)]
        else:
            named = [names_conditions(criteria_of(t), origin[tuple(criteria_of(t))].conditions) for t in trials]
        rows.append(["phase II (bench_critic)", kind, *split_rates(caught, np.asarray(named))])

    print_table(f"python benchmarks/bench_swap_detectability.py --store {args.store}", ["trials", "kind", "caught where the criteria name their origin's conditions",
                 "caught where they name none", "caught, all"], rows)


if __name__ == "__main__":
    main()
