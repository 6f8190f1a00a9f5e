"""Live tests of the Weaviate backend: they run only where WEAVIATE_URL points at a server."""

import os
import uuid

import pytest
from support import TOP
from synthtrials.tools.readers import read_trials
from synthtrials.tools.store.protocol import (
    TrialFilter,
    intervention_label_counts,
)
from synthtrials.tools.store.trial_store import open_store
from synthtrials.tools.store.weaviate_store import trial_properties

WEAVIATE_URL = os.environ.get("WEAVIATE_URL")


def test_trial_properties_carry_filter_fields():
    trials = [t for t in read_trials([TOP / "phase_I_valid.csv"]) if t.why_stopped][:5]
    allowed = {"Interventions", "Conditions", "Phase", "Inclusion criteria", "Exclusion criteria", "Eligibility"}
    for trial in trials:
        props = trial_properties(trial, "train")
        assert props["nct_id"] == trial.nct_id and props["label"] == trial.label and props["split"] == "train"
        assert props["interventions"] and props["phase"] == trial.phase.value
        titles = {line.split(":", 1)[0] for line in props["text"].splitlines()}
        assert titles <= allowed, titles  # every section, not only the first: no status, why-stopped or label
        assert trial.why_stopped not in props["text"] and trial.overall_status not in props["text"].split()


@pytest.mark.weaviate
@pytest.mark.skipif(not WEAVIATE_URL, reason="set WEAVIATE_URL to run the live Weaviate tests")
def test_live_weaviate_store():
    collection = f"TrialTest{uuid.uuid4().hex[:8]}"
    store = open_store(WEAVIATE_URL, collection=collection)
    try:
        trials = read_trials([TOP / "phase_I_valid.csv"])
        store.upsert(trials)
        store.upsert(trials[:10])  # upsert by NCT id never duplicates
        assert store.count() == len(trials)
        assert store.get(trials[0].nct_id) == trials[0]
        for mode in ("semantic", "bm25", "hybrid"):
            hits = store.search("cancer", k=3, flt=TrialFilter(label=1), mode=mode)
            assert hits and all(h.trial.label == 1 for h in hits)
        counts = intervention_label_counts(store, "any")
        assert counts
    finally:
        store._client.collections.delete(collection)
        store.close()
