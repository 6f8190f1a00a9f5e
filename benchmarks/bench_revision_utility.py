"""Do revised drafts carry less outcome signal than first drafts? A finished run's accepted trials split by the
critique round that accepted them (read from the run's checkpoints): the trials revised at least once, against
random subsets of the same size of the trials accepted at once, each trained on alone (TF-IDF, like for like:
the real training data's field set) and scored on the real test set. The same subsets' `plan_only` controls
(evals/ladder.py: a real grounding trial of the same drug, given the synthetic label) say whether a difference
comes from which targets needed revising rather than from what the revisions wrote.

    python benchmarks/bench_revision_utility.py --run runs/v6_fix_s0 --run runs/v6_fix_s1 [--subsets 20]

Several runs are pooled (their accepted trials together) after one row each."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
from common import TOP, print_table
from sklearn.metrics import roc_auc_score

from synthtrials.evals.classifiers import TfidfClassifier
from synthtrials.evals.data import labels_of, load_labelled, load_synthetic
from synthtrials.evals.ladder import controls
from synthtrials.graphs.trace import list_trials, trial_trace
from synthtrials.tools.records.fields import field_set
from synthtrials.tools.records.trial import Trial, render_for_classifier


def acceptance_rounds(run: Path) -> dict[str, int]:
    """Accepted synthetic id -> the critique round that accepted it (0: the first draft)."""
    rounds = {}
    for listed in list_trials(run):
        if listed.verdict != "accept" or not listed.trial_id:
            continue
        critiques = [s for s in trial_trace(run, listed.plan_index).steps if s.node == "critique"]
        rounds[listed.trial_id] = len(critiques) - 1
    return rounds


class Scorer:
    """TSTR ROC-AUC of a training set on the real test set, like for like."""

    def __init__(self, train: list[Trial], test: list[Trial]) -> None:
        self.fields = field_set(train)
        self.grounding = train
        self.test_texts = [render_for_classifier(t, self.fields) for t in test]
        self.test_labels = np.array(labels_of(test))

    def tstr(self, trials: list[Trial]) -> float:
        model = TfidfClassifier().fit([render_for_classifier(t, self.fields) for t in trials], labels_of(trials))
        return float(roc_auc_score(self.test_labels, model.predict_proba(self.test_texts)[:, 1]))

    def plan_only(self, trials: list[Trial], seed: int) -> float:
        return self.tstr(controls(trials, self.grounding, seed).sets["plan_only"])


def compare(name: str, trials: list[Trial], rounds: dict[str, int], scorer: Scorer, subsets: int) -> list[object]:
    accepted = [t for t in trials if t.nct_id in rounds]
    revised = [t for t in accepted if rounds[t.nct_id] > 0]
    first = [t for t in accepted if rounds[t.nct_id] == 0]
    rng = random.Random(0)
    draws = [rng.sample(first, len(revised)) for _ in range(subsets)]
    first_scores = np.array([scorer.tstr(d) for d in draws])
    first_plan = np.array([scorer.plan_only(d, seed) for seed, d in enumerate(draws)])
    revised_score = scorer.tstr(revised)
    revised_plan = np.mean([scorer.plan_only(revised, seed) for seed in range(subsets)])
    below = float(np.mean(first_scores < revised_score))
    return [name, len(first), len(revised), f"{first_scores.mean():.3f} ± {first_scores.std():.3f}",
            f"{revised_score:.3f}", f"{below:.0%}", f"{first_plan.mean():.3f}", f"{revised_plan:.3f}",
            f"{revised_score - revised_plan - (first_scores - first_plan).mean():+.3f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, action="append", required=True)
    parser.add_argument("--real-train", type=Path, default=TOP / "phase_I_train.csv")
    parser.add_argument("--real-test", type=Path, default=TOP / "phase_I_test.csv")
    parser.add_argument("--subsets", type=int, default=20, help="random first-draft subsets (and control seeds)")
    args = parser.parse_args()
    scorer = Scorer(load_labelled(args.real_train), load_labelled(args.real_test))
    rows = []
    pooled_trials: list[Trial] = []
    pooled_rounds: dict[str, int] = {}
    for run in args.run:
        trials, rounds = load_synthetic(run), acceptance_rounds(run)
        rows.append(compare(str(run), trials, rounds, scorer, args.subsets))
        pooled_trials += trials
        pooled_rounds |= rounds
    if len(args.run) > 1:
        rows.append(compare("pooled", pooled_trials, pooled_rounds, scorer, args.subsets))
    print_table("TSTR (TF-IDF) of accepted trials by the round that accepted them",
                ["run", "accepted at once", "accepted after a revision", "TSTR, random at-once subsets of that size",
                 "TSTR, revised", "at-once subsets below revised", "plan_only, at-once subsets",
                 "plan_only, revised", "(revised - plan_only) - (at once - plan_only)"], rows)


if __name__ == "__main__":
    main()
