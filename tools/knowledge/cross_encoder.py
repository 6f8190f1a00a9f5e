"""The cross-encoder coherence score (`coherence_cross_encoder`, opt-in: `synthtrials store calibrate --cross-encoder`).

The other coherence scores compare sentence embeddings, one MiniLM vector per condition and per criterion. A
cross-encoder reads a trial's conditions and its eligibility criteria together, token against token: the bundled
all-MiniLM-L6-v2 with a linear head on its first token, fine-tuned (binary cross-entropy) to tell a grounding
trial's own (conditions, criteria) pair (1) from its criteria with the conditions of an unrelated grounding trial
(condition centroids less similar than `UNRELATED_BELOW`, the calibration's definition) or of any other grounding
trial (0), fresh negatives each epoch. benchmarks/bench_cross_encoder.py measured the design before it was built:
held-out ROC-AUC 0.96-0.97 on grounding swaps, where the cosine of the two embeddings gives 0.91-0.92.

Cross-fitted like every calibrated score: the grounding trials are dealt into `FOLDS` folds, one model is trained
on the trials outside each fold, and a grounding trial (or a spoiled copy of it) is scored by the model of its
own fold, which never saw it (`CrossEncoderCoherence.scores`, by the trial its `exclude` names first). A trial
that is no grounding trial (a draft, a phase II trial) is scored by the mean of the fold models' logits: each of
them is as new to it as the held-out fold's trials were to theirs, and the mean is steadier than one model, so the
thresholds read from single out-of-fold scores reject no more new real trials than they say.

The models are saved with the store (`model_folder`) under the calibration's key, in float16 (45 MB each).
Cost on the 2-core CPU: about 2.6 minutes an epoch a fold at 128 tokens (5 folds x 2 epochs: 27 minutes); a minute
or two in all on a GPU. At 128 tokens and 2 epochs the held-out ROC-AUC on fold 0 was 0.964 (256 tokens, 3 epochs:
0.960; 256 tokens, 1 epoch: 0.898).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from synthtrials.tools.atomic import atomic_folder
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.knowledge.coherence import Excluded, excluded_ids
from synthtrials.tools.records.trial import Trial

CROSS_ENCODER = "coherence_cross_encoder"
FOLDS = 5
EPOCHS = 2
MAX_TOKENS = 128
BATCH = 16
LEARNING_RATE = 3e-5
UNRELATED_BELOW = 0.35
FOLD_SEED = 7
#: what changes the models (and so the calibration key that names them)
VERSION = "1"

FoldProgress = Callable[[int, int, int], None]  # (fold, batches done, batches in the fold's training)


def conditions_text(trial: Trial) -> str:
    """A trial's conditions as the cross-encoder reads them (first segment)."""
    return "; ".join(c.strip() for c in trial.conditions if c.strip())[:300]


def criteria_text(trial: Trial) -> str:
    """A trial's eligibility criteria as the cross-encoder reads them (second segment, cut at `MAX_TOKENS` in all)."""
    e = trial.eligibility
    if e is None:
        return ""
    return "Inclusion: " + "; ".join(e.inclusion) + " Exclusion: " + "; ".join(e.exclusion)


def has_pair(trial: Trial) -> bool:
    """Whether a trial has what the score reads: conditions and at least one criterion."""
    return bool(conditions_text(trial)) and bool(trial.eligibility and (trial.eligibility.inclusion
                                                                        or trial.eligibility.exclusion))


