"""Decontamination: a synthetic trial whose text reproduces a held-out (test or validation) trial is refused
by `evaluate` (or dropped with --drop-contaminated) and fails `check`; real training trials never are, at
thresholds calibrated on real TOP phase I train-vs-held-out pairs."""

import json
import random

import numpy as np
import pytest
from support import TOP, cli, head_csv
from synthtrials.evals.data import load_labelled
from synthtrials.evals.decontamination import (
    CONTAMINATED,
    TrialFeatures,
    calibrate,
    decontaminate,
    find_contaminated,
)
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.readers import read_trials
from synthtrials.tools.records.fields import field_set
from synthtrials.tools.store.embeddings import DEFAULT_EMBEDDING_MODEL, get_embeddings


@pytest.fixture(scope="module")
def phase1():
    """The whole TOP phase I train, test and valid files, and every trial's features (embedded once)."""
    train, test, valid = (load_labelled(TOP / f"phase_I_{name}.csv") for name in ("train", "test", "valid"))
    fields = field_set(train)
    features = TrialFeatures.of(train + test + valid, fields, remembered_embeddings)
    return train, test, valid, fields, features


#: text -> its MiniLM vector, for every text the module has embedded
EMBEDDED: dict[str, np.ndarray] = {}


def remembered_embeddings(texts):
    """MiniLM vectors of `texts`: each text embedded once in this module (the trials' vectors are the same
    whichever test asks for them)."""
    new = sorted({t for t in texts if t not in EMBEDDED})
    if new:
        EMBEDDED.update(zip(new, get_embeddings().embed_array(new)))
    return np.stack([EMBEDDED[t] for t in texts])


def ids(trials):
    return {t.nct_id for t in trials}


def copies(held_out, donors, seed=0):
    """Per held-out trial, two copies with clean provenance: the whole trial under a new id and title,
    and its eligibility criteria under a real training trial's drug, conditions and phase."""
    rng = random.Random(seed)
    out = []
    for i, trial in enumerate(held_out):
        provenance = {"examples": [rng.choice(donors).nct_id], "neighbours": []}
        out.append(trial.model_copy(update={"nct_id": f"SYN-{2 * i:08x}", "source": "synthetic", "provenance": provenance,
                                            "brief_title": "A study written anew", "official_title": None}))
        donor = rng.choice(donors)
        out.append(donor.model_copy(update={"nct_id": f"SYN-{2 * i + 1:08x}", "source": "synthetic",
                                            "provenance": provenance, "eligibility": trial.eligibility}))
    return out


@pytest.mark.slow  # MiniLM over the 2,532 phase I trials
def test_real_train_trials_are_never_refused(phase1):
    train, test, valid, _, features = phase1
    held, real = features.subset(ids(test + valid)), features.subset(ids(train))
    calibration = calibrate(real, held, DEFAULT_EMBEDDING_MODEL)
    # measured on the full files: the largest real scores 0.478 / 0.558 / 0.939 -> thresholds 0.739 / 0.779 / 0.969
    assert calibration.real_max.text_ngram < 0.6 and calibration.real_max.criteria_ngram < 0.7
    assert 0.85 < calibration.real_max.similarity < 0.97
    assert calibration.thresholds.text_ngram < 0.8 and calibration.thresholds.similarity < 0.99
    assert find_contaminated(real, held, calibration, {})[2] == []
    # out of sample: thresholds calibrated on half the training trials refuse none of the other half
    shuffled = list(train)
    random.Random(0).shuffle(shuffled)
    half = len(shuffled) // 2
    on_half = calibrate(features.subset(ids(shuffled[:half])), held, DEFAULT_EMBEDDING_MODEL)
    assert find_contaminated(features.subset(ids(shuffled[half:])), held, on_half, {})[2] == []


@pytest.mark.slow  # MiniLM over the 2,532 phase I trials
def test_every_criteria_copy_of_a_held_out_trial_is_refused(phase1):
    """All 744 held-out trials, each copied twice (n-grams alone suffice here: no vectors needed)."""
    train, test, valid, fields, features = phase1
    held = features.subset(ids(test + valid))
    calibration = calibrate(features.subset(ids(train)), held, DEFAULT_EMBEDDING_MODEL)
    copied = copies(test + valid, train)
    no_vectors = TrialFeatures.of(copied, fields, lambda texts: np.zeros((len(texts), held.vectors.shape[1])))
    scores, matched, found = find_contaminated(no_vectors, held, calibration, {})
    assert len(found) == len(copied) == 2 * 744
    sources = [t.nct_id for t in test + valid for _ in range(2)]
    assert [c.held_out_id for c in found] == sources


