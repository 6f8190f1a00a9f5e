"""One score over all the critic's calibrated scores: a logistic model of "reads like a real trial".

The calibrated checks each compare one score with its own threshold. A swapped section often lowers
several coherence and typicality scores a little at once without pushing any of them past its
threshold; a weighted sum sees it. `JointScore` is that sum: a logistic regression of real grounding
trials against their spoiled copies (`tools.knowledge.calibration.spoiled_grounding_trials`, all kinds
but those the calibration leaves to single scores: `NOT_IN_JOINT`) on the
other scores, each standardised, a missing score (one that does not apply to the trial) counted at
the median of the trials it was fitted on. Its value is the log-odds of "real" (higher: more like a
real trial), so its threshold reads like any other score's. Its weights are stored with the store's
calibration (plain numbers, no pickle), and each verdict names the score that pulls the trial down
most and that score's worst section.

Measured on phase_I_train's spoiled copies (benchmarks/bench_joint_score.py, RESULTS.md "Calibration
version 7"): with the checks one by one spending part of the budget and the joint score the rest, the
critic catches both swapped kinds 9-11 points more than version 6's allocation at the same 5% of real
trials, 13-16 points on grounding trials the calibration did not see.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, Field
from synthtrials.tools.knowledge.domain import SectionScore

#: the joint score's name among the calibrated scores
JOINT = "coherence_joint"


class JointScore(BaseModel):
    """A fitted logistic model over named scores: `value(x) = intercept + sum(weights * (x - means) / scales)`,
    a score that does not apply taken at its median."""

    names: list[str]
    medians: list[float]
    means: list[float]
    scales: list[float]
    weights: list[float] = Field(description="per standardised score, toward 'real'")
    intercept: float

    @classmethod
    def fit(cls, names: Sequence[str], real: np.ndarray, spoiled: Sequence[np.ndarray]) -> JointScore:
        """Real trials' score rows (NaN: does not apply) against each spoiled kind's rows; the real trials weigh
        as much as all spoiled kinds together, and each kind as much as another."""
        from sklearn.linear_model import LogisticRegression

        spoiled = [rows for rows in spoiled if len(rows)]
        x = np.vstack([real, *spoiled])
        medians = np.nanmedian(x, axis=0)
        medians = np.where(np.isfinite(medians), medians, 0.0)
        filled = np.where(np.isfinite(x), x, medians)
        means, scales = filled.mean(axis=0), filled.std(axis=0)
        scales = np.where(scales > 0, scales, 1.0)
        weights = np.concatenate([np.full(len(real), 1.0 / len(real))]
                                 + [np.full(len(rows), 1.0 / (len(spoiled) * len(rows))) for rows in spoiled])
        labels = np.concatenate([np.ones(len(real))] + [np.zeros(len(rows)) for rows in spoiled])
        model = LogisticRegression(max_iter=5000)
        model.fit((filled - means) / scales, labels, sample_weight=weights * len(weights))
        return cls(names=list(names), medians=medians.tolist(), means=means.tolist(), scales=scales.tolist(),
                   weights=model.coef_[0].tolist(), intercept=float(model.intercept_[0]))

    def _standardised(self, x: np.ndarray) -> np.ndarray:
        medians, means, scales = (np.asarray(v) for v in (self.medians, self.means, self.scales))
        return (np.where(np.isfinite(x), x, medians) - means) / scales

    def values(self, x: np.ndarray) -> np.ndarray:
        """The joint score of each row of `x` (columns in `names` order, NaN where a score does not apply)."""
        return self.intercept + self._standardised(np.atleast_2d(x)) @ np.asarray(self.weights)

    def row(self, scores: Mapping[str, SectionScore]) -> np.ndarray:
        return np.asarray([np.nan if (s := scores.get(n)) is None or s.score is None else s.score for n in self.names])

    def score(self, scores: Mapping[str, SectionScore]) -> SectionScore:
        """The joint score of one trial's scores; its section and kind are those of the score that pulls it down
        most (its weight times its standardised value, the lowest, among the scores of positive weight), which
        names the trial's worst section."""
        x = self.row(scores)
        value = float(self.values(x)[0])
        weights = np.asarray(self.weights)
        # a score with a negative weight (collinear with others) pulls down where it is high: it names no bad section
        pulls = np.where(np.isfinite(x) & (weights > 0), self._standardised(x[None, :])[0] * weights, np.inf)
        if not np.isfinite(pulls).any():
            return SectionScore(value)
        by = self.names[int(np.argmin(pulls))]
        return SectionScore(value, scores[by].section, scores[by].kind, by=by)
