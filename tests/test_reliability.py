"""The reliability suite: crash/resume at random points (one inside a write), a fault-injecting
OpenAI-compatible server, property-based reader fuzzing, and secrets never written anywhere."""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from contextlib import closing

from fake_openai import FakeOpenAIServer, Fault, scripted_trial_answer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import FIXTURES, XML_FILE, cli
from synthtrials.tools.errors import InputError
from synthtrials.tools.readers import iter_sources
from synthtrials.tools.records.trial import Trial

SECRET = "sk-live-NEVER-WRITE-ME-9d8c7b6a"


def generate_args(store, out, server, n, *extra):
    return ["generate", "--store", str(store), "--n", str(n), "--out", str(out), "--backend", "openai", "--model",
            "scripted", "--base-url", server.base_url, "--concurrency", "2", "--max-retries", "2",
            "--timeout", "2", *extra]


def checkpoint_rows(out) -> int:
    """Checkpoints written so far by a running generation (0 before its database has the table)."""
    path = out / "checkpoints.sqlite"
    if not path.exists():
        return 0
    try:
        with closing(sqlite3.connect(path, timeout=5)) as db:  # a reader: never blocks the run's writes (WAL)
            return db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
    except sqlite3.Error:  # the table is not there yet, or a write holds the lock: ask again
        return 0


