"""A LangChain `VectorStore` over a NumPy matrix, with fast pre-filtering by id set.

LangChain's `InMemoryVectorStore` filters with a Python callable per document and restacks the
vectors on every query (about a second per query at 100,000 documents); this one keeps one
contiguous float32 matrix of L2-normalised vectors and scores only the rows a filter allows,
which keeps filtered search in milliseconds at 100,000 trials. Persistence is the caller's job
(`LocalTrialStore` keeps the vectors in its SQLite file).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore


class NumpyVectorStore(VectorStore):
    """Cosine-similarity search over normalised vectors; `filter` is a set of allowed ids."""

    def __init__(self, embedding: Embeddings) -> None:
        self._embedding = embedding
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        self._texts: list[str] = []
        self._metadatas: list[dict[str, Any]] = []
        self._matrix = np.zeros((0, 0), dtype=np.float32)

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    @property
    def ids(self) -> list[str]:
        """Row ids in row order (do not mutate)."""
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def row_of(self, doc_id: str) -> int | None:
        return self._index.get(doc_id)

    def add_vectors(self, ids: Sequence[str], vectors: np.ndarray, texts: Sequence[str] | None = None,
                    metadatas: Sequence[dict[str, Any]] | None = None) -> list[str]:
        """Insert or replace rows by id (an id never appears twice)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise ValueError("vectors must be a (len(ids), dim) array")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
        if self._matrix.size == 0:
            self._matrix = np.zeros((0, vectors.shape[1]), dtype=np.float32)
        new_rows: list[np.ndarray] = []
        for i, doc_id in enumerate(ids):
            text = texts[i] if texts is not None else ""
            meta = dict(metadatas[i]) if metadatas is not None else {}
            row = self._index.get(doc_id)
            if row is not None:
                self._matrix[row] = vectors[i]
                self._texts[row] = text
                self._metadatas[row] = meta
            else:
                self._index[doc_id] = len(self._ids)
                self._ids.append(doc_id)
                self._texts.append(text)
                self._metadatas.append(meta)
                new_rows.append(vectors[i])
        if new_rows:
            self._matrix = np.vstack([self._matrix, np.stack(new_rows)])
        return list(ids)

    def add_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, *,
                  ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        texts = list(texts)
        if ids is None:
            ids = [str(len(self._ids) + i) for i in range(len(texts))]
        vectors = np.asarray(self._embedding.embed_documents(texts), dtype=np.float32)
        return self.add_vectors(ids, vectors, texts, metadatas)

    def search_vector(self, vector: Sequence[float] | np.ndarray, k: int = 4,
                      filter: Iterable[str] | np.ndarray | None = None) -> list[tuple[str, float]]:
        """Top-k (id, cosine similarity); `filter` is an id collection or a boolean row mask."""
        if len(self._ids) == 0 or k <= 0:
            return []
        query = np.asarray(vector, dtype=np.float32)
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        if filter is None:
            rows = None
            scores = self._matrix @ query
        else:
            if isinstance(filter, np.ndarray) and filter.dtype == bool:
                rows = np.flatnonzero(filter[: len(self._ids)])
            else:
                rows = np.fromiter((self._index[i] for i in filter if i in self._index), dtype=np.int64)
            if rows.size == 0:
                return []
            scores = self._matrix[rows] @ query
        k = min(k, scores.shape[0])
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        picked = top if rows is None else rows[top]
        return [(self._ids[int(r)], float(s)) for r, s in zip(picked, scores[top])]

    def similarity_search_with_score_by_vector(self, embedding: list[float], k: int = 4,
                                               filter: Iterable[str] | None = None, **kwargs: Any
                                               ) -> list[tuple[Document, float]]:
        return [
            (Document(id=doc_id, page_content=self._texts[self._index[doc_id]],
                      metadata=self._metadatas[self._index[doc_id]]), score)
            for doc_id, score in self.search_vector(embedding, k, filter)
        ]

    def similarity_search_with_score(self, query: str, k: int = 4, filter: Iterable[str] | None = None,
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        return self.similarity_search_with_score_by_vector(self._embedding.embed_query(query), k, filter)

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def _select_relevance_score_fn(self):  # cosine in [-1, 1] -> [0, 1]
        return lambda score: (score + 1.0) / 2.0

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings, metadatas: list[dict] | None = None, *,
                   ids: list[str] | None = None, **kwargs: Any) -> NumpyVectorStore:
        store = cls(embedding)
        store.add_texts(texts, metadatas, ids=ids)
        return store
