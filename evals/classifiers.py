"""Trial-outcome classifiers with one scikit-learn surface: `fit(trials, y)`, `predict_proba(trials)`.

Every classifier reads `render_for_classifier(trial)`, so real and synthetic trials look alike.

- `TfidfClassifier`: TF-IDF (word 1-2 grams) + logistic regression, the fast baseline.
- `TransformerClassifier`: fine-tunes any Hugging Face encoder (default the bundled
  all-MiniLM-L6-v2; BioBERT `dmis-lab/biobert-base-cased-v1.1` where the user has it) with dynamic
  padding, max length, epochs, learning rate, batch size and early stopping on validation loss
  that keeps the best weights.
- `FrozenEncoderClassifier`: the "no fine-tuning" baseline done right: the encoder's frozen
  mean-pooled features + logistic regression (the seed code's un-fine-tuned baseline was a randomly
  initialised head, chance by construction).
"""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from synthtrials.tools.errors import ConfigError
from synthtrials.tools.trial import Trial, render_for_classifier

TrialsOrTexts = Sequence[Trial] | Sequence[str]
ProgressFn = Callable[[str, int, int], None]


def to_texts(items: TrialsOrTexts) -> list[str]:
    return [render_for_classifier(x) if isinstance(x, Trial) else str(x) for x in items]


def check_labels(y: Sequence[int], what: str = "training set") -> np.ndarray:
    labels = np.asarray(y)
    if labels.size == 0:
        raise ConfigError(f"the {what} is empty")
    if not set(np.unique(labels).tolist()) <= {0, 1}:
        raise ConfigError(f"the {what} has labels {sorted(set(labels.tolist()))[:5]}, expected 0 and 1")
    counts = np.bincount(labels.astype(int), minlength=2)
    if counts.min() < 2:
        raise ConfigError(f"the {what} needs at least 2 trials of each label (has {counts[0]} failures, "
                          f"{counts[1]} successes)")
    return labels.astype(int)


def tfidf_pipeline(C: float = 1.0, max_features: int = 50000, seed: int = 0):
    """TF-IDF (word 1-2 grams) + logistic regression, unfitted."""
    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=max_features, sublinear_tf=True),
        LogisticRegression(C=C, max_iter=2000, random_state=seed),
    )


class TfidfClassifier(BaseEstimator, ClassifierMixin):
    def __init__(self, C: float = 1.0, max_features: int = 50000, seed: int = 0) -> None:
        self.C = C
        self.max_features = max_features
        self.seed = seed

    def fit(self, X: TrialsOrTexts, y: Sequence[int], X_valid: TrialsOrTexts | None = None,
            y_valid: Sequence[int] | None = None) -> TfidfClassifier:
        labels = check_labels(y)
        self.pipeline_ = tfidf_pipeline(self.C, self.max_features, self.seed)
        self.pipeline_.fit(to_texts(X), labels)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: TrialsOrTexts) -> np.ndarray:
        return self.pipeline_.predict_proba(to_texts(X))

    def predict(self, X: TrialsOrTexts) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def resolve_encoder(model: str) -> str:
    from synthtrials.tools.embeddings import DEFAULT_EMBEDDING_MODEL, resolve_model_path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = resolve_model_path(model or DEFAULT_EMBEDDING_MODEL)
    if not Path(path).exists():
        # a hub id: usable offline only where it is already cached
        try:
            from huggingface_hub import snapshot_download

            path = snapshot_download(path, local_files_only=True)
        except Exception:
            raise ConfigError(f"{model}: model not found (give a local folder, or an id already in the "
                              "Hugging Face cache)") from None
    return path


