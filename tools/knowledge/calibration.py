"""Calibration of the critic's domain checks: thresholds are quantiles of the same scores on real
grounding trials, not magic numbers.

Every real grounding trial is scored leave-one-trial-out (`DomainKnowledge.scores(t, exclude=t)`:
its own sections never count as its neighbours), each score taken over the trial's worst section.
The checks together may reject at most `max_real_rejection` (5%) of the real trials. That budget is
spent where it catches incoherent trials made from the grounding split itself
(`spoiled_grounding_trials`: each trial with the conditions of an unrelated grounding trial, with its
eligibility, with one of its inclusion criteria inserted, or with its criteria cut to fragments): every score starts at the quantile
`FLOOR_QUANTILE` of its real values and the score whose next step catches the most of those spoiled
trials per real trial lost is raised, step by step, until the budget is spent or no step catches
more (`allocate_thresholds`). No trial outside the grounding split is read. The result is saved with
the store under a key that hashes what it depends on (the grounding trials, the embedding model,
the method's version), so re-ingesting or naming other splits gives another calibration, and a run
records the key and the thresholds it used.
"""

from __future__ import annotations

import hashlib
import random
import re

import numpy as np
from pydantic import BaseModel, Field
from synthtrials.tools.knowledge.coherence import MIN_COHERENCE_TRIALS
from synthtrials.tools.knowledge.domain import DomainKnowledge
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.progress import ProgressFn, SayFn
from synthtrials.tools.store.protocol import (
    TrialStore,
    grounding_filter,
)
from synthtrials.tools.records.trial import Eligibility, Trial

CALIBRATION_VERSION = "4"  # 4: the coherence scores, the budget allocated on spoiled grounding trials
FLOOR_QUANTILE = 0.001
QUANTILE_STEP = 0.001
LOOKAHEAD_STEPS = 10  # a score's next raise may need a few steps before it catches another spoiled trial
UNRELATED_BELOW = 0.35  # condition centroids less similar than this belong to unrelated trials
SPOIL_SEED = 0


class Calibration(BaseModel):
    key: str
    splits: list[str]
    trials: int = Field(description="real grounding trials scored leave-one-trial-out")
    quantile: float = Field(description="the floor quantile every score's threshold starts from")
    quantiles: dict[str, float] = Field(default_factory=dict, description="each score's threshold as a quantile of its real values")
    spoiled_caught: dict[str, float] = Field(default_factory=dict,
                                             description="share of each kind of spoiled grounding trial the checks catch")
    max_real_rejection: float
    thresholds: dict[str, float]
    rejection_rates: dict[str, float] = Field(description="share of real trials each check rejects alone")
    real_rejection: float = Field(description="share of real trials the checks together reject")
    scored: dict[str, int] = Field(description="real trials each score applies to")


def calibration_key(store: TrialStore, splits: list[str], sample: list[str] | None = None) -> str:
    """Names a calibration by everything it depends on: the grounding trials (`sample`: a `--ground-sample` of them)."""
    ids = sorted(store.filter_ids(grounding_filter(splits, sample)))
    digest = hashlib.sha256("\n".join([CALIBRATION_VERSION, store.embedding_model, *sorted(splits), *ids]).encode())
    return digest.hexdigest()[:16]


def score_matrix(knowledge: DomainKnowledge, progress: ProgressFn | None = None,
                 trials: list[Trial] | None = None) -> dict[str, np.ndarray]:
    """Per score name, every grounding trial's (or `trials'`, each a grounding trial's variant under
    its id) leave-one-out score (NaN where it does not apply)."""
    trials = knowledge.trials if trials is None else trials
    columns: dict[str, list[float]] = {}
    every = knowledge.scores_of(trials, [trial.nct_id for trial in trials])
    for number, scores in enumerate(every, 1):
        for name, score in scores.items():
            columns.setdefault(name, [np.nan] * len(trials))[number - 1] = np.nan if score.score is None else score.score
        if progress and (number % 25 == 0 or number == len(trials)):
            progress(number, len(trials))
    return {name: np.asarray(values, dtype=float) for name, values in columns.items()}


def _inclusion(trial: Trial) -> list[str]:
    return [c for c in trial.eligibility.inclusion if c.strip()] if trial.eligibility else []


def _words(texts: list[str]) -> set[str]:
    return {w for text in texts for w in re.findall(r"[a-z]{5,}", text.lower())}


