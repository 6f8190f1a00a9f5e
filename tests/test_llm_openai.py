"""ChatOpenAI end to end against real llama.cpp servers on 127.0.0.1, and our retry/error paths
against a scripted OpenAI-compatible server (control flow only)."""

import time

import pytest
from fake_openai import FakeOpenAIServer, Fault
from langchain_core.messages import HumanMessage
from support import TOP, LlamaServer, free_port
from synthtrials.agents.writer import write_draft
from synthtrials.tools.llm.client import (
    LLMClient,
    LLMConfig,
    LLMConfigError,
    LLMError,
    StructuredOutputError,
)
from synthtrials.tools.readers import read_trials
from synthtrials.tools.records.writer_format import DraftSpec, TrialDraft
from synthtrials.tools.seeds import llm_seed

SECRET = "sk-test-DO-NOT-LEAK-4f2a9c"


@pytest.fixture(scope="module")
def llama_server():
    server = LlamaServer(api_key=SECRET).wait()
    yield server
    server.stop()


def openai_config(base_url: str, **kw) -> LLMConfig:
    return LLMConfig(backend="openai", model="smollm2", base_url=base_url, api_key_env="SYNTH_TEST_KEY", **kw)


@pytest.mark.slow
def test_chat_openai_structured_trial_through_a_real_server(llama_server, monkeypatch, tmp_path):
    monkeypatch.setenv("SYNTH_TEST_KEY", SECRET)
    config = openai_config(llama_server.base_url, structured="json_object_schema", max_tokens=600,
                           cache_path=str(tmp_path / "cache.sqlite"))
    client = LLMClient(config)
    spec = DraftSpec.from_trials(read_trials([TOP / "phase_I_train.csv"]))
    _, result = write_draft(client, spec, "ibuprofen", 0, [], [], [])
    assert isinstance(result.value, spec.model())
    assert result.value.interventions[0].name == "ibuprofen"
    assert client.usage.prompt_tokens > 50 and client.usage.completion_tokens > 10
    before = client.usage
    question = [HumanMessage(content="Name one antibiotic. Answer in one word.")]
    answer = client.text(question, temperature=0)
    answered = client.usage
    assert answer.strip() and 0 < answered.completion_tokens - before.completion_tokens <= 600
    # the same call again comes from the LLM cache through ChatOpenAI: the same answer, no new tokens
    assert client.text(question, temperature=0) == answer
    assert client.usage.completion_tokens == answered.completion_tokens
    assert client.usage.cached_calls == answered.cached_calls + 1
    # the key is never written to disk: not in the cache
    assert SECRET.encode() not in (tmp_path / "cache.sqlite").read_bytes()


@pytest.mark.slow
def test_bad_api_key_is_a_fatal_one_line_error(llama_server, monkeypatch):
    monkeypatch.setenv("SYNTH_TEST_KEY", "sk-wrong")
    client = LLMClient(openai_config(llama_server.base_url, max_retries=0))
    with pytest.raises(LLMConfigError, match="was refused \\(HTTP 401\\)") as info:
        client.text([HumanMessage(content="hi")])
    assert info.value.fatal and "sk-wrong" not in str(info.value)


def test_unreachable_server_fails_fast():
    client = LLMClient(openai_config(f"http://127.0.0.1:{free_port()}/v1", max_retries=1, timeout_s=2))
    start = time.monotonic()
    with pytest.raises(LLMError, match="cannot reach the server"):
        client.text([HumanMessage(content="hi")])
    assert time.monotonic() - start < 30


def test_retry_after_is_honoured_then_success():
    with FakeOpenAIServer(default_content="fine") as server:
        server.faults.extend([Fault(status=429, headers={"Retry-After": "1"}), Fault(status=500)])
        client = LLMClient(openai_config(server.base_url, max_retries=3))
        start = time.monotonic()
        assert client.text([HumanMessage(content="hi")]) == "fine"
        assert time.monotonic() - start >= 1.0  # waited as the server asked
        assert len(server.requests) == 3


