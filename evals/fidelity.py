"""Fidelity, diversity and privacy of a synthetic set against the real one."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from synthtrials.evals.classifiers import tfidf_pipeline
from synthtrials.evals.results import (
    CopiedShare,
    DcrSummary,
    Diversity,
    DiversityComparison,
    EmbeddingCoverage,
    FidelitySummary,
    FieldComparison,
    FieldDistributions,
    ShapeComparison,
    ShapeTest,
    Spread,
)
from synthtrials.tools.knowledge.checks import ngram_overlap
from synthtrials.tools.records.fields import field_set
from synthtrials.tools.records.provenance import SyntheticProvenance
from synthtrials.tools.records.trial import (
    Trial,
    render_for_classifier,
    render_for_embedding,
)
from synthtrials.tools.store.embeddings import get_embeddings


def discriminator_auc(real: list[Trial], synthetic: list[Trial], seed: int = 0,
                      fields: Collection[str] | None = None) -> float:
    """Cross-validated ROC-AUC of TF-IDF + LR telling real from synthetic (0.5: indistinguishable).

    Both sides are rendered with the same field set (`fields`): like for like.
    """
    texts = [render_for_classifier(t, fields) for t in real + synthetic]
    y = np.array([0] * len(real) + [1] * len(synthetic))
    folds = min(5, int(min(len(real), len(synthetic))))
    if folds < 2:
        return float("nan")
    proba = cross_val_predict(tfidf_pipeline(seed=seed), texts, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                              method="predict_proba")[:, 1]
    return float(roc_auc_score(y, proba))


def knn_precision_recall(real: np.ndarray, synthetic: np.ndarray, k: int = 3) -> dict[str, float]:
    """Improved precision/recall (Kynkäänniemi et al. 2019) on embeddings: a point is covered when
    it lies within the k-NN radius of some point of the other set."""
    def radii(x: np.ndarray) -> np.ndarray:
        d = 1 - x @ x.T
        np.fill_diagonal(d, np.inf)
        return np.sort(d, axis=1)[:, min(k, len(x) - 1) - 1]

    if len(real) < 2 or len(synthetic) < 2:
        return {"precision": float("nan"), "recall": float("nan")}
    r_real, r_syn = radii(real), radii(synthetic)
    d = 1 - synthetic @ real.T  # (n_syn, n_real) cosine distances
    precision = float(np.mean((d <= r_real[None, :]).any(axis=1)))
    recall = float(np.mean((d.T <= r_syn[None, :]).any(axis=1)))
    return {"precision": precision, "recall": recall}


def distinct_n(texts: list[str], n: int) -> float:
    grams = [tuple(words[i:i + n]) for text in texts for words in [text.lower().split()] for i in range(len(words) - n + 1)]
    return len(set(grams)) / max(1, len(grams))


def mean_pairwise_similarity(vectors: np.ndarray) -> float:
    if len(vectors) < 2:
        return float("nan")
    sims = vectors @ vectors.T
    n = len(vectors)
    return float((sims.sum() - n) / (n * (n - 1)))


def spread(values: list[float]) -> Spread:
    if not values:
        return Spread(median=None, p10=None, p90=None)
    return Spread(median=float(np.median(values)), p10=float(np.percentile(values, 10)),
                  p90=float(np.percentile(values, 90)))


def field_distributions(trials: list[Trial]) -> FieldDistributions:
    phases = Counter(t.phase.value if t.phase else "unknown" for t in trials)
    enrollment = [t.enrollment for t in trials if t.enrollment is not None]
    criteria = [len(t.eligibility.inclusion) + len(t.eligibility.exclusion) if t.eligibility else 0 for t in trials]
    lengths = [len(render_for_classifier(t).split()) for t in trials]
    return FieldDistributions(phase={k: v / len(trials) for k, v in phases.items()}, enrollment=spread(enrollment),
                              criteria_items=spread(criteria), words=spread(lengths))


def shape_test(real: list[float], synthetic: list[float]) -> ShapeTest:
    from scipy.stats import ks_2samp

    if not real or not synthetic:
        return ShapeTest(real_median=None, synthetic_median=None, ks_statistic=None, ks_pvalue=None)
    real_median, synthetic_median = float(np.median(real)), float(np.median(synthetic))
    result = ks_2samp(real, synthetic)
    return ShapeTest(real_median=real_median, synthetic_median=synthetic_median,
                     median_ratio=synthetic_median / real_median if real_median else None,
                     ks_statistic=float(result.statistic), ks_pvalue=float(result.pvalue))


def criteria_of(trial: Trial) -> list[str]:
    return (trial.eligibility.inclusion + trial.eligibility.exclusion) if trial.eligibility else []


def shape_comparison(real: list[Trial], synthetic: list[Trial], fields: Collection[str]) -> ShapeComparison:
    """Criteria per trial, words per trial (rendered with the shared field set) and words per criterion."""
    def measures(trials: list[Trial]) -> tuple[list[float], list[float], list[float]]:
        criteria = [criteria_of(t) for t in trials]
        return ([float(len(c)) for c in criteria],
                [float(len(render_for_classifier(t, fields).split())) for t in trials],
                [float(len(item.split())) for c in criteria for item in c])

    (rc, rw, rpc), (sc, sw, spc) = measures(real), measures(synthetic)
    return ShapeComparison(criteria_per_trial=shape_test(rc, sc), words_per_trial=shape_test(rw, sw),
                           words_per_criterion=shape_test(rpc, spc))


def diversity(texts: list[str], vectors: np.ndarray) -> Diversity:
    return Diversity(distinct_1=distinct_n(texts, 1), distinct_2=distinct_n(texts, 2),
                     mean_pairwise_similarity=mean_pairwise_similarity(vectors))


def copied_share(synthetic: list[Trial], examples: dict[str, Trial], fields: Collection[str]) -> CopiedShare:
    """Per synthetic trial, the largest share of its 8-grams found in one of the examples it was written from."""
    copied = []
    for trial in synthetic:
        provenance = SyntheticProvenance.of(trial)
        sources = [examples[i] for i in (provenance.examples if provenance else []) if i in examples]
        text = render_for_classifier(trial, fields)
        copied.append(max((ngram_overlap(text, render_for_classifier(s, fields), 8) for s in sources), default=0.0))
    return CopiedShare(mean=float(np.mean(copied)), max=float(np.max(copied)))


def dcr_summary(synthetic: np.ndarray, holdout: np.ndarray | None) -> DcrSummary:
    return DcrSummary(synthetic_median=float(np.median(synthetic)), synthetic_p05=float(np.percentile(synthetic, 5)),
                      holdout_median=None if holdout is None else float(np.median(holdout)),
                      holdout_p05=None if holdout is None else float(np.percentile(holdout, 5)))


def real_halves_auc(real: list[Trial], seed: int = 0, fields: Collection[str] | None = None) -> float:
    """The same discriminator between two random halves of the real data: its chance level."""
    shuffled = list(real)
    random.Random(seed).shuffle(shuffled)
    half = len(shuffled) // 2
    return discriminator_auc(shuffled[:half], shuffled[half:], seed, fields)


def fidelity_report(real: list[Trial], synthetic: list[Trial], holdout: list[Trial] | None = None,
                    examples: dict[str, Trial] | None = None, seed: int = 0) -> FidelitySummary:
    """How close `synthetic` comes to `real` (discriminator, embeddings, fields), how diverse it is, and how
    near it lies to real records (against `holdout`, real trials the comparison did not use)."""
    encoder = get_embeddings()
    real_v = encoder.embed_array([render_for_embedding(t) for t in real])
    syn_v = encoder.embed_array([render_for_embedding(t) for t in synthetic])
    fields = field_set(real)
    # privacy: distance to the closest real record, against real-to-real (holdout to train) distances
    dcr = 1 - (syn_v @ real_v.T).max(axis=1)
    dcr_holdout = None
    if holdout:
        hold_v = encoder.embed_array([render_for_embedding(t) for t in holdout])
        dcr_holdout = 1 - (hold_v @ real_v.T).max(axis=1)
    return FidelitySummary(
        n_real=len(real), n_synthetic=len(synthetic), field_set=list(fields),
        discriminator_auc=discriminator_auc(real, synthetic, seed, fields),
        discriminator_auc_real_halves=real_halves_auc(real + (holdout or []), seed, fields),
        embedding=EmbeddingCoverage(**knn_precision_recall(real_v, syn_v)),
        fields=FieldComparison(real=field_distributions(real), synthetic=field_distributions(synthetic)),
        diversity=DiversityComparison(
            synthetic=diversity([render_for_classifier(t, fields) for t in synthetic], syn_v),
            real=diversity([render_for_classifier(t, fields) for t in real], real_v)),
        dcr_synthetic=dcr.tolist(), dcr_holdout=None if dcr_holdout is None else dcr_holdout.tolist(),
        dcr_summary=dcr_summary(dcr, dcr_holdout),
        copied_8gram_share=copied_share(synthetic, examples, fields) if examples else None,
        shape=shape_comparison(real, synthetic, fields))
