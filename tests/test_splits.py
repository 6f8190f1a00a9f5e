"""Splits in the store: from file names or --split, the strictest one kept whatever the order,
reported when upgraded, stored, shown and usable as a filter."""

import csv
import sqlite3

import numpy as np
import pytest
from support import TOP, TOP_FILES, cli, head_csv
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.readers import read_trials
from synthtrials.tools.records.splits import split_from_source_name, strictest
from synthtrials.tools.store.protocol import (
    TrialFilter,
    default_grounding_splits,
    grounding_filter,
)
from synthtrials.tools.store.trial_store import open_store


def test_split_from_file_names():
    assert split_from_source_name("data/phase_I_train.csv") == "train"
    assert split_from_source_name("phase_II_valid.csv") == "valid"
    assert split_from_source_name("/x/toy_test.csv") == "test"
    assert split_from_source_name("studies.json") == "pool"
    assert split_from_source_name("archive.zip!NCT0000xxxx/NCT00000378.xml") == "pool"
    assert strictest(["train", "pool", "test", "valid"]) == "test"
    with pytest.raises(ConfigError, match="unknown split 'dev'"):
        strictest(["dev"])


def _csv_ids(path):
    with path.open(newline="") as handle:
        return {row["nctid"] for row in csv.DictReader(handle)}


def test_top_store_keeps_the_strictest_split(top_store):
    rank = {"pool": 0, "train": 1, "valid": 2, "test": 3}
    expected: dict[str, str] = {}
    for path in TOP_FILES:
        given = split_from_source_name(path)
        for nct_id in _csv_ids(path):
            if rank[given] > rank[expected.get(nct_id, "pool")]:
                expected[nct_id] = given
    counts = top_store.split_counts()
    assert counts == {s: sum(v == s for v in expected.values()) for s in ("train", "valid", "test")}
    assert top_store.stats()["split"] == counts
    # phase_I_train shares 32 trials with phase_II_valid: they are valid, never grounding material
    shared = _csv_ids(TOP / "phase_I_train.csv") & _csv_ids(TOP / "phase_II_valid.csv")
    assert len(shared) == 32
    train_ids = set(top_store.filter_ids(TrialFilter(splits=frozenset({"train"}))))
    assert not shared & train_ids
    test_ids = _csv_ids(TOP / "phase_I_test.csv")
    assert not test_ids & set(top_store.filter_ids(grounding_filter(["train", "pool"])))
    assert default_grounding_splits(top_store) == ["train"]
    hits = top_store.search("breast cancer", k=20, flt=grounding_filter(["train"]))
    assert hits and all(h.trial.nct_id in train_ids for h in hits)


def test_order_of_ingestion_never_downgrades(tmp_path):
    trials = read_trials([TOP / "phase_I_valid.csv"])[:6]
    vectors = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    ids = [t.nct_id for t in trials]
    results = []
    for order in (("test", "train"), ("train", "test")):
        store = open_store(tmp_path / "-".join(order))
        reports = [store.upsert(trials, vectors=vectors, splits={i: split for i in ids[:3]}) for split in order]
        results.append((store.split_counts(), [len(r.split_upgrades) for r in reports]))
        store.close()
    assert results[0][0] == results[1][0] == {"pool": 3, "test": 3}
    assert results[0][1] == [0, 0] and results[1][1] == [0, 3]  # train -> test is reported; test is kept


def test_ingest_split_option_and_upgrade_report(tmp_path):
    store = tmp_path / "store"
    # 20 real phase_I_valid rows: as pool trials their sections are embedded for the critic, all 117 take a minute
    valid = head_csv(TOP / "phase_I_valid.csv", tmp_path / "phase_I_valid.csv", 20)
    first = cli("ingest", str(valid), "--store", str(store), "--split", "pool")
    assert first.returncode == 0, first.stderr
    assert "splits: pool 20" in first.stdout
    again = cli("ingest", str(valid), "--store", str(store))
    assert "20 trials took a stricter split" in again.stdout and "pool -> valid" in again.stdout
    bad = cli("ingest", str(valid), "--store", str(store), "--split", "dev")
    assert bad.returncode == 2 and "unknown split 'dev'" in bad.stderr
    stats = cli("store", "stats", "--store", str(store))
    assert "by split" in stats.stdout and "valid" in stats.stdout


def test_a_store_written_before_splits_opens_with_splits_from_file_names(tmp_path):
    path = tmp_path / "old"
    store = open_store(path)
    trials = read_trials([TOP / "phase_I_valid.csv"])[:4]
    store.upsert(trials, vectors=np.ones((4, 8), dtype=np.float32))
    store.close()
    db = sqlite3.connect(path / "trials.sqlite")
    db.executescript("""
        CREATE TABLE old AS SELECT nct_id, record, label, phase, source, embed_text, embedding FROM trials;
        DROP TABLE trials; ALTER TABLE old RENAME TO trials;""")
    db.close()
    reopened = open_store(path, create=False)
    assert reopened.split_counts() == {"valid": 4}  # phase_I_valid.csv, recorded in each trial's provenance
    reopened.close()
