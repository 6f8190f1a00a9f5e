"""Calibration of the critic's domain checks: thresholds are quantiles of the same scores on real
grounding trials, not magic numbers.

Every real grounding trial is scored leave-one-trial-out (`DomainKnowledge.scores(t, exclude=t)`:
its own sections never count as its neighbours), each score taken over the trial's worst section.
The checks together may reject at most `max_real_rejection` (5%) of real trials they did not see.
That budget is spent where it catches incoherent trials made from the grounding split itself
(`spoiled_grounding_trials`: each trial with the conditions of an unrelated grounding trial, with its
eligibility, with one of its inclusion criteria inserted, with its criteria cut to fragments, or with
one fluent sentence from outside medicine among its criteria, one that the model of
`typicality_criterion_language` scoring the trial never saw; each
scored without its own trial and without the trial it took a section from, as a writer's mistake has
no donor among the grounding trials), in three steps (`allocate_budget`):
- one joint score over all the others (`tools.knowledge.joint.JointScore`: a logistic regression of
  the real grounding trials against their spoiled copies, all kinds but `NOT_IN_JOINT`: a foreign
  sentence, which one score's own threshold sees), its values on the grounding trials
  cross-fitted over `CROSS_FIT_FOLDS` folds of trials (a trial and its spoiled copies in one fold,
  each fold scored by the model fitted on the others): a swapped section lowers several scores a
  little at once, which no score alone sees;
- for each part of the budget in `SCORE_SHARES`, the scores one by one spend that part
  (`allocate_scores`, versions 5-6's allocation): a greedy allocation (`allocate_thresholds`: every
  score starts at the quantile `FLOOR_QUANTILE` of its real values and the score whose next step
  catches the most spoiled trials per real trial lost is raised), run on `BAG_RESAMPLES` bootstrap
  resamples of the grounding trials, each score's median quantile (`bagged_quantiles`), those raises
  scaled together as far as the cross-fitted rejection stays within the part (`cross_fitted_level`;
  the floors too, on a store too small for them, down to each score's lowest real value);
- the joint score's quantile raised as far as the rejection of all the checks, cross-fitted over the
  same folds, stays within the budget (`joint_quantile`), and the part kept that catches the most
  spoiled grounding trials. A store of fewer than a few hundred grounding trials may not keep the
  budget even at the loosest thresholds; its calibration records and says so.
At the same real rejection, version 7 catches 9-11 points more of both swapped kinds than version 6
(which spent the whole budget score by score), 13-16 on grounding trials it did not see
(benchmarks/bench_joint_score.py).
Opt-in (`synthtrials store calibrate --cross-encoder`, `train_cross_encoder`): the cross-encoder's fold models
(`tools.knowledge.cross_encoder`) are trained on the grounding trials first, and their score
`coherence_cross_encoder` (each grounding trial and its spoiled copies scored by the fold model that did not
see it) is one more column of the same allocation and of the joint score; that calibration has its own key
(`cross_encoder_key`), and where a store has it, `build_knowledge` and `load_or_calibrate` use it.
No trial outside the grounding split is read. The result is saved with
the store under a key that hashes what it depends on (the grounding trials, the embedding model,
the method's version, the learnt scores' versions, the foreign sentences), so re-ingesting or naming other splits gives another calibration, and a run
records the key and the thresholds it used.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field
from synthtrials.tools.knowledge.coherence import (  # noqa: F401  (off_topic_criteria: imported from here too)
    MIN_COHERENCE_TRIALS,
    Excluded,
    inclusion_criteria as _inclusion,
    off_topic_criteria,
)
from synthtrials.tools.knowledge import cross_encoder as ce
from synthtrials.tools.knowledge.checks import CriticThresholds
from synthtrials.tools.knowledge.criterion_fit import VERSION as criterion_fit_version
from synthtrials.tools.knowledge.criterion_fit import CriterionFit
from synthtrials.tools.knowledge.criterion_language import VERSION as criterion_language_version
from synthtrials.tools.knowledge.criterion_language import (
    CriterionLanguage,
    foreign_sentences,
    sentences_digest,
)
from synthtrials.tools.knowledge.domain import DomainKnowledge
from synthtrials.tools.knowledge.joint import JOINT, JointScore
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.progress import ProgressFn, SayFn
from synthtrials.tools.store.protocol import (
    TrialStore,
    grounding_filter,
)
from synthtrials.tools.records.trial import Eligibility, Trial

#: 4: the coherence scores, the budget allocated on spoiled grounding trials; 5: bagged, cross-fitted;
#: 6: a spoiled trial scored without the trial it took its section from; 7: the joint score takes the budget;
#: 8: a fifth spoiled kind, one sentence from outside medicine among the criteria (`foreign_sentence`);
#: 9: `coherence_criterion_fit`, each inclusion criterion read by a model learnt from the grounding trials
#: (`tools.knowledge.criterion_fit`); 10: `typicality_criterion_language`, each criterion read by a model learnt
#: from the grounding trials' criteria against foreign sentences (`tools.knowledge.criterion_language`); a
#: foreign sentence spoils a grounding trial only where that model never saw it
CALIBRATION_VERSION = "10"
FLOOR_QUANTILE = 0.001
UNRELATED_BELOW = 0.35  # condition centroids less similar than this belong to unrelated trials
SPOIL_SEED = 0
QUANTILE_STEP = 0.001
LOOKAHEAD_STEPS = 10  # a score's next raise may need a few steps before it catches another spoiled trial
BAG_RESAMPLES = 25  # bootstrap resamples whose allocations' median is the calibration's
SCORE_SHARES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # parts of the budget the scores may spend one by one
CROSS_FIT_FOLDS = 5  # folds of the joint score's values and of the cross-fitted real rejection the budget bounds
ALLOCATION_SEED = 0
#: the spoiled kinds the joint score is not fitted on (their values are still read and counted): the joint
#: score is for kinds that lower several scores a little at once. A foreign sentence lowers one score far
#: (its criterion's typicality), which that score's own threshold sees; fitted on it too, the one linear
#: model weighs typicality against the swaps' scores and catches fewer swaps (benchmarks/RESULTS.md,
#: "Criteria written without headers")
NOT_IN_JOINT = ("foreign_sentence",)
#: scores the joint score leaves out, kept to their own thresholds: with `coherence_criterion_fit` in it the joint
#: score spent its weight on the swaps and caught 9 points fewer phase II fragments (benchmarks/RESULTS.md,
#: "A learnt fit of each inclusion criterion"). `typicality_criterion_language` is in it: left out, the allocation
#: gave the joint score more of the budget and caught 4 points fewer off-topic criteria (benchmarks/RESULTS.md,
#: "Criteria that do not read like criteria")
SCORES_NOT_IN_JOINT = ("coherence_criterion_fit",)
MAX_LEVEL = 8.0  # the allocation's raises above the floors at most 7 times their shares


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
    cross_fitted_rejection: float | None = Field(
        default=None, description="the same share on trials the thresholds were not read from (5-fold cross-fitted): "
                                  "what the budget bounds, and what to expect on new real trials like these")
    scored: dict[str, int] = Field(description="real trials each score applies to")
    joint: JointScore | None = Field(default=None, description="the joint score over the others (`coherence_joint`)")
    score_share: float | None = Field(default=None, description="the part of the budget the scores spent one by one "
                                                                "(the joint score spent the rest)")
    cross_encoder: dict | None = Field(default=None, description="the cross-encoder's settings and the folder of its "
                                                                 "fold models, where it is one of the scores")

    def critic_thresholds(self, base: CriticThresholds | None = None) -> CriticThresholds:
        """`base` (default: the documented constants) with this calibration's thresholds and joint score."""
        return (base or CriticThresholds()).model_copy(update={"calibrated": self.thresholds, "calibration": self.key,
                                                             "joint": self.joint})


