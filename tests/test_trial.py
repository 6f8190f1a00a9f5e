import json

import pytest
from pydantic import ValidationError

from synthtrials.tools.trial import (
    Eligibility, Intervention, Phase, Trial, TrialDraft, render_for_classifier, trial_draft_json_schema,
)


def full_trial(**overrides) -> Trial:
    data = dict(
        nct_id="NCT01234567", brief_title="Drug X in condition Y", phase=Phase.PHASE_2,
        conditions=["condition y"], interventions=[Intervention(name="drug x")],
        brief_summary="A study of drug x.", eligibility=Eligibility(inclusion=["adults"], exclusion=["pregnancy"]),
        enrollment=40, overall_status="Terminated", why_stopped="Sponsor decision: futility at interim",
        label=0, label_source="TOP", provenance={"reader": "test"},
    )
    data.update(overrides)
    return Trial(**data)


def test_rendering_never_contains_status_why_stopped_or_label():
    trial = full_trial()
    text = render_for_classifier(trial)
    assert "drug x" in text and "condition y" in text and "phase 2" in text
    for leaked in ("Terminated", "futility", "Sponsor decision", "label", "TOP", "NCT01234567", "reader"):
        assert leaked not in text
    # identical content with a different outcome renders identically
    other = full_trial(overall_status="Completed", why_stopped=None, label=1)
    assert render_for_classifier(other) == text


def test_rendering_puts_informative_fields_first():
    text = render_for_classifier(full_trial())
    assert text.index("Interventions") < text.index("Conditions") < text.index("Phase") < text.index("Inclusion")
    assert text.index("Inclusion") < text.index("Title") < text.index("Summary")


def test_real_and_synthetic_ids():
    with pytest.raises(ValidationError):
        full_trial(nct_id="12345")
    with pytest.raises(ValidationError):  # a synthetic trial can never carry a real-format id
        full_trial(source="synthetic", nct_id="NCT01234567")
    assert full_trial(source="synthetic", nct_id="SYN-0a1b2c3d").source == "synthetic"


def test_label_is_binary_or_none():
    with pytest.raises(ValidationError):
        full_trial(label=2)
    assert full_trial(label=None).label is None


def test_trial_json_round_trip():
    trial = full_trial()
    assert Trial.model_validate_json(trial.model_dump_json()) == trial
    schema = Trial.model_json_schema()
    assert schema["properties"]["phase"]["anyOf"][0]["$ref"].endswith("Phase")
    assert set(schema["$defs"]["Phase"]["enum"]) == {p.value for p in Phase}


def _walk(node, path=""):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}/{i}")


def test_llm_schema_is_tightly_bounded():
    schema = trial_draft_json_schema()
    for path, node in _walk(schema):
        if node.get("type") == "array":
            assert "maxItems" in node, path
        if node.get("type") == "string" and "enum" not in node and "const" not in node:
            assert "maxLength" in node, path
    assert "overall_status" not in schema["properties"] and "label" not in schema["properties"]
    json.dumps(schema)


def test_draft_to_trial_is_synthetic():
    draft = TrialDraft(
        brief_title="t", phase="phase 1", conditions=["c"], interventions=[{"name": "aspirin"}],
        brief_summary="s", inclusion_criteria=["i"], exclusion_criteria=["e"], enrollment=10,
        allocation="randomized", masking="none", primary_purpose="treatment", primary_outcomes=[{"measure": "m"}],
    )
    trial = draft.to_trial("SYN-00ff", label=1, provenance={"seed": 1})
    assert trial.source == "synthetic" and trial.label == 1 and trial.intervention_names == ["aspirin"]
    with pytest.raises(ValidationError):
        TrialDraft.model_validate({**draft.model_dump(), "conditions": ["c"] * 9})
