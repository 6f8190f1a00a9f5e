"""llama.cpp's own server started by synthtrials (`--backend llamacpp-server`): a real llama-server
binary (built by setup.sh) serving the bundled SmolLM2 on 127.0.0.1, reached through ChatOpenAI;
its lifecycle (health check, stop with the run, no orphan after SIGKILL) and its failures (binary
missing, port in use, a server that cannot start or dies mid-run) as one-line errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel
from support import cli
from synthtrials.graphs.config import GenerationConfig
from synthtrials.graphs.runner import RunOptions, run_generation
from synthtrials.tools.llm.client import LLMClient, LLMConfig, LLMError
from synthtrials.tools.llm.errors import LLMConfigError
from synthtrials.tools.llm.llama_server import (
    BIN_ENV,
    HOST,
    running_servers,
    stop_servers,
)
from synthtrials.tools.llm.merged_weights import merged_weights

pytestmark = pytest.mark.slow


class Finding(BaseModel):
    drug: str
    phase: Literal["PHASE1", "PHASE2", "PHASE3"]
    participants: int


FINDING_SCHEMA = {"type": "object", "properties": {
    "drug": {"const": "metformin"}, "phase": {"enum": ["PHASE1", "PHASE2", "PHASE3"]},
    "participants": {"type": "integer", "minimum": 1, "maximum": 999}}, "required": ["drug", "phase", "participants"]}


def _ask(client: LLMClient, index: int = 0):
    from langchain_core.messages import HumanMessage

    messages = [HumanMessage(content="Describe a phase 2 trial of metformin in 40 adults as JSON with the keys "
                                     "drug, phase and participants.")]
    return client.structured(messages, Finding, seed=index, json_schema=FINDING_SCHEMA)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_server_answers_on_loopback_in_parallel_and_stops():
    client = LLMClient(LLMConfig(backend="llamacpp-server", max_concurrency=2, n_ctx=1024, max_tokens=120))
    (server,) = running_servers()
    assert server.url.startswith(f"http://{HOST}:") and server.spec.slots == 2
    assert "--host" in server.command() and server.command()[server.command().index("--host") + 1] == "127.0.0.1"
    try:
        with socket.create_connection((HOST, server.port), timeout=2):
            pass  # listening on loopback
        results: list = [None, None]
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, _ask(client, i))) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for result in results:  # the grammar pinned the drug and the phase vocabulary
            assert result.value.drug == "metformin" and result.value.phase in ("PHASE1", "PHASE2", "PHASE3")
            assert 1 <= result.value.participants <= 999
        assert client.usage.calls == 2 and client.usage.completion_tokens > 0
        # the model's own vocabulary counts tokens (no tiktoken download), as llama.cpp in process does
        in_process = LLMClient(LLMConfig(n_ctx=256, max_tokens=8))
        text = "Adults with type 2 diabetes mellitus and HbA1c between 7% and 10%."
        assert client.count_tokens(text) == in_process.count_tokens(text)
        # it samples as the in-process backend does (llama-server's default has no repetition penalty,
        # and the adapted writer then looped on one criterion)
        from langchain_community.chat_models import ChatLlamaCpp

        for name in ("repeat_penalty", "top_k", "top_p"):
            assert client.model.extra_body[name] == ChatLlamaCpp.model_fields[name].default
        assert client.model.extra_body["repeat_last_n"] == ChatLlamaCpp.model_fields["last_n_tokens_size"].default
    finally:
        stop_servers()
    assert not server.alive() and not running_servers()
    with pytest.raises(ConnectionRefusedError):  # nothing listens there any more
        socket.create_connection((HOST, server.port), timeout=2).close()


def test_a_call_may_take_what_its_answer_budget_needs_with_every_slot_busy():
    """A 1,406-token answer decodes at 9-11 tokens/s per slot with 16 busy slots on 2 cores: a fixed 120 s timeout
    abandoned and resent such calls until the run stopped. The timeout covers the budget at the slowest rate."""
    from synthtrials.tools.llm.backends.llamacpp_server import SLOWEST_SLOT_TOKENS_PER_S, call_timeout

    long = LLMConfig(backend="llamacpp-server", max_tokens=1406)
    assert call_timeout(long) >= 1406 / SLOWEST_SLOT_TOKENS_PER_S > long.timeout_s
    assert call_timeout(LLMConfig(backend="llamacpp-server", max_tokens=60, timeout_s=300)) == 300


def test_a_call_to_a_server_the_run_stopped_is_refused_at_once_not_retried():
    """The OpenAI SDK retries a refused connection 4 times, 0.5-4 s apart: a run's stopped draws spent
    6 s there. A server synthtrials stopped answers from its client's transport, with a 400 (which the
    SDK does not retry): a stopped run's client raises CallsStopped, any other call a one-line error."""
    import openai
    from synthtrials.tools.llm.errors import CallsStopped

    client = LLMClient(LLMConfig(backend="llamacpp-server", max_concurrency=1, n_ctx=1024, max_tokens=60))
    (server,) = running_servers()
    sent: list[str] = []
    transport = client.model.root_client._client._transport
    original = transport.handle_request
    transport.handle_request = lambda request: sent.append(str(request.url)) or original(request)
    assert _ask(client).value.drug == "metformin" and len(sent) == 1  # served while it runs
    from synthtrials.tools.llm.backends.llamacpp_server import call_timeout

    assert client.model.request_timeout == call_timeout(client.config)  # the timeout the client was built with
    stop_servers()
    assert server.stopped.is_set() and not server.alive()
    with pytest.raises(openai.BadRequestError) as refused:  # the SDK's own call: no retry, no connection
        client.model.root_client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert "was stopped by synthtrials" in str(refused.value) and len(sent) == 2
    with client.calls_stopped(), pytest.raises(CallsStopped):
        client._invoke(client.model, [_human("hi")])
    with pytest.raises(LLMError) as error:  # outside a stop: one line naming the server
        _ask(client)
    assert "stopped by synthtrials" in str(error.value) and "\n" not in str(error.value)