def calibration_key(store: TrialStore, splits: list[str], sample: list[str] | None = None) -> str:
    """Names a calibration by everything it depends on: the grounding trials (`sample`: a `--ground-sample` of them)."""
    ids = sorted(store.filter_ids(grounding_filter(splits, sample)))
    # the learnt criterion fit's version too: its models set a score the thresholds are read from
    versions = (f"{CALIBRATION_VERSION} criterion-fit {criterion_fit_version} criterion-language {criterion_language_version}"
                f" foreign {sentences_digest(foreign_sentences())}")
    digest = hashlib.sha256("\n".join([versions, store.embedding_model, *sorted(splits), *ids]).encode())
    return digest.hexdigest()[:16]


def cross_encoder_key(store: TrialStore, splits: list[str], sample: list[str] | None = None) -> str:
    """Names the calibration with the cross-encoder (`store calibrate --cross-encoder`), and its fold models' folder."""
    base = calibration_key(store, splits, sample)
    return hashlib.sha256(f"{base} cross-encoder {ce.VERSION}".encode()).hexdigest()[:16]


def model_folder(store: TrialStore, key: str) -> Path:
    """Where the cross-encoder's fold models of calibration `key` live: in the store's folder for the local store,
    else in the user's cache (`SYNTHTRIALS_CACHE`, default ~/.cache/synthtrials), per machine."""
    root = getattr(store, "path", None)
    if root is None:
        root = Path(os.environ.get("SYNTHTRIALS_CACHE", Path.home() / ".cache" / "synthtrials"))
    return Path(root) / "cross_encoder" / key


def criterion_fit_file(store: TrialStore, key: str) -> Path:
    """Where the `coherence_criterion_fit` fold models of the grounding trials of calibration `key` are kept (fitted
    once, about 20 s on phase_I_train): beside the cross-encoder's models (`model_folder`)."""
    return model_folder(store, key).parent.parent / "criterion_fit" / f"{key}.npz"


def criterion_language_file(store: TrialStore, key: str) -> Path:
    """Where the `typicality_criterion_language` fold models of calibration `key` are kept (fitted once, a few
    seconds): beside the criterion fit's (`criterion_fit_file`)."""
    return model_folder(store, key).parent.parent / "criterion_language" / f"{key}.npz"


