"""Metrics of binary outcome prediction, and a paired bootstrap for differences between training sets."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
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
    without its input checks: the bootstrap calls it thousands of times."""
    ranks = rankdata(p)
    positives = int(y.sum())
    negatives = len(y) - positives
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision as `sklearn.metrics.average_precision_score` gives it (one step per distinct score)."""
    order = np.argsort(-p, kind="mergesort")
    scores, hits = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # the last trial of each distinct score
    tps = np.cumsum(hits)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def paired_bootstrap(y_true: np.ndarray, proba_a: list[np.ndarray], proba_b: list[np.ndarray],
                     n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict[str, dict[str, float]]:
    """CI of mean-over-seeds (metric(b) - metric(a)) on ROC-AUC and PR-AUC, resampling test trials.

    a and b hold one probability vector per seed over the same test trials (paired).
    """
    rng = np.random.default_rng(seed)
    y_true = np.asarray(y_true).astype(int)
    proba_a, proba_b = [np.asarray(a, dtype=float) for a in proba_a], [np.asarray(b, dtype=float) for b in proba_b]
    n = len(y_true)
    scorers = {"roc_auc": roc_auc, "pr_auc": average_precision}  # scikit-learn's numbers, without its checks
    draws: dict[str, list[float]] = {k: [] for k in scorers}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        if len(np.unique(y_true[idx])) < 2:
            continue
        for name, scorer in scorers.items():
            diffs = [scorer(y_true[idx], b[idx]) - scorer(y_true[idx], a[idx]) for a, b in zip(proba_a, proba_b)]
            draws[name].append(float(np.mean(diffs)))
    out = {}
    for name, scorer in scorers.items():
        point = float(np.mean([scorer(y_true, b) - scorer(y_true, a) for a, b in zip(proba_a, proba_b)]))
        values = np.asarray(draws[name])
        out[name] = {"difference": point, "ci_low": float(np.quantile(values, alpha / 2)),
                     "ci_high": float(np.quantile(values, 1 - alpha / 2)), "n_boot": int(values.size),
                     "p_not_positive": float(np.mean(values <= 0))}
    return out
