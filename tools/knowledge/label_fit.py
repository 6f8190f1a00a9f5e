"""Label consistency (the LAMBADA recipe, Anaby-Tavor et al. 2020): keep a label-conditioned
generation only when a classifier trained on the real data agrees with its label.

`LabelFit` is TF-IDF + logistic regression fit on the grounding trials (the same text rendering as
the evaluation's classifier). Its threshold is calibrated on out-of-fold predictions: the lowest
probability of their own label that it allows rejects at most `max_real_rejection` (5%) of the
real grounding trials. A draft whose probability of its intended label falls below it fails the
check `label_fit`. Optional (`--label-fit`), off by default: see benchmarks/RESULTS.md.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.records.trial import Trial, render_for_classifier

#: fewer labelled grounding trials of either label cannot calibrate a threshold out of fold
MIN_TRIALS_PER_LABEL = 10


class LabelFit:
    """P(intended label | trial text), with a threshold calibrated on the grounding trials (scikit-learn's
    fit / predict conventions: `fit(trials)`, then `label_probability(trials, labels)` and `agrees`)."""

    def __init__(self, fields: Collection[str] | None = None, max_real_rejection: float = 0.05, folds: int = 5,
                 seed: int = 0) -> None:
        self.fields = tuple(fields) if fields is not None else None
        self.max_real_rejection = max_real_rejection
        self.folds = folds
        self.seed = seed

    def _pipeline(self) -> Pipeline:
        return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                             LogisticRegression(max_iter=2000, random_state=self.seed))

    def _texts(self, trials: Sequence[Trial]) -> list[str]:
        return [render_for_classifier(t, self.fields) for t in trials]

    def fit(self, trials: Sequence[Trial]) -> LabelFit:
        labelled = [t for t in trials if t.label in (0, 1)]
        y = np.array([int(t.label) for t in labelled])  # type: ignore[arg-type]
        if min(int((y == 0).sum()), int((y == 1).sum()), 10 ** 9) < MIN_TRIALS_PER_LABEL:
            raise ConfigError(f"label_fit needs at least {MIN_TRIALS_PER_LABEL} grounding trials of each label "
                              f"(has {int((y == 1).sum())} successes, {int((y == 0).sum())} failures)")
        texts = self._texts(labelled)
        folds = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
        out_of_fold = cross_val_predict(self._pipeline(), texts, y, cv=folds, method="predict_proba")[:, 1]
        own = np.where(y == 1, out_of_fold, 1 - out_of_fold)
        self.threshold_ = float(np.quantile(own, self.max_real_rejection))
        self.real_rejection_ = float(np.mean(own < self.threshold_))
        self.pipeline_ = self._pipeline().fit(texts, y)
        self.n_trials_ = len(labelled)
        return self

    def label_probability(self, trials: Sequence[Trial], labels: Sequence[int]) -> np.ndarray:
        """Per trial, the classifier's probability of the given label."""
        success = self.pipeline_.predict_proba(self._texts(trials))[:, 1]
        return np.where(np.asarray(labels) == 1, success, 1 - success)

    def agrees(self, trials: Sequence[Trial], labels: Sequence[int]) -> np.ndarray:
        """Per trial, whether the classifier finds its label at least as likely as the threshold allows."""
        return self.label_probability(trials, labels) >= self.threshold_