@pytest.mark.slow  # MiniLM over the 2,532 phase I trials
def test_decontaminate_refuses_in_one_line_or_drops_the_copies(phase1):
    train, test, valid, fields, _ = phase1
    rng = random.Random(1)
    clean = [t.model_copy(update={"nct_id": f"SYN-c{i:07x}", "source": "synthetic"})
             for i, t in enumerate(rng.sample(train, 60))]
    copied = copies(rng.sample(test, 40) + rng.sample(valid, 10), train)
    synthetic = clean[:30] + copied + clean[30:]
    held_out = {"test set phase_I_test.csv": test, "validation set phase_I_valid.csv": valid}
    encoded = []

    def encode(texts):
        encoded.append(len(texts))
        return remembered_embeddings(texts)

    with pytest.raises(ConfigError) as error:
        decontaminate(synthetic, train, held_out, fields, encode, DEFAULT_EMBEDDING_MODEL, source="trials.jsonl")
    line = str(error.value)
    assert "\n" not in line and line.startswith("trials.jsonl: 100 synthetic trials reproduce held-out trials (e.g. ")
    assert copied[0].nct_id in line and "--drop-contaminated" in line
    kept, report = decontaminate(synthetic, train, held_out, fields, encode, DEFAULT_EMBEDDING_MODEL,
                                 source="trials.jsonl", drop=True)
    assert [t.nct_id for t in kept] == [t.nct_id for t in clean]
    assert report.dropped == [t.nct_id for t in copied] and report.checked == 160
    assert report.calibration.train_trials == 1044 and report.calibration.held_out_trials == 744
    # the same check asked again in this process (a second classifier's evaluation) is remembered, not redone
    assert encoded == [1044 + 744 + 160] and report.drop_contaminated
    with pytest.raises(ConfigError) as again:
        decontaminate(synthetic, train, held_out, fields, encode, DEFAULT_EMBEDDING_MODEL, source="trials.jsonl")
    assert str(again.value) == line and len(encoded) == 1
    assert decontaminate(synthetic[:30], train, held_out, fields, encode, DEFAULT_EMBEDDING_MODEL,
                         source="trials.jsonl")[0] == clean[:30] and len(encoded) == 2  # other trials: checked


def synthetic_rows(n):
    """Real toy_valid trials (none of them a phase I held-out trial) recorded as synthetic, with provenance."""
    held_out = ids(read_trials([TOP / "phase_I_test.csv", TOP / "phase_I_valid.csv"]))
    train_id = read_trials([TOP / "phase_I_train.csv"])[0].nct_id
    trials = [t for t in read_trials([TOP / "toy_valid.csv"]) if t.nct_id not in held_out][:n]
    return [t.model_copy(update={"nct_id": f"SYN-{i:08x}", "source": "synthetic", "overall_status": None,
                                 "why_stopped": None, "provenance": {"examples": [train_id], "neighbours": []}})
            for i, t in enumerate(trials)]


def test_evaluate_refuses_a_contaminated_set_in_one_line_and_drops_it_when_asked(tmp_path):
    train = head_csv(TOP / "phase_I_train.csv", tmp_path / "phase_I_train_300.csv", 300)
    test = head_csv(TOP / "phase_I_test.csv", tmp_path / "phase_I_test_200.csv", 200)
    held = read_trials([test])
    copied = [t.model_copy(update={"nct_id": f"SYN-c0de{i:04x}"})  # two whole-trial copies
              for i, t in enumerate(copies([held[5], held[50]], read_trials([train]))[::2])]
    path = tmp_path / "trials.jsonl"
    path.write_text("".join(t.model_dump_json() + "\n" for t in synthetic_rows(30) + copied))
    args = ["evaluate", "--real-train", str(train), "--real-test", str(test), "--real-valid",
            str(TOP / "phase_I_valid.csv"), "--synthetic", str(path), "--seeds", "40", "--no-ladder"]
    refused = cli(*args, "--out", str(tmp_path / "refused"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "2 synthetic trials reproduce held-out trials" in errors[0]
    assert copied[0].nct_id in errors[0] and held[5].nct_id in errors[0] and "--drop-contaminated" in errors[0]
    assert not (tmp_path / "refused").exists()
    dropped = cli(*args, "--out", str(tmp_path / "dropped"), "--drop-contaminated")
    assert dropped.returncode == 0, dropped.stderr
    assert "dropped 2 of 32 synthetic trials" in " ".join(dropped.stderr.split())
    metrics = json.loads((tmp_path / "dropped" / "metrics.json").read_text())
    check = metrics["decontamination"]
    assert check["dropped"] == [t.nct_id for t in copied] and check["drop_contaminated"] is True
    assert set(check["calibration"]["thresholds"]) == {"text_ngram", "criteria_ngram", "similarity"}
    assert [c["held_out_id"] for c in check["contaminated"]] == [held[5].nct_id, held[50].nct_id]
    assert metrics["sizes"]["synthetic"] == 30


def test_check_fails_a_copy_of_a_held_out_store_trial(phase1_store_path, phase1_data, tmp_path):
    held = read_trials([phase1_data / "phase_I_test.csv"])
    real = read_trials([phase1_data / "phase_I_train.csv"])[:3]
    copy = held[7].model_copy(update={"nct_id": "SYN-0000c0de", "source": "synthetic"})
    path = tmp_path / "trials.jsonl"
    path.write_text("".join(t.model_dump_json() + "\n" for t in [*real, copy]))
    result = cli("check", str(path), "--store", str(phase1_store_path), "--out", str(tmp_path / "v.jsonl"))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert [CONTAMINATED in r["failed_checks"] for r in rows] == [False, False, False, True]
    assert rows[3]["verdict"] == "reject" and any(held[7].nct_id in p for p in rows[3]["problems"])
    assert all({"held_out_text_ngram", "held_out_criteria_ngram", "held_out_similarity"} <= set(r["scores"]) for r in rows)
    assert f"failed {CONTAMINATED}" in result.stdout
