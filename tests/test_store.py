import numpy as np
import pytest
from support import TOP, XML_FILE
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.readers import read_trials
from synthtrials.tools.records.normalize import normalize_intervention
from synthtrials.tools.records.trial import Phase
from synthtrials.tools.store.ingest import ingest
from synthtrials.tools.store.protocol import (
    TrialFilter,
    eligible,
)
from synthtrials.tools.store.trial_store import open_store


def test_store_counts_and_eligibility_rules(top_store):
    assert top_store.count() == 3722
    stats = top_store.stats()
    assert stats["label"] == {"1": 2348, "0": 1374}
    # the seed paper's counting (lower-cased names): 37 drugs first-listed, 95 any listed
    assert len(eligible(top_store, k=3, rule="first", names="lowercase")) == 37
    assert len(eligible(top_store, k=3, rule="any", names="lowercase")) == 95
    # normalised names merge dose variants ("raltegravir 400 mg", "raltegravir 1200 mg")
    first = {e.intervention for e in eligible(top_store, k=3, rule="first")}
    lower = {normalize_intervention(e.intervention) for e in eligible(top_store, k=3, rule="first", names="lowercase")}
    assert first - lower == {"raltegravir"} and len(first) == 38
    assert len(eligible(top_store, k=3, rule="any")) == 96
    for e in eligible(top_store, k=3):
        assert e.successes >= 3 and e.failures >= 3
    assert len(eligible(top_store, k=10)) < len(eligible(top_store, k=3))
    with pytest.raises(ConfigError, match=r"unknown eligibility rule 'most' \(first or any\)"):
        eligible(top_store, rule="most")


def test_get_and_filters(top_store):
    trial = top_store.get("NCT01187615")
    assert trial.label == 0 and trial.phase == Phase.PHASE_1
    assert top_store.get("NCT99999999") is None
    failed = top_store.filter(TrialFilter(intervention="  Sorafenib ", label=0))
    assert failed and all(t.label == 0 for t in failed)
    assert all(any(normalize_intervention(i.name) == "sorafenib" for i in t.interventions) for t in failed)
    phase3 = top_store.filter_ids(TrialFilter(phase="Phase 3"))
    assert len(phase3) == 329
    cond = top_store.filter(TrialFilter(condition="Breast Cancer", label=1), limit=5)
    assert cond and all("breast cancer" in [c.lower() for c in t.conditions] for t in cond)
    excluded = top_store.filter_ids(TrialFilter(intervention="sorafenib", exclude_ids=frozenset({failed[0].nct_id})))
    assert failed[0].nct_id not in excluded


@pytest.mark.parametrize("mode", ["semantic", "bm25", "hybrid"])
def test_search_modes_with_filters(top_store, mode):
    hits = top_store.search("trastuzumab HER2 positive breast cancer", k=5, flt=TrialFilter(label=1), mode=mode)
    assert len(hits) == 5
    assert all(h.trial.label == 1 for h in hits)
    assert any("trastuzumab" in " ".join(h.trial.intervention_names).lower() for h in hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    narrow = top_store.search("anything", k=50, flt=TrialFilter(intervention="sorafenib", label=0), mode=mode)
    assert {h.trial.nct_id for h in narrow} <= set(top_store.filter_ids(TrialFilter(intervention="sorafenib", label=0)))


def test_langchain_retriever(top_store):
    docs = top_store.vectorstore.as_retriever(search_kwargs={"k": 3}).invoke("metformin type 2 diabetes")
    assert len(docs) == 3 and all(d.id.startswith("NCT") for d in docs)
    assert any("metformin" in d.page_content for d in docs)


def test_upsert_never_duplicates_and_persists(tmp_path):
    path = tmp_path / "store"
    store = open_store(path)
    report = ingest(store, [TOP / "phase_I_valid.csv", XML_FILE])
    assert (report.inserted, store.count()) == (118, 118)
    again = ingest(store, [TOP / "phase_I_valid.csv"])
    assert (again.inserted, again.updated, again.embedded, store.count()) == (0, 117, 0, 118)
    store.close()
    reopened = open_store(path, create=False)
    assert reopened.count() == 118 and reopened.get("NCT00000378").brief_title.startswith("Antidepressant")
    hits = reopened.search("sertraline nortriptyline depression", k=1)
    assert hits[0].trial.nct_id == "NCT00000378"
    reopened.close()


def test_failed_upsert_leaves_store_unchanged(tmp_path):
    store = open_store(tmp_path / "s")
    trials = read_trials([TOP / "phase_I_valid.csv"])
    store.upsert(trials[:10])
    before = store.stats()
    with pytest.raises(ConfigError, match="store holds 384-d vectors, got 7-d"):
        store.upsert(trials[10:20], vectors=np.zeros((10, 7), dtype=np.float32))  # wrong dimension
    assert store.stats() == before and store.count() == 10
    with pytest.raises(ValueError, match="one vector per trial"):
        store.upsert(trials[10:20], vectors=np.zeros((9, 384), dtype=np.float32))
    assert store.stats() == before and store.count() == 10
    assert [t.nct_id for t in store.filter()] == [t.nct_id for t in trials[:10]]  # nothing half-written


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no trial store here"):
        open_store(tmp_path / "absent", create=False)


def test_the_encoder_runs_bfloat16_where_the_cpu_has_it_and_float32_on_request(monkeypatch):
    """`auto` encodes under bfloat16 autocast on a CPU with AMX or AVX512-BF16 (2-2.7x faster here) and
    in float32 elsewhere; the vectors of real criteria stay within cosine 0.9999 of float32's and find
    the same nearest criterion; a wrong setting is one line naming the variable."""
    import csv

    from synthtrials.tools.hardware import native_bfloat16
    from synthtrials.tools.store.embeddings import PRECISION_ENV, TransformerEmbeddings, resolve_precision

    monkeypatch.delenv(PRECISION_ENV, raising=False)
    assert resolve_precision(None, "cpu") == ("bfloat16" if native_bfloat16("cpu") else "float32")
    assert resolve_precision("float32", "cpu") == "float32"
    monkeypatch.setenv(PRECISION_ENV, "float16")
    with pytest.raises(ConfigError, match=f"{PRECISION_ENV}='float16'.*auto, float32, bfloat16"):
        resolve_precision(None, "cpu")
    monkeypatch.setenv(PRECISION_ENV, "bfloat16")
    assert resolve_precision(None, "cpu") == "bfloat16" and resolve_precision("float32", "cpu") == "float32"

    with (TOP / "phase_I_train.csv").open(newline="") as handle:
        texts = [line.strip() for row in list(csv.DictReader(handle))[:40]
                 for line in row["criteria"].splitlines() if len(line.strip()) > 20][:300]
    full = TransformerEmbeddings(precision="float32").embed_array(texts)
    half = TransformerEmbeddings(precision="bfloat16").embed_array(texts)
    assert half.dtype == np.float32 and np.allclose(np.linalg.norm(half, axis=1), 1.0, atol=1e-5)
    assert (full * half).sum(axis=1).min() > 0.9999
    sims_full, sims_half = full @ full.T, half @ half.T
    np.fill_diagonal(sims_full, -1)
    np.fill_diagonal(sims_half, -1)
    assert (sims_full.argmax(axis=1) == sims_half.argmax(axis=1)).mean() >= 0.95
