"""Calibration of the critic's domain checks: thresholds are quantiles of the same scores on real
grounding trials, not magic numbers.

Every real grounding trial is scored leave-one-trial-out (`DomainKnowledge.scores(t, exclude=t)`:
its own sections never count as its neighbours), each score taken over the trial's worst section.
One shared quantile q is chosen, the largest for which the checks together reject at most
`max_real_rejection` (5%) of the real trials; each threshold is that quantile of its score. The
result is saved with the store under a key that hashes what it depends on (the grounding trials,
the embedding model, the method's version), so re-ingesting or naming other splits gives another
calibration, and a run records the key and the thresholds it used.
"""

from __future__ import annotations

import hashlib

import numpy as np
from pydantic import BaseModel, Field
from synthtrials.tools.domain import DomainKnowledge
from synthtrials.tools.progress import ProgressFn, SayFn
from synthtrials.tools.store import TrialStore, grounding_filter

CALIBRATION_VERSION = "3"


class Calibration(BaseModel):
    key: str
    splits: list[str]
    trials: int = Field(description="real grounding trials scored leave-one-trial-out")
    quantile: float = Field(description="the shared quantile of every score used as its threshold")
    max_real_rejection: float
    thresholds: dict[str, float]
    rejection_rates: dict[str, float] = Field(description="share of real trials each check rejects alone")
    real_rejection: float = Field(description="share of real trials the checks together reject")
    scored: dict[str, int] = Field(description="real trials each score applies to")


def calibration_key(store: TrialStore, splits: list[str]) -> str:
    ids = sorted(store.filter_ids(grounding_filter(splits)))
    digest = hashlib.sha256("\n".join([CALIBRATION_VERSION, store.embedding_model, *sorted(splits), *ids]).encode())
    return digest.hexdigest()[:16]


def score_matrix(knowledge: DomainKnowledge, progress: ProgressFn | None = None) -> dict[str, np.ndarray]:
    """Per score name, every grounding trial's leave-one-out score (NaN where it does not apply)."""
    trials = knowledge.trials
    columns: dict[str, list[float]] = {}
    for number, trial in enumerate(trials, 1):
        for name, score in knowledge.scores(trial, exclude=trial.nct_id).items():
            columns.setdefault(name, [np.nan] * len(trials))[number - 1] = np.nan if score.score is None else score.score
        if progress and (number % 25 == 0 or number == len(trials)):
            progress(number, len(trials))
    return {name: np.asarray(values, dtype=float) for name, values in columns.items()}


def choose_thresholds(scores: dict[str, np.ndarray], max_real_rejection: float = 0.05) -> tuple[float, dict[str, float], float]:
    """The largest shared quantile q whose thresholds reject at most `max_real_rejection` of the trials
    (any check failing), the thresholds, and the joint rejection rate."""
    names = [n for n, v in scores.items() if np.isfinite(v).any()]

    def at(q: float) -> tuple[dict[str, float], float]:
        thresholds = {n: float(np.nanquantile(scores[n], q)) for n in names}
        rejected = np.zeros(len(next(iter(scores.values()))), dtype=bool)
        for n in names:
            rejected |= np.nan_to_num(scores[n], nan=np.inf) < thresholds[n]
        return thresholds, float(rejected.mean())

    low, high = 0.0, max_real_rejection
    for _ in range(30):  # bisection: the joint rate grows with q
        mid = (low + high) / 2
        if at(mid)[1] <= max_real_rejection:
            low = mid
        else:
            high = mid
    thresholds, rate = at(low)
    return low, thresholds, rate


def calibrate(knowledge: DomainKnowledge, key: str, splits: list[str], max_real_rejection: float = 0.05,
              progress: ProgressFn | None = None) -> Calibration:
    scores = score_matrix(knowledge, progress)
    quantile, thresholds, rate = choose_thresholds(scores, max_real_rejection)
    alone = {n: float((np.nan_to_num(scores[n], nan=np.inf) < t).mean()) for n, t in thresholds.items()}
    return Calibration(key=key, splits=splits, trials=len(knowledge.trials), quantile=round(quantile, 5),
                       max_real_rejection=max_real_rejection, thresholds={n: round(t, 5) for n, t in thresholds.items()},
                       rejection_rates={n: round(r, 4) for n, r in alone.items()}, real_rejection=round(rate, 4),
                       scored={n: int(np.isfinite(v).sum()) for n, v in scores.items()})


def build_knowledge(store: TrialStore, splits: list[str], progress: ProgressFn | None = None) -> DomainKnowledge:
    """The domain knowledge of the store's grounding trials: their sections embedded once and cached
    with the store; a draft's new sections embedded by the store's encoder (never cached there)."""
    trials = store.filter(grounding_filter(splits))
    return DomainKnowledge(trials, lambda texts: store.section_vectors(texts, progress),
                           encode=lambda texts: store.embeddings.embed_array(texts))


def load_or_calibrate(store: TrialStore, splits: list[str], knowledge: DomainKnowledge | None = None,
                      say: SayFn | None = None, progress: ProgressFn | None = None) -> Calibration:
    """The store's calibration for `splits`, computed and saved on the spot when there is none."""
    key = calibration_key(store, splits)
    saved = store.load_calibration(key)
    if saved is not None:
        return Calibration.model_validate(saved)
    if say:
        say(f"calibrating the critic on the real {'/'.join(splits)} trials (once per store; "
            f"`synthtrials store calibrate` does it ahead of time)")
    knowledge = knowledge or build_knowledge(store, splits, progress)
    calibration = calibrate(knowledge, key, splits, progress=progress)
    store.save_calibration(key, calibration.model_dump())
    return calibration
