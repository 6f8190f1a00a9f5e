"""The critic's checks, each a pure function, on named junk and on terse real criteria; the
calibrated domain checks on a real store's knowledge."""

import pytest
from synthtrials.tools.knowledge.calibration import calibration_key
from synthtrials.tools.knowledge.checks import (
    check_copying,
    check_domain,
    check_intervention,
    check_leakage,
    check_plausibility,
    check_privacy,
    scrub_trial,
)
from synthtrials.tools.knowledge.domain import SectionScore
from synthtrials.tools.store.protocol import (
    TrialFilter,
    grounding_filter,
)
from synthtrials.tools.records.trial import Eligibility, Intervention, Phase, Trial

TOP_FIELDS = ("phase", "conditions", "interventions", "eligibility")


def draft(**overrides) -> Trial:
    data = dict(nct_id="SYN-00aa11bb", phase=Phase.PHASE_1, conditions=["Multiple Myeloma"],
                interventions=[Intervention(name="lenalidomide")], source="synthetic", label=1,
                eligibility=Eligibility(inclusion=["Age >= 18", "ECOG 0-1", "Measurable disease"],
                                        exclusion=["Pregnancy", "Prior lenalidomide"]))
    data.update(overrides)
    return Trial(**data)


def test_terse_real_criteria_pass_the_plain_checks():
    trial = draft()
    assert check_plausibility(trial, TOP_FIELDS) == []
    assert check_leakage(trial) == [] and check_privacy(trial) == []
    assert check_intervention(trial, "Lenalidomide") == []


def test_real_criteria_that_stop_a_drug_state_no_outcome():
    # phase II criteria that the outcome rule read as a stopped trial (bench_critic, issue 20)
    real = ["Progression of disease since the agents were suspended",
            "Prior therapy was discontinued at least 4 weeks before enrolment",
            "Patients whose immunosuppression is being stopped early to treat or prevent relapse",  # phase_I_train
            "Accrual closed as of 5/27/2009 to patients with renal cell carcinoma"]  # phase_I_train
    assert check_leakage(draft(eligibility=Eligibility(inclusion=["Age >= 18", *real], exclusion=["Pregnancy"]))) == []


def test_top_grounded_drafts_need_no_title_or_summary_but_full_records_do():
    trial = draft()
    assert check_plausibility(trial, TOP_FIELDS) == []
    checks = {p.message for p in check_plausibility(trial, TOP_FIELDS + ("title", "summary"))}
    assert checks == {"write a descriptive title", "write a brief summary of the trial's purpose and design"}


def test_criteria_that_repeat_themselves_fail_the_content_check():
    looping = ["Able to enroll in a study which has the following conditions:", "Multiple Myeloma within 6 months."]
    mirrored = draft(eligibility=Eligibility(inclusion=looping, exclusion=list(looping)))  # seen from the writer
    assert "the criteria repeat themselves" in check_plausibility(mirrored, TOP_FIELDS)[0].message
    restated = draft(eligibility=Eligibility(  # accepted in the central run before the near-restatement rule
        inclusion=["Stage IV Carcinoma.", "Current chemotherapy regimen or therapy for this stage I disease is available."],
        exclusion=["Current chemotherapy regimens or therapy for this stage I disease is available.", "Pregnancy"]))
    assert "the criteria repeat themselves" in check_plausibility(restated, TOP_FIELDS)[0].message
    stuck = draft(eligibility=Eligibility(inclusion=["Age >= 18"] * 5, exclusion=["Pregnancy"]))
    assert [p.check for p in check_plausibility(stuck, TOP_FIELDS)] == ["content"]
    assert check_plausibility(draft(), TOP_FIELDS) == []  # distinct terse criteria are fine


