"""The typed provenance (`SyntheticProvenance`): the contract between generation and evaluation. Old run
folders still read; the leakage guard checks every real trial a provenance names, imported trials included."""

import pytest
from synthtrials.evals.leakage import guard, has_provenance, named_grounding
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.records.provenance import SyntheticProvenance
from synthtrials.tools.records.trial import Intervention, Trial


def synthetic(provenance: dict) -> Trial:
    return Trial(nct_id="SYN-0000000a", source="synthetic", label=1, conditions=["Asthma"],
                 interventions=[Intervention(name="budesonide")], provenance=provenance)


def test_a_generated_provenance_round_trips_typed():
    provenance = SyntheticProvenance(run_id="r1", plan_index=4, examples=["NCT1", "NCT2"], neighbours=["NCT2"],
                                     critic_neighbours=["NCT3"], anchor="NCT9", templates={"writer": "writer@abc"},
                                     seed=7, reject_reasons=[])
    again = SyntheticProvenance.of(synthetic(provenance.dump()))
    assert again == provenance
    assert again.real_ids() == {"NCT1", "NCT2", "NCT3", "NCT9"} and again.names_grounding()


def test_older_run_folders_still_read():
    """`llm try` wrote `template` (one string); finalize joined reject reasons with commas."""
    old = SyntheticProvenance.of(synthetic({"backend": "llamacpp", "model": "m", "template": "writer@1", "seed": 0,
                                            "attempts": 1}))
    assert old.templates == {"writer": "writer@1"} and old.attempts == 1
    rejected = SyntheticProvenance.model_validate({"examples": ["NCT1"], "reject_reason": "typicality,coherence"})
    assert rejected.reject_reasons == ["typicality", "coherence"]
    newer = SyntheticProvenance.of(synthetic({"examples": [], "a_field_of_a_later_version": 3}))
    assert newer.dump()["a_field_of_a_later_version"] == 3  # kept, not dropped


def test_real_trial_provenance_is_not_synthetic_provenance():
    real = Trial(nct_id="NCT00000001", source="real", provenance={"reader": "top_csv", "file": "x.csv", "row": 2})
    assert SyntheticProvenance.of(real) is None and not has_provenance(real)
    assert not has_provenance(synthetic({}))
    assert has_provenance(synthetic({"examples": []}))  # `llm try`: nothing real grounded it, and it says so


def test_an_imported_trial_that_names_a_held_out_trial_is_refused():
    """Unknown grounding no longer hides the ids a provenance does list."""
    imported = synthetic({"grounding": "unknown", "imported_from": "seed-paper", "examples": ["NCT-TEST-1"]})
    clean = synthetic({"grounding": "unknown", "imported_from": "seed-paper"})
    assert named_grounding([imported, clean], None) == [{"NCT-TEST-1"}, set()]
    with pytest.raises(ConfigError) as error:
        guard([clean, imported], "seed.jsonl", {"test set": {"NCT-TEST-1"}})
    assert "1 synthetic trials were grounded on trials of the test set" in str(error.value)
    assert "NCT-TEST-1" in str(error.value)
    report = guard([clean], "seed.jsonl", {"test set": {"NCT-TEST-1"}})
    assert report.unknown_grounding == 1 and report.warnings
