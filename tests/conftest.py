"""Shared fixtures: real data from ../shared/data, real stores built once per session from shared
vectors, and the `slow` marker given to every test that needs them (`-m "not slow"`: the quick loop)."""

from __future__ import annotations

import os
import threading

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
#: the suite's recorded figures (the critic's verdicts and calibration: tests/fixtures) are float32's,
#: which every CPU computes alike; the bfloat16 default of AMX CPUs is tested in test_embeddings
os.environ.setdefault("SYNTHTRIALS_EMBEDDING_PRECISION", "float32")

from support import TOP, TOP_FILES  # noqa: E402

#: fixtures that build a real store, run the embedded model or train one: a test using one is slow
SLOW_FIXTURES = frozenset({"top_store", "top_store_path", "phase1_store_path", "phase1_knowledge", "smollm2_chat",
                           "smollm2_transformers", "tiny_adapter"})


#: slow tests in modules that do not mark them themselves (the whole demo in a subprocess)
SLOW_TESTS = frozenset({"test_demo.py::test_demo_runs_every_stage"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.nodeid.split("/")[-1] in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def shared_vectors():
    """Each distinct text is embedded once per session, whichever store, ingest or command asks.

    The stores of a session hold the same real trials (phase_I_train is in the phase I store and in
    the all-TOP store; phase_I_valid is ingested by half a dozen CLI tests): the bundled encoder's
    vector of a text is computed once and handed to every later caller. The stores still embed
    what they are given (a store's own reuse of its stored vectors is tested in test_store); only
    the encoder's work is shared. Nothing is loaded until a text is embedded.
    """
    import numpy as np
    from synthtrials.tools.store.embeddings import TransformerEmbeddings

    original = TransformerEmbeddings.embed_array
    memo: dict[tuple[str, int, str, str], np.ndarray] = {}
    lock = threading.Lock()

    def embed_array(self, texts):
        keys = [(self.model_name, self.max_length, self.precision, t) for t in texts]
        with lock:
            missing = list(dict.fromkeys(k[3] for k in keys if k not in memo))
        if missing:
            vectors = original(self, missing)
            with lock:
                memo.update(((self.model_name, self.max_length, self.precision, t), v) for t, v in zip(missing, vectors))
        with lock:
            rows = [memo[k] for k in keys]
        return np.stack(rows).astype(np.float32) if rows else original(self, [])

    TransformerEmbeddings.embed_array = embed_array
    yield memo
    TransformerEmbeddings.embed_array = original


@pytest.fixture(scope="session")
def top_store(tmp_path_factory):
    """All eight TOP CSVs ingested into a real local store (embeddings included)."""
    from synthtrials.tools.store.ingest import ingest
    from synthtrials.tools.store.trial_store import open_store

    path = tmp_path_factory.mktemp("top_store")
    store = open_store(path)
    ingest(store, TOP_FILES, embed_sections=False)  # its tests do not use the critic's knowledge
    yield store
    store.close()


@pytest.fixture(scope="session")
def top_store_path(top_store):
    return top_store.path


@pytest.fixture(scope="session")
def phase1_data(tmp_path_factory):
    """A folder of real TOP phase I CSVs, fewer rows: phase_I_train.csv holds the phase_I_train trials of
    every drug a plan can draw and of the drugs the tests name, each drug with all its train trials
    (`support.drug_complete_subset`: 365 of the 1,044 trials, so the same drugs are eligible with the
    same counts and evidence), phase_I_test.csv the first 120 trials of phase_I_test and
    phase_I_valid.csv the first 40 of phase_I_valid (the demo's three files)."""
    from support import drug_complete_subset, head_csv

    data = tmp_path_factory.mktemp("phase1_data")
    drug_complete_subset(TOP / "phase_I_train.csv", data / "phase_I_train.csv")
    head_csv(TOP / "phase_I_test.csv", data / "phase_I_test.csv", 120)
    head_csv(TOP / "phase_I_valid.csv", data / "phase_I_valid.csv", 40)
    return data


@pytest.fixture(scope="session")
def phase1_store_path(phase1_data, tmp_path_factory):
    """A real local store of `phase1_data`'s train (split train) and test (split test) files, with the
    critic's section embeddings of the train split and its calibration, computed once here and saved in
    the store: every later `generate`, `check`, `store calibrate` and the demo of the session reads them.
    (The whole train split has three times the sections to embed: minutes on 2 cores, for the same checks.)"""
    from synthtrials.tools.knowledge.calibration import load_or_calibrate
    from synthtrials.tools.store.ingest import ingest
    from synthtrials.tools.store.trial_store import open_store

    path = tmp_path_factory.mktemp("phase1_store")
    store = open_store(path)
    ingest(store, [phase1_data / "phase_I_train.csv", phase1_data / "phase_I_test.csv"])
    load_or_calibrate(store, ["train"])
    store.close()
    return path


@pytest.fixture(scope="session")
def phase1_knowledge(phase1_store_path):
    """The critic's domain knowledge of the phase I store's train split and its saved calibration
    (`calibrate` on that knowledge, run once by `phase1_store_path`)."""
    from synthtrials.tools.knowledge.calibration import (
        build_knowledge,
        load_or_calibrate,
    )
    from synthtrials.tools.store.trial_store import open_store

    store = open_store(phase1_store_path, create=False)
    knowledge = build_knowledge(store, ["train"])
    yield store, knowledge, load_or_calibrate(store, ["train"], knowledge)
    store.close()


@pytest.fixture(scope="session")
def smollm2_chat():
    """SmolLM2 through the transformers backend (the bundled GGUF, dequantised by transformers: the
    slowest load of the suite), loaded once per session, greedy, 12 answer tokens."""
    from synthtrials.tools.llm.client import LLMClient, LLMConfig

    return LLMClient(LLMConfig(backend="transformers", model_path="smollm2", max_tokens=12, temperature=0))


@pytest.fixture(scope="session")
def smollm2_transformers(smollm2_chat):
    """(tokenizer, model) of that load, for tests that train a copy (deep-copy before changing it)."""
    return smollm2_chat.model._tokenizer, smollm2_chat.model._model


@pytest.fixture(scope="session")
def tiny_adapter(phase1_store_path, smollm2_transformers, tmp_path_factory):
    """(folder, AdaptInfo) of one real LoRA adapter of the bundled SmolLM2 (`adapt` on 4 grounding
    trials of the phase I store, 2 steps, rank 4), trained once per session on a copy of the session's
    SmolLM2 (the same GGUF, dequantised once): enough to merge, serve and generate with."""
    from synthtrials.agents import writer_adaptation
    from synthtrials.agents.writer_adaptation import AdaptOptions, adapt

    def session_base(base):
        assert base == "smollm2"
        from support import smollm2_copy

        return smollm2_copy(smollm2_transformers)

    out = tmp_path_factory.mktemp("tiny_adapter") / "adapter"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(writer_adaptation, "load_base", session_base)
        info = adapt(AdaptOptions(store=str(phase1_store_path), out=out, max_trials=4, batch_size=2, rank=4))
    return out, info