def attach_cross_encoder(store: TrialStore, splits: list[str], knowledge: DomainKnowledge,
                         sample: list[str] | None = None) -> None:
    """Give `knowledge` the fold models of the store's calibration with the cross-encoder, where it has one."""
    key = cross_encoder_key(store, splits, sample)
    saved = store.load_calibration(key)
    if saved is not None and saved.get("cross_encoder") and knowledge.cross_encoder is None:
        # found where the store is now (the folder recorded is where it was trained: a store may be moved)
        knowledge.cross_encoder = ce.CrossEncoderCoherence.load(model_folder(store, key))


def train_cross_encoder(store: TrialStore, knowledge: DomainKnowledge, splits: list[str], epochs: int = ce.EPOCHS,
                        folds: int = ce.FOLDS, max_tokens: int = ce.MAX_TOKENS,
                        progress: ce.FoldProgress | None = None, sample: list[str] | None = None) -> str:
    """Train the cross-encoder's fold models on the grounding trials (`knowledge`'s: the `sample` of them it was
    built on, if any), save them with the store, give them to `knowledge`; returns the key of the calibration
    they belong to."""
    key = cross_encoder_key(store, splits, sample)
    model = knowledge.coherence
    trials = [t for t in knowledge.trials if t.nct_id in model.position]
    vectors = model.conditions[[model.position[t.nct_id] for t in trials]]
    trained = ce.CrossEncoderCoherence.train(trials, vectors, folds=folds, epochs=epochs, max_tokens=max_tokens,
                                             progress=progress)
    folder = model_folder(store, key)
    trained.save(folder)
    trained.settings["folder"] = str(folder.resolve())
    knowledge.cross_encoder = trained
    return key


def score_matrix(knowledge: DomainKnowledge, progress: ProgressFn | None = None,
                 trials: list[Trial] | None = None, excludes: Sequence[Excluded] | None = None) -> dict[str, np.ndarray]:
    """Per score name, every grounding trial's (or `trials'`, each a grounding trial's variant under
    its id) leave-one-out score (NaN where it does not apply); `excludes`: what each trial leaves out
    (default: its own id)."""
    trials = knowledge.trials if trials is None else trials
    columns: dict[str, list[float]] = {}
    every = knowledge.scores_of(trials, [trial.nct_id for trial in trials] if excludes is None else list(excludes))
    for number, scores in enumerate(every, 1):
        for name, score in scores.items():
            columns.setdefault(name, [np.nan] * len(trials))[number - 1] = np.nan if score.score is None else score.score
        if progress and (number % 25 == 0 or number == len(trials)):
            progress(number, len(trials))
    return {name: np.asarray(values, dtype=float) for name, values in columns.items()}


def with_off_topic_criterion(trial: Trial, other: Trial, rng: random.Random) -> Trial:
    """`trial` with one of `off_topic_criteria(trial, other)` (else any inclusion criterion of
    `other`) inserted at a random place among its inclusion criteria.

    The "else" gives a copy that may not be spoiled at all ("signed informed consent" fits every trial):
    35% of the calibration's off-topic copies of phase_I_train. The calibration keeps them: with the donor
    drawn by `off_topic_donor` instead, the allocation caught 2 points fewer grounding fragments and phase II
    did not gain (benchmarks/RESULTS.md, "Off-topic copies that are off-topic"). bench_critic draws its
    donors with `off_topic_donor` where the first has none."""
    return with_inserted_criterion(trial, off_topic_criteria(trial, other) or _inclusion(other), rng)


def off_topic_donor(trial: Trial, candidates: Sequence[Trial], rng: random.Random) -> Trial | None:
    """The first of `candidates`, in an order drawn by `rng`, with an inclusion criterion about its own conditions
    and not about `trial`'s (`off_topic_criteria`); None where none has one."""
    order = list(range(len(candidates)))
    rng.shuffle(order)
    return next((candidates[i] for i in order if off_topic_criteria(trial, candidates[i])), None)


def with_inserted_criterion(trial: Trial, choices: Sequence[str], rng: random.Random) -> Trial:
    """`trial` with one of `choices` inserted at a random place among its inclusion criteria (the place drawn
    first, then the criterion)."""
    eligibility = trial.eligibility or Eligibility()
    inclusion = list(eligibility.inclusion)
    inclusion.insert(rng.randint(0, len(inclusion)), rng.choice(choices))
    return trial.model_copy(update={"eligibility": eligibility.model_copy(update={"inclusion": inclusion})})


def with_foreign_sentence(trial: Trial, rng: random.Random, choices: Sequence[str] | None = None) -> Trial:
    """`trial` with one of `choices` (default `foreign_sentences()`) inserted at a random place among its inclusion
    criteria."""
    return with_inserted_criterion(trial, choices or foreign_sentences(), rng)


