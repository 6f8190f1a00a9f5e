"""evals: classifiers, the evaluation grid, sweeps, LLM judge, fidelity and the report.

The synthetic set here is a stand-in (real toy_train trials relabelled as synthetic records): these
tests check the evaluation machinery, not generation quality.
"""

import csv
import json

import numpy as np
import pytest
from support import TOP, cli
from synthtrials.evals.classifiers import (
    EncoderFeatureCache,
    FrozenEncoderClassifier,
    TfidfClassifier,
    TransformerClassifier,
)
from synthtrials.evals.experiment import EvalOptions, Evaluation, run_evaluation
from synthtrials.evals.fidelity import fidelity_report, knn_precision_recall
from synthtrials.evals.judge import run_judge
from synthtrials.evals.metrics import paired_bootstrap, youden_threshold
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.llm.client import LLMConfig
from synthtrials.tools.readers import read_trials


def held_out_ids() -> set[str]:
    """Phase I test and validation trials: a stand-in "synthetic" trial that is one of them is (rightly) refused
    by the evaluation's decontamination."""
    return {t.nct_id for t in read_trials([TOP / "phase_I_test.csv"]) + read_trials([TOP / "phase_I_valid.csv"])}


def stand_in_synthetic(path, n=200, skip=0):
    held = held_out_ids()
    trials = [t for t in read_trials([TOP / "toy_valid.csv"]) + read_trials([TOP / "toy_test.csv"]) if t.nct_id not in held]
    rows = []
    for i, t in enumerate(trials[skip:skip + n]):
        rows.append(t.model_copy(update={"nct_id": f"SYN-{i:08x}", "source": "synthetic", "overall_status": None,
                                         "why_stopped": None, "provenance": {"examples": []}}).model_dump(mode="json"))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def synthetic_file(tmp_path_factory):
    return stand_in_synthetic(tmp_path_factory.mktemp("syn") / "trials.jsonl")


def test_tfidf_grid_with_bootstrap(tmp_path, synthetic_file):
    # the stand-ins are real trials of other files: one shares most of a test trial's criteria (a sister
    # protocol), which decontamination drops and records
    result = run_evaluation(EvalOptions(real_train=str(TOP / "phase_I_train.csv"), real_test=str(TOP / "phase_I_test.csv"),
                                        synthetic=str(synthetic_file), out=tmp_path, n_boot=200, drop_contaminated=True,
                                        ladder=False))  # the ladder has its own tests (test_ladder)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert set(saved["training_sets"]) == {"real", "synthetic", "hybrid"}
    real = saved["training_sets"]["real"]
    assert len(real["roc_auc"]["per_seed"]) == 3 and 0.55 < real["roc_auc"]["mean"] < 0.8
    dropped = saved["decontamination"]["dropped"]
    assert len(dropped) <= 3 and {c["id"] for c in saved["decontamination"]["contaminated"]} == set(dropped)
    kept = 200 - len(dropped)
    assert saved["sizes"] == {"real": 1044, "synthetic": kept, "hybrid": 1044 + kept, "test": 627}
    for metric in ("roc_auc", "pr_auc"):
        b = saved["bootstrap_hybrid_minus_real"][metric]
        assert b["ci_low"] <= b["difference"] <= b["ci_high"]
    assert result.model_dump(mode="json", exclude_none=True) == saved  # what is returned is what is written


@pytest.mark.slow
def test_paper_split_and_sweeps(tmp_path, synthetic_file):
    result = run_evaluation(EvalOptions(real_pool=[str(TOP / "phase_I_train.csv"), str(TOP / "phase_I_test.csv")],
                                        split="paper", synthetic=str(synthetic_file), seeds=[1, 2], out=tmp_path,
                                        sweeps=["ratio", "low_resource", "generalisation", "fidelity"], n_boot=50,
                                        drop_contaminated=True, ladder=False))
    kept = 200 - len(result.decontamination.dropped)
    assert result.sizes["test"] < 627 and set(result.bootstrap_hybrid_minus_real) == {"1", "2"}
    ratio = result.sweeps["ratio"]
    assert [r["ratio"] for r in ratio] == [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]
    assert ratio[0]["synthetic_used"] == 0 and ratio[-1]["synthetic_used"] == kept  # capped at what exists
    low = result.sweeps["low_resource"]
    # 4 fractions x (real, hybrid), plus real duplicated to the hybrid's size below 100%
    assert len(low) == 11 and low[0]["train_size"] < low[-1]["train_size"]
    assert sum(bool(row.get("real_duplicated")) for row in low) == 3
    assert set(result.sweeps["generalisation"]) == {"real", "hybrid"}
    fidelity = result.sweeps["fidelity"]
    # the stand-in "synthetic" trials are real trials with their real labels: a real-trained model ranks them
    assert fidelity["real_model_on_synthetic"]["roc_auc"]["mean"] > 0.55


