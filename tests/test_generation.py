"""The generation graph: a real run with an adapted embedded model through llama.cpp, and the
runner's control flow (resume, config refusal, bad input) against a scripted OpenAI-compatible
server (control flow only: it says nothing about generation quality).

`generate` runs in this process (`support.cli`: the same command line, without a new interpreter
loading torch and MiniLM each time); one exit-code test runs the real console entry point in a
subprocess, as does the SIGKILL test in test_reliability."""

import json
import runpy
import sys

from fake_openai import FakeOpenAIServer, Fault, scripted_trial_answer
from support import cli, run_cli
from synthtrials.graphs.config import GenerationConfig
from synthtrials.graphs.context import RunContext
from synthtrials.graphs.generation import build_graph
from synthtrials.graphs.resolve import settle_generation
from synthtrials.graphs.resources import Resources
from synthtrials.graphs.runner import adapted_writer_client
from synthtrials.graphs.state import GenerationState, Target
from synthtrials.tools.llm.client import LLMClient
from synthtrials.tools.records.eligibility import first_drug
from synthtrials.tools.store.protocol import (
    TrialFilter,
    eligible,
)
from synthtrials.tools.store.trial_store import open_store


def test_adapted_writer_generates_through_llama_cpp(phase1_store_path, tiny_adapter):
    """The embedded model adapted on a handful of grounding trials for a few steps (the session's
    adapter, `tiny_adapter`), then the graph run with the adapter in llama.cpp (the reasoner and
    critic keep the base model)."""
    from synthtrials.agents.writer import ADAPTED_EXAMPLES, adapted_writer_messages
    from synthtrials.tools.llm.adapter_folder import adapter_sha256

    adapter, info = tiny_adapter
    store = open_store(phase1_store_path, create=False)
    assert info.complete and info.steps == 2 and len(info.trained_on) == 4 and info.gguf
    train_ids = set(store.filter_ids(TrialFilter(splits=frozenset({"train"}))))
    assert set(info.trained_on) <= train_ids  # never a test trial
    assert info.loss and info.tokens > 0 and info.splits == ["train"]
    config = GenerationConfig(max_revisions=0, reasoner="evidence", llm_critic="off",
                              writer_adapter=str(adapter), writer_adapter_sha256=adapter_sha256(adapter))
    assert config.k == 3 > ADAPTED_EXAMPLES  # the default: more examples than the adapted prompt shows
    # the adapter's own prompt budget settles by default; a run may give its writer a longer one
    assert settle_generation(config, store).writer_prompt_tokens == info.options["prompt_tokens"] == 256
    config = config.model_copy(update={"writer_prompt_tokens": 400})
    base = LLMClient(config.llm)
    writer = adapted_writer_client(config)
    assert writer is not None and writer.config.n_ctx >= 400 + (info.answer_tokens or 384)
    graph = build_graph(Resources(store=store, llm=base, writer_llm=writer))
    context = RunContext(generation=settle_generation(config, store), run_id="test")
    assert context.generation.writer_prompt_tokens == 400
    drug = eligible(store, k=1, flt=TrialFilter(splits=frozenset({"train"})))[0].intervention
    state = GenerationState.model_validate(graph.invoke(
        GenerationState(target=Target(index=0, intervention=drug, label=1)), context=context))
    nodes = [s.node for s in state.log]
    assert nodes == ["retrieve", "reason", "write", "critique", "finalize"]
    write = state.log[2]
    assert write.prompt.startswith("You write ClinicalTrials.gov registry entries") and f"Drug: {drug}" in write.prompt
    # the examples were trimmed to the run's budget, not to the adapter's 256 tokens
    prompt_tokens = writer.message_tokens(adapted_writer_messages(
        drug, 1, state.example_texts, state.reasons, [], writer.message_tokens, 400))
    assert 256 < prompt_tokens <= 400
    # the writer wrote once, plus once more with the grammar where a free answer did not fit and once more
    # per repair prompt (a 2-step adapter can run to its token limit); evidence reasons and no LLM critic:
    # the base model was never called
    usage = writer.usage
    assert usage.calls == 1 + usage.grammar_fallbacks + usage.repairs and base.usage.calls == 0
    assert state.reasons_source == "evidence" and state.reasons
    assert all(e in train_ids for e in state.examples)
    # the retriever drew only what the adapted prompt shows, so provenance lists no example the writer never saw
    assert 1 <= len(state.examples) == len(state.example_texts) <= ADAPTED_EXAMPLES
    # the grammar pins the schema and the drug: the adapted writer's answer is always a draft
    assert state.draft is not None and "error" not in write.wrote
    assert state.draft.interventions[0].name == drug and state.draft.source == "synthetic"
    assert state.draft.label == 1 and state.draft.nct_id.startswith("SYN-")
    last = state.critiques[-1]
    assert len(state.critiques) == 1 and state.revision == 0  # no revisions allowed: one critique decides
    assert state.verdict in ("accept", "reject")
    assert (state.verdict == "accept") == (not last.failed_checks)  # the gate decides, nothing else
    if state.verdict == "reject":
        assert state.reject_reasons == last.failed_checks
    # a cached answer of the base model is never returned for the adapted one: the adapter is in the key
    assert writer.model._identifying_params["adapter_sha256"] == config.writer_adapter_sha256
    assert base.model._identifying_params["adapter_sha256"] is None


