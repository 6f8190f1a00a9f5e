"""Trial-outcome classifiers with one scikit-learn surface: `fit(X, y, X_valid=None, y_valid=None)`,
`predict_proba(X)`, `predict(X)`; X are trials or already-rendered texts.

Every classifier reads `render_for_classifier(trial)`, so real and synthetic trials look alike.
Given a validation set, `fit` chooses the decision threshold `threshold_` on it (maximum balanced
accuracy, Youden's J) and `predict` uses it; without one the threshold is 0.5.

- `TfidfClassifier`: TF-IDF (word 1-2 grams) + logistic regression, the fast baseline.
- `TransformerClassifier`: fine-tunes any Hugging Face encoder (default the bundled
  all-MiniLM-L6-v2; BioBERT `dmis-lab/biobert-base-cased-v1.1` where the user has it) with dynamic
  padding, max length, epochs, learning rate, batch size and early stopping on validation loss
  that keeps the best weights. `frozen_layers=N` freezes the embeddings and the lower N layers and
  trains the layers above on their outputs, read from an `EncoderFeatureCache`.
- `FrozenEncoderClassifier`: the "no fine-tuning" baseline done right: the encoder's frozen
  mean-pooled features + logistic regression (the seed code's un-fine-tuned baseline was a randomly
  initialised head, chance by construction).
- `EncoderFeatureCache`: what the frozen encoder computes for a text (the frozen layers' hidden
  states, the pooled features), computed once per distinct text; an evaluation creates one and
  passes it to its classifiers, so seeds and training sets share it.
"""

from __future__ import annotations

import copy
import functools
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import make_pipeline
from synthtrials.evals.metrics import youden_threshold
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.progress import StageProgressFn
from synthtrials.tools.records.trial import Trial, render_for_classifier

if TYPE_CHECKING:
    import torch

DEFAULT_ENCODER = "bundled:all-MiniLM-L6-v2"
TrialsOrTexts = Sequence[Trial] | Sequence[str]


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


#: scikit-learn's word analyzer of the TF-IDF features (lowercased, its default token pattern, 1-2 grams)
_WORD_BIGRAMS = TfidfVectorizer(ngram_range=(1, 2)).build_analyzer()


@functools.lru_cache(maxsize=50_000)
def word_bigrams(text: str) -> tuple[str, ...]:
    """The TF-IDF analyzer, remembered per text: an evaluation fits the same real trials many times
    (seeds, ladder rungs, ratios), and analysing them was half of each fit. The features are those of
    `TfidfVectorizer(ngram_range=(1, 2))` exactly (tests/test_evals.py compares them)."""
    return tuple(_WORD_BIGRAMS(text))


def tfidf_pipeline(C: float = 1.0, max_features: int = 50000, seed: int = 0):
    """TF-IDF (word 1-2 grams) + logistic regression, unfitted."""
    return make_pipeline(
        TfidfVectorizer(analyzer=word_bigrams, min_df=2, max_features=max_features, sublinear_tf=True),
        LogisticRegression(C=C, max_iter=2000, random_state=seed),
    )


class ThresholdedClassifier(BaseEstimator, ClassifierMixin):
    """`predict` calls a trial positive from `threshold_` up: chosen on the validation set where `fit`
    got one (maximum balanced accuracy), else 0.5."""

    threshold_: float

    def predict_proba(self, X: TrialsOrTexts) -> np.ndarray:
        raise NotImplementedError

    def _choose_threshold(self, X_valid: TrialsOrTexts | None, y_valid: Sequence[int] | None,
                          valid_proba: np.ndarray | None = None) -> None:
        if X_valid is None:
            self.threshold_ = 0.5
            return
        labels = check_labels(y_valid if y_valid is not None else [], "validation set")
        proba = self.predict_proba(X_valid)[:, 1] if valid_proba is None else valid_proba
        self.threshold_ = youden_threshold(labels, proba)

    def predict(self, X: TrialsOrTexts) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= self.threshold_).astype(int)


