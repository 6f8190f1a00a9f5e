"""One contract, every backend: the same tests run against the local store always and against
Weaviate where WEAVIATE_URL is set; a structural test fails when a backend lacks a method of
the `TrialStore` protocol."""

import inspect
import os
import uuid

import numpy as np
import pytest
from support import TOP
from synthtrials.tools.readers import read_trials
from synthtrials.tools.store.local_store import LocalTrialStore
from synthtrials.tools.store.protocol import (
    TrialFilter,
    TrialStore,
    eligible,
    grounding_filter,
)
from synthtrials.tools.store.trial_store import open_store
from synthtrials.tools.store.weaviate_store import WeaviateTrialStore

WEAVIATE_URL = os.environ.get("WEAVIATE_URL")
BACKENDS = ["local", pytest.param("weaviate", marks=[pytest.mark.weaviate, pytest.mark.skipif(
    not WEAVIATE_URL, reason="set WEAVIATE_URL to run the contract against a live Weaviate server")])]


def protocol_members() -> set[str]:
    return {name for name in dir(TrialStore) if not name.startswith("_")} | set(TrialStore.__annotations__)


@pytest.mark.parametrize("backend", [LocalTrialStore, WeaviateTrialStore])
def test_every_backend_implements_the_whole_protocol(backend):
    missing = []
    for name in protocol_members():
        if name in TrialStore.__annotations__:  # attributes: set in __init__
            if f"self.{name}" not in inspect.getsource(backend.__init__):
                missing.append(name)
        elif not callable(getattr(backend, name, None)) and not isinstance(getattr(backend, name, None), property):
            missing.append(name)
    assert not missing, f"{backend.__name__} lacks {missing}"
    for name in protocol_members() - set(TrialStore.__annotations__):
        expected = inspect.signature(getattr(TrialStore, name)) if callable(getattr(TrialStore, name)) else None
        if expected is not None and callable(getattr(backend, name)):
            assert list(inspect.signature(getattr(backend, name)).parameters) == list(expected.parameters), name


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    trials = read_trials([TOP / "phase_I_valid.csv"])[:40]
    if request.param == "local":
        backend = open_store(tmp_path / "store")
    else:
        backend = open_store(WEAVIATE_URL, collection=f"Contract{uuid.uuid4().hex[:8]}")
    vectors = np.random.default_rng(0).normal(size=(len(trials), 16)).astype(np.float32)
    splits = {t.nct_id: ("train" if i < 20 else "test" if i < 30 else "pool") for i, t in enumerate(trials)}
    backend.upsert(trials, vectors=vectors, splits=splits)
    yield backend, trials, vectors, splits
    if request.param == "weaviate":
        backend._client.collections.delete(backend._collection.name)
    backend.close()


def test_contract_reads_and_filters(store):
    backend, trials, vectors, splits = store
    assert backend.count() == len(trials)
    assert backend.get(trials[0].nct_id) == trials[0]
    ids = [trials[5].nct_id, "NCT99999999", trials[2].nct_id]
    assert [t.nct_id for t in backend.get_many(ids)] == [trials[5].nct_id, trials[2].nct_id]
    assert backend.split_counts() == {"pool": 10, "train": 20, "test": 10}
    assert backend.stats()["split"] == {"train": 20, "test": 10, "pool": 10}
    train = set(backend.filter_ids(grounding_filter(["train"])))
    assert train == {i for i, s in splits.items() if s == "train"}
    labelled = backend.filter(TrialFilter(label=1, splits=frozenset({"train", "pool"})))
    assert labelled and all(t.label == 1 and splits[t.nct_id] != "test" for t in labelled)
    hits = backend.search_by_vector(vectors[25], k=5, flt=grounding_filter(["train"]))
    assert hits and all(splits[h.trial.nct_id] == "train" for h in hits)
    unfiltered = backend.search_by_vector(vectors[25], k=1)
    assert unfiltered[0].trial.nct_id == trials[25].nct_id


def test_contract_eligibility_and_upgrades(store):
    backend, trials, vectors, splits = store
    rows = backend.intervention_rows(grounding_filter(["train"]))
    assert len(rows) == 20 and all(isinstance(label, int) for label, _ in rows)
    assert eligible(backend, k=1, flt=grounding_filter(["train", "test", "pool"])) == eligible(backend, k=1)
    report = backend.upsert(trials[:3], vectors=vectors[:3], splits={t.nct_id: "valid" for t in trials[:3]})
    assert [(u.old, u.new) for u in report.split_upgrades] == [("train", "valid")] * 3
    downgrade = backend.upsert(trials[:3], vectors=vectors[:3], splits={t.nct_id: "pool" for t in trials[:3]})
    assert not downgrade.split_upgrades and backend.split_counts()["valid"] == 3
