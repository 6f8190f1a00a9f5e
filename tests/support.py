"""Constants and helpers shared by the tests (importable: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SYNTHTRIALS_DATA", ROOT.parent / "shared" / "data")).resolve()
TOP = DATA / "top"
XML_FILE = DATA / "ctgov-xml" / "NCT00000378.xml"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOP_FILES = sorted(TOP.glob("*.csv"))


def head_csv(source: Path, target: Path, rows: int) -> Path:
    """The header and the first `rows` rows of a CSV (real rows, fewer of them: quicker tests)."""
    import csv

    with source.open(newline="") as handle, target.open("w", newline="") as out:
        writer = csv.writer(out)
        for number, row in enumerate(csv.reader(handle)):
            if number > rows:
                break
            writer.writerow(row)
    return target


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `synthtrials` console entry point in a subprocess (a new interpreter: torch and
    MiniLM load again, several seconds on 2 cores). For what only a process shows: its exit status
    as the shell sees it, a kill. Everything else: `cli`."""
    return subprocess.run(
        [sys.executable, "-m", "synthtrials.scripts.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The same command line as `run_cli` (the same argument expansion, Typer app, one-line errors and
    exit codes), run in this process: what was loaded (torch, MiniLM, the stores' indexes) stays
    loaded. An exception that escapes the command is written to stderr as a traceback, as the
    interpreter would, so `"Traceback" not in stderr` still means what it says."""
    import traceback

    from synthtrials.scripts.cli import app
    from synthtrials.scripts.cli_args import expand_multi_value
    from typer.testing import CliRunner

    args = [str(a) for a in args]
    result = CliRunner().invoke(app, expand_multi_value(args), prog_name="synthtrials",
                                env={"COLUMNS": "200", **(env or {})})
    stderr = result.stderr
    code = result.exit_code
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(result.exception))
        code = 1
    return subprocess.CompletedProcess(["synthtrials", *args], code, result.stdout, stderr)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` with the bundled SmolLM2 on 127.0.0.1 (a real OpenAI-compatible server)."""

    def __init__(self, api_key: str | None = None, n_ctx: int = 4096) -> None:
        from synthtrials.tools.llm.client import resolve_gguf

        self.port = free_port()
        self.api_key = api_key
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", resolve_gguf("smollm2"), "--host", "127.0.0.1",
               "--port", str(self.port), "--n_ctx", str(n_ctx), "--model_alias", "smollm2", "--verbose", "False"]
        if api_key:
            cmd += ["--api_key", api_key]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait(self, timeout: float = 120) -> LlamaServer:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.base_url}/models", headers=headers, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("llama_cpp.server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


#: drugs the tests name (the reasoner's junk reasons, the checks' lenalidomide trial, the example scripts' sorafenib)
NAMED_DRUGS = frozenset({"alemtuzumab", "bortezomib", "fondaparinux", "lenalidomide", "pemetrexed", "sorafenib",
                         "sorafenib tosylate"})


def drug_complete_subset(source: Path, target: Path, k: int = 3, also: frozenset[str] = NAMED_DRUGS) -> Path:
    """The rows of `source` (a TOP CSV) that list a drug a plan can draw from it (k successful and k failed
    trials, first listed) or a drug in `also`: real rows, each such drug with every trial it has, so its
    counts, its eligibility and its evidence are those of the whole file."""
    import csv

    from synthtrials.tools.readers import read_trials
    from synthtrials.tools.records.eligibility import eligible_trials
    from synthtrials.tools.records.normalize import normalize_intervention

    trials = read_trials([source])
    drugs = {e.intervention for e in eligible_trials(trials, k)} | set(also)
    keep = {t.nct_id for t in trials if drugs & {normalize_intervention(i.name) for i in t.interventions}}
    with source.open(newline="") as handle, target.open("w", newline="") as out:
        reader = csv.DictReader(handle)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames)
        writer.writeheader()
        writer.writerows(row for row in reader if row["nctid"] in keep)
    return target


def smollm2_copy(smollm2_transformers):
    """A fresh copy of the session's SmolLM2 (tokenizer, causal LM) to train or change, as
    `writer_adaptation.load_base("smollm2")` returns it (its pad token set)."""
    import copy

    tokenizer, model = smollm2_transformers
    tokenizer = copy.deepcopy(tokenizer)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, copy.deepcopy(model)


def copy_store(source, target):
    """A copy of a local store that other tests of this process keep open. The database is copied with SQLite's
    backup API: reading it with plain file calls (`shutil.copytree`) would close a descriptor of this process on
    the database file, which drops every POSIX lock this process holds on it (SQLite's documented pitfall) and
    left the shared store's WAL unreadable ("disk I/O error") for later tests."""
    import sqlite3
    from contextlib import closing

    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.name.startswith("trials.sqlite"):
            continue
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, target / item.name)
    with closing(sqlite3.connect(source / "trials.sqlite")) as db, closing(sqlite3.connect(target / "trials.sqlite")) as copy:
        db.backup(copy)