@pytest.mark.parametrize("text, check", [
    ("The study was terminated early due to slow accrual.", "leakage"),
    ("Enrollment was halted after the interim analysis.", "leakage"),
    ("The trial stopped early after the interim analysis.", "leakage"),
    ("Recruitment terminated early for futility.", "leakage"),
    ("Stopped early for futility at the interim analysis.", "leakage"),
    ("Contact Dr. Smith at john.smith@hospital.org or 555-123-4567", "privacy"),
    ("See NCT01234567 for details", "privacy"),
    ("<b>Inclusion</b> {{criteria}}", "content"),
])
def test_named_junk_fails_its_check(text, check):
    trial = draft(eligibility=Eligibility(inclusion=["Age >= 18", text], exclusion=["Pregnancy"]))
    problems = check_leakage(trial) + check_privacy(trial) + check_plausibility(trial, TOP_FIELDS)
    assert check in {p.check for p in problems}


@pytest.mark.parametrize("number", ["+1 617 555 0123", "(617) 555-0123", "617.555.0123", "1-800-555-0199",
                                    "+44 20 7946 0958", "0044 20 7946 0958", "+33 1 45 67 89 10", "+49 30 12345678",
                                    "555-123-4567", "(555) 123-4567",  # made up, not valid
                                    "+44 20 7946 0083", "0044 20 7946 0083", "+1-617-555-0083"])  # by their shape:
# the first two are in a range kept for drama, which libphonenumber reads as no valid number (bench_critic's seed 2)
def test_phone_numbers_in_the_usual_forms_fail_privacy(number):
    trial = draft(eligibility=Eligibility(inclusion=["Age >= 18", f"Questions: call the study nurse on {number}"],
                                          exclusion=["Pregnancy"]))
    assert [p.message for p in check_privacy(trial)] == ["remove phone numbers"]


@pytest.mark.parametrize("text", ["+/- 10 mg", "CD34+ 2 x 10^6/kg", "nnc 0070-0002-0453", "00 1234 5678",
                                  "between -2.0 and +2.0 SD", "a +10 to +20 change", "+1.5 x ULN"])
def test_signs_and_codes_that_look_like_international_numbers_are_not_phone_numbers(text):
    from synthtrials.tools.knowledge.checks import phone_numbers

    assert phone_numbers(text) == []


def test_drug_codes_doses_and_counts_in_real_trials_are_not_phone_numbers():
    """Every run of ten or more digits in TOP's trials is a drug code with its dose, a national drug code or a
    count ("pf-00734200 30 mg qd", "ndc 0378-4141-01", "1.5 x 1000000000/L"); a digit-run pattern read them as
    phone numbers, and the critic rejected such real trials (one of bench_critic's real phase II trials)."""
    import re

    from support import TOP
    from synthtrials.tools.knowledge.checks import _text_fields
    from synthtrials.tools.readers import read_trials

    digit_runs = re.compile(r"(?:\+?\d[\s().-]?){9,}\d")
    trials = [t for name in ("phase_I_train.csv", "phase_II_valid.csv", "toy_train.csv") for t in read_trials([TOP / name])
              if digit_runs.search("\n".join(_text_fields(t)))]
    assert len(trials) >= 11
    # the last: "jnj-30979754 15 mg/m2", whose digits and dose make a valid North American number
    assert {"NCT01298505", "NCT00618007", "NCT01022853", "NCT00796003"} <= {t.nct_id for t in trials}
    flagged = [t.nct_id for t in trials if "remove phone numbers" in {p.message for p in check_privacy(t)}]
    assert flagged == []


@pytest.mark.parametrize("condition", ["Phase 1", "phase II", "Healthy volunteers, phase 1/2", "Phase I/II study",
                                       "Phase 1b", "phase IIa", "Phases I-III"])
def test_a_trial_phase_is_no_condition(condition):
    problems = check_plausibility(draft(conditions=["Multiple Myeloma", condition]), TOP_FIELDS)
    assert [p.check for p in problems] == ["content"] and condition in problems[0].message


