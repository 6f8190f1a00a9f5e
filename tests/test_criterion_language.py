"""Does each criterion read like an eligibility criterion (calibration version 10, issue 20): the score
`typicality_criterion_language`, learnt from the real phase I store's grounding criteria against sentences from
outside medicine, cross-fitted on both sides, calibrated, and kept with the store."""

from __future__ import annotations

import numpy as np
import pytest
from synthtrials.tools.knowledge.calibration import (
    build_knowledge,
    criterion_language_file,
    foreign_sentences,
    spoiled_with_donors,
)
from synthtrials.tools.knowledge.checks import check_domain
from synthtrials.tools.knowledge.criterion_language import C, FOLDS, CriterionLanguage, criterion_texts
from synthtrials.tools.knowledge.domain import DomainKnowledge

#: a sentence of the standard library's documentation (asyncio), which is not among the calibration's sentences
DOCSTRING = "Wait for the Futures or Tasks given by fs to complete."


def _with_sentence(trial, sentence: str):
    inclusion = list(trial.eligibility.inclusion)
    inclusion.insert(1, sentence)
    return trial.model_copy(update={"eligibility": trial.eligibility.model_copy(update={"inclusion": inclusion})})


def _cancer_trial(known: DomainKnowledge):
    return next(t for t in known.trials if any("cancer" in c.lower() for c in t.conditions)
                and t.eligibility and len(t.eligibility.inclusion) >= 3)


def test_a_sentence_from_outside_medicine_is_the_worst_criterion_and_is_named(phase1_knowledge):
    store, known, calibration = phase1_knowledge
    language = known.criterion_language
    assert language is not None and language.coef.shape == (FOLDS, 384) and language.intercept.shape == (FOLDS,)
    assert DOCSTRING not in foreign_sentences()
    trial = _cancer_trial(known)
    own = known.scores(trial, exclude=trial.nct_id)["typicality_criterion_language"]
    spoiled = known.scores(_with_sentence(trial, DOCSTRING), exclude=trial.nct_id)["typicality_criterion_language"]
    assert spoiled.section == DOCSTRING and spoiled.kind == "criterion" and spoiled.score < own.score
    # calibrated, in the joint score; at a threshold the trial's own criteria pass, the verdict names the sentence
    assert "typicality_criterion_language" in calibration.thresholds
    assert "typicality_criterion_language" in calibration.joint.names
    limit = {"typicality_criterion_language": own.score}
    assert not check_domain({"typicality_criterion_language": own}, limit)
    problems = check_domain({"typicality_criterion_language": spoiled}, limit)
    assert [p.check for p in problems] == ["typicality"] and problems[0].section == DOCSTRING
    assert "does not read like an eligibility criterion" in problems[0].message and DOCSTRING[:40] in problems[0].message


def test_each_trial_and_each_foreign_sentence_is_read_by_a_model_that_never_saw_it(phase1_knowledge):
    """A grounding trial is scored by its own fold's model; the calibration spoils it with a foreign sentence of that
    same fold, which that model was not fitted on; a new trial is scored by the fold models' mean."""
    store, known, calibration = phase1_knowledge
    language = known.criterion_language
    sentences = foreign_sentences()
    assert set(language.sentence_fold) == set(sentences) and set(language.sentence_fold.values()) == set(range(FOLDS))
    with_criteria = {t.nct_id for t in known.trials if criterion_texts(t)}
    assert set(language.fold_of) == with_criteria
    trial = _cancer_trial(known)
    fold = language.fold_of[trial.nct_id]
    assert sorted(language.held_out_sentences(trial.nct_id)) == sorted(s for s in sentences
                                                                       if language.sentence_fold[s] == fold)
    assert sorted(language.held_out_sentences("NCT99999999")) == sorted(sentences)
    vectors = store.section_vectors(criterion_texts(trial))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    by_own_fold = unit @ language.coef[fold] + language.intercept[fold]
    assert known.scores(trial, exclude=trial.nct_id)["typicality_criterion_language"].score == pytest.approx(
        float(by_own_fold.min()), abs=1e-4)
    by_mean = unit @ language.coef.mean(axis=0) + language.intercept.mean()
    assert known.scores(trial)["typicality_criterion_language"].score == pytest.approx(float(by_mean.min()), abs=1e-4)
    by_id = {t.nct_id: t for t in known.trials}
    # the calibration catches most grounding trials spoiled with a sentence their fold model never saw
    assert calibration.spoiled_caught["foreign_sentence"] >= 0.9, calibration.spoiled_caught
    for spoiled, left in spoiled_with_donors(known)["foreign_sentence"][:40]:
        added = [c for c in spoiled.eligibility.inclusion if c not in by_id[left].eligibility.inclusion]
        assert len(added) == 1 and added[0] in language.held_out_sentences(left)
    # the model of the trial's fold is the regression on the criteria of the other folds' trials against the other
    # folds' sentences: neither the trial nor the sentences it is spoiled with
    from sklearn.linear_model import LogisticRegression

    real = sorted({c for t in known.trials if language.fold_of.get(t.nct_id, fold) != fold for c in criterion_texts(t)})
    foreign = [s for s in sentences if language.sentence_fold[s] != fold]
    x = known.vectors(real + foreign)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=2000).fit(x, np.r_[np.ones(len(real)),
                                                                                         np.zeros(len(foreign))])
    assert np.allclose(model.coef_[0], language.coef[fold], atol=1e-3)


def test_the_models_are_kept_with_the_store_and_refitted_when_they_do_not_match(phase1_knowledge, tmp_path):
    store, known, calibration = phase1_knowledge
    language = known.criterion_language
    saved = CriterionLanguage.load(criterion_language_file(store, calibration.key))
    assert saved is not None and saved.fold_of == language.fold_of and saved.sentence_fold == language.sentence_fold
    assert np.allclose(saved.coef, language.coef) and np.allclose(saved.intercept, language.intercept)
    # the calibration draws its spoiling sentences from these lists: a loaded model gives the fitted one's, in the
    # same order, so a store calibrated again spoils its trials as before
    fitted = CriterionLanguage.train(known.trials, known.vectors)
    assert all(saved.held_out_sentences(t) == fitted.held_out_sentences(t) for t in list(fitted.fold_of)[:50])
    assert build_knowledge(store, ["train"]).criterion_language.fold_of == language.fold_of
    # fitted on other foreign sentences, or no file, or a broken one: None (the caller fits them again)
    assert CriterionLanguage.load(criterion_language_file(store, calibration.key), sentences=["Another sentence."]) is None
    assert CriterionLanguage.load(tmp_path / "none.npz") is None
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    assert CriterionLanguage.load(tmp_path / "bad.npz") is None
    # too few grounding trials to learn it: no model, and the score does not apply
    assert CriterionLanguage.train(known.trials[:20], known.vectors) is None
    few = DomainKnowledge(known.trials[:20], store.section_vectors)
    assert few.criterion_language is None and few.scores(known.trials[0])["typicality_criterion_language"].score is None