@pytest.mark.slow
def test_transformer_fine_tunes_with_early_stopping(tmp_path):
    train = read_trials([TOP / "phase_I_valid.csv"])[:64]
    valid = read_trials([TOP / "phase_I_valid.csv"])[64:]
    model = TransformerClassifier(max_length=64, epochs=2, batch_size=16, learning_rate=5e-5, seed=0)
    model.fit(train, [t.label for t in train], valid, [t.label for t in valid])
    assert [h["epoch"] for h in model.history_] and all("valid_loss" in h for h in model.history_)
    proba = model.predict_proba(valid)
    assert proba.shape == (len(valid), 2) and np.allclose(proba.sum(1), 1)
    frozen = FrozenEncoderClassifier(max_length=64).fit(train, [t.label for t in train])
    assert frozen.predict_proba(valid).shape == (len(valid), 2) and frozen.threshold_ == 0.5


@pytest.mark.slow
def test_frozen_lower_layers_are_computed_once_per_text():
    trials = read_trials([TOP / "phase_I_valid.csv"])
    train, valid = trials[:64], trials[64:]
    y, y_valid = [t.label for t in train], [t.label for t in valid]
    features = EncoderFeatureCache(max_length=32, frozen_layers=5)

    def fit(seed):
        return TransformerClassifier(max_length=32, epochs=1, batch_size=16, seed=seed, frozen_layers=5,
                                     features=features).fit(train, y, valid, y_valid)

    first = fit(0)
    proba = first.predict_proba(valid)
    assert proba.shape == (len(valid), 2) and np.allclose(proba.sum(1), 1)
    assert set(first.predict(valid)) <= {0, 1} and 0 < first.threshold_ < 1
    encoded = features.encoded
    assert encoded == len(trials)  # every text once: training, validation and test passes
    reused = features.reused
    fit(1)  # the second seed reads the cache
    assert features.encoded == encoded and features.reused == reused + len(trials)
    FrozenEncoderClassifier(max_length=32, features=features).fit(train, y, valid, y_valid)
    assert features.encoded == encoded  # the pooled features came with the same pass
    with pytest.raises(ConfigError, match="feature cache"):
        TransformerClassifier(max_length=64, frozen_layers=5, features=features).fit(train, y)


def test_threshold_is_chosen_on_validation(tmp_path):
    y = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.6, 0.62, 0.65, 0.7, 0.8, 0.9])
    assert youden_threshold(y, scores) == pytest.approx(0.675)  # midway between the classes
    assert youden_threshold(y, 1 - scores) == 0.5  # no threshold beats one class: keep 0.5
    train = read_trials([_skewed_train(tmp_path / "skewed.csv")])
    valid = read_trials([TOP / "phase_I_valid.csv"])
    model = TfidfClassifier().fit(train, [t.label for t in train], valid, [t.label for t in valid])
    assert (model.predict_proba(valid)[:, 1] >= 0.5).all()  # at 0.5 every trial would be positive
    assert model.threshold_ > 0.5 and set(model.predict(valid)) == {0, 1}
    assert TfidfClassifier().fit(train, [t.label for t in train]).threshold_ == 0.5


def test_tfidf_does_not_depend_on_the_seed_so_an_evaluation_fits_each_data_once(tmp_path):
    """`TfidfClassifier.SEED_FREE` (lbfgs ignores random_state): the seeds of a fixed split would fit
    the same model, so the evaluation fits it once and the three seeds report the one result."""
    train = read_trials([TOP / "phase_I_valid.csv"])
    test = read_trials([TOP / "phase_I_test.csv"])[:200]
    y = [t.label for t in train]
    assert np.array_equal(TfidfClassifier(seed=0).fit(train, y).predict_proba(test),
                          TfidfClassifier(seed=7).fit(train, y).predict_proba(test))
    # the remembered analyzer gives scikit-learn's own features and probabilities, to the last bit
    from sklearn.feature_extraction.text import TfidfVectorizer
    from synthtrials.evals.classifiers import tfidf_pipeline, to_texts

    texts = to_texts(train)
    plain = tfidf_pipeline().set_params(tfidfvectorizer__analyzer="word", tfidfvectorizer__ngram_range=(1, 2))
    assert isinstance(plain.steps[0][1], TfidfVectorizer)
    remembered = tfidf_pipeline()
    assert np.array_equal(plain.fit(texts, y).predict_proba(to_texts(test)),
                          remembered.fit(texts, y).predict_proba(to_texts(test)))
    assert plain[0].get_feature_names_out().tolist() == remembered[0].get_feature_names_out().tolist()
    fits = []
    original = TfidfClassifier.fit

    def counted(self, *args, **kwargs):
        fits.append(self.seed)
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TfidfClassifier, "fit", counted)
        result = run_evaluation(EvalOptions(real_train=str(TOP / "phase_I_valid.csv"), real_test=str(TOP / "phase_I_test.csv"),
                                            out=tmp_path, n_boot=50, ladder=False))
    assert fits == [40]  # one fit for the three seeds of the real set (the first seed's)
    per_seed = result.training_sets["real"].roc_auc.per_seed
    assert len(per_seed) == 3 and len(set(per_seed)) == 1