def test_sigkill_at_random_points_then_resume(phase1_store_path, tmp_path):
    """`synthtrials generate` in its own process, SIGKILLed three times at random points of the run (after
    a random number of new checkpoints, plus a random fraction of a step), each time resumed by the
    next process; a last run completes it."""
    out = tmp_path / "run"
    rng = random.Random(11)
    kills = []
    with FakeOpenAIServer(responder=scripted_trial_answer, delay_s=0.1) as server:
        args = [sys.executable, "-m", "synthtrials.scripts.cli", *generate_args(phase1_store_path, out, server, 10)]
        for _ in range(3):  # each process loads torch and MiniLM anew: about 10 s a kill on 2 cores
            before = checkpoint_rows(out)
            target = before + rng.randint(1, 8)  # a 10-trial run writes 60 or more
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env={**os.environ, "COLUMNS": "200"})
            deadline = time.monotonic() + 300
            while proc.poll() is None and checkpoint_rows(out) < target and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.3))  # somewhere inside the next step
            killed = proc.poll() is None
            if killed:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills.append((killed, checkpoint_rows(out) - before))
            for name in ("summary.json", "plan.json", "run.json"):  # whatever exists is whole
                if (out / name).exists():
                    json.loads((out / name).read_text())
            if (out / "trials.jsonl").exists():
                [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
        # every process was killed mid-run, each after it had written checkpoints of its own
        assert all(killed and new > 0 for killed, new in kills), kills
        final = cli(*generate_args(phase1_store_path, out, server, 10))
        assert final.returncode == 0, final.stderr
    ids = [json.loads(line)["nct_id"] for line in (out / "trials.jsonl").read_text().splitlines()]
    assert len(ids) == 10 and len(set(ids)) == 10
    assert not list(out.glob(".*.tmp"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["accepted"] == 10


def test_a_kill_right_after_a_threads_first_checkpoint_resumes(phase1_store_path, tmp_path):
    """The window the SIGKILL test found: a process killed after LangGraph wrote a thread's input checkpoint
    (step -1: the reducers' empty channels, no target yet) and before its first step. Made here on purpose:
    a finished thread cut back to that checkpoint."""
    out = tmp_path / "run"
    with FakeOpenAIServer(responder=scripted_trial_answer) as server:
        assert cli(*generate_args(phase1_store_path, out, server, 1)).returncode == 0
        with closing(sqlite3.connect(out / "checkpoints.sqlite")) as db, db:
            rows = db.execute("SELECT checkpoint_id, metadata FROM checkpoints WHERE thread_id = 'trial-000000'").fetchall()
            first = [cid for cid, meta in rows if json.loads(meta)["source"] == "input"]
            assert len(first) == 1 and len(rows) > 1
            db.execute("DELETE FROM checkpoints WHERE thread_id = 'trial-000000' AND checkpoint_id != ?", first)
            db.execute("DELETE FROM writes WHERE thread_id = 'trial-000000'")
        resumed = cli(*generate_args(phase1_store_path, out, server, 1))
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr[-2000:]
    assert len((out / "trials.jsonl").read_text().splitlines()) == 1


WRITER = """
import sys, time
from synthtrials.tools.atomic import write_jsonl_atomic

def rows():
    for i in range(100):
        yield {"row": i}
        if i == 5:
            print("inside the write", flush=True)
            time.sleep(120)

write_jsonl_atomic(sys.argv[1], rows())
"""


def test_sigkill_inside_an_atomic_write_keeps_the_old_file_and_resume_clears_the_debris(phase1_store_path, tmp_path):
    """A process killed while writing leaves the previous file whole; the next run clears the temp file."""
    out = tmp_path / "run"
    with FakeOpenAIServer(responder=scripted_trial_answer) as server:
        assert cli(*generate_args(phase1_store_path, out, server, 2)).returncode == 0
        before = (out / "trials.jsonl").read_text()
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out / "trials.jsonl")], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "inside the write"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert (out / "trials.jsonl").read_text() == before and list(out.glob(".trials.jsonl.*.tmp"))
        assert cli(*generate_args(phase1_store_path, out, server, 2)).returncode == 0
    assert (out / "trials.jsonl").read_text() == before and not list(out.glob(".*.tmp"))


def test_fault_injecting_server_run_completes(phase1_store_path, tmp_path):
    out = tmp_path / "run"
    faults = [
        Fault(status=429, headers={"Retry-After": "1"}),
        Fault(status=500),
        Fault(delay_s=4),  # slower than the 2 s timeout
        Fault(raw_body=b'{"id": "x", "choices": [{"message": {"content": "{\\"brief'),  # truncated JSON body
        Fault(raw_body=b"<html>bad gateway</html>", status=200),  # not JSON at all
        Fault(content='{"unexpected": "shape"}'),  # valid JSON, wrong schema
        Fault(reset=True),  # connection reset
    ]
    with FakeOpenAIServer(responder=scripted_trial_answer) as server:
        for fault in faults:
            server.faults.append(fault)
            server.faults.append(Fault(content=None))  # a clean answer between faults
        result = cli(*generate_args(phase1_store_path, out, server, 6, "--concurrency", "1"))
        assert result.returncode == 0, result.stderr
        assert not server.faults  # every fault was served
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["accepted"] == 6
    ids = [json.loads(line)["nct_id"] for line in (out / "trials.jsonl").read_text().splitlines()]
    assert len(set(ids)) == 6
    # faults were retried (transport) or repaired / rejected with a reason (content): nothing lost silently
    assert summary["tokens"]["repairs"] + summary["tokens"]["failures"] + summary["errors"] >= 1
    for row in map(json.loads, (out / "rejected.jsonl").read_text().splitlines()):
        assert row["reasons"] and row["problems"]


def test_api_key_is_written_nowhere(phase1_store_path, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer(responder=scripted_trial_answer) as server:
        result = cli(*generate_args(phase1_store_path, out, server, 2), env={"OPENAI_API_KEY": SECRET})
        assert result.returncode == 0, result.stderr
        assert any({k.lower(): v for k, v in h.items()}.get("authorization") == f"Bearer {SECRET}"
                   for h in server.headers_seen)  # it was used
        judged = cli("judge", str(out), "--backend", "openai", "--model", "scripted", "--base-url",
                         server.base_url, "--n-real", "1", env={"OPENAI_API_KEY": SECRET})
    assert judged.returncode == 0, judged.stderr
    assert SECRET not in result.stdout + result.stderr + judged.stdout + judged.stderr
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "checkpoints.sqlite" for p in files) and any(p.name == "llm_cache.sqlite" for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path


# --- property-based reader tests ----------------------------------------------------------------

HEADER = "nctid,status,why_stop,label,phase,diseases,icdcodes,drugs,smiless,criteria\n"
GOOD_ROW = ["NCT01234567", "completed", "", "1", "phase 1", "['asthma']", "[]", "['drug a']", "[]", "Inclusion Criteria: - adults"]


def _outcome(items):
    for item in items:
        assert isinstance(item, (Trial, InputError))
        if isinstance(item, InputError):
            assert "\n" not in item.line and item.line


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.integers(0, 9), value=st.text(max_size=40))
def test_csv_rows_mutated(tmp_path, field, value):
    import csv
    import io

    row = list(GOOD_ROW)
    row[field] = value
    buffer = io.StringIO()
    csv.writer(buffer).writerow(row)
    path = tmp_path / "fuzz.csv"
    path.write_text(HEADER + buffer.getvalue())
    try:
        _outcome(iter_sources([path]))
    except InputError as exc:
        assert "\n" not in exc.line


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_random_bytes_as_csv_xml_json(tmp_path, data):
    for suffix in (".csv", ".xml", ".json"):
        path = tmp_path / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            _outcome(iter_sources([path]))
        except InputError as exc:
            assert "\n" not in exc.line


XML_TEXT = XML_FILE.read_text()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, len(XML_TEXT)), tag=st.sampled_from(["phase", "enrollment", "nct_id", "condition",
                                                                "intervention_name", "start_date", "criteria"]),
       value=st.text(max_size=30))
def test_xml_mutated(tmp_path, cut, tag, value):
    mutated = ET.fromstring(XML_TEXT)
    for node in mutated.iter(tag):
        node.text = value
    text = ET.tostring(mutated, encoding="unicode")
    path = tmp_path / "NCT00000378.xml"
    path.write_text(text[:cut] if cut % 3 == 0 else text)
    try:
        _outcome(iter_sources([path]))
    except InputError as exc:
        assert "\n" not in exc.line


STUDY = json.loads((FIXTURES / "ctgov_v2_study.json").read_text())
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
                           max_leaves=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(module=st.sampled_from(sorted(STUDY["protocolSection"])), value=json_values, key=st.text(max_size=12))
def test_json_modules_mutated(tmp_path, module, value, key):
    study = json.loads(json.dumps(STUDY))
    section = study["protocolSection"][module]
    if key and isinstance(section, dict) and section:
        section[sorted(section)[len(key) % len(section)]] = value
    else:
        study["protocolSection"][module] = value
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study))
    try:
        _outcome(iter_sources([path]))
    except InputError as exc:
        assert "\n" not in exc.line
