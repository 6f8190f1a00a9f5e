"""The embedded llama.cpp backend on the bundled SmolLM2 model: real generation, real cache."""

import json
import re
import sqlite3

import pytest
from langchain_core.messages import HumanMessage
from support import TOP
from synthtrials.agents.writer import pinned_conditions, pinned_interventions, write_draft, writer_json_schema
from synthtrials.tools.llm.client import (
    LLMClient,
    LLMConfig,
    LLMConfigError,
    LLMError,
    extract_json,
    resolve_gguf,
)
from synthtrials.tools.llm.backends import grammar_schema
from synthtrials.tools.readers import read_trials
from synthtrials.tools.records.trial import render_for_classifier
from synthtrials.tools.records.writer_format import DraftSpec


#: names of antibiotics and antibiotic classes, for answers to "Name one antibiotic."
ANTIBIOTIC = re.compile(r"cillin|cephalospor|ce(f|ph)[a-z]+|mycin|micin|cycline|floxacin|penem|sulfa|trimethoprim|"
                        r"vancomycin|linezolid|metronidazole|nitrofurantoin|rifamp", re.IGNORECASE)


@pytest.fixture(scope="module")
def top_spec() -> DraftSpec:
    """What the writer writes when grounded on TOP phase I train."""
    return DraftSpec.from_trials(read_trials([TOP / "phase_I_train.csv"]))