def _human(text: str):
    from langchain_core.messages import HumanMessage

    return HumanMessage(content=text)


def test_free_decoding_falls_back_to_the_grammar_when_the_answer_does_not_fit():
    """grammar=on_failure: the unadapted model's free answer rarely fits the pinned schema; every
    such answer is asked again under the grammar, which always fits; the counts say so."""
    client = LLMClient(LLMConfig(backend="llamacpp-server", max_concurrency=1, n_ctx=1024, max_tokens=60,
                                 grammar="on_failure"))
    try:
        results = [_ask(client, i) for i in range(2)]
    finally:
        stop_servers()
    usage = client.usage
    assert usage.free_calls == 2 and 0 <= usage.grammar_fallbacks <= 2
    assert usage.calls == 2 + usage.grammar_fallbacks  # one grammar call per answer that did not fit
    assert all(r.value.drug == "metformin" for r in results)


def test_missing_binary_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(BIN_ENV, str(tmp_path))
    with pytest.raises(LLMConfigError) as error:
        LLMClient(LLMConfig(backend="llamacpp-server"))
    message = str(error.value)
    assert "llama-server not found" in message and BIN_ENV in message and "\n" not in message
    assert not running_servers()


def test_port_in_use_is_one_line(tmp_path):
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(LLMConfigError, match=f"port {port} on 127.0.0.1 is in use"):
            LLMClient(LLMConfig(backend="llamacpp-server", server_port=port))
    assert not running_servers()


def test_a_server_that_cannot_start_names_its_log(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)  # passes our magic check, not llama.cpp's loader
    with pytest.raises(LLMConfigError) as error:
        LLMClient(LLMConfig(backend="llamacpp-server", model_path=str(broken), server_log_dir=str(tmp_path)))
    message = str(error.value)
    assert "did not start" in message and "exited with code" in message and "log:" in message
    assert (tmp_path / "llama-server.broken.log").is_file()
    assert not running_servers()