def spoiled_grounding_trials(knowledge: DomainKnowledge, seed: int = SPOIL_SEED) -> dict[str, list[Trial]]:
    """Grounding trials made incoherent, each under its own id, by kind (`spoiled_with_donors`)."""
    return {kind: [trial for trial, _ in pairs] for kind, pairs in spoiled_with_donors(knowledge, seed).items()}


def spoiled_with_donors(knowledge: DomainKnowledge, seed: int = SPOIL_SEED) -> dict[str, list[tuple[Trial, Excluded]]]:
    """Grounding trials made incoherent, each under its own id, by kind, with the trials each is
    scored without (its own, and the donor of the section it took): the conditions of an unrelated
    grounding trial (its conditions' centroid less similar than `UNRELATED_BELOW`), that trial's
    eligibility, or one of that trial's inclusion criteria about its own conditions inserted among
    the trial's (`with_off_topic_criterion`); and the trial's criteria cut to fragments of 8-20
    characters (a writer stopped short); and one fluent sentence from outside medicine inserted among
    its inclusion criteria (`with_foreign_sentence`; its own random draws, so the other kinds are
    drawn as before version 8). Leaving the donor out matters: with it in, a swapped
    section finds its own trial among the neighbours (the swapped criteria lead to exactly the
    donor's conditions), which no writer's mistake and no unseen trial offers, and the budget would
    go to the checks that exploit it (calibration version 6)."""
    model = knowledge.coherence
    rng = random.Random(seed)
    by_id = {t.nct_id: t for t in knowledge.trials}
    similar = model.conditions @ model.conditions.T if len(model) else np.zeros((0, 0))
    foreign = random.Random(f"foreign_sentence {seed}")
    out: dict[str, list[tuple[Trial, Excluded]]] = {"unrelated_conditions": [], "unrelated_eligibility": [],
                                                     "off_topic_criterion": [], "fragments": [],
                                                     "foreign_sentence": []}
    for row, trial_id in enumerate(model.ids):
        trial = by_id[trial_id]
        unrelated = [model.ids[j] for j in np.flatnonzero(similar[row] < UNRELATED_BELOW) if _inclusion(by_id[model.ids[j]])]
        if not unrelated or not trial.eligibility:
            continue
        other = by_id[rng.choice(unrelated)]
        both = (trial_id, other.nct_id)
        out["unrelated_conditions"].append((trial.model_copy(update={"conditions": other.conditions}), both))
        out["unrelated_eligibility"].append((trial.model_copy(update={"eligibility": other.eligibility}), both))
        out["off_topic_criterion"].append((with_off_topic_criterion(trial, other, rng), both))
        cut = trial.eligibility.model_copy(update={
            "inclusion": [c[:rng.randint(8, 20)] for c in trial.eligibility.inclusion],
            "exclusion": [c[:rng.randint(8, 20)] for c in trial.eligibility.exclusion]})
        out["fragments"].append((trial.model_copy(update={"eligibility": cut}), trial_id))
        # a sentence the model of `typicality_criterion_language` that scores this trial never saw
        held_out = knowledge.criterion_language.held_out_sentences(trial_id) if knowledge.criterion_language else None
        out["foreign_sentence"].append((with_foreign_sentence(trial, foreign, held_out), trial_id))
    return out


def _rejected(scores: dict[str, np.ndarray], thresholds: dict[str, float]) -> np.ndarray:
    rows = len(next(iter(scores.values()))) if scores else 0
    rejected = np.zeros(rows, dtype=bool)
    for name, limit in thresholds.items():
        if name in scores:
            rejected |= np.nan_to_num(scores[name], nan=np.inf) < limit
    return rejected


def _filled(scores: dict[str, np.ndarray], name: str, rows: int) -> np.ndarray:
    """A score's values with NaN (the score does not apply) as +inf: never below a threshold."""
    return np.nan_to_num(scores[name], nan=np.inf) if name in scores else np.full(rows, np.inf)


def _thresholds_at(real: dict[str, np.ndarray], quantiles: dict[str, float]) -> dict[str, float]:
    return {n: float(np.nanquantile(real[n], min(q, 1.0))) for n, q in quantiles.items() if np.isfinite(real[n]).any()}


def cross_fitted_rejection(real: dict[str, np.ndarray], quantiles: dict[str, float],
                           folds: int = CROSS_FIT_FOLDS, seed: int = ALLOCATION_SEED) -> float:
    """The joint real rejection of the thresholds at `quantiles` on trials they were not read from:
    each fold's trials judged by the quantiles of the other folds' scores."""
    rows = len(next(iter(real.values())))
    order = np.random.default_rng(seed).permutation(rows)
    rejected = 0
    for held_out in np.array_split(order, folds):
        kept = np.setdiff1d(order, held_out)
        limits = _thresholds_at({n: v[kept] for n, v in real.items()}, quantiles)
        rejected += int(_rejected({n: v[held_out] for n, v in real.items()}, limits).sum())
    return rejected / rows


