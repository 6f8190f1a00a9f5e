import pytest
from synthtrials.graphs.plan import SamplingPlan
from synthtrials.tools.records.eligibility import EligibleIntervention
from synthtrials.tools.errors import ConfigError

ELIGIBLE = [EligibleIntervention(intervention=name, successes=s, failures=f)
            for name, s, f in (("placebo", 400, 300), ("sorafenib", 10, 20), ("metformin", 30, 5), ("saline placebo", 9, 9))]


def test_plan_is_balanced_deterministic_and_skips_comparators():
    plan = SamplingPlan.create("run", 7, ELIGIBLE)
    targets = [plan.target(i) for i in range(200)]
    assert {t.intervention for t in targets} == {"sorafenib", "metformin"}  # placebo is not a target
    for i in range(0, 200, 2):
        assert {targets[i].label, targets[i + 1].label} == {0, 1}
    assert [plan.target(i) for i in range(200)] == targets  # same seed, same targets (resume, extension)
    other = SamplingPlan.create("run", 8, ELIGIBLE)
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
        SamplingPlan.create("run", 0, [])
