from collections import Counter

import pytest
from support import TOP
from synthtrials.graphs.plan import SamplingPlan, anchors_of
from synthtrials.tools.readers import read_trials
from synthtrials.tools.records.eligibility import first_drug
from synthtrials.tools.records.eligibility import EligibleIntervention
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.records.normalize import normalize_intervention

ELIGIBLE = [EligibleIntervention(intervention=name, successes=s, failures=f)
            for name, s, f in (("placebo", 400, 300), ("sorafenib", 10, 20), ("metformin", 30, 5), ("saline placebo", 9, 9))]


def test_plan_is_balanced_deterministic_and_skips_comparators():
    plan = SamplingPlan.create("run", 7, ELIGIBLE, mode="contrastive")
    targets = [plan.target(i) for i in range(200)]
    assert {t.intervention for t in targets} == {"sorafenib", "metformin"}  # placebo is not a target
    for i in range(0, 200, 2):
        assert {targets[i].label, targets[i + 1].label} == {0, 1}
    assert [plan.target(i) for i in range(200)] == targets  # same seed, same targets (resume, extension)
    other = SamplingPlan.create("run", 8, ELIGIBLE, mode="contrastive")
    assert [other.target(i) for i in range(20)] != targets[:20]


def test_proportional_and_list_modes():
    plan = SamplingPlan.create("run", 0, ELIGIBLE, mode="proportional")
    failures = [plan.target(i) for i in range(400) if plan.target(i).label == 0]
    share = sum(t.intervention == "sorafenib" for t in failures) / len(failures)
    assert share > 0.65  # 20 of 25 failed trials are sorafenib's
    only = SamplingPlan.create("run", 0, ELIGIBLE, mode="list", only=["  Metformin "])
    assert {only.target(i).intervention for i in range(20)} == {"metformin"}
    with pytest.raises(ConfigError, match="not eligible"):
        SamplingPlan.create("run", 0, ELIGIBLE, mode="list", only=["aspirin"])
    with pytest.raises(ConfigError, match="no eligible intervention"):
        SamplingPlan.create("run", 0, [], mode="contrastive")


def test_anchored_plan_draws_every_grounding_trial_once_before_any_twice():
    """The default plan: target i is a labelled real grounding trial (real phase I train), whose drug, label,
    conditions, phase and interventions it fixes; the targets follow the real data's drugs and labels."""
    train = read_trials([TOP / "phase_I_train.csv"])
    anchors = anchors_of(train)
    assert len(anchors) > 0.9 * len(train)  # placebo-first and unlabelled trials are the only ones left out
    assert all(a.drug == first_drug(t) for a, t in zip(anchors, sorted(train, key=lambda t: t.nct_id)) if a.nct_id == t.nct_id)
    plan = SamplingPlan.create("run", 3, [], anchors=anchors)
    assert plan.mode == "anchored"
    n = len(anchors)
    first = [plan.target(i) for i in range(n)]
    assert sorted(t.anchor for t in first) == sorted(a.nct_id for a in anchors)  # each once
    second = [plan.target(i) for i in range(n, n + 50)]
    assert len({t.anchor for t in second}) == 50 and [t.anchor for t in first[:50]] != [t.anchor for t in second]
    by_id = {t.nct_id: t for t in train}
    for target in first[:100]:
        real = by_id[target.anchor]
        assert (target.intervention, target.label) == (first_drug(real), real.label)
        assert target.conditions == [c.strip()[:120] for c in real.conditions if c.strip()][:10]
        assert target.phase == (real.phase.value if real.phase else None)
        eligibility = real.eligibility
        assert target.criteria == ((len(eligibility.inclusion), len(eligibility.exclusion)) if eligibility else (0, 0))
        # its interventions: the drug first (as the plan names it), then the others as listed
        listed = [(i.name.strip(), i.type.value) for i in real.interventions if i.name.strip()]
        listed.pop(next(k for k, (name, _) in enumerate(listed) if normalize_intervention(name) == target.intervention))
        assert target.interventions == [(target.intervention, "drug"), *listed]
    assert sum(len(t.interventions) > 1 for t in first) > 0.3 * n  # combinations and comparators are common in TOP
    assert Counter(t.label for t in first) == Counter(a.label for a in anchors)  # the real labels, not balanced
    assert [plan.target(i) for i in range(20)] == first[:20]  # resume draws the same targets
    with pytest.raises(ConfigError, match="no labelled trial with a drug to anchor on"):
        SamplingPlan.create("run", 0, [], anchors=[])


def test_every_prefix_of_an_anchored_plan_holds_both_outcomes_in_proportion():
    anchors = anchors_of(read_trials([TOP / "phase_I_train.csv"]))
    plan = SamplingPlan.create("run", 5, [], anchors=anchors)
    share = sum(a.label for a in anchors) / len(anchors)
    labels = [plan.target(i).label for i in range(60)]
    for n in (2, 6, 20, 60):
        assert abs(sum(labels[:n]) - share * n) <= 1  # a 6-trial demo gets both outcomes as the data has them
