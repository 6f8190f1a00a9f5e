"""The utility ladder of `evaluate` (evals.ladder): three controls of the synthetic set's size drawn from the
grounding split alone, scored trained alone and with real, the writer's place with paired bootstrap CIs;
and the like-for-like real arm of a run grounded on a sample (grounding.json `ground_sample`).

The synthetic set is a stand-in: real phase_I_train trials recorded as synthetic, with provenance naming
their example (these tests check the evaluation, not generation). TF-IDF, one seed, small real files.
"""

import json

import numpy as np
import pytest
from support import TOP, cli, head_csv
from synthtrials.evals.data import labels_of
from synthtrials.evals.experiment import EvalOptions, Evaluation, run_evaluation
from synthtrials.evals.ladder import controls, duplicated
from synthtrials.evals.metrics import average_precision, resampled_scores, roc_auc
from sklearn.metrics import average_precision_score, roc_auc_score
from synthtrials.evals.report import (
    Figure,
    evaluation_section,
    render_html,
    render_markdown,
)
from synthtrials.evals.results import LADDER_CONTROLS
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.readers import read_trials
from synthtrials.tools.records.eligibility import first_drug
from synthtrials.tools.records.trial import render_for_classifier
from synthtrials.tools.run_folder import RunGrounding, write_run_grounding
from synthtrials.tools.seeds import stream

N_TRAIN = 300


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    return {"train": head_csv(TOP / "phase_I_train.csv", folder / "train.csv", N_TRAIN),
            "test": head_csv(TOP / "phase_I_test.csv", folder / "test.csv", 200)}


@pytest.fixture(scope="module")
def train(files):
    return read_trials([files["train"]])


def as_synthetic(trials, provenance=True, start=0, example=None):
    """Real trials recorded as synthetic, each naming itself (or `example`) as its example."""
    return [t.model_copy(update={"nct_id": f"SYN-{start + i:08x}", "source": "synthetic", "overall_status": None,
                                 "why_stopped": None,
                                 "provenance": {"examples": [example or t.nct_id]} if provenance else {}})
            for i, t in enumerate(trials)]


def foreign(train, n, start=0):
    """Real phase II trials whose first drug no training trial has, recorded as synthetic, grounded on a
    training trial (neither in the test nor in the validation set)."""
    drugs = {first_drug(t) for t in train}
    trials = [t for t in read_trials([TOP / "phase_II_valid.csv"]) if first_drug(t) not in drugs][:n]
    return as_synthetic(trials, start=start, example=train[0].nct_id)


def write_jsonl(path, trials):
    path.write_text("".join(t.model_dump_json() + "\n" for t in trials))
    return path


def options(files, synthetic, out, **extra):
    return EvalOptions(real_train=str(files["train"]), real_test=str(files["test"]),
                       real_valid=str(TOP / "phase_I_valid.csv"), synthetic=str(synthetic), out=out, seeds=[40],
                       n_boot=100, **extra)


def test_controls_have_the_same_size_come_from_grounding_and_keep_drug_and_label(train):
    synthetic = as_synthetic(train[:60]) + foreign(train, 4, start=60)
    c = controls(synthetic, train, seed=40)
    assert c.n_synthetic == 64 and c.no_grounding_drug == 4 and c.no_grounding_label == 0 and c.n == 60
    assert c.left_out_example == "SYN-0000003c" and "4 of 64 synthetic trials" in c.warnings[0]
    assert {len(s) for s in c.sets.values()} == {60} and c.pool == N_TRAIN
    ids = {t.nct_id for t in train}
    kept = c.sets["synthetic"]
    for name in ("plan_only", "echo"):
        assert {t.nct_id for t in c.sets[name]} <= ids  # only grounding trials
        assert [first_drug(t) for t in c.sets[name]] == [first_drug(t) for t in kept]
        assert labels_of(c.sets[name]) == labels_of(kept)
    real_label = {t.nct_id: t.label for t in train}
    assert all(real_label[t.nct_id] == t.label for t in c.sets["echo"])  # echo: a real trial of that drug and label
    assert any(real_label[t.nct_id] != t.label for t in c.sets["plan_only"])  # plan only: any label, relabelled
    shuffled = c.sets["shuffled"]
    assert [render_for_classifier(t) for t in shuffled] == [render_for_classifier(t) for t in kept]
    assert sorted(labels_of(shuffled)) == sorted(labels_of(kept)) and labels_of(shuffled) != labels_of(kept)
    again = controls(synthetic, train, seed=40)
    assert [t.nct_id for t in again.sets["plan_only"]] == [t.nct_id for t in c.sets["plan_only"]]  # seeded
    other = controls(synthetic, train, seed=41)
    assert [t.nct_id for t in other.sets["plan_only"]] != [t.nct_id for t in c.sets["plan_only"]]