def off_topic_criteria(trial: Trial, other: Trial) -> list[str]:
    """`other`'s inclusion criteria that are about its conditions and not about `trial`'s: those that
    name one of its conditions whole, else those with a word of its conditions (5 letters or more)
    that `trial`'s conditions do not have; [] where none does (a criterion such as "signed informed
    consent" fits any trial and is no error)."""
    own = _words(trial.conditions)
    criteria = _inclusion(other)
    whole = [c for c in criteria if any(len(n) >= 5 and n.lower() in c.lower() for n in other.conditions)
             and not own & _words([c])]
    if whole:
        return whole
    foreign = _words(other.conditions) - own
    return [c for c in criteria if foreign & _words([c]) and not own & _words([c])]


def with_off_topic_criterion(trial: Trial, other: Trial, rng: random.Random) -> Trial:
    """`trial` with one of `off_topic_criteria(trial, other)` (else any inclusion criterion of
    `other`) inserted at a random place among its inclusion criteria."""
    eligibility = trial.eligibility or Eligibility()
    inclusion = list(eligibility.inclusion)
    inclusion.insert(rng.randint(0, len(inclusion)), rng.choice(off_topic_criteria(trial, other) or _inclusion(other)))
    return trial.model_copy(update={"eligibility": eligibility.model_copy(update={"inclusion": inclusion})})


def spoiled_grounding_trials(knowledge: DomainKnowledge, seed: int = SPOIL_SEED) -> dict[str, list[Trial]]:
    """Grounding trials made incoherent, each under its own id (scored leave-one-out), by kind:
    the conditions of an unrelated grounding trial (its conditions' centroid less similar than
    `UNRELATED_BELOW`), that trial's eligibility, or one of that trial's inclusion criteria about its
    own conditions inserted among the trial's (`with_off_topic_criterion`); and the trial's
    criteria cut to fragments of 8-20 characters (a writer stopped short)."""
    model = knowledge.coherence
    rng = random.Random(seed)
    by_id = {t.nct_id: t for t in knowledge.trials}
    similar = model.conditions @ model.conditions.T if len(model) else np.zeros((0, 0))
    out: dict[str, list[Trial]] = {"unrelated_conditions": [], "unrelated_eligibility": [], "off_topic_criterion": [],
                                   "fragments": []}
    for row, trial_id in enumerate(model.ids):
        trial = by_id[trial_id]
        unrelated = [model.ids[j] for j in np.flatnonzero(similar[row] < UNRELATED_BELOW) if _inclusion(by_id[model.ids[j]])]
        if not unrelated or not trial.eligibility:
            continue
        other = by_id[rng.choice(unrelated)]
        out["unrelated_conditions"].append(trial.model_copy(update={"conditions": other.conditions}))
        out["unrelated_eligibility"].append(trial.model_copy(update={"eligibility": other.eligibility}))
        out["off_topic_criterion"].append(with_off_topic_criterion(trial, other, rng))
        cut = trial.eligibility.model_copy(update={
            "inclusion": [c[:rng.randint(8, 20)] for c in trial.eligibility.inclusion],
            "exclusion": [c[:rng.randint(8, 20)] for c in trial.eligibility.exclusion]})
        out["fragments"].append(trial.model_copy(update={"eligibility": cut}))
    return out


def _rejected(scores: dict[str, np.ndarray], thresholds: dict[str, float]) -> np.ndarray:
    rows = len(next(iter(scores.values()))) if scores else 0
    rejected = np.zeros(rows, dtype=bool)
    for name, limit in thresholds.items():
        if name in scores:
            rejected |= np.nan_to_num(scores[name], nan=np.inf) < limit
    return rejected


