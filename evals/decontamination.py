"""Decontamination: no synthetic trial may reproduce a held-out (test or validation) trial.

The leakage guard (`evals.leakage`) checks what a synthetic trial was written *from*; it cannot see
a writer that reproduces a held-out trial from memory (a strong LLM has read ClinicalTrials.gov,
test-period trials included) with clean provenance. This module compares the *text*: each synthetic
trial against every held-out trial, by three measures, each the best over the held-out trials:

- `text_ngram`: word 13-gram overlap (the common test-set decontamination length) of the
  classifier's rendering on the evaluation's field set, in both directions (the share of the
  synthetic trial's 13-grams found in the held-out trial, or of the held-out trial's found in the
  synthetic one, whichever is larger);
- `criteria_ngram`: the same on the eligibility criteria alone (a copy of a held-out trial's
  criteria under another drug or title);
- `similarity`: cosine similarity of the MiniLM embeddings of `render_for_embedding` (the store's
  vectors).

Each threshold is calibrated on real data: every real training trial's best score against the same
held-out trials (a real trial is never compared with itself: pairs with the same id are skipped);
the threshold lies `MARGIN` of the way from the largest of them to identity (1.0), so no real
training trial is ever refused and a copy (score 1.0) always is. A synthetic trial is contaminated
when any measure exceeds its threshold.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.knowledge.checks import ngrams
from synthtrials.tools.records.trial import Trial, render_for_classifier, render_for_embedding
from synthtrials.tools.store.protocol import TrialFilter, TrialStore, grounding_filter

__all__ = ["NGRAM", "MARGIN", "MEASURES", "Scores", "Calibration", "Contamination", "DecontaminationReport",
           "TrialFeatures", "calibrate", "find_contaminated", "decontaminate", "EncodeFn", "StoreCheck",
           "check_store", "HELD_OUT_SPLITS", "CONTAMINATED"]

NGRAM = 13
#: the threshold lies this share of the way from the largest real train-vs-held-out score to 1.0
MARGIN = 0.5
MEASURES = ("text_ngram", "criteria_ngram", "similarity")
#: the failing check's name in `synthtrials check`
CONTAMINATED = "contaminated"
CRITERIA_FIELDS = frozenset({"eligibility"})

#: texts (`render_for_embedding`) -> L2-normalised vectors (n, dim)
EncodeFn = Callable[[list[str]], np.ndarray]


class Scores(BaseModel):
    """One value per measure (`MEASURES`)."""

    text_ngram: float
    criteria_ngram: float
    similarity: float

    def exceeded(self, thresholds: Scores) -> list[str]:
        return [m for m in MEASURES if getattr(self, m) > getattr(thresholds, m)]


class Calibration(BaseModel):
    """The thresholds and the real train-vs-held-out scores they come from."""

    thresholds: Scores
    real_max: Scores = Field(description="the largest best-score of a real training trial against the held-out trials")
    real_p99: Scores
    train_trials: int
    held_out_trials: int
    ngram: int = NGRAM
    margin: float = MARGIN
    encoder: str
    rule: str = "threshold = real_max + margin * (1 - real_max), per measure; contaminated: any measure above it"


class Contamination(BaseModel):
    """A synthetic trial that reproduces a held-out trial."""

    id: str
    held_out_id: str = Field(description="the held-out trial of the first measure above its threshold")
    held_out_set: str
    exceeded: list[str]
    scores: Scores
    matched: dict[str, str] = Field(description="per measure, the held-out trial of its best score")


class DecontaminationReport(BaseModel):
    """What the check found; recorded in metrics.json."""

    checked: int
    held_out_sets: list[str]
    calibration: Calibration
    contaminated: list[Contamination] = Field(default_factory=list)
    drop_contaminated: bool = False
    dropped: list[str] = Field(default_factory=list)

    def refusal(self, source: str) -> str:
        """The one line that refuses the set."""
        first = self.contaminated[0]
        measure = first.exceeded[0]
        return (f"{source}: {len(self.contaminated)} synthetic trials reproduce held-out trials (e.g. {first.id} "
                f"reproduces {first.held_out_id} of the {first.held_out_set}: {measure} "
                f"{getattr(first.scores, measure):.3f} > {getattr(self.calibration.thresholds, measure):.3f}, the "
                "threshold calibrated on real train-vs-held-out pairs); pass --drop-contaminated to drop them "
                "(metrics.json records which), or regenerate them")


@dataclass
class TrialFeatures:
    """What the measures compare, per trial: 13-gram sets of the rendering and of the criteria, and a vector."""

    ids: list[str]
    text: list[set[tuple[str, ...]]]
    criteria: list[set[tuple[str, ...]]]
    vectors: np.ndarray

    @classmethod
    def of(cls, trials: Sequence[Trial], fields: Collection[str], encode: EncodeFn) -> TrialFeatures:
        vectors = np.asarray(encode([render_for_embedding(t) for t in trials]), dtype=np.float32)
        return cls([t.nct_id for t in trials], [ngrams(render_for_classifier(t, fields), NGRAM) for t in trials],
                   [ngrams(render_for_classifier(t, CRITERIA_FIELDS), NGRAM) for t in trials],
                   vectors.reshape(len(trials), -1))

    def subset(self, ids: Collection[str]) -> TrialFeatures:
        rows = [i for i, nct_id in enumerate(self.ids) if nct_id in ids]
        return TrialFeatures([self.ids[i] for i in rows], [self.text[i] for i in rows],
                             [self.criteria[i] for i in rows], self.vectors[rows])


def _best_overlaps(queries: list[set], query_ids: list[str], held: list[set],
                   held_ids: list[str]) -> tuple[np.ndarray, list[int]]:
    """Per query, the best two-way n-gram overlap with a held-out set (same ids skipped) and its index."""
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for j, grams in enumerate(held):
        for gram in grams:
            index[gram].append(j)
    best = np.zeros(len(queries))
    where = [-1] * len(queries)
    for i, grams in enumerate(queries):
        shared: Counter[int] = Counter()
        for gram in grams:
            shared.update(index.get(gram, ()))
        for j, n in shared.items():
            if held_ids[j] == query_ids[i]:
                continue
            score = max(n / len(grams), n / len(held[j]))
            if score > best[i]:
                best[i], where[i] = score, j
    return best, where


def _scores(queries: TrialFeatures, held: TrialFeatures) -> tuple[list[Scores], list[dict[str, str]]]:
    """Per query trial, its best score against `held` per measure, and the held-out trial of each."""
    text, text_at = _best_overlaps(queries.text, queries.ids, held.text, held.ids)
    criteria, criteria_at = _best_overlaps(queries.criteria, queries.ids, held.criteria, held.ids)
    if len(held.ids) and len(queries.ids):
        similarity = queries.vectors @ held.vectors.T
        similarity[np.asarray(queries.ids)[:, None] == np.asarray(held.ids)[None, :]] = -1.0
        sim_at = similarity.argmax(axis=1)
        sim = similarity[np.arange(len(queries.ids)), sim_at]
    else:
        sim_at, sim = np.full(len(queries.ids), -1), np.zeros(len(queries.ids))
    scores, matched = [], []
    for i in range(len(queries.ids)):
        scores.append(Scores(text_ngram=round(float(text[i]), 4), criteria_ngram=round(float(criteria[i]), 4),
                             similarity=round(float(max(sim[i], 0.0)), 4)))
        matched.append({m: held.ids[j] for m, j in (("text_ngram", text_at[i]), ("criteria_ngram", criteria_at[i]),
                                                    ("similarity", int(sim_at[i]))) if j >= 0})
    return scores, matched


def calibrate(train: TrialFeatures, held: TrialFeatures, encoder: str, margin: float = MARGIN) -> Calibration:
    """Thresholds from every real training trial's best score against the held-out trials."""
    if not train.ids or not held.ids:
        raise ConfigError("decontamination needs real training trials and held-out trials to calibrate on")
    scores, _ = _scores(train, held)
    table = np.array([[getattr(s, m) for m in MEASURES] for s in scores])
    real_max, p99 = table.max(axis=0), np.quantile(table, 0.99, axis=0)
    thresholds = np.minimum(real_max + margin * (1.0 - real_max), 1.0)

    def as_scores(values: np.ndarray) -> Scores:
        return Scores(**{m: round(float(v), 4) for m, v in zip(MEASURES, values)})

    return Calibration(thresholds=as_scores(thresholds), real_max=as_scores(real_max), real_p99=as_scores(p99),
                       train_trials=len(train.ids), held_out_trials=len(held.ids), margin=margin, encoder=encoder)


