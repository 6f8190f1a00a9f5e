"""The leakage guard of `evaluate`: no synthetic trial grounded on a test or validation trial reaches
a classifier; the paper split drops such trials per seed; the field set is like for like."""

import json

import pytest
from support import TOP, cli, head_csv
from synthtrials.evals.experiment import EvalOptions, run_evaluation
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.readers import read_trials
from synthtrials.tools.run_folder import RunGrounding, write_run_grounding


def synthetic_rows(n: int, grounded_on: list[str], start: int = 0) -> list[dict]:
    """Real toy_valid trials recorded as synthetic (a stand-in: these tests check the guard, not
    generation), each naming `grounded_on` as its examples. The 28 toy_valid trials that are phase_I_test
    trials are left out: their text is a held-out trial's, which decontamination refuses."""
    held_out = {t.nct_id for t in read_trials([TOP / "phase_I_test.csv", TOP / "phase_I_valid.csv"])}
    trials = [t for t in read_trials([TOP / "toy_valid.csv"]) if t.nct_id not in held_out][start:start + n]
    return [t.model_copy(update={"nct_id": f"SYN-{i:08x}", "source": "synthetic", "overall_status": None,
                                 "why_stopped": None, "provenance": {"examples": grounded_on, "neighbours": []}})
            .model_dump(mode="json") for i, t in enumerate(trials)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def options(tmp_path, synthetic, **extra):
    """One seed of TF-IDF on the first 300 phase_I_train and 200 phase_I_test trials (real rows: the guard
    reads provenance, not how many trials train the classifier), phase_I_valid as the validation set."""
    train = head_csv(TOP / "phase_I_train.csv", tmp_path / "phase_I_train_300.csv", 300)
    test = head_csv(TOP / "phase_I_test.csv", tmp_path / "phase_I_test_200.csv", 200)
    return EvalOptions(real_train=str(train), real_test=str(test), real_valid=str(TOP / "phase_I_valid.csv"),
                       synthetic=str(synthetic), out=tmp_path / "eval", seeds=[40], n_boot=50, **extra)


def test_synthetic_grounded_on_a_test_trial_is_refused(tmp_path):
    test_id = read_trials([TOP / "phase_I_test.csv"])[3].nct_id
    train_id = read_trials([TOP / "phase_I_train.csv"])[0].nct_id
    rows = synthetic_rows(30, [train_id]) + synthetic_rows(1, [train_id, test_id], start=30)
    path = write_jsonl(tmp_path / "trials.jsonl", rows)
    with pytest.raises(ConfigError) as error:
        run_evaluation(options(tmp_path, path))
    line = str(error.value)
    assert "1 synthetic trials were grounded on trials of the test set" in line and test_id in line
    assert "--ground-on train" in line and "\n" not in line
    refused = cli("evaluate", "--real-train", str(TOP / "phase_I_train.csv"), "--real-test",
                  str(TOP / "phase_I_test.csv"), "--synthetic", str(path), "--out", str(tmp_path / "cli"))
    assert refused.returncode == 2 and test_id in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "cli" / "metrics.json").exists()


def test_the_run_grounding_counts_too(tmp_path):
    """A trial whose own provenance is clean is still refused when the run read a test trial as a
    whole (its grounding split, an adapted writer's training set)."""
    test_id = read_trials([TOP / "phase_I_valid.csv"])[0].nct_id
    run = tmp_path / "run"
    run.mkdir()
    write_jsonl(run / "trials.jsonl", synthetic_rows(30, []))
    write_run_grounding(run, RunGrounding(store="s", splits=["train"], trial_ids=[], adapter="a",
                                          adapter_trial_ids=[test_id]))
    with pytest.raises(ConfigError, match="validation set"):
        run_evaluation(options(tmp_path, run))


def test_clean_synthetic_passes_and_metrics_record_the_field_set(tmp_path):
    train_id = read_trials([TOP / "phase_I_train.csv"])[0].nct_id
    path = write_jsonl(tmp_path / "trials.jsonl", synthetic_rows(40, [train_id]))
    result = run_evaluation(options(tmp_path, path))
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["field_set"] == ["interventions", "conditions", "phase", "eligibility"]
    assert saved["leakage"]["checked"] == 40 and saved["leakage"]["unknown_grounding"] == 0
    assert set(result.training_sets) == {"real", "synthetic", "hybrid"}


def test_without_provenance_only_when_asked(tmp_path):
    rows = synthetic_rows(30, [])
    for row in rows:
        row["provenance"] = {}
    path = write_jsonl(tmp_path / "trials.jsonl", rows)
    with pytest.raises(ConfigError, match="no provenance"):
        run_evaluation(options(tmp_path, path))
    result = run_evaluation(options(tmp_path, path, provenance_check=False))
    assert result.leakage.provenance_check is False and result.leakage.without_provenance == 30


def test_unknown_grounding_is_accepted_with_a_warning(tmp_path):
    rows = synthetic_rows(30, [])
    for row in rows:
        row["provenance"] = {"grounding": "unknown", "imported_from": "seed-paper"}
    result = run_evaluation(options(tmp_path, write_jsonl(tmp_path / "trials.jsonl", rows)))
    assert result.leakage.unknown_grounding == 30 and "unknown grounding" in result.leakage.warnings[0]


def test_paper_split_drops_synthetic_grounded_on_each_seeds_held_out_trials(tmp_path):
    from synthtrials.tools.records.eligibility import first_drug
    from synthtrials.tools.records.eligibility import eligible_trials

    pool = read_trials([TOP / "phase_I_train.csv"])
    drugs = {e.intervention for e in eligible_trials(pool, 3)}
    pool = [t for t in pool if first_drug(t) in drugs]  # the trials the paper split keeps
    rows = [dict(row, provenance={"examples": [t.nct_id for t in pool[i * 3:i * 3 + 3]]})
            for i, row in enumerate(synthetic_rows(60, []))]
    path = write_jsonl(tmp_path / "trials.jsonl", rows)
    result = run_evaluation(EvalOptions(real_pool=[str(TOP / "phase_I_train.csv")], split_mode="paper",
                                        synthetic=str(path), seeds=[1, 2], out=tmp_path / "paper", n_boot=50))
    dropped = result.synthetic_dropped_per_seed
    assert set(dropped) == {"1", "2"} and all(10 < n < 60 for n in dropped.values())  # about 1 - 0.6^3 of them
    assert "use --split-mode files" in result.synthetic_dropped_warning
    legacy = EvalOptions.model_validate({"real_pool": [str(TOP / "phase_I_train.csv")], "split": "paper",
                                         "out": str(tmp_path / "x")})
    assert legacy.split_mode == "paper"  # the old spelling is an alias
