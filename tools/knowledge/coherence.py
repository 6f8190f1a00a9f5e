"""Coherence of a trial's parts, learnt from the grounding trials: do its eligibility criteria describe
its conditions, and do its conditions belong together?

Each grounding trial that has conditions and criteria gives a profile: the unit centroid of its
conditions' vectors and the unit centroid of its criteria's. A candidate's fit is a pointwise mutual
information read off those profiles (cosines of the store's sentence vectors):

- `eligibility`: how much closer the trial's criteria (as a whole) are to its own conditions than to
  the conditions of an average grounding trial, and its conditions to its own criteria than to an
  average trial's criteria (the mean of the two directions). Criteria of another disease, or
  conditions put on another trial's criteria, fall below what real trials score;
- `criteria`: per inclusion criterion, the same margin for that criterion alone: the worst one
  decides and is the one named (one inclusion criterion about another disease among good ones is
  caught only where it stands far out: measured 25% on phase II, benchmarks/RESULTS.md). Exclusion
  criteria are not scored one by one: real ones name other diseases on purpose ("known HIV
  infection", "history of heart failure");
- `typical_criteria`: how much closer the criteria (as a whole) are to the criteria of the real
  trials of the nearest conditions (a softmax over the grounding trials' condition similarity,
  temperature `CRITERIA_TEMPERATURE`) than to an average trial's criteria: criteria of trials of the
  same condition look alike (FEV1 and bronchodilators for asthma, HbA1c for diabetes), even where no
  criterion names the condition;
- `typical_conditions`: the other way round, learnt from which conditions share criteria: how much
  closer the conditions are to the conditions of the real trials whose criteria are nearest (softmax,
  `CONDITIONS_TEMPERATURE`) than to an average trial's conditions;
- `conditions`: per condition of a trial with several, how much closer it is to the trial's other
  conditions than to an average grounding trial's conditions.

Every score is leave-one-trial-out when asked to (`exclude`: the trial's own profile is left out of
the average), so the calibration scores real grounding trials as it scores drafts; a spoiled copy
leaves out the trial it took a section from as well (`Excluded`), so its donor is as unknown to the
model as a writer's mistake is. Measured
alternatives (benchmarks/RESULTS.md, "The critic judges meaning"): a contrastive bilinear scorer
trained on the grounding trials (in-batch negatives, cross-fitted) caught fewer swapped trials at
the same real rejection than these cosines; a k-nearest-criteria score fewer single off-topic
criteria.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from synthtrials.tools.records.trial import Trial

#: the grounding trial(s) a score leaves out: one id (a real trial scored leave-one-out), several (a
#: spoiled copy: its own trial and the trial it took a section from), or none
Excluded = str | tuple[str, ...] | None


def excluded_ids(exclude: Excluded) -> tuple[str, ...]:
    """The ids `exclude` names, as a tuple."""
    if exclude is None:
        return ()
    return (exclude,) if isinstance(exclude, str) else tuple(exclude)


#: grounding trials with conditions and criteria the coherence model needs (fewer: no reference)
MIN_COHERENCE_TRIALS = 20
#: softmax temperatures over cosine similarities of the grounding trials' profiles: of the pairs
#: tried, (0.1, 0.02) catches the most spoiled phase_I_train trials at the same 5% real rejection
#: (benchmarks/RESULTS.md, "The critic judges meaning")
CRITERIA_TEMPERATURE = 0.1
CONDITIONS_TEMPERATURE = 0.02


def _softmax(values: np.ndarray, temperature: float) -> np.ndarray:
    weights = np.exp((values - values.max()) / temperature)
    return weights / weights.sum()


def unit_centroid(vectors: np.ndarray) -> np.ndarray | None:
    """The mean of `vectors` scaled to unit length (None: no vectors, or they cancel out)."""
    if not len(vectors):
        return None
    mean = np.asarray(vectors, dtype=np.float32).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 1e-9 else None


class CoherenceModel:
    """The grounding trials' profiles (`ids`: trial ids; `conditions`, `criteria`: one unit
    centroid per trial, rows aligned) and their sums, from which every average is read."""

    def __init__(self, ids: Sequence[str], conditions: np.ndarray, criteria: np.ndarray) -> None:
        self.ids = list(ids)
        self.position = {trial_id: i for i, trial_id in enumerate(self.ids)}
        self.conditions = np.asarray(conditions, dtype=np.float32)
        self.criteria = np.asarray(criteria, dtype=np.float32)
        self._condition_sum = self.conditions.sum(axis=0) if len(self.ids) else None
        self._criteria_sum = self.criteria.sum(axis=0) if len(self.ids) else None

    @classmethod
    def from_profiles(cls, profiles: Sequence[tuple[str, np.ndarray | None, np.ndarray | None]]) -> CoherenceModel:
        """From (trial id, condition centroid, criteria centroid) of the grounding trials; trials
        lacking either are left out."""
        kept = [(t, c, r) for t, c, r in profiles if c is not None and r is not None]
        if not kept:
            return cls([], np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32))
        return cls([t for t, _, _ in kept], np.stack([c for _, c, _ in kept]), np.stack([r for _, _, r in kept]))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def usable(self) -> bool:
        return len(self) >= MIN_COHERENCE_TRIALS

    def _averages(self, exclude: Excluded) -> tuple[np.ndarray, np.ndarray]:
        """The average grounding trial's condition and criteria centroids, `exclude` left out."""
        assert self._condition_sum is not None and self._criteria_sum is not None
        rows = self._rows(exclude)
        if not rows:
            return self._condition_sum / len(self), self._criteria_sum / len(self)
        n = len(self) - len(rows)
        return ((self._condition_sum - self.conditions[rows].sum(axis=0)) / n,
                (self._criteria_sum - self.criteria[rows].sum(axis=0)) / n)

    def _rows(self, exclude: Excluded) -> list[int]:
        return sorted({self.position[i] for i in excluded_ids(exclude) if i in self.position})

    def eligibility(self, conditions: np.ndarray, criteria: np.ndarray, exclude: Excluded = None) -> float | None:
        """The fit of the criteria as a whole with the conditions (vectors, one row each); None
        where either is missing or the model has no reference."""
        c, r = unit_centroid(conditions), unit_centroid(criteria)
        if c is None or r is None or not self.usable:
            return None
        average_conditions, average_criteria = self._averages(exclude)
        own = float(c @ r)
        return ((own - float(r @ average_conditions)) + (own - float(c @ average_criteria))) / 2

    def _expected(self, near: np.ndarray, of: np.ndarray, target: np.ndarray, temperature: float,
                  exclude: Excluded) -> np.ndarray | None:
        """The unit centroid of `target` rows (one per grounding trial) weighted by the softmax of the
        trials' `of` rows' similarity to `near`, `exclude` left out."""
        similarity = of @ near
        rows = self._rows(exclude)
        if rows:
            similarity = similarity.copy()
            similarity[rows] = -np.inf
        expected = _softmax(similarity, temperature) @ target
        norm = float(np.linalg.norm(expected))
        return expected / norm if norm > 1e-9 else None

    def _typical(self, key: np.ndarray, scored: np.ndarray, to_criteria: bool, exclude: Excluded
                 ) -> tuple[float, np.ndarray] | None:
        """(fit of the `scored` sections as a whole to the expected ones, per section the same margin):
        the expected criteria of the real trials whose conditions are nearest the `key` conditions
        (`to_criteria`), or the expected conditions of those whose criteria are nearest the `key`
        criteria, each against the average trial's."""
        key_centroid, centroid = unit_centroid(key), unit_centroid(scored)
        if key_centroid is None or centroid is None or not self.usable:
            return None
        near, target = (self.conditions, self.criteria) if to_criteria else (self.criteria, self.conditions)
        temperature = CRITERIA_TEMPERATURE if to_criteria else CONDITIONS_TEMPERATURE
        expected = self._expected(key_centroid, near, target, temperature, exclude)
        if expected is None:
            return None
        direction = expected - self._averages(exclude)[1 if to_criteria else 0]
        return float(centroid @ direction), np.asarray(scored, dtype=np.float32) @ direction

    def typical_criteria(self, conditions: np.ndarray, criteria: np.ndarray,
                         exclude: Excluded = None) -> tuple[float, np.ndarray] | None:
        """(fit of the criteria as a whole to the criteria of real trials of the nearest conditions,
        per criterion the same margin); None where either is missing or the model has no reference."""
        return self._typical(conditions, criteria, True, exclude)

    def typical_conditions(self, conditions: np.ndarray, criteria: np.ndarray,
                           exclude: Excluded = None) -> tuple[float, np.ndarray] | None:
        """(fit of the conditions as a whole to the conditions of the real trials with the nearest
        criteria, per condition the same margin)."""
        return self._typical(criteria, conditions, False, exclude)

    def criteria_fit(self, conditions: np.ndarray, criteria: np.ndarray, exclude: Excluded = None) -> np.ndarray | None:
        """Per criterion (rows of `criteria`): its closeness to the conditions' centroid minus its
        closeness to the average trial's conditions."""
        c = unit_centroid(conditions)
        if c is None or not len(criteria) or not self.usable:
            return None
        average_conditions, _ = self._averages(exclude)
        return np.asarray(criteria, dtype=np.float32) @ (c - average_conditions)

    def conditions_fit(self, conditions: np.ndarray, exclude: Excluded = None) -> np.ndarray | None:
        """Per condition of a trial with two or more: its closeness to the centroid of the others
        minus its closeness to the average trial's conditions."""
        if len(conditions) < 2 or not self.usable:
            return None
        average_conditions, _ = self._averages(exclude)
        vectors = np.asarray(conditions, dtype=np.float32)
        out = np.empty(len(vectors), dtype=np.float32)
        for i in range(len(vectors)):
            others = unit_centroid(np.delete(vectors, i, axis=0))
            out[i] = -1.0 if others is None else float(vectors[i] @ others - vectors[i] @ average_conditions)
        return out


def inclusion_criteria(trial: Trial) -> list[str]:
    """A trial's inclusion criteria that are not blank."""
    return [c for c in trial.eligibility.inclusion if c.strip()] if trial.eligibility else []


def _words(texts: list[str]) -> set[str]:
    return {w for text in texts for w in re.findall(r"[a-z]{5,}", text.lower())}


def off_topic_criteria(trial: Trial, other: Trial) -> list[str]:
    """`other`'s inclusion criteria that are about its conditions and not about `trial`'s: those that
    name one of its conditions whole, else those with a word of its conditions (5 letters or more)
    that `trial`'s conditions do not have; [] where none does (a criterion such as "signed informed
    consent" fits any trial and is no error)."""
    own = _words(trial.conditions)
    criteria = inclusion_criteria(other)
    whole = [c for c in criteria if any(len(n) >= 5 and n.lower() in c.lower() for n in other.conditions)
             and not own & _words([c])]
    if whole:
        return whole
    foreign = _words(other.conditions) - own
    return [c for c in criteria if foreign & _words([c]) and not own & _words([c])]
