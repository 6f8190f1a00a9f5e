"""The demo end to end (control flow: a scripted server stands in for the model so that the test
is quick; the embedded model's own generation is tested in test_generation / test_llm_llamacpp),
and `synthtrials data download top` against a local HTTP server. The commands run in this process
(`support.cli`: the same command line; torch and MiniLM stay loaded)."""

import json
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from fake_openai import FakeOpenAIServer, scripted_trial_answer
from support import TOP, cli, copy_store
from synthtrials.tools.store.trial_store import open_store


def test_demo_runs_every_stage(phase1_data, phase1_store_path, tmp_path):
    """The demo on the session's phase I files (real rows, fewer of them: a quick test), its store
    pre-built: the session's store of the same train and test files, with their embeddings, the
    critic's section vectors and calibration. The demo's ingest still reads all three files (the 40
    valid trials are new to the store) and finds the rest stored; every later stage runs in full."""
    out = tmp_path / "demo"
    copy_store(phase1_store_path, out / "store")
    with FakeOpenAIServer(responder=scripted_trial_answer) as server:
        result = cli("demo", "--data", str(phase1_data), "--out", str(out), "--n", "6", "--minutes", "3",
                     "--backend", "openai", "--model", "scripted", "--base-url", server.base_url,
                     "--transformer-train", "60")
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr
    for stage in ("1/6 ingest", "2/6 adapt", "3/6 generate", "4/6 LLM judge", "5/6 evaluate", "6/6 report"):
        assert stage in said
    assert "grounded on the train split only" in said and "wall time by stage" in said
    grounding = json.loads((out / "run" / "grounding.json").read_text())
    assert grounding["splits"] == ["train"]
    run = out / "run"
    assert len((run / "trials.jsonl").read_text().splitlines()) == 6
    tfidf = json.loads((run / "eval_tfidf" / "metrics.json").read_text())
    assert set(tfidf["training_sets"]) == {"real", "synthetic", "hybrid"}
    assert tfidf["leakage"]["checked"] == 6 and tfidf["leakage"]["run_grounding"]  # the guard ran and passed
    minilm = json.loads((run / "eval_minilm" / "metrics.json").read_text())
    assert set(minilm["training_sets"]) == {"no_fine_tuning", "real", "synthetic", "hybrid"}
    assert json.loads((run / "judge" / "judge_summary.json").read_text())["synthetic"]["n"] == 6
    assert "data:image/png;base64," in (run / "report.html").read_text()
    assert "demo results" in result.stdout and "report.html" in result.stdout
    store = open_store(out / "store", create=False)
    assert store.split_counts() == {"train": 365, "valid": 40, "test": 120}  # the three files, each its own split
    store.close()


def test_demo_needs_the_top_files(tmp_path):
    result = cli("demo", "--data", str(tmp_path), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "missing phase_I_train.csv" in result.stderr


def _serve(folder):
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(folder)))
    server.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_data_download_checks_hashes(tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(TOP, mirror)
    server = _serve(mirror)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        dest = tmp_path / "data"
        ok = cli("data", "download", "top", "--dest", str(dest), "--base-url", url)
        assert ok.returncode == 0, ok.stderr
        assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in TOP.glob("*.csv"))
        assert (dest / "toy_test.csv").read_bytes() == (TOP / "toy_test.csv").read_bytes()
        (mirror / "toy_train.csv").write_text("nctid,label\nNCT00000001,1\n")  # tampered
        fresh = tmp_path / "fresh"
        bad = cli("data", "download", "top", "--dest", str(fresh), "--base-url", url)
        assert bad.returncode == 2 and "does not match" in bad.stderr and "toy_train.csv" in bad.stderr
        assert not (fresh / "toy_train.csv").exists()
    finally:
        server.shutdown()