def _skewed_train(path, successes=120, failures=8):
    """A CSV of phase I training trials, nearly all successes: a classifier learns to call everything positive."""
    with (TOP / "phase_I_train.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    label = rows[0].index("label")
    kept = [r for r in rows[1:] if r[label] == "1"][:successes] + [r for r in rows[1:] if r[label] == "0"][:failures]
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([rows[0], *kept])
    return path


def test_collapse_to_one_class_is_flagged(tmp_path):
    train = _skewed_train(tmp_path / "skewed.csv")
    options = dict(real_train=str(train), real_test=str(TOP / "phase_I_test.csv"), seeds=[1])
    collapsed = run_evaluation(EvalOptions(**options, out=tmp_path / "a")).training_sets["real"]
    assert collapsed.collapsed is True and collapsed.threshold.per_seed == [0.5]
    assert collapsed.recall.mean == 1.0  # everything called positive
    chosen = run_evaluation(EvalOptions(**options, real_valid=str(TOP / "phase_I_valid.csv"), out=tmp_path / "b"))
    real = chosen.training_sets["real"]
    assert real.collapsed is False and real.threshold.per_seed[0] > 0.5
    saved = json.loads((tmp_path / "b" / "metrics.json").read_text())["training_sets"]["real"]
    assert saved == real.model_dump(mode="json")


@pytest.mark.slow
def test_transformer_evaluation_has_no_fine_tuning_baseline(tmp_path):
    small = tmp_path / "small.csv"
    lines = (TOP / "phase_I_valid.csv").read_text().splitlines(keepends=True)
    import io

    rows = list(csv.reader(io.StringIO("".join(lines))))
    out = io.StringIO()
    csv.writer(out).writerows(rows[:61])
    small.write_text(out.getvalue())
    evaluation = Evaluation(EvalOptions(real_train=str(small), real_test=str(TOP / "phase_I_valid.csv"),
                                        classifier="transformer", max_length=64, epochs=1, batch_size=16,
                                        seeds=[0, 1], out=tmp_path))
    result = evaluation.run()
    assert set(result.training_sets) == {"no_fine_tuning", "real"}
    for values in result.training_sets.values():
        assert values.threshold.per_seed == [0.5, 0.5] and isinstance(values.collapsed, bool)
    distinct = len(set(evaluation.texts(evaluation.train + evaluation.test)))
    assert evaluation.features.encoded == distinct  # seed 1 and the baseline read seed 0's pass


def test_bad_evaluation_inputs(tmp_path, synthetic_file):
    one_class = tmp_path / "one.jsonl"
    one_class.write_text("".join(l + "\n" for l in synthetic_file.read_text().splitlines()
                                 if json.loads(l)["label"] == 1))
    with pytest.raises(ConfigError, match="every synthetic trial has label 1"):
        run_evaluation(EvalOptions(real_train=str(TOP / "phase_I_train.csv"),
                                                   real_test=str(TOP / "phase_I_test.csv"),
                                                   synthetic=str(one_class), out=tmp_path))
    rare = tmp_path / "rare.jsonl"
    kept = [l for l in synthetic_file.read_text().splitlines() if json.loads(l)["label"] == 1][:5]
    kept += [l for l in synthetic_file.read_text().splitlines() if json.loads(l)["label"] == 0][:1]
    rare.write_text("\n".join(kept) + "\n")
    result = cli("evaluate", "--real-train", str(TOP / "phase_I_train.csv"), "--real-test",
                     str(TOP / "phase_I_test.csv"), "--synthetic", str(rare), "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "at least 2 trials of each label" in result.stderr
    missing_model = cli("evaluate", "--real-train", str(TOP / "phase_I_train.csv"), "--real-test",
                            str(TOP / "phase_I_test.csv"), "--classifier", "transformer", "--model",
                            str(tmp_path / "no-such-model"), "--out", str(tmp_path / "y"))
    assert missing_model.returncode == 2 and "not found" in missing_model.stderr
    unlabelled = cli("evaluate", "--real-train", str(TOP.parent / "ctgov-xml" / "NCT00000378.xml"),
                         "--real-test", str(TOP / "phase_I_test.csv"), "--out", str(tmp_path / "z"))
    assert unlabelled.returncode == 2 and "have no 0/1 label" in unlabelled.stderr
    for r in (result, missing_model, unlabelled):
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_paired_bootstrap_detects_a_clear_gain():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    weak = [np.clip(y * 0.1 + rng.random(300) * 0.9, 0, 1)]
    strong = [np.clip(y * 0.6 + rng.random(300) * 0.4, 0, 1)]
    result = paired_bootstrap(y, weak, strong, n_boot=300)
    assert result["roc_auc"]["ci_low"] > 0


@pytest.mark.slow
def test_fidelity_of_a_copy_and_of_different_text(synthetic_file):
    from synthtrials.evals.data import load_synthetic

    real = read_trials([TOP / "phase_I_valid.csv"])
    copies = [t.model_copy(update={"nct_id": f"SYN-{i:08x}", "source": "synthetic", "overall_status": None,
                                   "why_stopped": None}) for i, t in enumerate(real[:60])]
    copied = fidelity_report(real[:60], copies, holdout=real[60:])
    assert copied.dcr_summary.synthetic_median < 1e-4  # every copy sits on its original: privacy flags it
    assert copied.dcr_summary.holdout_median > 0.05  # while real holdout trials do not
    assert copied.discriminator_auc < 0.6  # and a discriminator cannot tell copies from the real trials
    different = load_synthetic(synthetic_file)[:80]  # other real trials (toy files): text the real set lacks
    report = fidelity_report(real[:60], different, holdout=real[60:])
    assert report.dcr_summary.synthetic_median > copied.dcr_summary.synthetic_median + 0.05
    assert len(report.dcr_synthetic) == 80 and len(report.dcr_holdout) == len(real) - 60
    assert set(report.fields.synthetic.phase) <= {"phase 1", "phase 1/2", "early phase 1", "phase 2",
                                                  "phase 3", "phase 4", "phase 2/3"}
    v = np.eye(4, dtype=np.float32)
    assert knn_precision_recall(v, v, k=1) == {"precision": 1.0, "recall": 1.0}


@pytest.mark.slow
def test_judge_with_the_embedded_model_resumes(tmp_path, synthetic_file):
    from synthtrials.evals.data import load_synthetic

    synthetic = load_synthetic(synthetic_file)[:2]
    real = read_trials([TOP / "phase_I_valid.csv"])
    summary = run_judge(synthetic, real, LLMConfig(max_tokens=200), tmp_path, n_real=2)
    rows = [json.loads(l) for l in (tmp_path / "judge.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["source"] for r in rows} == {"synthetic", "real"}
    scored = [r for r in rows if "error" not in r]
    assert len(scored) >= 3  # the grammar-constrained judge answers; an erroring judge would fail here
    assert all(1 <= r["realism"] <= 5 and r["rationale"] for r in scored)
    assert summary.synthetic.n == 2 and summary.real.n == 2 and summary.trust
    before = (tmp_path / "judge.jsonl").read_text()
    run_judge(synthetic, real, LLMConfig(max_tokens=200), tmp_path, n_real=2)
    assert (tmp_path / "judge.jsonl").read_text() == before  # resumed: nothing judged twice


@pytest.mark.slow
def test_report_is_self_contained(tmp_path, synthetic_file):
    run = tmp_path / "run"
    run.mkdir()
    (run / "trials.jsonl").write_text("\n".join(synthetic_file.read_text().splitlines()[:40]) + "\n")
    from synthtrials.tools.run_folder import GenerationSummary, write_summary

    write_summary(run, GenerationSummary(  # the report reads summary.json as a GenerationSummary
        requested=40, accepted=40, draws=50, rejected=10, acceptance_rate=0.8, rejections_by_reason={"label": 10},
        revisions=0, revisions_by_reason={}, writer_calls=50, writer_valid_share=1.0, errors=0, tokens={},
        tokens_per_accepted=900.0, accepted_per_minute=2.0, seconds=1200.0, backend="llamacpp", model="smollm2"))
    run_evaluation(EvalOptions(real_train=str(TOP / "phase_I_valid.csv"), real_test=str(TOP / "toy_test.csv"),
                               synthetic=str(run), out=run / "eval", seeds=[1, 2], n_boot=50, sweeps=["ratio"],
                               drop_contaminated=True))  # real stand-ins: a sister protocol of a test trial may be one
    result = cli("report", str(run), "--real", str(TOP / "phase_I_valid.csv"))
    assert result.returncode == 0, result.stderr
    page = (run / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4 and "<table>" in page and "http" not in page.split("<body>")[1]
    markdown = (run / "report.md").read_text()
    assert "Outcome prediction" in markdown and "discriminator" in markdown
