"""Metrics of binary outcome prediction, and a paired bootstrap for differences between training sets."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")


def binary_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    y_true = np.asarray(y_true)
    proba = np.asarray(proba)
    pred = (proba >= threshold).astype(int)
    both = len(np.unique(y_true)) == 2
    return {
        "accuracy": float(accuracy_score(y_true, pred)),
        "precision": float(precision_score(y_true, pred, zero_division=0)),
        "recall": float(recall_score(y_true, pred, zero_division=0)),
        "f1": float(f1_score(y_true, pred, zero_division=0)),
        "roc_auc": float(roc_auc_score(y_true, proba)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y_true, proba)) if both else float("nan"),
    }


def youden_threshold(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The decision threshold (positive from it up) that maximises balanced accuracy, i.e. Youden's
    J = TPR - FPR, on (y_true, proba): midway between the lowest score it calls positive and the next
    lower score. 0.5 where no threshold beats predicting one class (J <= 0)."""
    fpr, tpr, thresholds = roc_curve(np.asarray(y_true), np.asarray(proba), drop_intermediate=False)
    j = tpr - fpr
    best = int(np.argmax(j))  # ties: the highest threshold
    if j[best] <= 0:
        return 0.5
    # J > 0 excludes the first (nothing positive) and the last (everything positive) point
    return float((thresholds[best] + thresholds[best + 1]) / 2)


def aggregate(per_seed: list[dict[str, float]]) -> dict[str, dict]:
    out = {}
    for metric in METRICS:
        values = [m[metric] for m in per_seed]
        out[metric] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                       "per_seed": values}
    return out


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC-AUC as `sklearn.metrics.roc_auc_score` gives it (ties count half: Mann-Whitney with mid-ranks),
    without its input checks."""
    return float(resampled_scores(np.asarray(y), np.asarray(p, dtype=float), np.ones((1, len(y))))["roc_auc"][0])


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision as `sklearn.metrics.average_precision_score` gives it (one step per distinct score)."""
    return float(resampled_scores(np.asarray(y), np.asarray(p, dtype=float), np.ones((1, len(y))))["pr_auc"][0])


def resampled_scores(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """ROC-AUC and average precision of each resample of (y, p), a resample given as a row of
    `weights` (how many times it draws each trial), all rows in one vectorised pass without sorting a
    resample: trials are sorted once by score; each group of tied scores sums its drawn positives and
    negatives; ROC-AUC counts, per group, its positives times the negatives of lower groups plus half
    of its own (mid-ranks), and average precision adds, per group, its positives / all positives times
    the precision at its end: scikit-learn's numbers on the resampled set, ties included."""
    order = np.argsort(-p, kind="mergesort")
    scores, hits = p[order], y[order].astype(float)
    drawn = weights[:, order]
    starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
    positives = np.add.reduceat(drawn * hits, starts, axis=1)
    negatives = np.add.reduceat(drawn * (1.0 - hits), starts, axis=1)
    all_positives, all_negatives = positives.sum(axis=1), negatives.sum(axis=1)
    below = all_negatives[:, None] - np.cumsum(negatives, axis=1)
    auc = (positives * (below + negatives / 2)).sum(axis=1) / (all_positives * all_negatives)
    true_positives, seen = np.cumsum(positives, axis=1), np.cumsum(positives + negatives, axis=1)
    precision = np.divide(true_positives, seen, out=np.zeros_like(seen), where=seen > 0)
    ap = (positives * precision).sum(axis=1) / all_positives
    return {"roc_auc": auc, "pr_auc": ap}


#: bootstrap replicates scored together (memory: rows x test trials x a few float64 arrays)
BOOTSTRAP_CHUNK = 500


def paired_bootstrap(y_true: np.ndarray, proba_a: list[np.ndarray], proba_b: list[np.ndarray],
                     n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict[str, dict[str, float]]:
    """CI of mean-over-seeds (metric(b) - metric(a)) on ROC-AUC and PR-AUC, resampling test trials.

    a and b hold one probability vector per seed over the same test trials (paired). Replicates with
    one label only are skipped; the others are scored in chunks of `BOOTSTRAP_CHUNK`
    (`resampled_scores`).
    """
    rng = np.random.default_rng(seed)
    y_true = np.asarray(y_true).astype(int)
    proba_a, proba_b = [np.asarray(a, dtype=float) for a in proba_a], [np.asarray(b, dtype=float) for b in proba_b]
    n = len(y_true)
    scorers = {"roc_auc": roc_auc, "pr_auc": average_precision}  # scikit-learn's numbers, without its checks
    draws: dict[str, list[np.ndarray]] = {k: [] for k in scorers}
    for first in range(0, n_boot, BOOTSTRAP_CHUNK):
        rows = min(BOOTSTRAP_CHUNK, n_boot - first)
        idx = rng.integers(0, n, (rows, n))  # the same stream as one draw of n a replicate
        labels = y_true[idx]
        idx = idx[labels.min(axis=1) != labels.max(axis=1)]
        weights = np.bincount((np.arange(len(idx))[:, None] * n + idx).ravel(), minlength=len(idx) * n)
        weights = weights.reshape(len(idx), n).astype(float)
        a_scores = [resampled_scores(y_true, a, weights) for a in proba_a]
        b_scores = [resampled_scores(y_true, b, weights) for b in proba_b]
        for name in scorers:
            draws[name].append(np.mean([b[name] - a[name] for a, b in zip(a_scores, b_scores)], axis=0))
    out = {}
    for name, scorer in scorers.items():
        point = float(np.mean([scorer(y_true, b) - scorer(y_true, a) for a, b in zip(proba_a, proba_b)]))
        values = np.concatenate(draws[name]) if draws[name] else np.zeros(0)
        out[name] = {"difference": point, "ci_low": float(np.quantile(values, alpha / 2)),
                     "ci_high": float(np.quantile(values, 1 - alpha / 2)), "n_boot": int(values.size),
                     "p_not_positive": float(np.mean(values <= 0))}
    return out