def find_contaminated(candidates: TrialFeatures, held: TrialFeatures, calibration: Calibration,
                      set_of: Mapping[str, str]) -> tuple[list[Scores], list[dict[str, str]], list[Contamination]]:
    """Every candidate's scores and the held-out trial of each (per measure), and the candidates above a
    threshold (`set_of`: held-out id -> its set's name)."""
    scores, matched = _scores(candidates, held)
    found = []
    for nct_id, score, match in zip(candidates.ids, scores, matched):
        exceeded = score.exceeded(calibration.thresholds)
        if exceeded:
            held_out_id = match[exceeded[0]]
            found.append(Contamination(id=nct_id, held_out_id=held_out_id, held_out_set=set_of.get(held_out_id, "held-out set"),
                                       exceeded=exceeded, scores=score, matched=match))
    return scores, matched, found


def decontaminate(synthetic: Sequence[Trial], train: Sequence[Trial], held_out: Mapping[str, Sequence[Trial]],
                  fields: Collection[str], encode: EncodeFn, encoder: str, *, source: str,
                  drop: bool = False) -> tuple[list[Trial], DecontaminationReport]:
    """Check `synthetic` against the held-out sets (`held_out`: a name such as "test set FILE" -> its
    trials), with thresholds calibrated on `train` against the same held-out trials.

    Returns the synthetic trials kept and the report. A contaminated set raises one-line `ConfigError`
    naming `source`, unless `drop`: then the contaminated trials are dropped (and listed in the report).

    The answer is remembered in this process for the same trials, fields and encoder: an evaluation of
    the same synthetic set with a second classifier (the demo's TF-IDF, then MiniLM) checks it once.
    """
    key = _decontamination_key(synthetic, train, held_out, fields, encoder)
    if key not in _REMEMBERED:
        _REMEMBERED[key] = _decontamination(synthetic, train, held_out, fields, encode, encoder)
        while len(_REMEMBERED) > 4:
            _REMEMBERED.pop(next(iter(_REMEMBERED)))
    flagged, remembered = _REMEMBERED[key]
    report = remembered.model_copy(deep=True)
    report.drop_contaminated = drop
    if report.contaminated and not drop:
        raise ConfigError(report.refusal(source))
    report.dropped = [t.nct_id for t, bad in zip(synthetic, flagged) if bad]
    return [t for t, bad in zip(synthetic, flagged) if not bad], report