def test_a_server_that_dies_mid_run_is_a_fatal_one_line_error():
    client = LLMClient(LLMConfig(backend="llamacpp-server", max_concurrency=1, n_ctx=1024, max_tokens=60,
                                 max_retries=0))
    (server,) = running_servers()
    server.process.kill()
    server.process.wait()
    with pytest.raises(LLMError) as error:
        _ask(client)
    assert error.value.fatal and "died mid-run" in str(error.value) and "resume" in str(error.value)
    stop_servers()


def test_merged_adapter_weights_are_made_once_and_served(tiny_adapter):
    """The session's real LoRA adapter of SmolLM2 (`tiny_adapter`) merged into Q4_0 weights once, then served."""
    from synthtrials.tools.llm.adapter_folder import GGUF_FILE, adapter_sha256
    from synthtrials.tools.llm.client import resolve_gguf

    tiny_adapter, _ = tiny_adapter

    digest = adapter_sha256(tiny_adapter)
    first = merged_weights(resolve_gguf("smollm2"), tiny_adapter / GGUF_FILE, digest, "Q4_0")
    assert first.name == f"merged-{digest[:16]}.Q4_0.gguf" and first.read_bytes()[:4] == b"GGUF"
    stamp = first.stat().st_mtime_ns
    assert merged_weights(resolve_gguf("smollm2"), tiny_adapter / GGUF_FILE, digest, "Q4_0").stat().st_mtime_ns == stamp
    assert not list(tiny_adapter.glob(".merge-*"))  # no half-written file left
    client = LLMClient(LLMConfig(backend="llamacpp-server", adapter=str(tiny_adapter), max_concurrency=1,
                                 n_ctx=1024, max_tokens=80))
    try:
        (server,) = running_servers()
        assert Path(server.spec.model_path) == first and server.spec.lora_path is None
        assert client.model._identifying_params["adapter_sha256"] == digest
        assert _ask(client).value.drug == "metformin"
    finally:
        stop_servers()


def _finished_threads(run: Path) -> int:
    db = run / "checkpoints.sqlite"
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(db) as connection:
            rows = connection.execute("SELECT DISTINCT thread_id FROM writes WHERE channel = 'verdict'").fetchall()
    except sqlite3.Error:
        return 0
    return len(rows)