def at_level(shares: dict[str, float], level: float, floor: float = FLOOR_QUANTILE) -> dict[str, float]:
    """The quantiles at one `level` of the allocation `shares`: at 1 the floor of every score, above 1
    each score's raise above its floor times (level - 1) (at 2, `shares` themselves), below 1 the
    floors times the level (a store too small for even the floors within the budget)."""
    if level <= 1.0:
        return {n: level * min(q, floor) for n, q in shares.items()}
    return {n: min(min(q, floor) + (level - 1.0) * max(q - floor, 0.0), 1.0) for n, q in shares.items()}


def cross_fitted_level(real: dict[str, np.ndarray], shares: dict[str, float],
                       max_real_rejection: float = 0.05, highest: float = MAX_LEVEL) -> float:
    """The highest level of `shares` (`at_level`, to 1e-3 by bisection, at most `highest`) whose
    cross-fitted joint real rejection stays within `max_real_rejection`; 0 (each threshold at the
    score's lowest real value) where none does: a store with too few grounding trials for its
    scores (each still rejects about one trial in as many as it was read from, so 13 scores need a
    few hundred trials). The calibration then records a cross-fitted rejection above the budget, and
    `load_or_calibrate` says so."""
    low, high = 0.0, highest
    while high - low > 1e-3:
        middle = (low + high) / 2
        within = cross_fitted_rejection(real, at_level(shares, middle)) <= max_real_rejection
        low, high = (middle, high) if within else (low, middle)
    return low