def test_a_diseases_own_phase_is_a_condition():
    """Real grounding trials list the phases of chronic myelogenous leukemia as conditions ("accelerated phase ...",
    "blastic phase"); the anchored plan hands them to the writer, and reading every "phase" as a trial phase rejected
    each such draft at every revision (5 of the 96 draws rejected in three 300-trial runs)."""
    import re

    from support import TOP
    from synthtrials.tools.readers import read_trials

    real = [t for t in read_trials([TOP / "phase_I_train.csv"])
            if any(re.search(r"\bphase\b", c, re.IGNORECASE) for c in t.conditions)]
    assert len(real) >= 5
    assert [p.message for t in real for p in check_plausibility(t, TOP_FIELDS) if "disease names" in p.message] == []


def test_real_criteria_with_comparison_signs_are_not_markup():
    trial = draft(eligibility=Eligibility(inclusion=["Serum creatinine </= 2.0 mg/dL, or clearance > 40 mL/min"],
                                          exclusion=["Pregnancy"]))
    assert check_plausibility(trial, TOP_FIELDS) == []
    # shaped after TOP toy_train NCT01587118 and toy_test NCT03274076 (shortened): a "<" and a later ">" in one criterion
    real = ["Vulnerable patient populations, persons with dementia, minors (<age 19), the elderly (>age 65), prisoners",
            "Pulmonary disease with FVC <LLN or mean PAP> 30 mmHg on right heart catheterization"]
    assert check_plausibility(draft(eligibility=Eligibility(inclusion=real, exclusion=["Pregnancy"])), TOP_FIELDS) == []


@pytest.mark.parametrize("markup", ["<b>Inclusion</b>", "Age >= 18<br/>", '<a href="https://example.org">consent</a>',
                                    "{{criteria}}", "[[criterion_2]]"])
def test_markup_and_placeholders_fail_content(markup):
    trial = draft(eligibility=Eligibility(inclusion=["Age >= 18", markup], exclusion=["Pregnancy"]))
    assert "remove markup and placeholders" in {p.message for p in check_plausibility(trial, TOP_FIELDS)}


def test_wrong_drug_and_copies_are_caught():
    assert check_intervention(draft(), "sorafenib")[0].check == "intervention"
    real = draft(nct_id="NCT01234567", source="real")
    problems, overlap = check_copying(draft(), [real], n=3, max_overlap=0.35)
    assert overlap == 1.0 and problems[0].check == "near_copy"


def test_checks_run_on_what_is_accepted():
    scrubbed = scrub_trial(draft(eligibility=Eligibility(inclusion=["Patients recruiting now"], exclusion=["x"])))
    assert scrubbed.eligibility.inclusion == ["Patients now"]


def test_domain_check_messages_name_the_failing_section():
    scores = {"typicality_criterion": SectionScore(0.2, "Lorem ipsum dolor sit amet", "criterion"),
              "condition_fit": SectionScore(0.9, "myeloma", "condition"), "eligibility_fit": SectionScore(None)}
    problems = check_domain(scores, {"typicality_criterion": 0.37, "condition_fit": 0.2, "eligibility_fit": -0.3})
    assert [p.check for p in problems] == ["typicality"] and problems[0].section == "Lorem ipsum dolor sit amet"
    assert "reads like no real eligibility criterion" in problems[0].message


@pytest.fixture(scope="module")
def knowledge(phase1_knowledge):
    store, known, _ = phase1_knowledge
    return store, known


@pytest.fixture(scope="module")
def calibration(phase1_knowledge):
    """`calibrate` on the train split's knowledge (run once per session, saved with the store)."""
    store, _, saved = phase1_knowledge
    assert saved.key == calibration_key(store, ["train"]) and saved.splits == ["train"]
    return saved


def test_calibration_rejects_at_most_5_percent_of_real_grounding_trials(knowledge, calibration):
    store, known = knowledge
    assert calibration.real_rejection <= 0.05
    assert calibration.trials == len(known.trials) == len(store.filter_ids(grounding_filter(["train"]))) == 365
    assert set(calibration.thresholds) >= {"typicality_criterion", "typicality_criterion_mean", "typicality_condition",
                                           "condition_fit", "eligibility_fit", "intervention_fit", "criteria_count"}
    assert all(rate <= calibration.real_rejection for rate in calibration.rejection_rates.values())


