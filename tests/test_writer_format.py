"""The writer's output format: fields and bounds measured on the grounding data, the one
real-to-writer conversion, and the draft model it validates with."""

import json

import pytest
from pydantic import ValidationError
from support import TOP, XML_FILE
from synthtrials.tools.llm.client import grammar_schema
from synthtrials.tools.readers import read_trials
from synthtrials.tools.records.writer_format import DraftSpec, TrialDraft, _trial_sizes

TOP_FIELDS = ("phase", "conditions", "interventions", "eligibility")


@pytest.fixture(scope="module")
def phase1_train():
    return read_trials([TOP / "phase_I_train.csv"])


@pytest.fixture(scope="module")
def top_spec(phase1_train):
    return DraftSpec.from_trials(phase1_train)


def test_grounded_on_top_the_writer_writes_top_fields(top_spec):
    assert top_spec.fields == TOP_FIELDS
    assert top_spec.keys() == ("phase", "conditions", "interventions", "inclusion_criteria", "exclusion_criteria")
    # the critic accepts no trial without criteria: at least one inclusion criterion; 13.5% of the
    # grounding trials list no exclusion criterion, so that list may be empty
    assert (top_spec.bounds.min_inclusion, top_spec.bounds.min_exclusion) == (1, 0)


def test_grounded_on_full_records_the_writer_writes_the_full_record():
    spec = DraftSpec.from_trials(read_trials([XML_FILE]))
    assert {"title", "summary", "eligibility", "enrollment", "design", "primary_outcomes"} <= set(spec.fields)


def test_bounds_cover_95_percent_of_the_grounding_trials(top_spec, phase1_train):
    sizes = _trial_sizes(phase1_train)
    assert (sizes[:, 2] > 8).mean() > 0.5  # the old bound of 8 items cut most trials
    b = top_spec.bounds
    fits = [(s[0] <= b.conditions and s[1] <= b.interventions and s[2] <= b.criteria and s[3] <= b.condition_chars
             and s[4] <= b.criterion_chars and s[5] <= b.intervention_chars) for s in sizes]
    assert sum(fits) / len(fits) >= 0.95 and top_spec.coverage >= 0.95


def test_answer_of_a_real_trial_keeps_order_and_bounds(top_spec, phase1_train):
    trial = max(phase1_train, key=lambda t: len(t.eligibility.inclusion) if t.eligibility else 0)
    answer = top_spec.answer_of(trial)
    assert list(answer) == list(top_spec.keys())
    assert len(answer["inclusion_criteria"]) == min(len(trial.eligibility.inclusion), top_spec.bounds.criteria)
    assert answer["interventions"][0]["name"] == trial.interventions[0].name
    assert json.loads(top_spec.answer_json(trial)) == answer
    top_spec.model().model_validate(answer)  # a real trial is a valid draft of its own grounding's spec


def test_no_placeholder_is_invented(top_spec, phase1_train):
    bare = phase1_train[0].model_copy(update={"conditions": []})
    assert top_spec.answer_of(bare) is None


def test_terse_registry_criteria_are_valid(top_spec):
    draft = top_spec.model().model_validate({
        "phase": "phase 1", "conditions": ["Breast Cancer"], "interventions": [{"name": "trastuzumab"}],
        "inclusion_criteria": ["Age >= 18", "ECOG 0-1"], "exclusion_criteria": ["Pregnancy"]})
    trial = top_spec.to_trial(draft, "SYN-00ff", label=1, provenance={"seed": 1})
    assert trial.source == "synthetic" and trial.label == 1 and trial.intervention_names == ["trastuzumab"]
    assert trial.eligibility.exclusion == ["Pregnancy"] and trial.brief_title is None and trial.design is None


def test_lists_past_the_bound_are_cut_not_refused(top_spec):
    many = [f"criterion {i}" for i in range(top_spec.bounds.criteria + 5)]
    draft = top_spec.model().model_validate({
        "phase": "phase 1", "conditions": ["c"], "interventions": [{"name": "x"}],
        "inclusion_criteria": many, "exclusion_criteria": ["  ", "e"]})
    assert len(draft.inclusion_criteria) == top_spec.bounds.criteria and draft.exclusion_criteria == ["e"]
    with pytest.raises(ValidationError):
        top_spec.model().model_validate({"phase": "phase 9", "conditions": ["c"], "interventions": [{"name": "x"}],
                                         "inclusion_criteria": [], "exclusion_criteria": []})


def _walk(node, path=""):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}/{i}")


def test_schema_is_bounded_and_the_grammar_copy_drops_only_large_bounds(top_spec):
    schema = TrialDraft.model_json_schema()
    for path, node in _walk(schema):
        if node.get("type") == "array":
            assert "maxItems" in node, path
        if node.get("type") == "string" and "enum" not in node and "const" not in node:
            assert "maxLength" in node, path
    assert "overall_status" not in schema["properties"] and "label" not in schema["properties"]
    grammar = grammar_schema(top_spec.json_schema())
    criteria = grammar["properties"]["inclusion_criteria"]
    assert "maxItems" not in criteria and "maxLength" not in criteria["items"]  # would unroll into huge rules
    assert grammar["properties"]["interventions"]["maxItems"] == top_spec.bounds.interventions  # small bounds stay