def _server_pid(run: Path) -> int | None:
    for log in run.glob("llama-server.*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("# synthtrials: pid "):
                return int(line.split()[-1])
    return None


#: answer tokens per writer call in the run tests below: their draws only have to finish (a truncated
#: answer is a rejected draft), not to be valid
RUN_TEST_TOKENS = 120


def _generate_args(store: Path, run: Path, max_minutes: str, *extra: str) -> list[str]:
    """The `generate` command line of the run tests below (a small base-model run through llama-server)."""
    return ["generate", "--store", str(store), "--n", "2", "--out", str(run), "--backend", "llamacpp-server",
            "--concurrency", "2", "--k", "2", "--reasoner", "evidence", "--llm-critic", "off", "--revisions", "0",
            "--max-tokens", str(RUN_TEST_TOKENS), *extra, "--plan-min-trials", "1", "--max-minutes", max_minutes]


def test_sigkilled_run_leaves_no_server_and_resumes(phase1_store_path, tmp_path):
    """The generate process is SIGKILLed while its llama-server slots are busy: the kernel ends the
    server with it (no orphan); the same command then resumes the run."""
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "synthtrials.scripts.cli", *_generate_args(phase1_store_path, run, "1.5")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "COLUMNS": "200"})
    deadline = time.monotonic() + 300
    pid = None
    while time.monotonic() < deadline and process.poll() is None:
        pid = pid or _server_pid(run)
        if pid is not None and _finished_threads(run) >= 1:
            break
        time.sleep(0.2)
    assert pid is not None and process.poll() is None, "the run ended before a draw finished"
    assert _alive(pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    gone = time.monotonic() + 20
    while _alive(pid) and time.monotonic() < gone:
        time.sleep(0.1)
    assert not _alive(pid), "llama-server outlived the killed run"
    finished_before = _finished_threads(run)
    # the same command line resumed, in this process (only the kill needs a process of its own), with a
    # shorter time budget (not part of the run's configuration)
    resumed = cli(*_generate_args(phase1_store_path, run, "0.3"))
    assert resumed.returncode in (0, 2) and "Traceback" not in resumed.stderr, resumed.stderr[-500:]
    assert _finished_threads(run) >= finished_before
    summary = json.loads((run / "summary.json").read_text())
    assert summary["sessions"] >= 1 and summary["backend"] == "llamacpp-server"
    new_pid = _server_pid_latest(run)
    assert new_pid is not None and new_pid != pid and not _alive(new_pid)  # the resumed run stopped its server


def _server_pid_latest(run: Path) -> int | None:
    pids = [int(line.split()[-1]) for log in run.glob("llama-server.*.log")
            for line in log.read_text(errors="replace").splitlines() if line.startswith("# synthtrials: pid ")]
    return pids[-1] if pids else None


def test_server_death_mid_run_stops_the_run_with_one_line_and_it_resumes(phase1_store_path, tmp_path):
    run = tmp_path / "run"
    generation = GenerationConfig(k=2, reasoner="evidence", llm_critic="off", max_revisions=0,
                                  llm=LLMConfig(backend="llamacpp-server", max_tokens=RUN_TEST_TOKENS, max_retries=0))
    options = RunOptions(store=str(phase1_store_path), out=run, n=2, generation=generation, concurrency=2,
                         plan_min_trials=1, max_minutes=1.0)
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["summary"] = run_generation(options)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and thread.is_alive() and _finished_threads(run) < 1:
        time.sleep(0.2)
    servers = running_servers()
    assert servers, "no server while the run is drawing"
    for server in servers:
        server.process.kill()
    thread.join(timeout=300)
    error = outcome.get("error")
    assert isinstance(error, LLMError) and "died mid-run" in str(error) and "\n" not in str(error)
    assert not running_servers()
    finished = _finished_threads(run)
    resumed = cli(*_generate_args(phase1_store_path, run, "0.3", "--max-retries", "0"))
    assert resumed.returncode in (0, 2) and "Traceback" not in resumed.stderr, resumed.stderr[-400:]
    assert "different configuration" not in resumed.stderr
    assert _finished_threads(run) >= finished  # finished draws kept, none redone


def test_a_lazy_client_starts_its_server_at_the_first_call():
    client = LLMClient(LLMConfig(backend="llamacpp-server", max_concurrency=1, n_ctx=1024, max_tokens=60), lazy=True)
    try:
        assert not client.started and not running_servers()
        assert _ask(client).value.drug == "metformin"
        assert client.started and len(running_servers()) == 1
    finally:
        stop_servers()


def test_an_adapted_run_without_base_model_work_starts_only_the_writers_server(phase1_store_path, tiny_adapter,
                                                                               tmp_path):
    """An adapted writer, templated reasons and the embedded model's LLM critic off by default (its
    judgement was measured at chance): the graph never calls the base model, so no base-model server
    runs beside the writer's."""
    tiny_adapter, _ = tiny_adapter
    run = tmp_path / "run"
    generation = GenerationConfig(k=2, reasoner="evidence", max_revisions=0, writer_adapter=str(tiny_adapter),
                                  llm=LLMConfig(backend="llamacpp-server", max_retries=0))
    seen: list[int] = []
    summary = run_generation(RunOptions(store=str(phase1_store_path), out=run, n=1, generation=generation,
                                        concurrency=1, max_minutes=0.05),
                             on_progress=lambda progress: seen.append(progress.tokens))
    assert summary.draws >= 1
    assert seen[-1] == summary.tokens["total_tokens"] > 0  # the progress counts the writer's tokens
    config = json.loads((run / "config.json").read_text())
    assert config["generation"]["llm_critic"] == "off"
    assert config["generation"]["writer_sampling"] == "penalty"
    logs = sorted(log.name for log in run.glob("llama-server.*.log"))
    assert len(logs) == 1 and logs[0].startswith("llama-server.merged-"), logs
    assert not running_servers()
