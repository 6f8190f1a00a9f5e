"""A design measured for issue 20 and not kept: judging each inclusion criterion by the disease words it
names, learnt from which condition words and criterion words share grounding trials.

The critic's `coherence_criterion` (a sentence vector's fit to the conditions) catches about a quarter of
trials with one real inclusion criterion of an unrelated disease inserted. Words say it more plainly
("myeloma" in a breast cancer trial), so this probe reads them. The vocabulary is the words (four
letters or more, a final plural "s" dropped) the conditions of at least `--min-trials` grounding trials
use. For each grounding trial with conditions and inclusion criteria it counts which vocabulary words its
conditions use (v) and its inclusion criteria use (w). A criterion word that the trial's own conditions
lack is scored by the log-lift

    log[ P(w in the inclusion criteria | v in the conditions) / P(w in the inclusion criteria) ]

additively smoothed toward P(w) (one pseudo-trial), taken over the trial's condition words v by one of
four aggregations (max, mean, IDF-weighted mean, the most specific v). A trial scores its worst word.
Everything is leave-one-trial-out, and only the grounding split is read: real grounding trials against
the calibration's spoiled grounding trials (`tools.knowledge.calibration.spoiled_grounding_trials`),
each threshold a quantile of the real scores.

    python benchmarks/bench_condition_mentions.py --store demo_out/store
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table  # noqa: E402
from synthtrials.tools.knowledge.calibration import (  # noqa: E402
    build_knowledge,
    spoiled_grounding_trials,
)
from synthtrials.tools.store.protocol import default_grounding_splits  # noqa: E402
from synthtrials.tools.store.trial_store import open_store  # noqa: E402

_WORD = re.compile(r"[a-z][a-z0-9-]{3,}")
AGGREGATIONS = ("max", "mean", "idf", "specific")


def words(text: str) -> set[str]:
    out = set()
    for word in _WORD.findall(text.lower()):
        word = word.strip("-")
        if len(word) > 4 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        if len(word) >= 4:
            out.add(word)
    return out


def union(texts) -> set[str]:
    return set().union(*(words(t) for t in texts))


def inclusion(trial) -> list[str]:
    return [c for c in trial.eligibility.inclusion if c.strip()] if trial.eligibility else []


class MentionCounts:
    """Condition words and the vocabulary's words in inclusion criteria, counted per grounding trial."""

    def __init__(self, trials, min_trials: int) -> None:
        condition_words = {t.nct_id: union(t.conditions) for t in trials if t.conditions and inclusion(t)}
        frequency = Counter(w for ws in condition_words.values() for w in ws)
        self.vocabulary = frozenset(w for w, n in frequency.items() if n >= min_trials)
        self.conditions = {tid: frozenset(ws & self.vocabulary) for tid, ws in condition_words.items()}
        self.criteria = {t.nct_id: frozenset(union(inclusion(t)) & self.vocabulary) for t in trials
                         if t.nct_id in condition_words}
        self.trials = len(self.conditions)
        self.with_condition = Counter(v for ws in self.conditions.values() for v in ws)
        self.in_criteria = Counter(w for ws in self.criteria.values() for w in ws)
        self.together = Counter((v, w) for tid in self.conditions for v in self.conditions[tid] for w in self.criteria[tid])

    def fit(self, word: str, condition_words, exclude: str, aggregation: str) -> float | None:
        own_conditions, own_criteria = self.conditions.get(exclude, frozenset()), self.criteria.get(exclude, frozenset())
        n = self.trials - (exclude in self.conditions)
        p_word = (self.in_criteria[word] - (word in own_criteria) + 1) / (n + 2)
        lifts, specificity = [], []
        for v in condition_words:
            n_v = self.with_condition[v] - (v in own_conditions)
            if n_v <= 0:
                continue
            together = self.together[(v, word)] - (v in own_conditions and word in own_criteria)
            lifts.append(math.log((together + p_word) / (n_v + 1) / p_word))
            specificity.append(math.log((n + 1) / n_v))
        if not lifts:
            return None
        if aggregation == "max":
            return max(lifts)
        if aggregation == "mean":
            return float(np.mean(lifts))
        if aggregation == "idf":
            return float(np.average(lifts, weights=specificity))
        return lifts[int(np.argmax(specificity))]

    def score(self, trial, aggregation: str) -> float:
        own = union(trial.conditions)
        known = own & self.vocabulary
        if not inclusion(trial) or not known:
            return float("nan")
        worst = 0.0
        for criterion in inclusion(trial):
            for word in (words(criterion) & self.vocabulary) - own:
                fit = self.fit(word, known, trial.nct_id, aggregation)
                if fit is not None and fit < worst:
                    worst = fit
        return worst


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--min-trials", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quantiles", type=float, nargs="+", default=[0.02, 0.04])
    args = parser.parse_args()
    start = time.perf_counter()
    store = open_store(args.store, create=False)
    knowledge = build_knowledge(store, default_grounding_splits(store))
    spoiled = spoiled_grounding_trials(knowledge)
    rows = []
    for min_trials in args.min_trials:
        counts = MentionCounts(knowledge.trials, min_trials)
        for aggregation in AGGREGATIONS:
            real = np.array([counts.score(t, aggregation) for t in knowledge.trials])
            kinds = {k: np.array([counts.score(t, aggregation) for t in v]) for k, v in spoiled.items()}
            for q in args.quantiles:
                threshold = np.nanquantile(real, q)
                rejected = {k: float((np.nan_to_num(v, nan=np.inf) < threshold).mean()) for k, v in kinds.items()}
                rows.append([aggregation, min_trials, len(counts.vocabulary), q,
                             f"{(np.nan_to_num(real, nan=np.inf) < threshold).mean():.1%}",
                             *(f"{rejected[k]:.1%}" for k in spoiled)])
    print_table(f"Disease words in inclusion criteria, leave-one-trial-out on {len(knowledge.trials)} grounding trials "
                f"({time.perf_counter() - start:.0f} s)",
                ["aggregation over condition words", "vocabulary: conditions of >= N trials", "words", "quantile",
                 "real rejected", *spoiled], rows)


if __name__ == "__main__":
    main()
