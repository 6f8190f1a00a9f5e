"""The cross-encoder coherence score (issue 20, `store calibrate --cross-encoder`): fold models trained on real
grounding trials, each grounding trial scored by the model that did not see it, a new trial by their mean; the
calibration that spends the budget on it too; the critic's verdict; saved models; bad input.

The models here are real fine-tuned MiniLMs, trained small (2 folds, 1 epoch, 32 tokens) to keep the suite quick:
what they catch at full size is measured by benchmarks/bench_cross_encoder.py and bench_critic (RESULTS.md)."""

from __future__ import annotations

import numpy as np
import pytest
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.knowledge.calibration import (
    build_knowledge,
    calibrate,
    cross_encoder_key,
    load_or_calibrate,
    model_folder,
    train_cross_encoder,
)
from synthtrials.tools.knowledge.checks import check_domain, check_of
from synthtrials.tools.knowledge.cross_encoder import (
    CROSS_ENCODER,
    CrossEncoderCoherence,
    conditions_text,
    criteria_text,
    fold_assignment,
)
from synthtrials.tools.knowledge.domain import SectionScore
from synthtrials.tools.records.trial import Eligibility

SMALL = {"folds": 2, "epochs": 1, "max_tokens": 32}


#: the grounding trials the small models are trained and calibrated on: a sample of the phase I store's train split
#: (`--ground-sample`'s mechanism), so the module takes seconds, not minutes
SAMPLE_SIZE = 200


@pytest.fixture(scope="module")
def cross_encoder_store(phase1_store_path, tmp_path_factory):
    """A copy of the phase I store (the session's store keeps its plain calibration) with the cross-encoder's
    fold models trained on a sample of its train split and the calibration that uses them."""
    from support import copy_store
    from synthtrials.tools.store.protocol import grounding_filter
    from synthtrials.tools.store.trial_store import open_store

    path = tmp_path_factory.mktemp("cross_encoder") / "store"
    copy_store(phase1_store_path, path)  # SQLite's backup API: the session's store stays open in this process
    store = open_store(path, create=False)
    sample = sorted(store.filter_ids(grounding_filter(["train"])))[:SAMPLE_SIZE]
    knowledge = build_knowledge(store, ["train"], sample=sample, cross_encoder=False)
    key = train_cross_encoder(store, knowledge, ["train"], sample=sample, **SMALL)
    calibration = calibrate(knowledge, key, ["train"])
    store.save_calibration(key, calibration.model_dump())
    yield store, knowledge, calibration, sample
    store.close()


def test_folds_are_seeded_and_balanced():
    ids = [f"NCT{n:08d}" for n in range(23)]
    folds = fold_assignment(ids, 5)
    assert folds == fold_assignment(list(reversed(ids)), 5)
    assert sorted(np.bincount(list(folds.values()))) == [4, 4, 5, 5, 5]


def test_each_grounding_trial_is_scored_by_the_model_that_did_not_see_it(cross_encoder_store):
    _, knowledge, _, _ = cross_encoder_store
    model = knowledge.cross_encoder
    assert len(model.models) == 2 and model.settings["epochs"] == 1
    trials = [t for t in knowledge.trials if t.nct_id in model.fold_of][:6]
    pairs = [(conditions_text(t), criteria_text(t)) for t in trials]
    by_fold = np.array([model.models[model.fold_of[t.nct_id]].decision_function([p])[0] for t, p in zip(trials, pairs)])
    out_of_fold = model.scores(trials, [t.nct_id for t in trials])
    assert np.allclose(out_of_fold, by_fold, atol=1e-4)
    # a spoiled copy is scored under its own trial's fold (its donor second), a new trial by the mean of the folds
    assert np.allclose(model.scores(trials[:1], [(trials[0].nct_id, trials[1].nct_id)]), by_fold[:1], atol=1e-4)
    mean = np.mean([m.decision_function(pairs) for m in model.models], axis=0)
    assert np.allclose(model.scores(trials, [None] * len(trials)), mean, atol=1e-4)
    # the knowledge's scores carry it, naming the criterion the embeddings find furthest from the conditions
    scores = knowledge.scores(trials[0], exclude=trials[0].nct_id)
    assert scores[CROSS_ENCODER].score == pytest.approx(by_fold[0], abs=1e-4)
    assert scores[CROSS_ENCODER].section == scores["coherence_eligibility"].section
    # no conditions or no criteria: no score, never a crash
    bare = trials[0].model_copy(update={"conditions": [], "nct_id": "NCT99999999"})
    none = trials[0].model_copy(update={"eligibility": Eligibility(), "nct_id": "NCT99999998"})
    assert model.scores([bare, none], [None, None]) == [None, None]