def _real(knowledge):
    store, _ = knowledge
    return max(store.filter(grounding_filter(["train"]).narrowed(intervention="lenalidomide"))
               or store.filter(grounding_filter(["train"])), key=lambda t: len(t.eligibility.inclusion) if t.eligibility else 0)


@pytest.mark.parametrize("junk", [
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit",
    "Click here to subscribe to our newsletter",
    "Delacrës delatades d'Londes, an ethnic group in Europe",
])
def test_named_junk_criteria_fail_typicality(knowledge, calibration, junk):
    """One junk criterion among real ones fails the worst criterion's typicality and is named. (A misspelt
    word, "mantlle", typicality 0.323, was listed too: on this 365-trial store a real trial's least typical
    criterion scores 0.318, and only calibration version 6, 5.5% of real trials rejected out of fold here
    for a 5% budget, caught it.)"""
    store, known = knowledge
    trial = _real(knowledge)
    spoiled = trial.model_copy(update={"nct_id": "SYN-0f0f0f0f", "source": "synthetic", "eligibility": Eligibility(
        inclusion=trial.eligibility.inclusion[:6] + [junk], exclusion=trial.eligibility.exclusion[:4])})
    problems = check_domain(known.scores(spoiled), calibration.thresholds)
    assert any(p.check == "typicality" and p.section == junk for p in problems)


def test_terse_real_criteria_pass_the_domain_checks(knowledge, calibration):
    _, known = knowledge
    trial = _real(knowledge)
    terse = trial.model_copy(update={"nct_id": "SYN-0f0f0f0e", "source": "synthetic", "eligibility": Eligibility(
        inclusion=trial.eligibility.inclusion[:6] + ["ECOG 0-1", "Age >= 18"],
        exclusion=trial.eligibility.exclusion[:4] + ["Pregnancy"])})
    assert check_domain(known.scores(terse, exclude=trial.nct_id), calibration.thresholds) == []


def test_a_condition_listed_as_a_drug_fails_intervention_fit(knowledge, calibration):
    _, known = knowledge
    trial = _real(knowledge)
    # the writer's mistake: the trial's own conditions listed as drugs beside the drug. (Condition names
    # the store does not hold, "fetal alcohol syndrome" and "tuberculosis infection", score between
    # the two lowest of these 365 real trials, which only an overspent budget rejected (calibration
    # version 4); on phase_I_train whole they score 0.454, above intervention_fit's threshold under
    # version 4 and 5 alike (0.359, 0.337): the check knows the store's conditions, not every non-drug.)
    spoiled = trial.model_copy(update={"interventions": trial.interventions[:1] + [
        Intervention(name=condition) for condition in trial.conditions[:2]]})
    problems = check_domain(known.scores(spoiled), calibration.thresholds)
    assert "intervention_fit" in {p.check for p in problems}
    assert not {p.check for p in check_domain(known.scores(trial), calibration.thresholds)} & {"intervention_fit"}


def test_eligibility_of_another_disease_fails_eligibility_fit(knowledge, calibration):
    store, known = knowledge
    trial = _real(knowledge)
    diabetes = next(t for t in store.filter(TrialFilter(splits=frozenset({"train"})))
                    if any("diabet" in c.lower() for c in t.conditions) and t.eligibility and t.eligibility.inclusion)
    spoiled = trial.model_copy(update={"nct_id": "SYN-0f0f0f0d", "source": "synthetic",
                                       "eligibility": diabetes.eligibility})
    assert "eligibility_fit" in {p.check for p in check_domain(known.scores(spoiled), calibration.thresholds)}