def allocate_thresholds(real: dict[str, np.ndarray], spoiled: dict[str, dict[str, np.ndarray]],
                        max_real_rejection: float = 0.05, floor: float = FLOOR_QUANTILE,
                        step: float = QUANTILE_STEP) -> tuple[dict[str, float], dict[str, float], float]:
    """Each score's quantile and threshold, and the joint real rejection: every score starts at
    `floor`; the score whose smallest raise (a few `step`s at most) that catches more spoiled trials
    catches the most (the mean over kinds of the share caught) per real trial lost is raised, while
    the joint rejection stays within `max_real_rejection` and a raise still catches more.

    Each score's masks (real and spoiled trials below its threshold) are computed once per quantile
    step, and a candidate raise is the union of the other scores' masks (how many scores reject each
    trial, less the raised one's) with the raised one's."""
    names = [n for n, v in real.items() if np.isfinite(v).any()]
    rows = len(next(iter(real.values()))) if real else 0
    kinds = list(spoiled)
    kind_rows = [len(next(iter(spoiled[k].values()))) if spoiled[k] else 0 for k in kinds]
    values = {n: _filled(real, n, rows) for n in names}
    spoiled_values = {n: [_filled(spoiled[k], n, r) for k, r in zip(kinds, kind_rows)] for n in names}
    masks: dict[tuple[str, int], tuple[float, np.ndarray, list[np.ndarray]]] = {}

    finite = {n: np.sort(real[n][np.isfinite(real[n])]) for n in names}  # np.nanquantile's values, sorted once

    def at(name: str, steps: int) -> tuple[float, np.ndarray, list[np.ndarray]]:
        if (name, steps) not in masks:
            limit = float(np.quantile(finite[name], min(floor + steps * step, 1.0)))
            masks[name, steps] = (limit, values[name] < limit, [v < limit for v in spoiled_values[name]])
        return masks[name, steps]

    def counts(steps: dict[str, int]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Per real trial and per spoiled trial of each kind, how many scores' thresholds reject it."""
        rejected, caught = np.zeros(rows, dtype=np.int32), [np.zeros(r, dtype=np.int32) for r in kind_rows]
        for name in names:
            _, mask, kind_masks = at(name, steps[name])
            rejected += mask
            for count, kind_mask in zip(caught, kind_masks):
                count += kind_mask
        return rejected, caught

    def others(steps: dict[str, int], left_out: str, counted: tuple[np.ndarray, list[np.ndarray]]
               ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The union of every score's rejections but `left_out`'s: the counts less its own."""
        _, mask, kind_masks = at(left_out, steps[left_out])
        return counted[0] - mask > 0, [count - kind_mask > 0 for count, kind_mask in zip(counted[1], kind_masks)]

    def share(caught: list[np.ndarray]) -> float:
        # a boolean mask's share as its count over its size, their mean summed in order: the values of `.mean()`
        # and `np.mean`, several times faster
        return float(sum(np.count_nonzero(c) / c.size for c in caught) / len(caught)) if caught else 0.0

    steps = {n: 0 for n in names}
    counted = counts(steps)
    rate, caught = float((counted[0] > 0).mean()) if rows else 0.0, share([c > 0 for c in counted[1]])
    while True:
        best = None
        for name in names:
            base, base_caught = others(steps, name, counted)
            for more in range(1, LOOKAHEAD_STEPS + 1):  # the smallest raise of this score that catches more
                _, mask, kind_masks = at(name, steps[name] + more)
                r = np.count_nonzero(base | mask) / rows
                if r > max_real_rejection:
                    break
                c = share([union | kind_mask for union, kind_mask in zip(base_caught, kind_masks)])
                if c > caught:
                    gain = (c - caught) / max(r - rate, 1.0 / rows)
                    if best is None or gain > best[0]:
                        best = (gain, name, steps[name] + more, r, c)
                    break
        if best is None:
            return ({n: floor + steps[n] * step for n in names}, {n: at(n, steps[n])[0] for n in names}, rate)
        _, chosen, steps[chosen], rate, caught = best
        counted = counts(steps)


def resampled(real: dict[str, np.ndarray], spoiled: dict[str, dict[str, np.ndarray]],
              spoiled_of: dict[str, np.ndarray], rows: np.ndarray
              ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """The real trials `rows` (repeats allowed), with their spoiled copies (`spoiled_of[kind][row]`:
    the row of a real trial's copy of that kind, -1 where it has none), and where each drawn trial's
    copy now is."""
    sub_spoiled, sub_spoiled_of = {}, {}
    for kind, scores in spoiled.items():
        copies = spoiled_of[kind][rows]
        sub_spoiled[kind] = {name: values[copies[copies >= 0]] for name, values in scores.items()}
        sub_spoiled_of[kind] = np.where(copies >= 0, np.cumsum(copies >= 0) - 1, -1)
    return {name: values[rows] for name, values in real.items()}, sub_spoiled, sub_spoiled_of


def bagged_quantiles(real: dict[str, np.ndarray], spoiled: dict[str, dict[str, np.ndarray]],
                     spoiled_of: dict[str, np.ndarray], max_real_rejection: float = 0.05,
                     resamples: int = BAG_RESAMPLES, seed: int = ALLOCATION_SEED) -> dict[str, float]:
    """Each score's median quantile over the greedy allocations (`allocate_thresholds`) of
    `resamples` bootstrap resamples of the grounding trials, each trial drawn with its spoiled
    copies (`resampled`). One allocation spends the budget where the trials it sees happen to leave
    gaps between real and spoiled scores; the median over resamples keeps the shares that recur."""
    rows = len(next(iter(real.values())))
    names = [n for n, v in real.items() if np.isfinite(v).any()]
    rng = np.random.default_rng(seed)
    allocations = []
    for _ in range(resamples):
        drawn_real, drawn_spoiled, _ = resampled(real, spoiled, spoiled_of, rng.integers(0, rows, rows))
        allocations.append(allocate_thresholds(drawn_real, drawn_spoiled, max_real_rejection)[0])
    # a score that applies to few trials may be absent from a resample: it stays at the floor there
    return {n: float(np.median([a.get(n, FLOOR_QUANTILE) for a in allocations])) for n in names}


def allocate_scores(real: dict[str, np.ndarray], spoiled: dict[str, dict[str, np.ndarray]],
                    spoiled_of: dict[str, np.ndarray], max_real_rejection: float = 0.05,
                    resamples: int = BAG_RESAMPLES) -> tuple[dict[str, float], dict[str, float], float, float]:
    """Each score's quantile and threshold spending `max_real_rejection` score by score (calibration
    versions 5-6), the rejection on the grounding trials and cross-fitted (on trials the thresholds were
    not read from, which the budget bounds): the shares of `bagged_quantiles`, their raises above the
    floor scaled together by `cross_fitted_level`."""
    shares = bagged_quantiles(real, spoiled, spoiled_of, max_real_rejection, resamples)
    quantiles = at_level(shares, cross_fitted_level(real, shares, max_real_rejection))
    thresholds = _thresholds_at(real, quantiles)
    return (quantiles, thresholds, float(_rejected(real, thresholds).mean()),
            cross_fitted_rejection(real, quantiles))


def _columns(scores: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    rows = len(next(iter(scores.values()))) if scores else 0
    return np.column_stack([scores.get(n, np.full(rows, np.nan)) for n in names])


def copy_sources(spoiled_of: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per kind, each spoiled copy's real trial (the row whose copy it is): `spoiled_of` inverted."""
    source = {}
    for kind, copies in spoiled_of.items():
        has = np.flatnonzero(copies >= 0)
        source[kind] = np.zeros(int(copies.max(initial=-1)) + 1, dtype=int)
        source[kind][copies[has]] = has
    return source


def cross_fitted_joint(real: dict[str, np.ndarray], spoiled: dict[str, dict[str, np.ndarray]],
                       spoiled_of: dict[str, np.ndarray], folds: int = CROSS_FIT_FOLDS, seed: int = ALLOCATION_SEED,
                       fitted_on: tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]] | None = None
                       ) -> tuple[JointScore, np.ndarray, dict[str, np.ndarray]]:
    """The joint score fitted on every grounding trial and its spoiled copies, and its values on them
    cross-fitted: each fold's trials and their copies scored by the model fitted on the other folds.
    `fitted_on`: other scores of the same trials and copies, row for row, to fit the weights on (a bench's
    variant, e.g. scores read as if each drug were new); the values are still those of `real` and `spoiled`."""
    names = sorted(n for n, v in real.items() if np.isfinite(v).any() and n not in SCORES_NOT_IN_JOINT)
    rows = len(real[names[0]])
    fold_of = np.random.default_rng(seed).permutation(rows) % folds
    x_real = _columns(real, names)
    x_kind = {kind: _columns(scores, names) for kind, scores in spoiled.items()}
    fit_real, fit_kind = (x_real, x_kind) if fitted_on is None else (
        _columns(fitted_on[0], names), {kind: _columns(fitted_on[1][kind], names) for kind in spoiled})
    source = copy_sources(spoiled_of)
    joint_real = np.empty(rows)
    joint_kind = {kind: np.empty(len(x)) for kind, x in x_kind.items()}
    for fold in range(folds):
        kept = fold_of != fold
        model = JointScore.fit(names, fit_real[kept], [x[fold_of[source[k]] != fold] for k, x in fit_kind.items()
                                                       if k not in NOT_IN_JOINT])
        joint_real[~kept] = model.values(x_real[~kept])
        for kind, x in x_kind.items():
            held = fold_of[source[kind]] == fold
            joint_kind[kind][held] = model.values(x[held])
    return (JointScore.fit(names, fit_real, [x for k, x in fit_kind.items() if k not in NOT_IN_JOINT]),
            joint_real, joint_kind)


