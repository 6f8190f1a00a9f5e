"""Does each criterion read like an eligibility criterion at all: the score `typicality_criterion_language`
(calibration version 10).

A writer that drifts off its task writes a fluent sentence from outside medicine among good criteria (chat
chatter, a sentence of documentation). `typicality_criterion` asks how close each criterion is to its nearest
real criterion; a sentence of 6-22 ordinary words often finds a real criterion close enough (stop 53: 21% of
bench_critic's `one_bad_criterion` trials passed, most of them within 0.05 above that score's threshold). This
model asks the question directly: a logistic regression on the sentence vectors, every criterion of the grounding
trials (inclusion and exclusion, 1) against `foreign_sentences()` (0), the classes weighted equally. A trial's score
is its worst criterion's logit. benchmarks/bench_criterion_language.py measures it: on a held-out fifth of
phase_I_train, at 1% of the held-out real trials rejected, it catches 96.7% of trials with one held-out sentence of
the calibration's source, 83.3% with one sentence of the standard library's docstrings and 86.1% with one sentence
of a software licence (legal prose, a genre it never saw); the nearest-real-criterion similarity catches 78.5%,
82.8% and 56.0% there. In the calibration it is one more score of the 5% budget and of the joint score.

Cross-fitted like every calibrated score, on both sides: the grounding trials are dealt into `FOLDS` folds
(`cross_encoder.fold_assignment`) and so are the foreign sentences; the model of fold k is fitted on the trials and
the sentences outside fold k. A grounding trial is scored by its own fold's model, and the calibration spoils it
with a sentence of its own fold (`held_out_sentences`), so neither the trial nor the sentence was seen by the model
that scores it. A trial that is no grounding trial (a draft, a phase II trial) is scored by the mean of the fold
models' logits.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.knowledge.coherence import Excluded, excluded_ids
from synthtrials.tools.knowledge.cross_encoder import fold_assignment
from synthtrials.tools.records.trial import Trial

FOLDS = 5
#: scikit-learn's inverse L2 strength; the probe's first value, not tuned
C = 1.0
#: fewer grounding trials with criteria than this: no model (the score is None)
MIN_TRIALS = 50
SEED = 13
#: what changes the fitted models: a saved file of another version is fitted again, and the calibration's key
#: (`calibration.calibration_key`) hashes it
VERSION = "1"

#: fluent English sentences from outside medicine, one per line (scripts/make_foreign_sentences.py)
FOREIGN_SENTENCES = Path(__file__).with_name("foreign_sentences.txt")

VectorsFn = Callable[[list[str]], np.ndarray]


@functools.lru_cache(maxsize=1)
def foreign_sentences() -> tuple[str, ...]:
    """Fluent English sentences from outside medicine, as a writer that drifts off its task writes them
    among good criteria: 445 sentences of 6-22 words from the Python language reference
    (`pydoc_data.topics`), taken once and kept in the repository, so every Python calibrates on the same
    ones. bench_critic's nonsense comes from another source, the standard library's docstrings, so the
    bench does not read the calibration's own sentences."""
    lines = tuple(line for line in FOREIGN_SENTENCES.read_text(encoding="utf-8").splitlines() if line.strip())
    if not lines:
        raise ConfigError(f"{FOREIGN_SENTENCES}: no sentences (re-create it: python scripts/make_foreign_sentences.py)")
    return lines


def sentences_digest(sentences: Sequence[str]) -> str:
    """Names a list of foreign sentences: saved models fitted on other sentences are fitted again."""
    return hashlib.sha256("\n".join(sentences).encode()).hexdigest()[:16]


def criterion_texts(trial: Trial) -> list[str]:
    """A trial's criteria, inclusion then exclusion, as the critic's sections hold them (whitespace collapsed)."""
    if not trial.eligibility:
        return []
    return [" ".join(c.split()) for c in trial.eligibility.inclusion + trial.eligibility.exclusion if c.strip()]


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