def test_duplicated_real_and_the_quick_bootstrap(train):
    grown = duplicated(train[:10], 25, stream(40, "ladder", "duplicate", 0.1))
    assert len(grown) == 25 and grown[:10] == train[:10] and {t.nct_id for t in grown} == {t.nct_id for t in train[:10]}
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 150)
    a, b = [rng.random(150).round(2)], [(y * 0.3 + rng.random(150)).round(2)]  # ties too
    for p in a + b:  # the bootstrap's scorers give scikit-learn's numbers, ties included
        assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert average_precision(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    for _ in range(20):  # a resample scored by its draw counts, vectorised: scikit-learn's numbers on the resampled set
        idx = rng.integers(0, 150, 150)
        scores = resampled_scores(y, b[0], np.bincount(idx, minlength=150)[None].astype(float))
        assert scores["roc_auc"][0] == pytest.approx(roc_auc_score(y[idx], b[0][idx]), abs=1e-12)
        assert scores["pr_auc"][0] == pytest.approx(average_precision_score(y[idx], b[0][idx]), abs=1e-12)


def test_evaluate_writes_the_ladder_and_the_report_draws_it(tmp_path, files, train):
    synthetic = as_synthetic(train[:80]) + foreign(train, 3, start=80)
    path = write_jsonl(tmp_path / "trials.jsonl", synthetic)
    result = run_evaluation(options(files, path, tmp_path / "eval"))
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(saved["training_sets"]) == {"real", "synthetic", "hybrid"}  # the ladder is beside, not in, them
    ladder = saved["ladder"]
    assert "skipped" not in ladder and ladder["n_synthetic"] == 83 and ladder["n"] == 80
    assert ladder["no_grounding_drug"] == 3 and ladder["pool"] == N_TRAIN and "left out" in ladder["warnings"][0]
    assert set(ladder["arms"]) == {"synthetic", "shuffled", "plan_only", "echo"}
    for arm in ladder["arms"].values():
        assert arm["n"] == 80 and len(arm["tstr"]["roc_auc"]["per_seed"]) == 1
        for metric in ("roc_auc", "pr_auc"):
            b = arm["hybrid_minus_real"][metric]
            assert b["ci_low"] <= b["difference"] <= b["ci_high"] and b["n_boot"] > 50
    assert set(ladder["place"]) == {"synthetic_minus_plan_only", "synthetic_minus_echo"}
    for place in ladder["place"].values():
        assert place["roc_auc"]["ci_low"] <= place["roc_auc"]["difference"] <= place["roc_auc"]["ci_high"]
    assert result.model_dump(mode="json", exclude_none=True) == saved
    section = evaluation_section("eval/metrics.json", result)
    figures = [b for b in section.blocks if isinstance(b, Figure)]
    assert any(f.alt.startswith("Bar chart of the utility ladder") and "real-only score" in f.alt for f in figures)
    page, markdown = render_html("t", "i", [section]), render_markdown("t", "i", [section])
    assert "How to read the ladder" in page and "The writer&#x27;s place" in page
    assert "*Figure: Bar chart of the utility ladder" in markdown and "3 of 83 synthetic trials" in markdown


def test_a_set_with_no_grounding_drug_is_counted_and_skipped(tmp_path, files, train):
    """Every synthetic trial of drugs the grounding split lacks: nothing to draw the controls from."""
    path = write_jsonl(tmp_path / "trials.jsonl", foreign(train, 30))
    ladder = run_evaluation(options(files, path, tmp_path / "eval")).ladder
    assert ladder.no_grounding_drug == 30 and ladder.n == 0 and "no ladder" in ladder.skipped and not ladder.arms


def test_a_ground_sample_run_trains_the_real_arm_on_the_sample(tmp_path, files, train):
    sample = train[::2]  # 150 of the 300 training trials
    run = tmp_path / "run"
    run.mkdir()
    write_jsonl(run / "trials.jsonl", as_synthetic(sample[:60]))
    write_run_grounding(run, RunGrounding(store="s", splits=["train"], trial_ids=[t.nct_id for t in sample],
                                          ground_sample=0.5, ground_sample_seed=7))
    evaluation = Evaluation(options(files, run, tmp_path / "eval", sweeps=["low_resource"]))
    assert [t.nct_id for t in evaluation.train] == [t.nct_id for t in sample]
    result = evaluation.run()
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["real_arm"] == {"ground_sample": 0.5, "ground_sample_seed": 7, "trials": 150, "of": N_TRAIN,
                                 "listed": 150, "not_in_file": 0, "source": str(run / "grounding.json")}
    assert saved["sizes"]["real"] == 150 and saved["sizes"]["hybrid"] == 210
    assert saved["ladder"]["pool"] == 150  # the controls' pool is the sample too
    rows = result.low_resource_sweep()
    duplicated_rows = [r for r in rows if r.real_duplicated]
    assert [r.real_fraction for r in duplicated_rows] == [0.1, 0.25, 0.5]
    for row in duplicated_rows:
        hybrid = next(r for r in rows if r.with_synthetic and r.real_fraction == row.real_fraction)
        assert row.train_size == hybrid.train_size and not row.with_synthetic
    # below 100%, the share of real trials plus each ladder control, drawn from the same pool as the ladder's
    control_rows = [r for r in rows if r.control]
    assert sorted((r.real_fraction, r.control) for r in control_rows) == sorted(
        (fraction, control) for fraction in (0.1, 0.25, 0.5) for control in LADDER_CONTROLS)
    for row in control_rows:
        real = next(r for r in rows if r.real_fraction == row.real_fraction and not r.with_synthetic
                    and not r.real_duplicated and r.control is None)
        assert row.train_size == real.train_size + saved["ladder"]["n"] and not row.with_synthetic
    page = render_html("t", "i", [evaluation_section("eval/metrics.json", result)])
    assert "150 of the 300 real training trials" in page
    assert "real plus the echo control" in page  # the low-resource figure draws the controls


def test_no_provenance_refuses_the_ladder_when_asked_and_skips_it_otherwise(tmp_path, files, train):
    path = write_jsonl(tmp_path / "trials.jsonl", as_synthetic(train[:40], provenance=False))
    with pytest.raises(ConfigError) as error:
        Evaluation(options(files, path, tmp_path / "a", provenance_check=False, ladder=True))
    assert "no provenance" in str(error.value) and "\n" not in str(error.value)
    refused = cli("evaluate", "--real-train", str(files["train"]), "--real-test", str(files["test"]), "--synthetic",
                  str(path), "--no-provenance-check", "--ladder", "--seeds", "40", "--out", str(tmp_path / "cli"))
    assert refused.returncode == 2 and "no provenance" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "cli").exists()
    result = run_evaluation(options(files, path, tmp_path / "b", provenance_check=False))
    saved = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert saved["ladder"]["skipped"].endswith("no ladder") and "no provenance" in saved["ladder"]["skipped"]
    assert "\n" not in saved["ladder"]["skipped"] and result.ladder.arms == {}