def test_timeout_is_retried_then_reported():
    with FakeOpenAIServer(default_content="late", delay_s=3) as server:
        client = LLMClient(openai_config(server.base_url, max_retries=1, timeout_s=0.5))
        with pytest.raises(LLMError, match="no answer within 0.5 s"):
            client.text([HumanMessage(content="hi")])
        assert len(server.requests) == 2 and client.usage.failures == 1


def test_wrong_model_name_is_fatal():
    with FakeOpenAIServer() as server:
        server.faults.append(Fault(status=404))
        client = LLMClient(openai_config(server.base_url, max_retries=0))
        with pytest.raises(LLMConfigError, match="model 'smollm2' not found"):
            client.text([HumanMessage(content="hi")])


def test_non_json_answer_gets_one_repair_then_is_counted():
    good = ('{"brief_title": "A trial", "phase": "phase 2", "conditions": ["asthma"], "interventions": '
            '[{"name": "budesonide"}], "brief_summary": "s", "inclusion_criteria": ["adults"], '
            '"exclusion_criteria": ["smokers"], "enrollment": 40, "allocation": "randomized", "masking": "double", '
            '"primary_purpose": "treatment", "primary_outcomes": [{"measure": "FEV1"}]}')
    with FakeOpenAIServer() as server:
        server.faults.extend([Fault(content="I cannot answer in JSON, sorry."), Fault(content=good)])
        client = LLMClient(openai_config(server.base_url, max_retries=0))
        result = client.structured([HumanMessage(content="write")], TrialDraft)
        assert result.attempts == 2 and result.value.conditions == ["asthma"]
        assert "not valid" in server.requests[1]["messages"][-1]["content"]
        assert server.requests[0]["response_format"]["type"] == "json_schema"
        server.faults.extend([Fault(content="{not json"), Fault(content='{"brief_title": "only"}')])
        with pytest.raises(StructuredOutputError, match="no valid TrialDraft after 2 attempts"):
            client.structured([HumanMessage(content="write")], TrialDraft)
        assert client.usage.failures == 1 and client.usage.repairs == 2


def test_half_a_character_in_an_answer_is_dropped():
    """A model that cuts a character in two writes a lone surrogate escape ("\\ud83d" without its pair); the
    parsed draft must not hold it (no tokenizer, SQLite or parquet writer takes it: a generation run crashed on it
    in the critic's encoder), while a whole character (a pair) stays."""
    answer = ('{"brief_title": "A trial \\ud83d\\ude00", "phase": "phase 2", "conditions": ["asthma"], '
              '"interventions": [{"name": "budesonide"}], "brief_summary": "s", '
              '"inclusion_criteria": ["\\ud83d by 80% of baseline"], "exclusion_criteria": ["smokers \\udc00"], '
              '"enrollment": 40, "allocation": "randomized", "masking": "double", "primary_purpose": "treatment", '
              '"primary_outcomes": [{"measure": "FEV1"}]}')
    with FakeOpenAIServer() as server:
        server.faults.extend([Fault(content=answer), Fault(content="half \ud83d of it")])
        client = LLMClient(openai_config(server.base_url, max_retries=0))
        draft = client.structured([HumanMessage(content="write")], TrialDraft).value
        assert draft.inclusion_criteria == ["by 80% of baseline"] and draft.exclusion_criteria == ["smokers"]
        assert draft.brief_title == "A trial \U0001F600"  # the pair is one character: kept
        assert all(text.encode("utf-8") for text in draft.inclusion_criteria + draft.exclusion_criteria)
        assert client.text([HumanMessage(content="hi")]) == "half  of it"  # sent as the escape in the server's JSON


def test_sampled_calls_carry_distinct_seeds():
    """Each call carries the seed its node derived from the run seed (`tools.seeds.llm_seed`)."""
    seeds = [llm_seed(100, "writer", index) for index in range(3)]
    with FakeOpenAIServer() as server:
        client = LLMClient(openai_config(server.base_url))
        for seed in seeds:
            client.text([HumanMessage(content="hi")], seed=seed)
        assert [r["seed"] for r in server.requests] == seeds and len(set(seeds)) == 3


def test_missing_api_key_for_hosted_openai(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMConfigError, match="set OPENAI_API_KEY"):
        LLMClient(LLMConfig(backend="openai"))
