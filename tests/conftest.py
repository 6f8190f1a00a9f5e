"""Shared fixtures: real data from ../shared/data, a real store built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from support import TOP, TOP_FILES  # noqa: E402


@pytest.fixture(scope="session")
def top_store(tmp_path_factory):
    """All eight TOP CSVs ingested into a real local store (embeddings included)."""
    from synthtrials.tools.ingest import ingest
    from synthtrials.tools.store import open_store

    path = tmp_path_factory.mktemp("top_store")
    store = open_store(path)
    ingest(store, TOP_FILES)
    yield store
    store.close()


@pytest.fixture(scope="session")
def top_store_path(top_store):
    return top_store.path


@pytest.fixture(scope="session")
def phase1_store_path(tmp_path_factory):
    """phase_I_train ingested into a real local store: enough eligible drugs, quick to build."""
    from synthtrials.tools.ingest import ingest
    from synthtrials.tools.store import open_store

    path = tmp_path_factory.mktemp("phase1_store")
    store = open_store(path)
    ingest(store, [TOP / "phase_I_train.csv"])
    store.close()
    return path