class TfidfClassifier(ThresholdedClassifier):
    """TF-IDF + logistic regression (lbfgs). `seed` is kept for the common surface; lbfgs does not use
    it, so the fit depends on the data only (`SEED_FREE`: an evaluation fits each distinct data once)."""

    SEED_FREE = True

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
        self._choose_threshold(X_valid, y_valid)
        return self

    def predict_proba(self, X: TrialsOrTexts) -> np.ndarray:
        return self.pipeline_.predict_proba(to_texts(X))


def resolve_encoder(model: str) -> str:
    from synthtrials.tools.store.embeddings import DEFAULT_EMBEDDING_MODEL, resolve_model_path

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


class EncoderFeatureCache:
    """What the pretrained (frozen) encoder computes for a text, computed once per distinct text.

    One pass of the encoder over each new text (truncated to `max_length` tokens) keeps
    - `pooled(texts)`: the mean-pooled, L2-normalised last layer (the `FrozenEncoderClassifier`'s features);
    - `hidden_states(texts)`, where `frozen_layers` is set: the hidden states after the embeddings and
      the lower `frozen_layers` layers, one (tokens, hidden) tensor per text without padding, which a
      `TransformerClassifier` with the same `frozen_layers` fine-tunes the layers above on.
    An evaluation creates one and passes it to all its classifiers. `encoded` counts the texts run
    through the encoder, `reused` the texts served from the cache.
    """

    def __init__(self, model: str = DEFAULT_ENCODER, max_length: int = 128, frozen_layers: int | None = None,
                 batch_size: int = 32) -> None:
        import transformers
        from transformers import AutoModel, AutoTokenizer

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        self.model = model
        self.path = resolve_encoder(model)
        self.max_length = max_length
        self.frozen_layers = frozen_layers
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.encoder = AutoModel.from_pretrained(self.path).eval()
        layers = self.encoder.config.num_hidden_layers
        if frozen_layers is not None and not 0 <= frozen_layers <= layers:
            raise ConfigError(f"frozen_layers {frozen_layers}: {model} has {layers} layers")
        self._pooled: dict[str, np.ndarray] = {}
        self._hidden: dict[str, torch.Tensor] = {}
        self.encoded = 0
        self.reused = 0

    def describe(self) -> str:
        return f"{self.model}, max length {self.max_length}, frozen layers {self.frozen_layers}"

    def pooled(self, texts: list[str]) -> np.ndarray:
        self._encode(texts)
        if not texts:
            return np.zeros((0, self.encoder.config.hidden_size), dtype=np.float32)
        return np.stack([self._pooled[t] for t in texts])

    def hidden_states(self, texts: list[str]) -> list[torch.Tensor]:
        if self.frozen_layers is None:
            raise ConfigError("this feature cache keeps pooled features only (it has no frozen_layers)")
        self._encode(texts)
        return [self._hidden[t] for t in texts]

    def _encode(self, texts: list[str]) -> None:
        import torch

        # by length, so that a batch's texts pad little; first-seen order breaks ties (deterministic)
        missing = sorted(dict.fromkeys(t for t in texts if t not in self._pooled), key=len)
        self.encoded += len(missing)
        self.reused += len(texts) - len(missing)
        with torch.no_grad():  # not inference_mode: the hidden states feed training later
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start:start + self.batch_size]
                batch = self.tokenizer(chunk, truncation=True, max_length=self.max_length, padding=True,
                                       return_tensors="pt")
                out = self.encoder(**batch, output_hidden_states=self.frozen_layers is not None)
                mask = batch["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)
                pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
                lengths = batch["attention_mask"].sum(1).tolist()
                for i, text in enumerate(chunk):
                    self._pooled[text] = pooled[i]
                    if self.frozen_layers is not None:
                        self._hidden[text] = out.hidden_states[self.frozen_layers][i, :lengths[i]].clone()


def padded_hidden_states(states: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Model inputs from per-text hidden states: zero-padded to the longest, with the attention mask."""
    import torch

    lengths = torch.tensor([len(s) for s in states])
    hidden = torch.nn.utils.rnn.pad_sequence(states, batch_first=True)
    return {"inputs_embeds": hidden, "attention_mask": (torch.arange(hidden.shape[1]) < lengths[:, None]).long()}


def keep_upper_layers(model: Any, frozen_layers: int, name: str) -> None:
    """Cut the embeddings and the lower `frozen_layers` layers off a BERT-style classification model,
    so that it reads their (cached) outputs as `inputs_embeds`."""
    import torch

    class FrozenLayersOutput(torch.nn.Module):
        """Stands in for the embeddings: the input already is the frozen layers' output."""

        def forward(self, inputs_embeds: torch.Tensor, **unused: Any) -> torch.Tensor:
            return inputs_embeds

    base = model.base_model
    if not hasattr(base, "embeddings") or not hasattr(getattr(base, "encoder", None), "layer"):
        raise ConfigError(f"{name}: frozen layers need a BERT-style encoder (embeddings + encoder.layer)")
    base.embeddings = FrozenLayersOutput()
    base.encoder.layer = base.encoder.layer[frozen_layers:]


class TransformerClassifier(ThresholdedClassifier):
    """Fine-tunes a Hugging Face encoder for sequence classification (CPU by default).

    `frozen_layers`: None fine-tunes the whole encoder; N freezes the embeddings and the lower N
    layers, whose outputs come from `features` (an `EncoderFeatureCache` built for the same model,
    max length and N; a private one where none is given).
    """

    def __init__(self, model: str = DEFAULT_ENCODER, max_length: int = 128, epochs: int = 3,
                 learning_rate: float = 5e-5, batch_size: int = 8, patience: int = 1, seed: int = 0,
                 progress: StageProgressFn | None = None, frozen_layers: int | None = None,
                 features: EncoderFeatureCache | None = None) -> None:
        self.model = model
        self.max_length = max_length
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.patience = patience
        self.seed = seed
        self.progress = progress
        self.frozen_layers = frozen_layers
        self.features = features

    def _batches(self, texts: list[str], labels: np.ndarray | None, order: list[int]) -> Iterator[dict[str, Any]]:
        import torch

        hidden = self.features_.hidden_states(texts) if self.frozen_layers is not None else None
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            if hidden is None:  # dynamic padding: to the batch's longest
                batch = dict(self.tokenizer_([texts[i] for i in idx], truncation=True, max_length=self.max_length,
                                             padding=True, return_tensors="pt"))
            else:
                batch = padded_hidden_states([hidden[i] for i in idx])
            if labels is not None:
                batch["labels"] = torch.tensor(labels[idx], dtype=torch.long)
            yield batch

    def _feature_cache(self, path: str) -> EncoderFeatureCache:
        features = self.features or EncoderFeatureCache(self.model, self.max_length, self.frozen_layers)
        if (features.path, features.max_length, features.frozen_layers) != (path, self.max_length, self.frozen_layers):
            raise ConfigError(f"the feature cache is for {features.describe()}; the classifier needs {self.model}, "
                              f"max length {self.max_length}, frozen layers {self.frozen_layers}")
        return features

    def fit(self, X: TrialsOrTexts, y: Sequence[int], X_valid: TrialsOrTexts | None = None,
            y_valid: Sequence[int] | None = None) -> TransformerClassifier:
        import torch
        import transformers
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        labels = check_labels(y)
        texts = to_texts(X)
        valid = (to_texts(X_valid), check_labels(y_valid if y_valid is not None else [], "validation set")) if X_valid is not None else None
        path = resolve_encoder(self.model)
        if self.frozen_layers is None:
            self.tokenizer_ = AutoTokenizer.from_pretrained(path)
        else:
            self.features_ = self._feature_cache(path)
        _set_seed(self.seed)
        self.model_ = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        if self.frozen_layers is not None:
            keep_upper_layers(self.model_, self.frozen_layers, self.model)
        # fused: one kernel per tensor instead of a dozen small ops (a quarter of a 1-layer step otherwise)
        optimizer = torch.optim.AdamW(self.model_.parameters(), lr=self.learning_rate, fused=True)
        steps_per_epoch = (len(texts) + self.batch_size - 1) // self.batch_size
        scheduler = transformers.get_linear_schedule_with_warmup(optimizer, int(0.1 * steps_per_epoch),
                                                                 steps_per_epoch * self.epochs)
        rng = random.Random(self.seed)
        best_loss, best_state, valid_proba, waited = float("inf"), None, None, 0
        self.history_: list[dict[str, float]] = []
        for epoch in range(self.epochs):
            self.model_.train()
            order = list(range(len(texts)))
            rng.shuffle(order)
            running = 0.0
            for step, batch in enumerate(self._batches(texts, labels, order), 1):
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
            if valid is not None:  # one pass per epoch: its loss picks the epoch, its probabilities the threshold
                proba = self._proba(valid[0])[:, 1]
                record["valid_loss"] = float(log_loss(valid[1], proba, labels=[0, 1]))
                if record["valid_loss"] < best_loss - 1e-4:
                    best_loss, valid_proba, waited = record["valid_loss"], proba, 0
                    # the weights need a copy only where later epochs may change them
                    best_state = copy.deepcopy(self.model_.state_dict()) if epoch + 1 < self.epochs else None
                else:
                    waited += 1
            self.history_.append(record)
            if valid is not None and waited > self.patience:
                break
        if best_state is not None:
            self.model_.load_state_dict(best_state)  # early stopping keeps the best weights
        self.model_.eval()
        self.classes_ = np.array([0, 1])
        self._choose_threshold(X_valid, y_valid, valid_proba)
        return self

    def _proba(self, texts: list[str]) -> np.ndarray:
        import torch

        self.model_.eval()
        out = []
        with torch.inference_mode():
            for batch in self._batches(texts, None, list(range(len(texts)))):
                out.append(torch.softmax(self.model_(**batch).logits, dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 2))

    def predict_proba(self, X: TrialsOrTexts) -> np.ndarray:
        return self._proba(to_texts(X))


class FrozenEncoderClassifier(ThresholdedClassifier):
    """No fine-tuning: frozen encoder features (mean-pooled) + logistic regression.

    The features come from `features` (an `EncoderFeatureCache` for the same model and max length;
    a private one where none is given).
    """

    def __init__(self, model: str = DEFAULT_ENCODER, max_length: int = 128, seed: int = 0,
                 features: EncoderFeatureCache | None = None) -> None:
        self.model = model
        self.max_length = max_length
        self.seed = seed
        self.features = features

    def fit(self, X: TrialsOrTexts, y: Sequence[int], X_valid: TrialsOrTexts | None = None,
            y_valid: Sequence[int] | None = None) -> FrozenEncoderClassifier:
        labels = check_labels(y)
        features = self.features or EncoderFeatureCache(self.model, self.max_length)
        if (features.path, features.max_length) != (resolve_encoder(self.model), self.max_length):
            raise ConfigError(f"the feature cache is for {features.describe()}; the classifier needs {self.model}, "
                              f"max length {self.max_length}")
        self.features_ = features
        self.head_ = LogisticRegression(max_iter=2000, random_state=self.seed).fit(features.pooled(to_texts(X)), labels)
        self.classes_ = np.array([0, 1])
        self._choose_threshold(X_valid, y_valid)
        return self

    def predict_proba(self, X: TrialsOrTexts) -> np.ndarray:
        return self.head_.predict_proba(self.features_.pooled(to_texts(X)))


def make_classifier(kind: str, model: str | None = None, seed: int = 0, progress: StageProgressFn | None = None,
                    **params: Any):
    """`params`: transformer: max_length, epochs, learning_rate, batch_size, patience, frozen_layers,
    features; frozen: max_length, features; tfidf: none."""
    if kind == "tfidf":
        return TfidfClassifier(seed=seed)
    if kind == "transformer":
        return TransformerClassifier(model=model or DEFAULT_ENCODER, seed=seed, progress=progress, **params)
    if kind == "frozen":
        return FrozenEncoderClassifier(model=model or DEFAULT_ENCODER, seed=seed, **params)
    raise ConfigError(f"unknown classifier {kind!r} (tfidf or transformer)")
