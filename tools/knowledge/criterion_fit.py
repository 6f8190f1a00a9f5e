"""One inclusion criterion against the trial's conditions: the score `coherence_criterion_fit` (calibration version 9).

A criterion of another disease among a trial's own ("Diagnosis of type 2 diabetes" in a breast cancer trial) reads
like a real criterion, so typicality cannot see it, and the criteria as a whole barely move. This model reads one
criterion at a time: a bilinear logistic regression on the sentence vectors the store already holds,

    logit(conditions, criterion) = [c, r]' W k + a (c . k) + b

with c the unit centroid of the trial's condition vectors, r that of its inclusion criteria (`context`) and k the
criterion's vector, learnt from the grounding
trials alone: each trial's own inclusion criteria (1) against inclusion criteria of unrelated grounding trials that
name their own conditions (`off_topic_criteria`, 0), the two classes weighted equally, an L2 penalty on W, fitted
with L-BFGS (deterministic; a second or two a model on 2 cores). A trial's score is its worst inclusion criterion's
logit. benchmarks/bench_criterion_fit.py measured it before it was built: on a held-out fifth of phase_I_train it
ranks real trials above their copies with one off-topic criterion at ROC-AUC 0.79, as stop 50's fine-tuned
per-criterion cross-encoder did (0.78), at a hundredth of its training time.

Cross-fitted like every calibrated score: the grounding trials are dealt into `FOLDS` folds
(`cross_encoder.fold_assignment`), one model is fitted on the trials outside each fold, a grounding trial (or a
spoiled copy of it) is scored by the model of its own fold, which never saw it, and a trial that is no grounding
trial (a draft, a phase II trial) by the mean of the fold models' logits.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from synthtrials.tools.knowledge.coherence import Excluded, excluded_ids, off_topic_criteria, unit_centroid
# unrelated trials (condition centroids less similar than UNRELATED_BELOW) lend the off-topic criteria, as for the
# cross-encoder and the calibration's spoiled copies
from synthtrials.tools.knowledge.cross_encoder import UNRELATED_BELOW, fold_assignment
from synthtrials.tools.records.trial import Trial

FOLDS = 5
#: draws of an unrelated trial per training trial, each lending one off-topic criterion where it has one
NEGATIVE_DRAWS = 4
#: the L2 penalty on W, and L-BFGS's iterations (benchmarks/bench_criterion_fit.py)
L2 = 1e-4
ITERATIONS = 200
#: fewer grounding trials with conditions and inclusion criteria than this: no model (the score is None)
MIN_TRIALS = 50
SEED = 11
#: what changes the fitted models: a saved file of another version is fitted again, and the calibration's key
#: (`calibration.calibration_key`) hashes it, so thresholds read from other models are not reused
VERSION = "1"

VectorsFn = Callable[[list[str]], np.ndarray]


def _clean(text: str) -> str:
    return " ".join(text.split())


def inclusion_texts(trial: Trial) -> list[str]:
    """A trial's inclusion criteria as the critic's sections hold them (`domain.trial_sections`' cleaned text)."""
    return [_clean(c) for c in trial.eligibility.inclusion if c.strip()] if trial.eligibility else []


def context(conditions: np.ndarray, inclusion: np.ndarray) -> np.ndarray:
    """What a criterion is read against: the conditions' unit centroid, then the unit centroid of the trial's
    inclusion criteria (the criterion among them; a criterion of another disease stands apart from the others too).
    On the held-out fifth of phase_I_train the criteria's centroid raised the ROC-AUC from 0.772 to 0.794
    (benchmarks/bench_criterion_fit.py `--context`)."""
    together = unit_centroid(np.asarray(inclusion, dtype=np.float32))
    return np.r_[np.asarray(conditions, dtype=np.float32),
                 together if together is not None else np.zeros(np.shape(inclusion)[1], np.float32)]


class BilinearCriterionFit:
    """`logit = x' W k + a (x[:len(k)] . k) + b` on (context x, criterion vector k) rows (`context`: the conditions'
    centroid first); scikit-learn's conventions:
    `fit(conditions, criteria, y)`, `decision_function(conditions, criteria)`. `conditions` may hold each distinct
    centroid once, with `rows` giving each row's centroid (a trial's criteria share it: the product with W is
    computed once a centroid)."""

    def __init__(self, l2: float = L2, iterations: int = ITERATIONS) -> None:
        self.l2, self.iterations = l2, iterations

    def fit(self, conditions: np.ndarray, criteria: np.ndarray, y: np.ndarray,
            rows: np.ndarray | None = None) -> BilinearCriterionFit:
        from scipy.optimize import minimize
        from scipy.sparse import csr_matrix

        c = np.asarray(conditions, dtype=np.float32)
        k = np.asarray(criteria, dtype=np.float32)
        y = np.asarray(y, dtype=np.float64)
        rows = np.arange(len(k)) if rows is None else np.asarray(rows)
        if len(set(y.tolist())) < 2:
            raise ValueError("BilinearCriterionFit needs both classes")
        d, e = c.shape[1], k.shape[1]  # conditions (and any context after them), criterion
        weight = np.where(y > 0, 0.5 / y.mean(), 0.5 / (1 - y.mean())) / len(y)
        cosine = np.einsum("ij,ij->i", c[rows][:, :e], k).astype(np.float64)
        # gathers each row's gradient onto its centroid: one sparse product an iteration
        owner = csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, np.arange(len(rows)))), shape=(len(c), len(rows)))

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, a, b = theta[:d * e].reshape(d, e), theta[-2], theta[-1]
            z = np.einsum("ij,ij->i", (c @ w.astype(np.float32))[rows], k).astype(np.float64) + a * cosine + b
            # binary cross-entropy with logits, stable: log(1 + e^z) - y z
            value = float(weight @ (np.logaddexp(0.0, z) - y * z)) + self.l2 * float((w * w).sum())
            g = weight * (0.5 * (1.0 + np.tanh(0.5 * z)) - y)
            grad_w = c.T @ (owner @ (g.astype(np.float32)[:, None] * k)) + 2 * self.l2 * w
            return value, np.concatenate([grad_w.ravel(), [float(g @ cosine), float(g.sum())]])

        start = np.zeros(d * e + 2)
        start[-2:] = (10.0, -3.0)
        found = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": self.iterations})
        self.coef_ = found.x[:d * e].reshape(d, e).astype(np.float32)
        self.cosine_weight_, self.intercept_ = float(found.x[-2]), float(found.x[-1])
        self.loss_ = float(found.fun)
        return self

    def decision_function(self, conditions: np.ndarray, criteria: np.ndarray) -> np.ndarray:
        """One logit per row: `conditions` (one row, or one per criterion) against each criterion."""
        c = np.atleast_2d(np.asarray(conditions, dtype=np.float32))
        k = np.atleast_2d(np.asarray(criteria, dtype=np.float32))
        return ((c @ self.coef_) * k).sum(-1) + self.cosine_weight_ * (c[:, :k.shape[1]] * k).sum(-1) + self.intercept_


