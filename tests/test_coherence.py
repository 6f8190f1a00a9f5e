"""The critic judges meaning (issue 20): the coherence scores of `tools.knowledge.coherence` on the real phase I
store's knowledge, the per-criterion verdict that names the bad criterion, the calibration that
spends the real-rejection budget where spoiled grounding trials are caught, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from support import TOP
from synthtrials.agents.critic import check_trials, feedback
from synthtrials.tools.knowledge.calibration import (
    FLOOR_QUANTILE,
    SCORE_SHARES,
    Calibration,
    _rejected,
    allocate_budget,
    allocate_scores,
    allocate_thresholds,
    at_level,
    calibrate,
    cross_fitted_rejection,
    foreign_sentences,
    over_budget,
    spoiled_grounding_trials,
    spoiled_with_donors,
)
from synthtrials.tools.knowledge.checks import check_domain
from synthtrials.tools.knowledge.coherence import MIN_COHERENCE_TRIALS, CoherenceModel
from synthtrials.tools.knowledge.domain import DomainKnowledge, SectionIndex, SectionScore
from synthtrials.tools.knowledge.joint import JOINT, JointScore
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.readers import read_trials
from synthtrials.tools.records.trial import Eligibility

#: an inclusion criterion of another disease, as real diabetes trials write it
DIABETES_CRITERION = "Type 2 diabetes mellitus with HbA1c between 7.0% and 10.0% on a stable dose of metformin"


def test_allocation_spends_the_budget_on_the_score_that_catches_spoiled_trials():
    rng = np.random.default_rng(0)
    real = {"useful": rng.normal(size=2000), "useless": rng.normal(size=2000)}
    spoiled = {"kind": {"useful": rng.normal(-2.0, 1.0, size=500), "useless": rng.normal(size=500)}}
    quantiles, thresholds, rate = allocate_thresholds(real, spoiled, max_real_rejection=0.05)
    assert 0.045 <= rate <= 0.05
    assert quantiles["useful"] > 0.04 and quantiles["useless"] == pytest.approx(FLOOR_QUANTILE, abs=0.002)
    assert thresholds["useful"] == pytest.approx(np.nanquantile(real["useful"], quantiles["useful"]))


def test_a_score_that_applies_to_no_spoiled_trial_stays_at_the_floor():
    rng = np.random.default_rng(1)
    real = {"a": rng.normal(size=1000), "b": np.r_[rng.normal(size=900), [np.nan] * 100]}
    spoiled = {"kind": {"a": rng.normal(-1.0, 1.0, size=300), "b": np.full(300, np.nan)}}
    quantiles, _, rate = allocate_thresholds(real, spoiled, max_real_rejection=0.05)
    assert rate <= 0.05 and quantiles["b"] == FLOOR_QUANTILE and quantiles["a"] > 0.03


def test_the_bagged_allocation_keeps_its_budget_on_new_trials_and_spends_it_on_the_useful_score():
    rng = np.random.default_rng(4)

    def draw(rows: int) -> dict[str, np.ndarray]:
        return {"useful": rng.normal(size=rows), **{f"noise{i}": rng.normal(size=rows) for i in range(6)}}

    real = draw(1000)
    spoiled = {"kind": {"useful": rng.normal(-2.0, 1.0, size=400), **{f"noise{i}": rng.normal(size=400) for i in range(6)}}}
    copy_of = {"kind": np.r_[np.arange(400), np.full(600, -1)]}  # the first 400 real trials have a spoiled copy
    quantiles, thresholds, rate, cross_fitted = allocate_scores(real, spoiled, copy_of, 0.05, resamples=10)
    assert cross_fitted <= 0.05 and 0.03 <= rate <= 0.055
    assert quantiles["useful"] > 0.02 and all(quantiles[f"noise{i}"] < 0.005 for i in range(6))
    assert thresholds["useful"] == pytest.approx(np.nanquantile(real["useful"], quantiles["useful"]))
    assert _rejected(draw(50_000), thresholds).mean() <= 0.055  # real trials it never saw
    assert _rejected(spoiled["kind"], thresholds).mean() > 0.3


def test_the_cross_fitted_rejection_is_the_quantile_on_trials_it_was_not_read_from():
    rng = np.random.default_rng(3)
    real = {"a": rng.normal(size=4000)}
    assert cross_fitted_rejection(real, {"a": 0.1}) == pytest.approx(0.1, abs=0.01)
    assert cross_fitted_rejection(real, {"a": 0.05}) == pytest.approx(0.05, abs=0.01)


def test_the_allocation_levels_keep_the_floors_then_scale_the_raises():
    shares = {"raised": 0.011, "floor": FLOOR_QUANTILE}
    assert at_level(shares, 1.0) == pytest.approx({"raised": FLOOR_QUANTILE, "floor": FLOOR_QUANTILE})
    assert at_level(shares, 2.0) == pytest.approx(shares)
    assert at_level(shares, 1.5) == pytest.approx({"raised": 0.006, "floor": FLOOR_QUANTILE})
    assert at_level(shares, 0.5) == pytest.approx({"raised": FLOOR_QUANTILE / 2, "floor": FLOOR_QUANTILE / 2})


def test_the_joint_score_catches_what_several_scores_each_only_hint_at():
    rng = np.random.default_rng(4)
    names = [f"s{i}" for i in range(6)]
    real = {n: rng.normal(size=1000) for n in names}
    # every score a little lower on spoiled trials: none far enough out to fail on its own
    spoiled = {"kind": {n: rng.normal(-0.8, 1.0, size=400) for n in names}}
    copy_of = {"kind": np.r_[np.arange(400), np.full(600, -1)]}  # the first 400 real trials have a spoiled copy
    budget = allocate_budget(real, spoiled, copy_of, 0.05)
    assert budget.cross_fitted_rejection <= 0.05 and 0.03 <= budget.real_rejection <= 0.055
    assert budget.score_share in SCORE_SHARES
    assert budget.quantiles[JOINT] > 0.02 and budget.quantiles[JOINT] > 5 * max(budget.quantiles[n] for n in names)
    assert budget.thresholds[JOINT] == pytest.approx(np.quantile(budget.real[JOINT], budget.quantiles[JOINT]))
    caught = _rejected(budget.spoiled["kind"], budget.thresholds).mean()
    alone = max((spoiled["kind"][n] < np.quantile(real[n], 0.05)).mean() for n in names)
    assert caught > 0.5 and caught > 2 * alone  # any one score at the whole budget catches far less
    # real trials it never saw: the share kept is chosen on the same trials, which costs a little here
    # (6.5%); on phase_I_train's halves 4.4% +- 1.0% (benchmarks/bench_joint_score.py)
    fresh = {n: rng.normal(size=50_000) for n in names}
    assert _rejected(fresh | {JOINT: budget.joint.values(np.column_stack([fresh[n] for n in budget.joint.names]))},
                     budget.thresholds).mean() <= 0.07
    assert all(w > 0 for w in budget.joint.weights)  # higher is more like a real trial, as for every score


def test_the_joint_score_names_what_pulls_it_down_and_takes_a_missing_score_at_its_median():
    rng = np.random.default_rng(6)
    names = ["typicality_criterion", "coherence_criterion", "coherence_conditions"]
    joint = JointScore.fit(names, rng.normal(size=(500, 3)), [rng.normal(-1.0, 1.0, size=(300, 3))])
    scores = {"typicality_criterion": SectionScore(0.0, "fine", "criterion"),
              "coherence_criterion": SectionScore(-3.0, "the bad criterion", "criterion"),
              "coherence_conditions": SectionScore(0.1, "a condition", "condition")}
    score = joint.score(scores)
    assert score.by == "coherence_criterion" and score.section == "the bad criterion" and score.kind == "criterion"
    assert score.score == pytest.approx(float(joint.values(np.array([0.0, -3.0, 0.1]))[0]))
    missing = joint.score(scores | {"coherence_conditions": SectionScore(None)})
    assert missing.score == pytest.approx(float(joint.values(np.array([0.0, -3.0, joint.medians[2]]))[0]))
    assert JointScore.model_validate_json(joint.model_dump_json()) == joint  # stored with the calibration
    # a score of negative weight (collinear with the others) pulls down where it is high: never named
    collinear = joint.model_copy(update={"weights": [1.0, 1.0, -2.0]})
    high = scores | {"coherence_conditions": SectionScore(9.0, "a condition", "condition")}
    assert collinear.score(high).by == "coherence_criterion"
    problems = check_domain({JOINT: score}, {JOINT: score.score + 1.0})
    assert [p.check for p in problems] == ["coherence"] and problems[0].section == "the bad criterion"
    assert "another disease" in problems[0].message and "'the bad criterion'" in problems[0].message


def test_a_store_too_small_for_its_scores_says_it_misses_the_budget():
    rng = np.random.default_rng(5)
    rows = 40  # 14 scores: even at their loosest they reject about 14 trials in 32 out of fold
    sparse = np.full(rows, np.nan)
    sparse[:2] = rng.normal(size=2)  # applies to two trials
    real = {"sparse": sparse, **{f"s{i}": rng.normal(size=rows) for i in range(13)}}
    spoiled = {"kind": {name: rng.normal(-1.0, 1.0, size=rows) for name in real}}
    budget = allocate_budget(real, spoiled, {"kind": np.arange(rows)}, 0.05)
    assert set(budget.quantiles) == set(real) | {JOINT} and "sparse" in budget.thresholds
    assert budget.real_rejection == 0.0 and budget.cross_fitted_rejection > 0.05  # the loosest, and the miss recorded
    calibration = Calibration(key="k", splits=["train"], trials=rows, quantile=FLOOR_QUANTILE, max_real_rejection=0.05,
                              thresholds=budget.thresholds, rejection_rates={}, real_rejection=budget.real_rejection,
                              cross_fitted_rejection=budget.cross_fitted_rejection, scored={}, joint=budget.joint)
    assert "too few" in over_budget(calibration) and "ingest more grounding trials" in over_budget(calibration)


def test_the_coherence_model_is_leave_one_out_and_refuses_too_few_trials():
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(30, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    model = CoherenceModel([f"T{i}" for i in range(30)], vectors, vectors)
    own = model.eligibility(vectors[:1], vectors[:1], exclude="T0")
    assert own == pytest.approx(1.0 - float(vectors[0] @ vectors[1:].mean(axis=0)), abs=1e-5)
    few = CoherenceModel([f"T{i}" for i in range(MIN_COHERENCE_TRIALS - 1)], vectors[:19], vectors[:19])
    assert not few.usable and few.eligibility(vectors[:1], vectors[:1]) is None


def test_two_trials_left_out_leave_the_average_and_the_softmax_without_both():
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(30, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    model = CoherenceModel([f"T{i}" for i in range(30)], vectors, vectors)
    both = model.eligibility(vectors[:1], vectors[:1], exclude=("T0", "T1"))
    assert both == pytest.approx(1.0 - float(vectors[0] @ vectors[2:].mean(axis=0)), abs=1e-5)
    # the trial whose criteria these are (T1) is the only close one: left out, the expected criteria move away
    near = vectors[1:2] * 0.99 + vectors[2:3] * 0.01
    with_donor = model.typical_criteria(vectors[1:2], near, exclude="T0")
    without = model.typical_criteria(vectors[1:2], near, exclude=("T0", "T1"))
    assert with_donor is not None and without is not None and without[0] < with_donor[0]


def test_a_text_two_left_out_trials_share_is_masked_only_when_both_are_out():
    matrix = np.eye(3, dtype=np.float32)
    index = SectionIndex(["only a", "a and b", "a, b and c"], matrix,
                         [frozenset({"A"}), frozenset({"A", "B"}), frozenset({"A", "B", "C"})])
    assert index.only_in("A") == [0] and index.only_in(("A",)) == [0]
    assert index.only_in(("A", "B")) == [0, 1] and index.only_in(None) == []
    sims = index.similarities(np.ones((1, 3), dtype=np.float32), exclude=("A", "B"))
    assert sims.tolist() == [[-1.0, -1.0, 1.0]]


def test_a_spoiled_copy_is_scored_without_the_trial_it_took_its_section_from(phase1_knowledge):
    store, known, _ = phase1_knowledge
    by_id = {t.nct_id: t for t in known.trials}
    pairs = spoiled_with_donors(known)
    assert [t for t, _ in pairs["unrelated_eligibility"]] == spoiled_grounding_trials(known)["unrelated_eligibility"]
    trial, (own, donor) = pairs["unrelated_eligibility"][0]
    assert own == trial.nct_id and donor != own and by_id[donor].eligibility == trial.eligibility
    trial, (own, donor) = pairs["unrelated_conditions"][0]
    assert by_id[donor].conditions == trial.conditions
    assert all(left == t.nct_id for t, left in pairs["fragments"])
    # with its donor among the neighbours, swapped eligibility finds the donor's own conditions
    swapped = [t for t, _ in pairs["unrelated_eligibility"][:40]]
    seen = [known.scores(t, exclude=t.nct_id)["coherence_typical_conditions"].score for t in swapped]
    unseen = [known.scores(t, exclude=left)["coherence_typical_conditions"].score
              for t, left in pairs["unrelated_eligibility"][:40]]
    assert np.mean(unseen) > np.mean(seen)


def test_a_foreign_sentence_is_one_fluent_sentence_from_outside_medicine_among_the_criteria(phase1_knowledge):
    store, known, _ = phase1_knowledge
    sentences = foreign_sentences()
    assert len(sentences) == 445 and all(6 <= len(s.split()) <= 22 and "--" not in s for s in sentences)
    by_id = {t.nct_id: t for t in known.trials}
    pairs = spoiled_with_donors(known)["foreign_sentence"]
    assert len(pairs) == len(spoiled_with_donors(known)["fragments"])
    for trial, left in pairs[:20]:
        real = by_id[left].eligibility
        added = [c for c in trial.eligibility.inclusion if c not in real.inclusion]
        assert len(trial.eligibility.inclusion) == len(real.inclusion) + 1 and len(added) == 1 and added[0] in sentences
        assert trial.eligibility.exclusion == real.exclusion and trial.conditions == by_id[left].conditions


def _grounding_trial(known: DomainKnowledge, word: str):
    return next(t for t in known.trials if any(word in c.lower() for c in t.conditions)
                and t.eligibility and len(t.eligibility.inclusion) >= 3)


def _with_diabetes_criterion(trial):
    """`trial` with `DIABETES_CRITERION` as its second inclusion criterion."""
    inclusion = list(trial.eligibility.inclusion)
    inclusion.insert(1, DIABETES_CRITERION)
    return trial.model_copy(update={"eligibility": trial.eligibility.model_copy(update={"inclusion": inclusion})})


def test_one_inclusion_criterion_of_another_disease_is_named_by_the_worst_criterion_check(phase1_knowledge):
    store, known, calibration = phase1_knowledge
    trial = _grounding_trial(known, "cancer")
    spoiled = _with_diabetes_criterion(trial)
    original = known.scores(trial, exclude=trial.nct_id)["coherence_criterion"]
    score = known.scores(spoiled, exclude=trial.nct_id)["coherence_criterion"]
    assert score.section == DIABETES_CRITERION and score.score < original.score
    # a threshold the trial's own criteria pass: the verdict names the inserted one (the worst decides)
    limit = {"coherence_criterion": original.score}
    assert not check_domain({"coherence_criterion": original}, limit)
    problems = check_domain({"coherence_criterion": score}, limit)
    assert [p.check for p in problems] == ["coherence"] and problems[0].section == DIABETES_CRITERION
    assert problems and DIABETES_CRITERION[:60] in problems[0].message
    message = feedback(problems, known, spoiled)[0]
    assert "real trials of these conditions write" in message  # the writer sees real criteria of the conditions


def test_swapped_parts_score_below_the_trials_own(phase1_knowledge):
    store, known, calibration = phase1_knowledge
    cancer, other = _grounding_trial(known, "cancer"), _grounding_trial(known, "healthy")
    names = ("coherence_eligibility", "coherence_typical_criteria", "coherence_typical_conditions")
    own = known.scores(cancer, exclude=cancer.nct_id)
    for update in ({"eligibility": other.eligibility}, {"conditions": other.conditions}):
        swapped = known.scores(cancer.model_copy(update=update), exclude=cancer.nct_id)
        for name in names:
            assert swapped[name].score < own[name].score, (update.keys(), name)


def test_the_calibration_catches_spoiled_grounding_trials_within_the_real_budget(phase1_knowledge):
    store, known, calibration = phase1_knowledge
    assert calibration.real_rejection <= 0.05 and calibration.cross_fitted_rejection <= 0.05
    # the joint score is fitted and recorded; which part of the budget it takes is the allocation's choice (on
    # this 365-trial store the scores one by one may take it all; on all of phase_I_train the joint score takes
    # 40%: benchmarks/RESULTS.md)
    assert calibration.joint is not None and calibration.score_share in SCORE_SHARES
    assert calibration.quantiles[JOINT] > FLOOR_QUANTILE or calibration.score_share == 1.0
    assert {"coherence_eligibility", "coherence_criterion", "coherence_conditions"} <= set(calibration.thresholds)
    assert set(calibration.spoiled_caught) == {"unrelated_conditions", "unrelated_eligibility", "off_topic_criterion",
                                               "fragments", "foreign_sentence"}
    # each kind made from the grounding split is caught more often than real trials are rejected
    assert all(rate > calibration.real_rejection for rate in calibration.spoiled_caught.values())
    spoiled = spoiled_grounding_trials(known)
    assert len(spoiled["unrelated_eligibility"]) > 0.8 * len(known.coherence)
    by_id = {t.nct_id: t for t in known.trials}
    first = spoiled["unrelated_conditions"][0]
    assert first.conditions != by_id[first.nct_id].conditions and first.eligibility == by_id[first.nct_id].eligibility


def test_check_on_trials_without_conditions_or_criteria_gives_a_verdict(phase1_knowledge):
    store, known, calibration = phase1_knowledge
    trial = read_trials([TOP / "phase_I_valid.csv"])[0]
    bare = [trial.model_copy(update={"nct_id": "SYN-000000000001", "conditions": []}),
            trial.model_copy(update={"nct_id": "SYN-000000000002", "eligibility": Eligibility()}),
            trial.model_copy(update={"nct_id": "SYN-000000000003", "conditions": [], "eligibility": None})]
    verdicts = check_trials(bare, store=store, splits=["train"], knowledge=known,
                            thresholds=calibration.critic_thresholds(),
                            fields=["conditions", "interventions", "phase", "eligibility"])
    assert [v.id for v in verdicts] == [t.nct_id for t in bare]
    for v in verdicts:
        assert v.verdict == "reject" and v.failed_checks
        assert v.scores["coherence_eligibility"] is None  # not applicable, never a crash


def test_too_few_grounding_trials_is_one_line_naming_the_fix(phase1_knowledge):
    store, known, _ = phase1_knowledge
    few = DomainKnowledge(known.trials[:5], lambda texts: store.section_vectors(texts),
                          encode=lambda texts: store.embeddings.embed_array(texts))
    with pytest.raises(ConfigError) as error:
        calibrate(few, "key", ["train"])
    assert "coherence checks need at least 20" in str(error.value) and "\n" not in str(error.value)


def test_an_off_topic_criterion_is_about_the_other_trials_conditions():
    import random

    from synthtrials.tools.knowledge.calibration import off_topic_criteria, off_topic_donor, with_off_topic_criterion
    from synthtrials.tools.records.trial import Trial

    asthma = Trial(nct_id="NCT00000001", conditions=["Asthma"],
                   eligibility=Eligibility(inclusion=["FEV1 of 60% to 85% of predicted", "Age 18 to 65 years"],
                                           exclusion=["Current smoker"]))
    diabetes = Trial(nct_id="NCT00000002", conditions=["Type 2 Diabetes"],
                     eligibility=Eligibility(inclusion=["Signed informed consent", "Type 2 diabetes for at least a year",
                                                        "HbA1c between 7% and 10%"]))
    assert off_topic_criteria(asthma, diabetes) == ["Type 2 diabetes for at least a year"]
    spoiled = with_off_topic_criterion(asthma, diabetes, random.Random(0))
    assert sorted(spoiled.eligibility.inclusion) == sorted(asthma.eligibility.inclusion + ["Type 2 diabetes for at least a year"])
    assert spoiled.eligibility.exclusion == asthma.eligibility.exclusion and spoiled.conditions == asthma.conditions
    # a donor whose criteria fit any trial has no off-topic criterion: off_topic_donor passes over it
    consent = Trial(nct_id="NCT00000003", conditions=["Hypertension"],
                    eligibility=Eligibility(inclusion=["Signed informed consent", "Age 18 years or older"]))
    assert off_topic_criteria(asthma, consent) == []
    assert {off_topic_donor(asthma, [consent, diabetes, consent], random.Random(seed)).nct_id
            for seed in range(5)} == {"NCT00000002"}
    # among donors that have one, the first in the order its random draws give
    diabetes_too = diabetes.model_copy(update={"nct_id": "NCT00000004"})
    drawn = [off_topic_donor(asthma, [consent, diabetes, diabetes_too], random.Random(seed)).nct_id for seed in range(20)]
    assert set(drawn) == {"NCT00000002", "NCT00000004"}
    assert drawn == [off_topic_donor(asthma, [consent, diabetes, diabetes_too], random.Random(seed)).nct_id
                     for seed in range(20)]
    assert off_topic_donor(asthma, [consent, consent], random.Random(0)) is None


def test_each_inclusion_criterion_is_read_by_the_fold_model_that_did_not_see_its_trial(phase1_knowledge):
    """`coherence_criterion_fit` (calibration version 9): a model learnt from the grounding trials reads each
    inclusion criterion with the trial's conditions; an inserted criterion of another disease is the worst and is
    named; a grounding trial is scored by the fold model that did not see it, a new trial by the fold models' mean."""
    from synthtrials.tools.knowledge.calibration import build_knowledge, criterion_fit_file
    from synthtrials.tools.knowledge.coherence import unit_centroid
    from synthtrials.tools.knowledge.criterion_fit import FOLDS, CriterionFit, context, inclusion_texts

    store, known, calibration = phase1_knowledge
    fit = known.criterion_fit
    assert fit is not None and len(fit.models) == FOLDS
    assert set(fit.fold_of) <= {t.nct_id for t in known.trials} and len(fit.fold_of) > 0.8 * len(known.trials)
    trial = _grounding_trial(known, "cancer")
    spoiled = _with_diabetes_criterion(trial)
    own = known.scores(trial, exclude=trial.nct_id)["coherence_criterion_fit"]
    score = known.scores(spoiled, exclude=trial.nct_id)["coherence_criterion_fit"]
    assert score.section == DIABETES_CRITERION and score.score < own.score and score.kind == "criterion"
    # the grounding trial's own fold model, which did not see it; a new trial: the mean of the five
    centroid = unit_centroid(store.section_vectors([" ".join(c.split()) for c in trial.conditions if c.strip()]))
    vectors = store.section_vectors(inclusion_texts(trial))
    read_with = context(centroid, vectors)  # the conditions, then the trial's inclusion criteria
    assert read_with.shape == (2 * vectors.shape[1],)
    by_own_fold = fit.models[fit.fold_of[trial.nct_id]].decision_function(read_with, vectors)
    assert own.score == pytest.approx(float(by_own_fold.min()), abs=1e-4)
    mean = np.mean([m.decision_function(read_with, vectors) for m in fit.models], axis=0)
    assert known.scores(trial)["coherence_criterion_fit"].score == pytest.approx(float(mean.min()), abs=1e-4)
    # fitted once and kept with the store: loaded back, the same logits
    saved = CriterionFit.load(criterion_fit_file(store, calibration.key))
    assert saved is not None and saved.fold_of == fit.fold_of
    assert saved.criteria_logits(centroid, vectors, trial.nct_id) == pytest.approx(by_own_fold, abs=1e-5)
    assert build_knowledge(store, ["train"]).criterion_fit.fold_of == fit.fold_of
    # calibrated on its own threshold, outside the joint score; its verdict names the criterion
    assert "coherence_criterion_fit" in calibration.thresholds and "coherence_criterion_fit" not in calibration.joint.names
    problems = check_domain({"coherence_criterion_fit": score}, {"coherence_criterion_fit": own.score})
    assert [p.check for p in problems] == ["coherence"] and problems[0].section == DIABETES_CRITERION
    assert "another disease" in problems[0].message and DIABETES_CRITERION[:60] in problems[0].message


def test_the_criterion_fit_needs_both_classes_and_enough_trials(phase1_knowledge, tmp_path):
    from synthtrials.tools.knowledge.criterion_fit import BilinearCriterionFit, CriterionFit

    store, known, _ = phase1_knowledge
    vectors = store.section_vectors(["Age 18 years or older", "Signed informed consent"])
    with pytest.raises(ValueError, match="both classes"):
        BilinearCriterionFit().fit(vectors[:1], vectors, np.ones(2))
    centroids = {t.nct_id: known.coherence.conditions[known.coherence.position[t.nct_id]]
                 for t in known.trials if t.nct_id in known.coherence.position}
    assert CriterionFit.train(known.trials[:20], centroids, store.section_vectors) is None  # too few: no score
    assert CriterionFit.load(tmp_path / "none.npz") is None  # no saved models: fitted again
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    assert CriterionFit.load(tmp_path / "bad.npz") is None
    assert DomainKnowledge(known.trials[:20], store.section_vectors).scores(known.trials[0])[
        "coherence_criterion_fit"].score is None