def _generate_args(store, out, server, n=6, extra=()):
    return ["generate", "--store", str(store), "--n", str(n), "--out", str(out), "--backend", "openai",
            "--model", "scripted", "--base-url", server.base_url, "--concurrency", "2", "--max-retries", "1",
            "--timeout", "10", *extra]


def _accepted(out):
    rows = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    return [r["nct_id"] for r in rows], rows


def test_finished_run_is_not_redone(phase1_store_path, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer(responder=scripted_trial_answer) as server:
        assert cli(*_generate_args(phase1_store_path, out, server, n=3)).returncode == 0
    ids, rows = _accepted(out)
    assert len(set(ids)) == 3 and all(i.startswith("SYN-") for i in ids)
    plan = json.loads((out / "plan.json").read_text())
    grounding = json.loads((out / "grounding.json").read_text())
    assert plan["mode"] == "anchored" and grounding["plan"] == "anchored"  # the default plan
    store = open_store(phase1_store_path, create=False)
    for row in rows:
        target = plan["targets"][row["provenance"]["plan_index"]]
        assert row["label"] == target["label"] and row["interventions"][0]["name"] == target["intervention"]
        assert row["provenance"]["examples"] and row["provenance"]["templates"]["writer"] == "writer-v3"
        # each trial is modelled on a real train trial: its drug and label, never shown to the writer
        anchor = store.get(row["provenance"]["anchor"])
        assert anchor.nct_id == target["anchor"] and anchor.nct_id in grounding["anchor_ids"]
        assert (first_drug(anchor), anchor.label) == (target["intervention"], target["label"])
        assert anchor.nct_id not in row["provenance"]["examples"]
        assert all(store.get(e).label == anchor.label for e in row["provenance"]["examples"])
    store.close()
    first = json.loads((out / "summary.json").read_text())
    with FakeOpenAIServer(responder=scripted_trial_answer) as server:  # another port: still the same run
        again = cli(*_generate_args(phase1_store_path, out, server, n=3))
        assert again.returncode == 0 and len(server.requests) == 0
    assert _accepted(out)[0] == ids
    # the summary counts time and tokens over both sessions: a resume never inflates accepted/min
    summary = json.loads((out / "summary.json").read_text())
    assert first["sessions"] == 1 and summary["sessions"] == 2
    assert summary["seconds"] >= first["seconds"] > 0 and summary["accepted_per_minute"] <= first["accepted_per_minute"]
    assert summary["tokens"]["calls"] == first["tokens"]["calls"] > 0
    assert summary["tokens"]["total_tokens"] == first["tokens"]["total_tokens"]
    import pyarrow.parquet as pq

    assert pq.read_table(out / "trials.parquet").num_rows == 3


def test_example_scripts_invoke_and_stream(phase1_store_path, monkeypatch, capsys):
    """Both example scripts run as `python -m` runs them (`__main__`, their own argument parser), here in
    this process; the same seeded draw gives the same verdict through `invoke` and through `stream`."""
    printed = {}
    with FakeOpenAIServer(responder=scripted_trial_answer) as server:
        for script in ("invoke_graph", "stream_graph"):
            monkeypatch.setattr(sys, "argv", [script, "--store", str(phase1_store_path), "--intervention", "sorafenib",
                                              "--label", "0", "--backend", "openai", "--model", "scripted",
                                              "--base-url", server.base_url])
            runpy.run_module(f"synthtrials.scripts.{script}", run_name="__main__")
            printed[script] = capsys.readouterr().out
    invoked = json.loads(printed["invoke_graph"])
    assert invoked["verdict"] in ("accept", "reject") and invoked["trial"] is not None  # the scripted writer always drafts
    trial = invoked["trial"]
    assert trial["interventions"][0]["name"] == "sorafenib" and trial["label"] == 0 and trial["source"] == "synthetic"
    assert (invoked["reasons"] == []) == (invoked["verdict"] == "accept")
    streamed = [line for line in printed["stream_graph"].splitlines() if line.startswith("[")]
    nodes = [line[1:line.index("]")] for line in streamed]
    assert nodes[:3] == ["retrieve", "reason", "write"] and nodes[-2:] == ["critique", "finalize"]
    assert set(nodes[3:-1]) <= {"write", "critique"} and nodes[3] == "critique"  # revisions: back to the writer
    final = streamed[-1]
    assert f"'verdict': '{invoked['verdict']}'" in final  # the same draw: the same decision both ways


def test_trace_lists_steps(phase1_store_path, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer(responder=scripted_trial_answer) as server:
        assert cli(*_generate_args(phase1_store_path, out, server, n=2)).returncode == 0
    listing = json.loads(cli("trace", str(out), "--json").stdout)
    assert listing and listing[0]["thread_id"] == "trial-000000"
    trace = json.loads(cli("trace", str(out), "0", "--json").stdout)
    nodes = [s["node"] for s in trace["steps"]]
    assert nodes[0] == "retrieve" and "write" in nodes and nodes[-1] == "finalize"
    write = next(s for s in trace["steps"] if s["node"] == "write")
    assert write["prompt"] and write["answer"] and write["seconds"] >= 0
    by_id = json.loads(cli("trace", str(out), trace["trial_id"], "--json").stdout)
    assert by_id["plan_index"] == 0
    text = cli("trace", str(out), "0")
    assert "retrieve" in text.stdout and "critique" in text.stdout


def test_run_folder_with_another_config_is_refused(phase1_store_path, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer(responder=scripted_trial_answer) as server:
        assert cli(*_generate_args(phase1_store_path, out, server, n=2)).returncode == 0
        before = (out / "trials.jsonl").read_text()
        refused = cli(*_generate_args(phase1_store_path, out, server, n=2, extra=("--k", "4")))
        assert refused.returncode == 2 and "different configuration (generation.k)" in refused.stderr
        assert (out / "trials.jsonl").read_text() == before  # nothing lost
        forced = cli(*_generate_args(phase1_store_path, out, server, n=2, extra=("--k", "4", "--force")))
        assert forced.returncode == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1 and (aside[0] / "trials.jsonl").read_text() == before


def _pinned(requests: list[dict], field: str = "conditions") -> set[bool]:
    """For each writer request (its schema has the draft's conditions): whether the schema fixes them (or the
    draft's `field`: a fixed list admits no item beyond its prefix)."""
    def schemas(node):
        if isinstance(node, dict):
            if "conditions" in node.get("properties", {}):
                yield node
            for value in node.values():
                yield from schemas(value)
        elif isinstance(node, list):
            for value in node:
                yield from schemas(value)

    return {schema["properties"][field].get("items", True) is False for r in requests for schema in schemas(r)}


def test_a_run_folder_older_than_a_setting_resumes_when_the_run_asks_what_it_did(phase1_store_path, tmp_path):
    """A folder written before the sampler settings joined the fingerprint (writer_sampling,
    repeat_penalty, dry_multiplier, writer_criteria, writer_conditions, writer_interventions, writer_prompt_tokens) resumes when the run asks for what that
    version did; where today's default differs (writer_conditions and writer_interventions: `auto` pins an anchored
    plan's conditions and interventions, the older version left them free) the refusal says which value resumes it, and the resumed run keeps it; it is
    still refused for a setting it recorded otherwise."""
    out = tmp_path / "run"
    record = out / "run.json"
    with FakeOpenAIServer(responder=scripted_trial_answer) as server:
        assert cli(*_generate_args(phase1_store_path, out, server, n=2)).returncode == 0
        first_run = len(server.requests)
        before = (out / "trials.jsonl").read_text()
        saved = json.loads(record.read_text())
        for fingerprint in (saved["fingerprint"], saved["settled"]):  # as the older version wrote them
            generation = fingerprint.get("generation", fingerprint)
            generation.pop("writer_sampling")
            generation.pop("writer_criteria")
            generation.pop("writer_conditions")
            generation.pop("writer_interventions")
            generation.pop("writer_prompt_tokens")
            generation["llm"].pop("repeat_penalty")
            generation["llm"].pop("dry_multiplier")
        record.write_text(json.dumps(saved))
        today = cli(*_generate_args(phase1_store_path, out, server, n=3))
        assert today.returncode == 2
        said = " ".join(today.stderr.split())  # the console wraps long lines
        assert "different configuration (generation.writer_conditions, generation.writer_interventions;" in said
        assert "as generation.writer_conditions = free" in said and "as generation.writer_interventions = free" in said
        free = ("--writer-conditions", "free", "--writer-interventions", "free")
        resumed = cli(*_generate_args(phase1_store_path, out, server, n=3, extra=free))
        assert resumed.returncode == 0, resumed.stderr
        assert (out / "trials.jsonl").read_text().startswith(before) and len(_accepted(out)[0]) == 3
        assert _pinned(server.requests[:first_run]) == {True}  # today's default pins them
        assert _pinned(server.requests[first_run:]) == {False}  # the resumed run does not
        assert _pinned(server.requests[:first_run], "interventions") == {True}
        assert _pinned(server.requests[first_run:], "interventions") == {False}
        saved["fingerprint"]["generation"]["k"] = 4  # a setting the folder has, recorded otherwise
        record.write_text(json.dumps(saved))
        refused = cli(*_generate_args(phase1_store_path, out, server, n=3, extra=free))
        assert refused.returncode == 2 and "different configuration (generation.k)" in refused.stderr


def test_bad_generate_inputs(phase1_store_path, tmp_path):
    with FakeOpenAIServer(responder=scripted_trial_answer) as server:
        # the console entry point in its own process: the exit status the shell sees
        zero = run_cli(*_generate_args(phase1_store_path, tmp_path / "a", server, n=0))
        assert zero.returncode == 2 and "--n must be positive" in zero.stderr
        high_k = cli(*_generate_args(phase1_store_path, tmp_path / "b", server, extra=("--k", "10", "--plan",
                                                                                      "contrastive")))
        assert high_k.returncode == 2 and "no intervention has 10 successful" in high_k.stderr
        empty = tmp_path / "empty_store"
        open_store(empty).close()
        no_trials = cli(*_generate_args(empty, tmp_path / "c", server))
        assert no_trials.returncode == 2 and "store is empty" in no_trials.stderr
        counts = cli(*_generate_args(phase1_store_path, tmp_path / "d", server,
                                     extra=("--writer-criteria", "anchor", "--plan", "contrastive")))
        assert counts.returncode == 2 and "--writer-criteria anchor needs an anchored plan" in counts.stderr
        assert not (tmp_path / "d").exists()
        pinned = cli(*_generate_args(phase1_store_path, tmp_path / "e", server,
                                     extra=("--writer-conditions", "anchor", "--plan", "contrastive")))
        assert pinned.returncode == 2 and "--writer-conditions anchor needs an anchored plan" in pinned.stderr
        assert not (tmp_path / "e").exists()
        combination = cli(*_generate_args(phase1_store_path, tmp_path / "f", server,
                                          extra=("--writer-interventions", "anchor", "--plan", "contrastive")))
        assert combination.returncode == 2 and "--writer-interventions anchor needs an anchored plan" in combination.stderr
        assert not (tmp_path / "f").exists()
        budget = cli(*_generate_args(phase1_store_path, tmp_path / "g", server, extra=("--writer-prompt-tokens", "512")))
        assert budget.returncode == 2 and "--writer-prompt-tokens sets an adapted writer's prompt budget" in budget.stderr
        assert not (tmp_path / "g").exists()
        tiny = cli(*_generate_args(phase1_store_path, tmp_path / "h", server, extra=("--writer-prompt-tokens", "16")))
        assert tiny.returncode == 2 and "writer_prompt_tokens" in tiny.stderr and not (tmp_path / "h").exists()
    for result in (zero, high_k, no_trials, counts, pinned, combination, budget, tiny):
        assert "Traceback" not in result.stderr


def test_backend_failing_every_call_stops_cleanly(phase1_store_path, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer(responder=scripted_trial_answer) as server:
        server.faults.extend([Fault(status=500)] * 200)
        result = cli(*_generate_args(phase1_store_path, out, server, n=2))
    assert result.returncode == 2 and "generation stopped" in result.stderr and "HTTP 500" in result.stderr
    assert "Traceback" not in result.stderr
    assert (out / "run.json").exists() and json.loads((out / "summary.json").read_text())["complete"] is False


def test_a_ground_sample_grounds_everything_on_the_same_stratified_subset(phase1_store_path, tmp_path):
    """`--ground-sample 0.25`: plan, examples and the critic read a seeded, label-stratified quarter of train,
    recorded in grounding.json; `adapt` with the same option and seed samples the same trials."""
    from synthtrials.graphs.resolve import settle_ground_sample

    store = open_store(phase1_store_path, create=False)
    train = store.filter(TrialFilter(source="real", splits=frozenset({"train"})))
    sample = settle_ground_sample(store, ["train"], 0.25, seed=0)
    assert sample == settle_ground_sample(store, ["train"], 0.25, seed=0) != settle_ground_sample(store, ["train"], 0.25, 1)
    for label in (0, 1):
        of_label = [t.nct_id for t in train if t.label == label]
        assert abs(sum(i in sample for i in of_label) - 0.25 * len(of_label)) <= 1  # stratified by label
    out = tmp_path / "run"
    with FakeOpenAIServer(responder=scripted_trial_answer) as server:
        result = cli(*_generate_args(phase1_store_path, out, server, n=2, extra=["--ground-sample", "0.25"]))
        assert result.returncode == 0, result.stderr
        bad = cli(*_generate_args(phase1_store_path, tmp_path / "bad", server, n=2, extra=["--ground-sample", "1.5"]))
    assert bad.returncode == 2 and "ground_sample" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()
    grounding = json.loads((out / "grounding.json").read_text())
    assert grounding["ground_sample"] == 0.25 and sorted(grounding["trial_ids"]) == sample
    assert set(grounding["anchor_ids"]) <= set(sample)
    for row in _accepted(out)[1]:
        provenance = row["provenance"]
        assert provenance["anchor"] in sample and set(provenance["examples"]) <= set(sample)
        assert set(provenance["critic_neighbours"]) <= set(sample)
    store.close()


def test_a_run_with_its_trials_stops_the_draws_in_flight_and_a_longer_run_resumes_them(phase1_store_path, tmp_path):
    """Once the first n trials in plan order are accepted, the draws still in flight cannot change them:
    the run stops them at their current call instead of waiting for their last revision, records how
    many it stopped, and a run resumed with a larger --n continues them from their checkpoints.
    Draw 0's writer is answered at once; the other draw's writer gets invalid answers after a delay, so
    it is still revising when draw 0 is accepted. Of its 3 slots the run fills 2: with nothing accepted
    yet, two draws in flight are expected to bring its one trial (`more_draws_needed`)."""
    import time

    from synthtrials.tools.seeds import llm_seed

    first_draw = {llm_seed(0, "writer", 0, revision) for revision in range(6)}

    def slow_but_for_draw_0(payload):
        name = ((payload.get("response_format") or {}).get("json_schema") or {}).get("name", "")
        if name in ("Reasons", "CriticJudgement") or payload.get("seed") in first_draw:
            return scripted_trial_answer(payload)
        time.sleep(3)
        return "not a trial"

    out = tmp_path / "run"
    with FakeOpenAIServer(responder=slow_but_for_draw_0) as server:
        result = cli(*_generate_args(phase1_store_path, out, server, n=1, extra=["--concurrency", "3"]))
        assert result.returncode == 0, result.stderr
        held = [r for r in server.requests if r.get("seed") not in first_draw
                and ((r.get("response_format") or {}).get("json_schema") or {}).get("name") not in ("Reasons", "CriticJudgement")]
    summary = json.loads((out / "summary.json").read_text())
    ids, rows = _accepted(out)
    assert len(ids) == 1 and rows[0]["provenance"]["plan_index"] == 0
    assert summary["complete"] and summary["draws"] == 1 and summary["stopped_draws"] == 1
    assert summary["tokens"]["failures"] == 0  # a stopped call is not a failed one
    assert held  # the other draw had asked for its draft: it was in flight
    with FakeOpenAIServer(responder=scripted_trial_answer) as server:
        again = cli(*_generate_args(phase1_store_path, out, server, n=3, extra=["--concurrency", "3"]))
        assert again.returncode == 0, again.stderr
    ids_after, rows_after = _accepted(out)
    assert ids_after[0] == ids[0] and len(set(ids_after)) == 3 and rows_after[0] == rows[0]
    resumed = json.loads((out / "summary.json").read_text())
    assert resumed["complete"] and resumed["sessions"] == 2


def test_a_run_starts_only_the_draws_it_may_still_need():
    """A draw is started while the trials accepted so far (at any plan index) and those the draws in flight
    are expected to bring, at the run's smoothed acceptance, fall short of n; never once n are accepted."""
    from types import SimpleNamespace

    from synthtrials.graphs.runner import more_draws_needed

    accepted, rejected = SimpleNamespace(verdict="accept", draft=object()), SimpleNamespace(verdict="reject", draft=None)
    # nothing finished: a draw in flight counts as half a trial
    assert more_draws_needed(20, {}, 15) and not more_draws_needed(2, {}, 4) and more_draws_needed(2, {}, 3)
    # 18 of 20 accepted, 2 rejected (acceptance (18 + 1) / (20 + 2)): a third draw in flight is the last one started
    results = {i: accepted for i in range(18)} | {18: rejected, 25: rejected}
    assert more_draws_needed(20, results, 2) and not more_draws_needed(20, results, 3)
    # trials accepted at any plan index count (here past the gap at 19-24): once n are accepted, no new draw
    assert not more_draws_needed(18, results, 0)


def test_the_adapted_writer_samples_with_the_penalty_unless_dry_is_asked_where_the_server_has_it():
    """`writer_sampling`: the token repetition penalty by default (DRY wrote lists twice as long but
    lowered acceptance from 84% to 59%: benchmarks/RESULTS.md); `dry` on llamacpp-server, where llama.cpp's
    DRY sampler is; asking for it elsewhere is a one-line error."""
    import pytest
    from synthtrials.graphs.runner import WRITER_DRY_MULTIPLIER
    from synthtrials.tools.errors import ConfigError
    from synthtrials.tools.llm.client import LLMConfig

    assert not GenerationConfig(llm=LLMConfig(backend="llamacpp-server")).writer_dry()
    assert GenerationConfig(llm=LLMConfig(backend="llamacpp-server"), writer_sampling="dry").writer_dry()
    with pytest.raises(ConfigError) as error:
        GenerationConfig(llm=LLMConfig(backend="llamacpp"), writer_sampling="dry").writer_dry()
    assert "\n" not in str(error.value) and "llamacpp-server" in str(error.value)
    assert 0 < WRITER_DRY_MULTIPLIER < 2