class CriterionFit:
    """The fold models of the grounding trials and each trial's fold: per inclusion criterion, its fit with the
    trial's conditions (`criteria_logits`)."""

    def __init__(self, models: list[BilinearCriterionFit], fold_of: dict[str, int]) -> None:
        self.models, self.fold_of = models, fold_of

    @classmethod
    def train(cls, trials: Sequence[Trial], centroid_of: dict[str, np.ndarray], vectors: VectorsFn,
              folds: int = FOLDS, seed: int = SEED) -> CriterionFit | None:
        """Fold models from the grounding `trials`, with `centroid_of` (trial id: its conditions' unit centroid) and
        `vectors` (criterion texts: their vectors, the store's cache). None where fewer than `MIN_TRIALS` trials
        have both conditions and inclusion criteria, or a fold's training set lacks off-topic criteria."""
        usable = [t for t in trials if centroid_of.get(t.nct_id) is not None and inclusion_texts(t)]
        if len(usable) < max(MIN_TRIALS, 2 * folds):
            return None
        fold_of = fold_assignment([t.nct_id for t in usable], folds, seed)
        centroids = np.stack([centroid_of[t.nct_id] for t in usable])
        similar = centroids @ centroids.T
        texts = sorted({c for t in usable for c in inclusion_texts(t)})
        vector_of = dict(zip(texts, vectors(texts)))
        contexts = np.stack([context(centroids[i], np.stack([vector_of[c] for c in inclusion_texts(t)]))
                             for i, t in enumerate(usable)])
        models = []
        for fold in range(folds):
            inside = [i for i, t in enumerate(usable) if fold_of[t.nct_id] != fold]
            allowed = np.zeros(len(usable), dtype=bool)
            allowed[inside] = True
            rng = random.Random(f"criterion fit {seed} {fold}")
            rows, criteria, y = [], [], []
            for n, i in enumerate(inside):
                own = inclusion_texts(usable[i])
                rows += [n] * len(own)
                criteria += [vector_of[c] for c in own]
                y += [1.0] * len(own)
                unrelated = np.flatnonzero(allowed & (similar[i] < UNRELATED_BELOW))
                for _ in range(NEGATIVE_DRAWS if len(unrelated) else 0):
                    off = off_topic_criteria(usable[i], usable[int(unrelated[rng.randrange(len(unrelated))])])
                    if off:
                        rows.append(n), criteria.append(vector_of[_clean(rng.choice(off))]), y.append(0.0)
            if 0.0 not in y:
                return None
            models.append(BilinearCriterionFit().fit(contexts[inside], np.stack(criteria), np.asarray(y),
                                                     np.asarray(rows)))
        return cls(models, fold_of)

    def criteria_logits(self, conditions: np.ndarray, criteria: np.ndarray, exclude: Excluded = None) -> np.ndarray:
        """Per criterion (rows of `criteria`), its logit under the `conditions` centroid: by the fold model of the
        grounding trial `exclude` names first, else the mean of the fold models."""
        ids = excluded_ids(exclude)
        fold = self.fold_of.get(ids[0]) if ids else None
        read_with = context(conditions, criteria)
        if fold is not None:
            return self.models[fold].decision_function(read_with, criteria)
        return np.mean([model.decision_function(read_with, criteria) for model in self.models], axis=0)

    def save(self, path: Path) -> None:
        """The fold models and the folds in one .npz, written whole or not at all."""
        from synthtrials.tools.atomic import atomic_open

        ids = sorted(self.fold_of)
        arrays = {"version": np.asarray(VERSION), "ids": np.asarray(ids), "folds": np.asarray([self.fold_of[i] for i in ids])}
        for n, model in enumerate(self.models):
            arrays[f"coef_{n}"] = model.coef_
            arrays[f"terms_{n}"] = np.asarray([model.cosine_weight_, model.intercept_])
        with atomic_open(path, "wb") as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: Path) -> CriterionFit | None:
        """The models `save` wrote, or None where there is no file, or one of another version or unreadable (the
        caller fits them again)."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                if str(saved["version"]) != VERSION:
                    return None
                models = []
                for n in range(len({int(f) for f in saved["folds"]})):
                    model = BilinearCriterionFit()
                    model.coef_ = saved[f"coef_{n}"]
                    model.cosine_weight_, model.intercept_ = (float(v) for v in saved[f"terms_{n}"])
                    models.append(model)
                return cls(models, dict(zip(saved["ids"].tolist(), (int(f) for f in saved["folds"]))))
        except (OSError, KeyError, ValueError):
            return None