@pytest.fixture(scope="module")
def cached_client(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache") / "llm_cache.sqlite"
    return LLMClient(LLMConfig(max_tokens=600, cache_path=str(cache), repair_retries=2))


@pytest.mark.slow
def test_structured_trial_from_the_embedded_model(top_spec):
    """A schema-valid draft; the grammar holds SmolLM2 to the pinned drug and to the anchor's numbers of
    criteria."""
    client = LLMClient(LLMConfig(max_tokens=600))
    examples = [render_for_classifier(t)[:600] for t in read_trials([TOP / "phase_I_valid.csv"])[:2]]
    _, result = write_draft(client, top_spec, "metformin", 1, examples, [], [], seed=3, criteria=(3, 1))
    draft = result.value
    assert isinstance(draft, top_spec.model())
    assert draft.interventions[0].name == "metformin"  # pinned by the schema's grammar
    assert (len(draft.inclusion_criteria), len(draft.exclusion_criteria)) == (3, 1)
    assert 1 <= len(draft.conditions) <= top_spec.bounds.conditions
    trial = top_spec.to_trial(draft, "SYN-abc123", label=1, provenance={})
    assert trial.source == "synthetic" and trial.label == 1 and trial.interventions[0].name == "metformin"
    assert trial.brief_title is None  # TOP has no titles: the writer writes none
    usage = client.usage
    assert usage.prompt_tokens > 100 and usage.completion_tokens > 20


@pytest.mark.slow
def test_cache_makes_reruns_free_and_samples_distinct(cached_client):
    messages = [HumanMessage(content="Name one antibiotic. Answer in one word.")]
    first = cached_client.text(messages, seed=0)
    before = cached_client.usage
    again = cached_client.text(messages, seed=0)
    after = cached_client.usage
    assert again == first
    assert after.completion_tokens == before.completion_tokens  # the re-run cost nothing
    assert after.cached_calls == before.cached_calls + 1
    for i in range(1, 4):
        cached_client.text(messages, seed=i)
    with sqlite3.connect(cached_client.config.cache_path) as db:
        prompts = db.execute("SELECT llm FROM full_llm_cache WHERE prompt LIKE '%antibiotic%'").fetchall()
    assert len(prompts) == 4  # 4 samples, 4 entries (one seed each)


def test_writer_schema_pins_the_intervention(top_spec):
    schema = writer_json_schema(top_spec, "aspirin")
    assert schema["properties"]["interventions"]["prefixItems"][0]["properties"]["name"] == {"const": "aspirin"}
    grammar = grammar_schema(schema)  # llama.cpp's dialect: the pinned first item, then the rest
    options = grammar["properties"]["interventions"]["anyOf"]
    assert all(o["items"][0]["properties"]["name"] == {"const": "aspirin"} for o in options)


def test_writer_schema_asks_for_the_anchors_numbers_of_criteria_within_the_bounds(top_spec):
    """`--writer-criteria anchor`: each eligibility list gets exactly the anchor's number of items, no fewer
    than the spec's minimum (a draft has an inclusion criterion) and no more than its bound."""
    bounds = top_spec.bounds
    free = writer_json_schema(top_spec, "aspirin")["properties"]
    assert "maxItems" not in free["inclusion_criteria"] or free["inclusion_criteria"]["maxItems"] == bounds.criteria
    for asked, expected in (((7, 9), (7, 9)), ((0, 0), (bounds.min_inclusion, bounds.min_exclusion)),
                            ((500, 3), (bounds.criteria, 3))):
        properties = writer_json_schema(top_spec, "aspirin", criteria=asked)["properties"]
        for key, count in zip(("inclusion_criteria", "exclusion_criteria"), expected):
            assert (properties[key]["minItems"], properties[key]["maxItems"]) == (count, count)
        grammar = grammar_schema(writer_json_schema(top_spec, "aspirin", criteria=asked))
        assert grammar["properties"]["inclusion_criteria"]["minItems"] == expected[0]


def test_writer_schema_pins_the_anchors_conditions_and_phase_within_the_bounds(top_spec):
    """`--writer-conditions anchor`: the conditions are exactly the anchor's, in order, trimmed and capped as a
    real trial's answer is; the phase is the anchor's; the llama.cpp dialect keeps them as one fixed tuple."""
    bounds = top_spec.bounds
    long_name = "x" * (bounds.condition_chars + 40)
    conditions = ["Breast Cancer", "  ", long_name, *[f"condition {i}" for i in range(bounds.conditions + 3)]]
    pinned = pinned_conditions(top_spec, conditions)
    assert pinned[0] == "Breast Cancer" and len(pinned) == bounds.conditions
    assert all(c.strip() and len(c) <= bounds.condition_chars for c in pinned)
    schema = writer_json_schema(top_spec, "aspirin", conditions=conditions, phase="phase 1")
    prop = schema["properties"]["conditions"]
    assert [item["const"] for item in prop["prefixItems"]] == pinned
    assert prop["minItems"] == prop["maxItems"] == len(pinned) and prop["items"] is False
    assert schema["properties"]["phase"] == {"type": "string", "enum": ["phase 1"]}
    dialect = grammar_schema(schema)["properties"]["conditions"]
    assert dialect == {"anyOf": [{"type": "array", "items": [{"type": "string", "const": c} for c in pinned]}]}
    free = writer_json_schema(top_spec, "aspirin")["properties"]
    assert "prefixItems" not in free["conditions"] and "enum" not in free.get("phase", {})
    assert writer_json_schema(top_spec, "aspirin", conditions=[" "])["properties"]["conditions"] == free["conditions"]


def test_writer_schema_pins_the_anchors_interventions_drug_first_within_the_bounds(top_spec):
    """`--writer-interventions anchor`: the interventions are exactly the anchor's, the plan's drug first, names
    trimmed and the list capped as a real trial's answer is; none recorded (an older plan) pins only the drug."""
    bounds = top_spec.bounds
    anchor = [("metformin", "drug"), ("Placebo", "drug"), (" ", "drug"), ("x" * (bounds.intervention_chars + 9), "other"),
              *[(f"drug {i}", "drug") for i in range(bounds.interventions + 2)]]
    held = pinned_interventions(top_spec, "metformin", anchor)
    assert held[:2] == [("metformin", "drug"), ("Placebo", "drug")] and len(held) == bounds.interventions
    assert held[2] == ("x" * bounds.intervention_chars, "other")
    prop = writer_json_schema(top_spec, "metformin", interventions=anchor)["properties"]["interventions"]
    assert [(item["properties"]["name"]["const"], item["properties"]["type"]["const"]) for item in prop["prefixItems"]] == held
    assert prop["minItems"] == prop["maxItems"] == len(held) and prop["items"] is False
    dialect = grammar_schema({"properties": {"interventions": prop}})["properties"]["interventions"]
    assert len(dialect["anyOf"][0]["items"]) == len(held)
    free = writer_json_schema(top_spec, "metformin")["properties"]["interventions"]
    assert writer_json_schema(top_spec, "metformin", interventions=[])["properties"]["interventions"] == free
    assert free["items"] == {"$ref": "#/$defs/InterventionDraft"} and len(free["prefixItems"]) == 1


@pytest.mark.slow
def test_the_embedded_model_writes_the_anchors_conditions_phase_and_interventions(top_spec):
    """The grammar holds SmolLM2 to the anchor's conditions, phase and interventions; the rest is its own, and
    validates (two and one criteria asked, which keeps the unadapted model's answer short)."""
    client = LLMClient(LLMConfig(max_tokens=600))
    examples = [render_for_classifier(t)[:600] for t in read_trials([TOP / "phase_I_valid.csv"])[:2]]
    conditions = ["Type 2 Diabetes Mellitus", "Obesity"]
    interventions = [("metformin", "drug"), ("Placebo", "drug"), ("Exercise programme", "behavioral")]
    _, result = write_draft(client, top_spec, "metformin", 1, examples, [], [], seed=3, conditions=conditions,
                            phase="phase 1", pin=True, criteria=(2, 1), interventions=interventions)
    assert result.value.conditions == conditions and result.value.phase.value == "phase 1"
    assert [(i.name, i.type.value) for i in result.value.interventions] == interventions
    assert result.value.inclusion_criteria


@pytest.fixture(scope="module")
def small_window() -> LLMClient:
    """SmolLM2 in llama.cpp with a 512-token window and 128 answer tokens."""
    return LLMClient(LLMConfig(n_ctx=512, max_tokens=128))


def test_prompt_over_the_context_window_is_refused(small_window):
    client = small_window
    with pytest.raises(LLMError, match="exceeds the 512-token context window"):
        client.text([HumanMessage(content="word " * 2000)])


def test_model_file_errors(tmp_path):
    with pytest.raises(LLMConfigError, match="model file not found"):
        resolve_gguf(str(tmp_path / "absent.gguf"))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model")
    with pytest.raises(LLMConfigError, match="not a GGUF model file"):
        LLMClient(LLMConfig(model_path=str(fake)))
    assert resolve_gguf("smollm2").endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_extract_json_tolerates_fences_and_chatter():
    assert extract_json('```json\n{"a": 1}\n```') == {"a": 1}
    assert extract_json('Sure! {"a": "x\ny"} hope it helps') == {"a": "x\ny"}
    with pytest.raises(ValueError):
        extract_json("no json here")


def test_transformers_backend_on_the_bundled_gguf(smollm2_chat):
    """The transformers backend loads the same GGUF (dequantised) and answers through LangChain."""
    client = smollm2_chat  # LLMConfig(backend="transformers", model_path="smollm2", max_tokens=12, temperature=0)
    answer = client.text([HumanMessage(content="Name one antibiotic.")])
    assert ANTIBIOTIC.search(answer), answer  # greedy: the model's own answer names one (cephalosporins)
    assert client.usage.prompt_tokens > 5 and 0 < client.usage.completion_tokens <= 12


@pytest.mark.slow
def test_llm_try_cli_prints_a_synthetic_trial():
    import json

    from support import cli

    result = cli("llm", "try", "--intervention", "aspirin", "--label", "0", "--max-tokens", "700")
    assert result.returncode == 0, result.stderr
    trial = json.loads(result.stdout)
    assert trial["source"] == "synthetic" and trial["nct_id"].startswith("SYN-") and trial["label"] == 0
    assert trial["interventions"][0]["name"] == "aspirin"
    bad = cli("llm", "try", "--intervention", "aspirin", "--label", "3")
    assert bad.returncode == 2 and "--label must be 0 or 1" in bad.stderr


def test_a_repair_that_would_overflow_the_context_drops_the_invalid_answer(small_window):
    client = small_window
    prompt = [HumanMessage(content="word " * 250)]
    history = client._repair_history(prompt, "x " * 400, "not JSON")
    assert len(history) == 2 and "not JSON" in history[-1].content  # the answer itself would not fit
    assert client.message_tokens(history) + 128 <= 512
    short = client._repair_history(prompt, "{}", "not JSON")
    assert len(short) == 3 and short[1].content == "{}"  # it fits: the model sees what it wrote
    assert client._repair_history([HumanMessage(content="word " * 395)], "{}", "bad") is None  # only a fresh try


@pytest.mark.slow
def test_an_answer_cut_at_its_token_limit_keeps_its_whole_items(tmp_path):
    """A grammar-constrained answer that runs past `max_tokens` is closed after its last whole list
    item (counted in `closed_at_limit`), not sent back for a repair."""
    from pydantic import BaseModel, Field

    class Criteria(BaseModel):
        criteria: list[str] = Field(min_length=1)

    client = LLMClient(LLMConfig(max_tokens=80, temperature=0.0, repair_retries=0))
    # the grammar asks for forty items, which 80 tokens cannot hold; validation asks for one
    constraint = Criteria.model_json_schema()
    constraint["properties"]["criteria"]["minItems"] = 40
    prompt = "List the eligibility criteria of a phase 1 trial of metformin in type 2 diabetes, one short line each."
    result = client.structured([HumanMessage(content=prompt)], Criteria, seed=0, json_schema=constraint)
    with pytest.raises(ValueError):
        extract_json(result.raw)  # the answer itself was cut
    assert client.usage.closed_at_limit == 1 and client.usage.repairs == 0 and result.attempts == 1
    assert 1 <= len(result.value.criteria) < 40
    assert all(json.dumps(c, ensure_ascii=False) in result.raw for c in result.value.criteria)