def allocate_thresholds(real: dict[str, np.ndarray], spoiled: dict[str, dict[str, np.ndarray]],
                        max_real_rejection: float = 0.05, floor: float = FLOOR_QUANTILE,
                        step: float = QUANTILE_STEP) -> tuple[dict[str, float], dict[str, float], float]:
    """Each score's quantile and threshold, and the joint real rejection: every score starts at
    `floor`; the score whose smallest raise (a few `step`s at most) that catches more spoiled trials
    catches the most (the mean over kinds of the share caught) per real trial lost is raised, while
    the joint rejection stays within `max_real_rejection` and a raise still catches more."""
    names = [n for n, v in real.items() if np.isfinite(v).any()]
    quantiles = {n: floor for n in names}

    def state(q: dict[str, float]) -> tuple[dict[str, float], float, float]:
        thresholds = {n: float(np.nanquantile(real[n], q[n])) for n in names}
        caught = float(np.mean([_rejected(kind, thresholds).mean() for kind in spoiled.values()])) if spoiled else 0.0
        return thresholds, float(_rejected(real, thresholds).mean()), caught

    thresholds, rate, caught = state(quantiles)
    while True:
        best = None
        for name in names:
            for steps in range(1, LOOKAHEAD_STEPS + 1):  # the smallest raise of this score that catches more
                trial = quantiles | {name: quantiles[name] + steps * step}
                t, r, c = state(trial)
                if r > max_real_rejection:
                    break
                if c > caught:
                    gain = (c - caught) / max(r - rate, 1.0 / len(next(iter(real.values()))))
                    if best is None or gain > best[0]:
                        best = (gain, trial, t, r, c)
                    break
        if best is None:
            return quantiles, thresholds, rate
        _, quantiles, thresholds, rate, caught = best


def calibrate(knowledge: DomainKnowledge, key: str, splits: list[str], max_real_rejection: float = 0.05,
              progress: ProgressFn | None = None) -> Calibration:
    if not knowledge.coherence.usable:
        raise ConfigError(f"only {len(knowledge.coherence)} real {'/'.join(splits)} trials have both conditions and "
                          f"eligibility criteria; the critic's coherence checks need at least {MIN_COHERENCE_TRIALS}: "
                          f"ingest more trials into that split (or name other splits with --ground-on)")
    scores = score_matrix(knowledge, progress)
    spoiled_trials = spoiled_grounding_trials(knowledge)
    # their new sections (fragments) embedded in one call, not trial by trial as they are scored
    knowledge.embed_with_sections([trial for trials in spoiled_trials.values() for trial in trials])
    spoiled = {kind: score_matrix(knowledge, trials=trials) for kind, trials in spoiled_trials.items()}
    quantiles, thresholds, rate = allocate_thresholds(scores, spoiled, max_real_rejection)
    alone = {n: float((np.nan_to_num(scores[n], nan=np.inf) < t).mean()) for n, t in thresholds.items()}
    return Calibration(key=key, splits=splits, trials=len(knowledge.trials), quantile=FLOOR_QUANTILE,
                       quantiles={n: round(q, 5) for n, q in quantiles.items()},
                       max_real_rejection=max_real_rejection, thresholds={n: round(t, 5) for n, t in thresholds.items()},
                       rejection_rates={n: round(r, 4) for n, r in alone.items()}, real_rejection=round(rate, 4),
                       scored={n: int(np.isfinite(v).sum()) for n, v in scores.items()},
                       spoiled_caught={k: round(float(_rejected(v, thresholds).mean()), 4) for k, v in spoiled.items()})


def build_knowledge(store: TrialStore, splits: list[str], progress: ProgressFn | None = None,
                    sample: list[str] | None = None) -> DomainKnowledge:
    """The domain knowledge of the store's grounding trials: their sections embedded once and cached
    with the store; a draft's new sections embedded by the store's encoder (never cached there)."""
    trials = store.filter(grounding_filter(splits, sample))
    return DomainKnowledge(trials, lambda texts: store.section_vectors(texts, progress),
                           encode=lambda texts: store.embeddings.embed_array(texts))


def load_or_calibrate(store: TrialStore, splits: list[str], knowledge: DomainKnowledge | None = None,
                      say: SayFn | None = None, progress: ProgressFn | None = None,
                      sample: list[str] | None = None) -> Calibration:
    """The store's calibration for `splits`, computed and saved on the spot when there is none."""
    key = calibration_key(store, splits, sample)
    saved = store.load_calibration(key)
    if saved is not None:
        return Calibration.model_validate(saved)
    if say:
        say(f"calibrating the critic on the real {'/'.join(splits)} trials (once per store; "
            f"`synthtrials store calibrate` does it ahead of time)")
    knowledge = knowledge or build_knowledge(store, splits, progress, sample)
    calibration = calibrate(knowledge, key, splits, progress=progress)
    store.save_calibration(key, calibration.model_dump())
    return calibration
