"""TrialStore: full `Trial`s plus their embeddings, searched by the retriever agent.

Two backends behind one surface:

- `LocalTrialStore` (default): one folder holding a SQLite file (trials, normalised intervention
  and condition names, embeddings) — every upsert is one transaction, so a failed ingest leaves
  the store as it was — a `NumpyVectorStore` (a LangChain vector store) loaded from it, and a
  BM25 index beside it.
- `WeaviateTrialStore` (`synthtrials.tools.store.weaviate_store`): a Weaviate server, cluster or cloud
  through weaviate-client v4, with hybrid BM25 + vector search and filters.

`open_store("runs/store")` opens a local store; `open_store("http://host:8080")` a Weaviate one.
"""

from __future__ import annotations

from pathlib import Path

from synthtrials.tools.store.local_store import LocalTrialStore
from synthtrials.tools.store.protocol import TrialStore


def is_remote_store(location: str | Path) -> bool:
    """A Weaviate URL (``http(s)://``, ``weaviate+https://``) rather than a local store folder."""
    return str(location).startswith(("http://", "https://", "weaviate+"))


def open_store(location: str | Path, *, embedding_model: str | None = None, create: bool = True,
               collection: str = "Trial") -> TrialStore:
    """Open a store: a folder path (local) or an http(s) URL / ``weaviate+https://`` (Weaviate)."""
    text = str(location)
    if is_remote_store(text):
        from synthtrials.tools.store.weaviate_store import WeaviateTrialStore

        return WeaviateTrialStore(text, collection=collection, embedding_model=embedding_model)
    return LocalTrialStore(Path(location), embedding_model=embedding_model, create=create)