def test_an_anchored_draft_is_compared_with_its_anchor_beyond_the_fields_the_plan_fixes(knowledge, calibration):
    """The anchored plan hands a draft its anchor's interventions, conditions and phase: a draft that keeps them
    and writes criteria of its own is no copy of its anchor; one that also reproduces the anchor's criteria is.
    Both with the anchor left out of the neighbours (`exclude`: only the comparison with the anchor can see the copy)
    and as the critique node calls it, where the anchor, a grounding trial, is the draft's nearest neighbour (the
    64-token embedding starts with the pinned fields: the draft's head is the anchor's)."""
    from support import TOP
    from synthtrials.agents.critic import beyond_plan, critique_trial
    from synthtrials.tools.readers import read_trials
    from synthtrials.tools.records.trial import render_for_embedding

    store, known = knowledge
    anchor = max((t for t in store.filter(grounding_filter(["train"])) if t.eligibility and len(t.interventions) > 1),
                 key=lambda t: len(render_for_embedding(t).split("|")[0]) + len(t.conditions))  # a long pinned head
    unseen = next(t for t in read_trials([TOP / "phase_I_valid.csv"]) if t.eligibility and len(t.eligibility.inclusion) >= 3)
    kwargs = dict(store=store, knowledge=known, thresholds=calibration.critic_thresholds(),
                  fields=TOP_FIELDS, grounding=grounding_filter(["train"]), exclude=anchor.nct_id, anchor=anchor)
    own = anchor.model_copy(update={"nct_id": "SYN-0a0a0a0a", "source": "synthetic", "eligibility": unseen.eligibility})
    copied = anchor.model_copy(update={"nct_id": "SYN-0a0a0a0b", "source": "synthetic"})
    assert beyond_plan(own).interventions == beyond_plan(own).conditions == [] and beyond_plan(own).phase is None
    for exclude in (anchor.nct_id, None):
        kwargs["exclude"] = exclude
        kept = critique_trial(own, **kwargs)
        assert "near_copy" not in kept.failed_checks and not any(anchor.nct_id in p.message for p in kept.problems)
        assert kept.scores["real_similarity"] < 0.97 and kept.scores["ngram_overlap"] < 0.35
        result = critique_trial(copied, **kwargs)
        assert "near_copy" in result.failed_checks
        assert any(anchor.nct_id in p.message for p in result.problems if p.check == "near_copy")
    assert anchor.nct_id in critique_trial(own, **kwargs).neighbours  # the situation of a generation run


def test_drafts_of_one_anchor_are_compared_with_each_other_beyond_the_fields_the_plan_fixes(knowledge, calibration):
    """A run longer than its grounding split draws an anchor twice (and sibling anchors share a head): two drafts
    with the same pinned head and criteria of their own are no near duplicates, as their whole renderings would
    make them; a draft that repeats an accepted draft's criteria is one."""
    from support import TOP
    from synthtrials.agents.critic import copy_rendering, critique_trial
    from synthtrials.graphs.resources import SyntheticIndex
    from synthtrials.tools.readers import read_trials
    from synthtrials.tools.records.trial import render_for_embedding

    store, known = knowledge
    anchor = max((t for t in store.filter(grounding_filter(["train"])) if t.eligibility and len(t.interventions) > 1),
                 key=lambda t: len(render_for_embedding(t).split("|")[0]) + len(t.conditions))
    first, second = [t for t in read_trials([TOP / "phase_I_valid.csv"])
                     if t.eligibility and len(t.eligibility.inclusion) >= 3][:2]
    own = anchor.model_copy(update={"nct_id": "SYN-0a0a0a0c", "source": "synthetic", "eligibility": first.eligibility})
    sibling = own.model_copy(update={"nct_id": "SYN-0a0a0a0d", "eligibility": second.eligibility})
    twin = own.model_copy(update={"nct_id": "SYN-0a0a0a0e"})
    whole = store.embeddings.embed_array([render_for_embedding(own), render_for_embedding(sibling)])
    assert float(whole[0] @ whole[1]) > 0.98  # the whole renderings: a near duplicate for the head alone
    index = SyntheticIndex()
    index.add(own.nct_id, store.embeddings.embed_array([copy_rendering(own, True)])[0])
    kwargs = dict(store=store, knowledge=known, thresholds=calibration.critic_thresholds(),
                  fields=TOP_FIELDS, grounding=grounding_filter(["train"]), anchor=anchor, synthetic=index)
    assert "near_duplicate" not in critique_trial(sibling, **kwargs).failed_checks
    assert "near_duplicate" in critique_trial(twin, **kwargs).failed_checks