class PairClassifier:
    """One cross-encoder (scikit-learn's conventions): `fit` on trials, `decision_function` on (conditions,
    criteria) text pairs (a logit: higher is a better fit)."""

    def __init__(self, base: str | Path | None = None, epochs: int = EPOCHS, max_tokens: int = MAX_TOKENS,
                 seed: int = 0) -> None:
        self.base, self.epochs, self.max_tokens, self.seed = base, epochs, max_tokens, seed
        self.model_ = None
        self.tokenizer_ = None

    def _load(self, path: str | Path) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.tokenizer_ = AutoTokenizer.from_pretrained(path)
        self.model_ = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, torch_dtype=torch.float32)

    def _encoded(self, pairs: Sequence[tuple[str, str]]):
        return self.tokenizer_([a for a, _ in pairs], [b for _, b in pairs], truncation="longest_first",
                               max_length=self.max_tokens, padding=True, return_tensors="pt")

    def fit(self, trials: Sequence[Trial], condition_vectors: np.ndarray,
            progress: Callable[[int, int], None] | None = None) -> PairClassifier:
        """Train on `trials` (each with `has_pair`): each trial's own pair against its criteria with the
        conditions of an unrelated trial (`condition_vectors`, unit rows: cosine < `UNRELATED_BELOW`) and of any
        other trial, drawn afresh each epoch."""
        import torch

        from synthtrials.tools.store.embeddings import bundled_minilm_path

        if len(trials) < 2:
            raise ConfigError(f"the cross-encoder needs at least 2 trials with conditions and criteria, got {len(trials)}")
        torch.manual_seed(self.seed)
        self._load(self.base or bundled_minilm_path())
        rng = random.Random(f"cross-encoder {self.seed}")
        similar = condition_vectors @ condition_vectors.T
        unrelated = [np.flatnonzero(row < UNRELATED_BELOW).tolist() for row in similar]
        conditions, criteria = [conditions_text(t) for t in trials], [criteria_text(t) for t in trials]
        optimiser = torch.optim.AdamW(self.model_.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
        per_epoch = (3 * len(trials) + BATCH - 1) // BATCH
        done = 0
        for _ in range(self.epochs):
            pairs: list[tuple[str, str, float]] = []
            for i in range(len(trials)):
                pairs.append((conditions[i], criteria[i], 1.0))
                for j in (rng.choice(unrelated[i]) if unrelated[i] else None, rng.randrange(len(trials))):
                    if j is not None and j != i:
                        pairs.append((conditions[j], criteria[i], 0.0))
            rng.shuffle(pairs)
            self.model_.train()
            for start in range(0, len(pairs), BATCH):
                chunk = pairs[start:start + BATCH]
                logits = self.model_(**self._encoded([(a, b) for a, b, _ in chunk])).logits.squeeze(-1)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, torch.tensor([y for _, _, y in chunk], dtype=torch.float))
                loss.backward()
                optimiser.step()
                optimiser.zero_grad()
                done += 1
                if progress:
                    progress(min(done, per_epoch * self.epochs), per_epoch * self.epochs)
        self.model_.eval()
        return self

    def decision_function(self, pairs: Sequence[tuple[str, str]], batch: int = 32) -> np.ndarray:
        import torch

        if self.model_ is None:
            raise RuntimeError("PairClassifier: call fit (or load) first")
        out = []
        with torch.inference_mode():
            for start in range(0, len(pairs), batch):
                out.append(self.model_(**self._encoded(pairs[start:start + batch])).logits.squeeze(-1).float().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def save(self, folder: Path) -> None:
        import torch

        self.model_.to(torch.float16).save_pretrained(folder, safe_serialization=True)
        self.model_.to(torch.float32)
        self.tokenizer_.save_pretrained(folder)

    @classmethod
    def load(cls, folder: Path, max_tokens: int = MAX_TOKENS) -> PairClassifier:
        model = cls(folder, epochs=0, max_tokens=max_tokens)
        model._load(folder)
        model.model_.eval()
        return model


def fold_assignment(ids: Sequence[str], folds: int = FOLDS, seed: int = FOLD_SEED) -> dict[str, int]:
    """Each grounding trial's fold: the sorted ids dealt round-robin after a seeded shuffle."""
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    return {trial_id: k % folds for k, trial_id in enumerate(order)}


class CrossEncoderCoherence:
    """The fold models of the grounding trials and each trial's fold: the score `coherence_cross_encoder`."""

    def __init__(self, models: list[PairClassifier], fold_of: dict[str, int], settings: dict) -> None:
        self.models, self.fold_of, self.settings = models, fold_of, settings

    @classmethod
    def train(cls, trials: Sequence[Trial], condition_vectors: np.ndarray, folds: int = FOLDS, epochs: int = EPOCHS,
              max_tokens: int = MAX_TOKENS, progress: FoldProgress | None = None) -> CrossEncoderCoherence:
        """One model per fold, each trained on the `trials` (with `has_pair`; `condition_vectors` row for row) outside
        it."""
        usable = [i for i, t in enumerate(trials) if has_pair(t)]
        if len(usable) < 2 * folds:
            raise ConfigError(f"only {len(usable)} grounding trials have both conditions and eligibility criteria; the "
                              f"cross-encoder's {folds} folds need at least {2 * folds}: ingest more trials into the "
                              "grounding split (or calibrate without --cross-encoder)")
        fold_of = fold_assignment([trials[i].nct_id for i in usable], folds)
        models = []
        for fold in range(folds):
            rows = [i for i in usable if fold_of[trials[i].nct_id] != fold]
            tick = (lambda d, t, fold=fold: progress(fold, d, t)) if progress else None
            models.append(PairClassifier(epochs=epochs, max_tokens=max_tokens, seed=fold).fit(
                [trials[i] for i in rows], condition_vectors[rows], tick))
        return cls(models, fold_of, {"version": VERSION, "folds": folds, "epochs": epochs, "max_tokens": max_tokens,
                                     "trials": len(usable)})

    def scores(self, trials: Sequence[Trial], excludes: Sequence[Excluded]) -> list[float | None]:
        """Each trial's score (None without conditions or criteria): by its fold's model where its `exclude`
        names a grounding trial first (that trial, or a spoiled copy of it, is new to that model), else the mean
        of every fold model's logit."""
        pairs = [(conditions_text(t), criteria_text(t)) if has_pair(t) else None for t in trials]
        folds = []
        for exclude in excludes:
            ids = excluded_ids(exclude)
            folds.append(self.fold_of.get(ids[0]) if ids else None)
        out: list[float | None] = [None] * len(trials)
        for fold, model in enumerate(self.models):
            rows = [i for i, p in enumerate(pairs) if p is not None and folds[i] == fold]
            if rows:
                for i, value in zip(rows, model.decision_function([pairs[i] for i in rows])):
                    out[i] = float(value)
        new = [i for i, p in enumerate(pairs) if p is not None and folds[i] is None]
        if new:
            mean = np.mean([model.decision_function([pairs[i] for i in new]) for model in self.models], axis=0)
            for i, value in zip(new, mean):
                out[i] = float(value)
        return out

    def save(self, folder: Path) -> None:
        """The fold models and the folds, written whole or not at all."""
        with atomic_folder(folder) as tmp:
            for fold, model in enumerate(self.models):
                model.save(tmp / f"fold_{fold}")
            (tmp / "cross_encoder.json").write_text(json.dumps({**self.settings, "fold_of": self.fold_of}, indent=1))

    @classmethod
    def load(cls, folder: Path) -> CrossEncoderCoherence:
        meta = folder / "cross_encoder.json"
        if not meta.is_file():
            raise ConfigError(f"{folder}: the cross-encoder's fold models are missing (run `synthtrials store calibrate "
                              "--cross-encoder --force` on this machine)")
        settings = json.loads(meta.read_text())
        fold_of = settings.pop("fold_of")
        models = [PairClassifier.load(folder / f"fold_{fold}", settings["max_tokens"]) for fold in range(settings["folds"])]
        return cls(models, fold_of, settings)