#: decontaminations of this process, by `_decontamination_key` (the last few)
_REMEMBERED: dict[str, tuple[list[bool], DecontaminationReport]] = {}


def _decontamination_key(synthetic: Sequence[Trial], train: Sequence[Trial], held_out: Mapping[str, Sequence[Trial]],
                         fields: Collection[str], encoder: str) -> str:
    digest = hashlib.sha256(json.dumps([encoder, sorted(fields), list(held_out)]).encode())
    for group in (synthetic, train, *held_out.values()):
        digest.update(b"\x00group")
        for trial in group:
            digest.update(trial.model_dump_json().encode())
    return digest.hexdigest()


def _decontamination(synthetic: Sequence[Trial], train: Sequence[Trial], held_out: Mapping[str, Sequence[Trial]],
                     fields: Collection[str], encode: EncodeFn, encoder: str) -> tuple[list[bool], DecontaminationReport]:
    """Which synthetic trials (by position) reproduce a held-out trial, and the report (nothing dropped)."""
    set_of: dict[str, str] = {}
    held_trials: list[Trial] = []
    for name, trials in held_out.items():
        for trial in trials:
            if trial.nct_id not in set_of:
                set_of[trial.nct_id] = name
                held_trials.append(trial)
    everything = TrialFeatures.of([*train, *held_trials, *synthetic], fields, encode)
    n_train, n_held = len(train), len(held_trials)

    def rows(start: int, stop: int) -> TrialFeatures:
        return TrialFeatures(everything.ids[start:stop], everything.text[start:stop], everything.criteria[start:stop],
                             everything.vectors[start:stop])

    held = rows(n_train, n_train + n_held)
    calibration = calibrate(rows(0, n_train), held, encoder)
    scores, _, found = find_contaminated(rows(n_train + n_held, len(everything.ids)), held, calibration, set_of)
    report = DecontaminationReport(checked=len(synthetic), held_out_sets=list(held_out), calibration=calibration,
                                   contaminated=found)
    return [bool(score.exceeded(calibration.thresholds)) for score in scores], report  # by position: ids may repeat


#: the store splits whose real trials are held out (never grounding): what `check` compares with
HELD_OUT_SPLITS = frozenset({"valid", "test"})


@dataclass
class StoreCheck:
    """`check_store`'s answer: every candidate's scores, the contaminated ones and the calibration."""

    scores: list[Scores]
    matched: list[dict[str, str]]
    contaminated: list[Contamination]
    calibration: Calibration


def check_store(candidates: Sequence[Trial], store: TrialStore, splits: Sequence[str],
                fields: Collection[str]) -> StoreCheck | None:
    """`candidates` against the store's held-out real trials (splits valid/test), with thresholds calibrated
    on its grounding trials (`splits`) against them; None when the store holds no held-out trial.

    The real trials' vectors come from the store's text-vector cache (`section_vectors`: embedded once)."""
    set_of: dict[str, str] = {}
    held: list[Trial] = []
    for split in sorted(HELD_OUT_SPLITS):
        for trial in store.filter(TrialFilter(source="real", splits=frozenset({split}))):
            if trial.nct_id not in set_of:
                set_of[trial.nct_id] = f"store's {split} split"
                held.append(trial)
    if not held:
        return None
    held_ids = {t.nct_id for t in held}
    train = [t for t in store.filter(grounding_filter(splits)) if t.nct_id not in held_ids]
    if not train:
        return None
    real = TrialFeatures.of([*train, *held], fields, lambda texts: store.section_vectors(texts))
    train_features, held_features = real.subset({t.nct_id for t in train}), real.subset(held_ids)
    calibration = calibrate(train_features, held_features, store.embedding_model)
    candidates_features = TrialFeatures.of(candidates, fields, store.embeddings.embed_array)
    scores, matched, found = find_contaminated(candidates_features, held_features, calibration, set_of)
    return StoreCheck(scores, matched, found, calibration)