def test_the_trained_model_tells_a_trial_from_its_criteria_under_unrelated_conditions(cross_encoder_store):
    """Even trained small, out of fold, the real pairs score above the same criteria under an unrelated trial's
    conditions more often than not (the full-size figures: bench_cross_encoder, ROC-AUC 0.96)."""
    from sklearn.metrics import roc_auc_score
    from synthtrials.tools.knowledge.calibration import spoiled_with_donors

    _, knowledge, _, _ = cross_encoder_store
    swapped = spoiled_with_donors(knowledge)["unrelated_conditions"]
    grounding = [t for t in knowledge.trials if t.nct_id in knowledge.cross_encoder.fold_of]
    real = knowledge.cross_encoder.scores(grounding, [t.nct_id for t in grounding])
    spoiled = knowledge.cross_encoder.scores([t for t, _ in swapped], [left for _, left in swapped])
    y = np.r_[np.ones(len(real)), np.zeros(len(spoiled))]
    auc = roc_auc_score(y, np.r_[real, spoiled])
    assert auc > 0.6, auc


def test_the_calibration_spends_the_budget_on_it_and_is_found_again(cross_encoder_store):
    store, knowledge, calibration, sample = cross_encoder_store
    assert calibration.key == cross_encoder_key(store, ["train"], sample) != cross_encoder_key(store, ["train"])
    assert calibration.scored[CROSS_ENCODER] == len(knowledge.cross_encoder.fold_of) > SAMPLE_SIZE // 2
    assert CROSS_ENCODER in calibration.thresholds and CROSS_ENCODER in calibration.joint.names
    assert calibration.cross_encoder["folds"] == 2 and calibration.cross_encoder["trials"] == len(knowledge.cross_encoder.fold_of)
    assert model_folder(store, calibration.key).is_dir()
    # generate and check find it: the calibration with the cross-encoder, its models given to their knowledge
    fresh = build_knowledge(store, ["train"], sample=sample)
    assert fresh.cross_encoder is not None and len(fresh.cross_encoder.models) == 2
    assert load_or_calibrate(store, ["train"], fresh, sample=sample).key == calibration.key
    plain = build_knowledge(store, ["train"], sample=sample, cross_encoder=False)
    load_or_calibrate(store, ["train"], plain, sample=sample)
    assert plain.cross_encoder is not None
    # the whole split has no calibration with it: its knowledge stays without
    assert build_knowledge(store, ["train"]).cross_encoder is None
    saved = CrossEncoderCoherence.load(model_folder(store, calibration.key))
    trial = knowledge.trials[0]
    assert saved.scores([trial], [None]) == pytest.approx(knowledge.cross_encoder.scores([trial], [None]), abs=0.05)


def test_a_low_score_fails_the_coherence_check_with_a_message_a_writer_can_act_on():
    problems = check_domain({CROSS_ENCODER: SectionScore(-3.2, "Prostate cancer confirmed by biopsy", "criterion")},
                            {CROSS_ENCODER: -1.0})
    assert [p.check for p in problems] == ["coherence"] == [check_of(CROSS_ENCODER)]
    assert "read together with the conditions" in problems[0].message and "-3.20 < -1.00" in problems[0].message
    assert not check_domain({CROSS_ENCODER: SectionScore(0.5)}, {CROSS_ENCODER: -1.0})


def test_too_few_trials_or_missing_models_are_one_line_errors(cross_encoder_store, tmp_path):
    _, knowledge, _, _ = cross_encoder_store
    trials = [t for t in knowledge.trials if t.nct_id in knowledge.cross_encoder.fold_of][:3]
    with pytest.raises(ConfigError, match="only 3 grounding trials.*at least 10"):
        CrossEncoderCoherence.train(trials, np.eye(3, dtype=np.float32), folds=5)
    with pytest.raises(ConfigError, match="fold models are missing.*--cross-encoder"):
        CrossEncoderCoherence.load(tmp_path / "nowhere")


def test_store_calibrate_with_the_cross_encoder_shows_it_and_refuses_bad_input(cross_encoder_store, capsys):
    from support import cli
    from synthtrials.scripts.cli.store import _print_calibration

    store, _, calibration, _ = cross_encoder_store
    _print_calibration(calibration.model_dump())
    said = " ".join(capsys.readouterr().out.split())
    assert CROSS_ENCODER in said and "with the cross-encoder" in said and "2 fold models" in said
    assert calibration.key in said
    empty = cli("store", "calibrate", "--store", str(store.path), "--ground-on", "valid", "--cross-encoder")
    assert empty.returncode == 2 and "no real trials" in empty.stderr and "Traceback" not in empty.stderr
