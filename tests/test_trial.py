
import pytest
from pydantic import ValidationError
from synthtrials.tools.records.trial import (
    Eligibility,
    Intervention,
    Phase,
    Trial,
    render_for_classifier,
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


def test_rendering_with_a_field_set_shows_only_those_fields():
    trial = full_trial(interventions=[Intervention(name="drug x", description="oral tablet")])
    top_like = render_for_classifier(trial, ("interventions", "conditions", "phase", "eligibility"))
    assert "drug x (drug)" in top_like and "Inclusion criteria: - adults" in top_like
    for absent in ("Title", "Summary", "Enrollment", "oral tablet"):
        assert absent not in top_like
    assert "oral tablet" in render_for_classifier(trial)


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
