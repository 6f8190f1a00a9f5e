"""`synthtrials check`: any trials, in every reader format, critiqued as candidate synthetic trials
by the same function as the critic node; one verdict line per input trial."""

import json

from support import FIXTURES, TOP, XML_FILE, cli, head_csv
from synthtrials.tools.readers import read_trials
from synthtrials.tools.store.trial_store import open_store


def verdicts(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_check_every_reader_format(phase1_store_path, tmp_path):
    csv_file = head_csv(TOP / "phase_II_valid.csv", tmp_path / "phase_II_valid.csv", 6)
    jsonl = tmp_path / "trials.jsonl"
    bare = read_trials([csv_file])[0].model_copy(update={"nct_id": "SYN-00000bad", "source": "synthetic",
                                                         "conditions": [], "interventions": []})
    jsonl.write_text(bare.model_dump_json() + "\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    (run / "trials.jsonl").write_text(jsonl.read_text())
    api_json = FIXTURES / "ctgov_v2_study.json"
    inputs = [csv_file, XML_FILE, api_json, jsonl, run]
    result = cli("check", *map(str, inputs), "--store", str(phase1_store_path), "--out", str(tmp_path / "v.jsonl"))
    assert result.returncode == 0, result.stderr
    rows = verdicts(tmp_path / "v.jsonl")
    expected = [t.nct_id for t in read_trials([csv_file, XML_FILE, api_json])] + [bare.nct_id]
    assert [r["id"] for r in rows] == expected  # one verdict per trial (the run's trial is the same as the JSONL's)
    assert all(set(r) >= {"id", "verdict", "failed_checks", "scores"} for r in rows)
    assert all((r["verdict"] == "reject") == bool(r["failed_checks"]) for r in rows)
    no_content = next(r for r in rows if r["id"] == "SYN-00000bad")
    assert no_content["verdict"] == "reject" and {"content", "intervention"} <= set(no_content["failed_checks"])
    real = rows[:6]
    assert sum(r["verdict"] == "accept" for r in real) >= 4  # real trials mostly pass
    assert "status and why-stopped were dropped" in result.stdout and "accepted" in result.stdout


def test_check_bad_input_is_one_line(phase1_store_path, tmp_path):
    missing = cli("check", str(tmp_path / "nope.csv"), "--store", str(phase1_store_path),
                      "--out", str(tmp_path / "v.jsonl"))
    assert missing.returncode == 2 and "nope.csv" in missing.stderr and "Traceback" not in missing.stderr
    no_store = cli("check", str(XML_FILE), "--store", str(tmp_path / "none"), "--out", str(tmp_path / "v.jsonl"))
    assert no_store.returncode == 2 and "no trial store here" in no_store.stderr
    # half a character (a lone surrogate escape) in a trial's text: refused by its file and line, not a crash in
    # the encoder's tokenizer
    trial = read_trials([XML_FILE])[0].model_copy(update={"nct_id": "SYN-00000bad", "source": "synthetic"})
    record = json.loads(trial.model_dump_json())
    record["conditions"] = ["asthma \ud83d"]
    halved = tmp_path / "halved.jsonl"
    halved.write_text(json.dumps(record) + "\n")
    refused = cli("check", str(halved), "--store", str(phase1_store_path), "--out", str(tmp_path / "v.jsonl"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "halved.jsonl" in refused.stderr and "line 1" in refused.stderr and "\\ud83d" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "v.jsonl").exists()


def test_store_calibrate_and_stats_show_the_calibration(phase1_store_path):
    calibrated = cli("store", "calibrate", "--store", str(phase1_store_path))
    assert calibrated.returncode == 0, calibrated.stderr
    assert "typicality_criterion" in calibrated.stdout and "of real trials" in calibrated.stdout
    assert "coherence_joint" in calibrated.stdout and "the joint score" in calibrated.stdout
    store = open_store(phase1_store_path, create=False)
    store.save_calibration("reasons:0000:a-model-no-test-uses.gguf", {"validity": 0.2, "threshold": 0.5})
    store.close()
    stats = cli("store", "stats", "--store", str(phase1_store_path))
    assert stats.returncode == 0, stats.stderr
    assert "calibration" in stats.stdout and "by split" in stats.stdout
    said = " ".join(stats.stdout.split())
    assert "a-model-no-test-uses.gguf" in said and "`--reasoner auto` uses evidence" in said
    empty = cli("store", "calibrate", "--store", str(phase1_store_path), "--ground-on", "valid")
    assert empty.returncode == 2 and "no real trials" in empty.stderr