class CriterionLanguage:
    """The fold models (one weight vector and intercept each) of the grounding trials, each trial's fold and each
    foreign sentence's fold: per criterion, how much it reads like an eligibility criterion (`criteria_logits`)."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, fold_of: dict[str, int],
                 sentence_fold: dict[str, int]) -> None:
        self.coef = np.asarray(coef, dtype=np.float32)
        self.intercept = np.asarray(intercept, dtype=np.float32)
        self.fold_of, self.sentence_fold = fold_of, sentence_fold

    @classmethod
    def train(cls, trials: Sequence[Trial], vectors: VectorsFn, sentences: Sequence[str] | None = None,
              folds: int = FOLDS, seed: int = SEED) -> CriterionLanguage | None:
        """Fold models from the grounding `trials` and the foreign `sentences` (default `foreign_sentences()`), with
        `vectors` (texts: their vectors, the store's cache). None where fewer than `MIN_TRIALS` trials have criteria."""
        from sklearn.linear_model import LogisticRegression

        sentences = list(sentences if sentences is not None else foreign_sentences())
        usable = [t for t in trials if criterion_texts(t)]
        if len(usable) < max(MIN_TRIALS, 2 * folds) or len(sentences) < 2 * folds:
            return None
        fold_of = fold_assignment([t.nct_id for t in usable], folds, seed)
        sentence_fold = fold_assignment(sentences, folds, seed)
        texts = sorted({c for t in usable for c in criterion_texts(t)} | set(sentences))
        vector_of = dict(zip(texts, _unit(vectors(texts))))
        coef, intercept = [], []
        for fold in range(folds):
            real = sorted({c for t in usable if fold_of[t.nct_id] != fold for c in criterion_texts(t)})
            foreign = [s for s in sentences if sentence_fold[s] != fold]
            x = np.stack([vector_of[c] for c in real] + [vector_of[s] for s in foreign])
            y = np.r_[np.ones(len(real)), np.zeros(len(foreign))]
            model = LogisticRegression(C=C, class_weight="balanced", max_iter=2000).fit(x, y)
            coef.append(model.coef_[0])
            intercept.append(model.intercept_[0])
        return cls(np.stack(coef), np.asarray(intercept), fold_of, sentence_fold)

    def held_out_sentences(self, trial_id: str) -> list[str]:
        """The foreign sentences the model that scores grounding trial `trial_id` never saw (those of its fold); every
        sentence for a trial that is no grounding trial. In the order the folds were dealt (`sentence_fold`'s, which
        `save` and `load` keep): the calibration draws from this list, so a loaded model spoils as the fitted one."""
        fold = self.fold_of.get(trial_id)
        return [s for s, f in self.sentence_fold.items() if fold is None or f == fold]

    def criteria_logits(self, criteria: np.ndarray, exclude: Excluded = None) -> np.ndarray:
        """Per criterion (rows of `criteria`, sentence vectors), its logit: by the fold model of the grounding trial
        `exclude` names first, else the mean of the fold models."""
        ids = excluded_ids(exclude)
        fold = self.fold_of.get(ids[0]) if ids else None
        x = _unit(np.atleast_2d(criteria))
        if fold is not None:
            return x @ self.coef[fold] + self.intercept[fold]
        return x @ self.coef.mean(axis=0) + float(self.intercept.mean())

    def save(self, path: Path) -> None:
        """The fold models and both folds in one .npz, written whole or not at all."""
        from synthtrials.tools.atomic import atomic_open

        ids, sentences = sorted(self.fold_of), list(self.sentence_fold)  # the sentences in their dealt order
        with atomic_open(path, "wb") as handle:
            np.savez(handle, version=np.asarray(VERSION), coef=self.coef, intercept=self.intercept,
                     ids=np.asarray(ids), folds=np.asarray([self.fold_of[i] for i in ids]),
                     sentences=np.asarray(sentences), sentence_folds=np.asarray([self.sentence_fold[s] for s in sentences]))

    @classmethod
    def load(cls, path: Path, sentences: Sequence[str] | None = None) -> CriterionLanguage | None:
        """The models `save` wrote, or None where there is no file, one of another version, one fitted on other
        foreign sentences than `sentences` (default `foreign_sentences()`), or one unreadable (the caller fits them
        again)."""
        expected = sorted(sentences if sentences is not None else foreign_sentences())
        try:
            with np.load(path, allow_pickle=False) as saved:
                if str(saved["version"]) != VERSION or sorted(saved["sentences"].tolist()) != expected:
                    return None
                return cls(saved["coef"], saved["intercept"],
                           dict(zip(saved["ids"].tolist(), (int(f) for f in saved["folds"]))),
                           dict(zip(saved["sentences"].tolist(), (int(f) for f in saved["sentence_folds"]))))
        except (OSError, KeyError, ValueError):
            return None
