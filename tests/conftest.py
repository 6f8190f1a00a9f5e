"""Shared fixtures: real data from ../shared/data, a real store built once per session."""

from __future__ import annotations

import os

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
    ingest(store, TOP_FILES, embed_sections=False)  # its tests do not use the critic's knowledge
    yield store
    store.close()


@pytest.fixture(scope="session")
def top_store_path(top_store):
    return top_store.path


@pytest.fixture(scope="session")
def phase1_store_path(tmp_path_factory):
    """phase_I_train (split train) and the first 120 trials of phase_I_test (split test) in a real
    local store, with the critic's section embeddings (the whole train split: the critic the
    project ships). Its first `generate` calibrates the critic and saves the calibration in it."""
    from support import head_csv
    from synthtrials.tools.ingest import ingest
    from synthtrials.tools.store import open_store

    data = tmp_path_factory.mktemp("phase1_data")
    files = [TOP / "phase_I_train.csv", head_csv(TOP / "phase_I_test.csv", data / "phase_I_test.csv", 120)]
    path = tmp_path_factory.mktemp("phase1_store")
    store = open_store(path)
    ingest(store, files)
    store.close()
    return path