def _set_seed(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TransformerClassifier(BaseEstimator, ClassifierMixin):
    """Fine-tunes a Hugging Face encoder for sequence classification (CPU by default)."""

    def __init__(self, model: str = "bundled:all-MiniLM-L6-v2", max_length: int = 256, epochs: int = 3,
                 learning_rate: float = 5e-5, batch_size: int = 8, patience: int = 1, seed: int = 0,
                 progress: ProgressFn | None = None) -> None:
        self.model = model
        self.max_length = max_length
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.patience = patience
        self.seed = seed
        self.progress = progress

    def _batches(self, texts: list[str], labels: np.ndarray | None, shuffle: bool, rng: random.Random):
        import torch

        order = list(range(len(texts)))
        if shuffle:
            rng.shuffle(order)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = self.tokenizer_([texts[i] for i in idx], truncation=True, max_length=self.max_length,
                                    padding=True, return_tensors="pt")  # dynamic padding: to the batch's longest
            if labels is not None:
                batch["labels"] = torch.tensor(labels[idx], dtype=torch.long)
            yield batch

    def _loss(self, texts: list[str], labels: np.ndarray) -> float:
        import torch

        self.model_.eval()
        total = 0.0
        with torch.inference_mode():
            for batch in self._batches(texts, labels, False, random.Random(0)):
                total += float(self.model_(**batch).loss) * len(batch["labels"])
        return total / len(texts)

    def fit(self, X: TrialsOrTexts, y: Sequence[int], X_valid: TrialsOrTexts | None = None,
            y_valid: Sequence[int] | None = None) -> TransformerClassifier:
        import torch
        import transformers
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        transformers.utils.logging.set_verbosity_error()
        labels = check_labels(y)
        path = resolve_encoder(self.model)
        _set_seed(self.seed)
        self.tokenizer_ = AutoTokenizer.from_pretrained(path)
        self.model_ = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        texts = to_texts(X)
        valid = (to_texts(X_valid), check_labels(y_valid, "validation set")) if X_valid is not None else None
        optimizer = torch.optim.AdamW(self.model_.parameters(), lr=self.learning_rate)
        steps_per_epoch = (len(texts) + self.batch_size - 1) // self.batch_size
        scheduler = transformers.get_linear_schedule_with_warmup(optimizer, int(0.1 * steps_per_epoch),
                                                                 steps_per_epoch * self.epochs)
        rng = random.Random(self.seed)
        best_loss, best_state, waited = float("inf"), None, 0
        self.history_: list[dict[str, float]] = []
        for epoch in range(self.epochs):
            self.model_.train()
            running = 0.0
            for step, batch in enumerate(self._batches(texts, labels, True, rng), 1):
                loss = self.model_(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model_.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                running += float(loss.detach())
                if self.progress:
                    self.progress(f"epoch {epoch + 1}/{self.epochs}", epoch * steps_per_epoch + step,
                                  steps_per_epoch * self.epochs)
            record = {"epoch": epoch + 1, "train_loss": running / max(1, steps_per_epoch)}
            if valid is not None:
                record["valid_loss"] = self._loss(*valid)
                if record["valid_loss"] < best_loss - 1e-4:
                    best_loss, waited = record["valid_loss"], 0
                    best_state = copy.deepcopy(self.model_.state_dict())
                else:
                    waited += 1
            self.history_.append(record)
            if valid is not None and waited > self.patience:
                break
        if best_state is not None:
            self.model_.load_state_dict(best_state)  # early stopping keeps the best weights
        self.model_.eval()
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: TrialsOrTexts) -> np.ndarray:
        import torch

        texts = to_texts(X)
        out = []
        with torch.inference_mode():
            for batch in self._batches(texts, None, False, random.Random(0)):
                out.append(torch.softmax(self.model_(**batch).logits, dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 2))

    def predict(self, X: TrialsOrTexts) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


class FrozenEncoderClassifier(BaseEstimator, ClassifierMixin):
    """No fine-tuning: frozen encoder features (mean-pooled) + logistic regression."""

    def __init__(self, model: str = "bundled:all-MiniLM-L6-v2", max_length: int = 256, seed: int = 0) -> None:
        self.model = model
        self.max_length = max_length
        self.seed = seed

    def _features(self, X: TrialsOrTexts) -> np.ndarray:
        from synthtrials.tools.embeddings import get_embeddings

        resolve_encoder(self.model)
        return get_embeddings(self.model, self.max_length).embed_array(to_texts(X))

    def fit(self, X: TrialsOrTexts, y: Sequence[int], X_valid: Any = None, y_valid: Any = None) -> FrozenEncoderClassifier:
        labels = check_labels(y)
        self.head_ = LogisticRegression(max_iter=2000, random_state=self.seed).fit(self._features(X), labels)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: TrialsOrTexts) -> np.ndarray:
        return self.head_.predict_proba(self._features(X))

    def predict(self, X: TrialsOrTexts) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def make_classifier(kind: str, model: str | None = None, seed: int = 0, progress: ProgressFn | None = None,
                    **params: Any):
    if kind == "tfidf":
        return TfidfClassifier(seed=seed)
    if kind == "transformer":
        return TransformerClassifier(model=model or "bundled:all-MiniLM-L6-v2", seed=seed, progress=progress, **params)
    if kind == "frozen":
        return FrozenEncoderClassifier(model=model or "bundled:all-MiniLM-L6-v2", seed=seed,
                                       max_length=params.get("max_length", 256))
    raise ConfigError(f"unknown classifier {kind!r} (tfidf or transformer)")