@dataclass
class Allocation:
    """The budget spent: each score's quantile and threshold, the joint rejection on the grounding trials and
    cross-fitted (on trials the thresholds were not read from: what the budget bounds), the part of the budget
    the scores spent one by one, the joint score, and the scores it was read from with the joint score's
    cross-fitted values among them."""

    quantiles: dict[str, float]
    thresholds: dict[str, float]
    real_rejection: float
    cross_fitted_rejection: float
    score_share: float
    joint: JointScore
    real: dict[str, np.ndarray]
    spoiled: dict[str, dict[str, np.ndarray]]


def joint_quantile(real: dict[str, np.ndarray], quantiles: dict[str, float], max_real_rejection: float) -> float:
    """The joint score's highest quantile (to 1e-4 by bisection) at which, beside the other scores at
    `quantiles`, the cross-fitted joint rejection stays within `max_real_rejection` (0 where none does)."""
    low, high = 0.0, min(1.0, 2 * max_real_rejection)
    while high - low > 1e-4:
        middle = (low + high) / 2
        within = cross_fitted_rejection(real, quantiles | {JOINT: middle}) <= max_real_rejection
        low, high = (middle, high) if within else (low, middle)
    return low


def allocate_budget(real: dict[str, np.ndarray], spoiled: dict[str, dict[str, np.ndarray]],
                    spoiled_of: dict[str, np.ndarray], max_real_rejection: float = 0.05,
                    score_shares: Sequence[float] = SCORE_SHARES) -> Allocation:
    """For each part of the budget in `score_shares`, the scores spend that part one by one
    (`allocate_scores`: at 0 each threshold is its score's lowest real value, at 1 the allocation of
    version 6) and the joint score (`cross_fitted_joint`) the rest (`joint_quantile`); the part kept is
    the one whose thresholds, within the budget, catch the most spoiled grounding trials (the mean over
    kinds of the share caught)."""
    joint, joint_real, joint_kind = cross_fitted_joint(real, spoiled, spoiled_of)
    with_joint = real | {JOINT: joint_real}
    spoiled_joint = {kind: scores | {JOINT: joint_kind[kind]} for kind, scores in spoiled.items()}
    best: tuple[tuple[bool, float], float, dict[str, float]] | None = None
    for share in score_shares:
        quantiles = allocate_scores(real, spoiled, spoiled_of, share * max_real_rejection)[0]
        quantiles[JOINT] = joint_quantile(with_joint, quantiles, max_real_rejection)
        thresholds = _thresholds_at(with_joint, quantiles)
        caught = float(np.mean([_rejected(scores, thresholds).mean() for scores in spoiled_joint.values()]))
        # within the budget first (a store too small may keep it at no share), then the most caught
        rank = (cross_fitted_rejection(with_joint, quantiles) <= max_real_rejection, caught)
        if best is None or rank > best[0]:
            best = (rank, share, quantiles)
    assert best is not None
    _, share, quantiles = best
    thresholds = _thresholds_at(with_joint, quantiles)
    return Allocation(quantiles, thresholds, float(_rejected(with_joint, thresholds).mean()),
                      cross_fitted_rejection(with_joint, quantiles), share, joint, with_joint, spoiled_joint)


def calibration_scores(knowledge: DomainKnowledge, progress: ProgressFn | None = None
                       ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """What the budget is allocated on: every grounding trial's leave-one-out scores, those of its
    spoiled copies by kind (`spoiled_grounding_trials`), and for each kind the row of each grounding
    trial's copy (-1 where it has none)."""
    scores = score_matrix(knowledge, progress)
    with_donors = spoiled_with_donors(knowledge)
    spoiled_trials = {kind: [trial for trial, _ in pairs] for kind, pairs in with_donors.items()}
    # their new sections (fragments) embedded in one call, not trial by trial as they are scored
    knowledge.embed_with_sections([trial for trials in spoiled_trials.values() for trial in trials])
    spoiled = {kind: score_matrix(knowledge, trials=spoiled_trials[kind], excludes=[left for _, left in pairs])
               for kind, pairs in with_donors.items()}
    rows_of = {kind: {t.nct_id: row for row, t in enumerate(trials)} for kind, trials in spoiled_trials.items()}
    spoiled_of = {kind: np.asarray([rows.get(t.nct_id, -1) for t in knowledge.trials], dtype=int)
                  for kind, rows in rows_of.items()}
    return scores, spoiled, spoiled_of


def calibrate(knowledge: DomainKnowledge, key: str, splits: list[str], max_real_rejection: float = 0.05,
              progress: ProgressFn | None = None) -> Calibration:
    if not knowledge.coherence.usable:
        raise ConfigError(f"only {len(knowledge.coherence)} real {'/'.join(splits)} trials have both conditions and "
                          f"eligibility criteria; the critic's coherence checks need at least {MIN_COHERENCE_TRIALS}: "
                          f"ingest more trials into that split (or name other splits with --ground-on)")
    scores, spoiled, spoiled_of = calibration_scores(knowledge, progress)
    budget = allocate_budget(scores, spoiled, spoiled_of, max_real_rejection)
    thresholds = budget.thresholds
    alone = {n: float((np.nan_to_num(budget.real[n], nan=np.inf) < t).mean()) for n, t in thresholds.items()}
    return Calibration(key=key, splits=splits, trials=len(knowledge.trials), quantile=FLOOR_QUANTILE,
                       quantiles={n: round(q, 5) for n, q in budget.quantiles.items()},
                       max_real_rejection=max_real_rejection, thresholds={n: round(t, 5) for n, t in thresholds.items()},
                       rejection_rates={n: round(r, 4) for n, r in alone.items()},
                       real_rejection=round(budget.real_rejection, 4),
                       cross_fitted_rejection=round(budget.cross_fitted_rejection, 4),
                       scored={n: int(np.isfinite(v).sum()) for n, v in budget.real.items()},
                       spoiled_caught={k: round(float(_rejected(v, thresholds).mean()), 4)
                                       for k, v in budget.spoiled.items()},
                       joint=budget.joint, score_share=budget.score_share,
                       cross_encoder=dict(knowledge.cross_encoder.settings) if knowledge.cross_encoder else None)


def over_budget(calibration: Calibration) -> str:
    """The warning for a calibration that cannot keep its budget on trials it did not see."""
    return (f"warning: {calibration.trials} real {'/'.join(calibration.splits)} trials are too few for the critic's "
            f"{len(calibration.thresholds)} calibrated checks to keep their budget: even at their loosest they "
            f"reject {calibration.cross_fitted_rejection:.1%} of real trials they were not read from (budget "
            f"{calibration.max_real_rejection:.0%}); ingest more grounding trials")


def build_knowledge(store: TrialStore, splits: list[str], progress: ProgressFn | None = None,
                    sample: list[str] | None = None, cross_encoder: bool = True) -> DomainKnowledge:
    """The domain knowledge of the store's grounding trials: their sections embedded once and cached
    with the store; a draft's new sections embedded by the store's encoder (never cached there); the
    `coherence_criterion_fit` and `typicality_criterion_language` models fitted once and kept with the store
    (`criterion_fit_file`, `criterion_language_file`); the
    cross-encoder's fold models where the store was calibrated with them (unless `cross_encoder` is False)."""
    trials = store.filter(grounding_filter(splits, sample))
    key = calibration_key(store, splits, sample)
    saved_fit, saved_language = criterion_fit_file(store, key), criterion_language_file(store, key)
    fitted, language = CriterionFit.load(saved_fit), CriterionLanguage.load(saved_language)
    knowledge = DomainKnowledge(trials, lambda texts: store.section_vectors(texts, progress),
                                encode=lambda texts: store.embeddings.embed_array(texts), criterion_fit=fitted,
                                criterion_language=language)
    for loaded, model, path in ((fitted, knowledge.criterion_fit, saved_fit),
                                (language, knowledge.criterion_language, saved_language)):
        if loaded is None and model is not None:
            try:
                model.save(path)
            except OSError:  # a store folder this user cannot write: fitted again next time
                pass
    if cross_encoder:
        attach_cross_encoder(store, splits, knowledge, sample)
    return knowledge


def load_or_calibrate(store: TrialStore, splits: list[str], knowledge: DomainKnowledge | None = None,
                      say: SayFn | None = None, progress: ProgressFn | None = None,
                      sample: list[str] | None = None) -> Calibration:
    """The store's calibration for `splits`, computed and saved on the spot when there is none: the one with the
    cross-encoder where `store calibrate --cross-encoder` made it (its fold models given to `knowledge`)."""
    with_cross_encoder = store.load_calibration(cross_encoder_key(store, splits, sample))
    if with_cross_encoder is not None:
        if knowledge is not None:
            attach_cross_encoder(store, splits, knowledge, sample)
        return Calibration.model_validate(with_cross_encoder)
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
    if say and (calibration.cross_fitted_rejection or 0.0) > calibration.max_real_rejection:
        say(over_budget(calibration))
    return calibration
