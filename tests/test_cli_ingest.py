"""The ingest / store CLI end to end, bad input included: one line, exit 2, nothing written."""

import json
import zipfile

from support import TOP, XML_FILE, cli


def _no_traceback(result):
    assert "Traceback" not in result.stderr + result.stdout
    assert len([l for l in result.stderr.splitlines() if l.startswith("error:")]) == 1


def test_ingest_stats_eligible(tmp_path):
    store = tmp_path / "store"
    result = cli("ingest", str(TOP / "phase_I_valid.csv"), str(XML_FILE), "--store", str(store))
    assert result.returncode == 0, result.stderr
    assert "stored 118 trials" in result.stdout
    stats = cli("store", "stats", "--store", str(store), "--json")
    data = json.loads(stats.stdout)
    assert data["trials"] == 118 and data["label"]["unlabelled"] == 1
    table = cli("store", "stats", "--store", str(store))
    assert "by phase" in table.stdout and "phase 1" in table.stdout
    eligible = cli("store", "eligible", "--k", "1", "--json", "--store", str(store))
    rows = json.loads(eligible.stdout)
    assert rows and all(r["successes"] >= 1 and r["failures"] >= 1 for r in rows)


def test_bad_inputs_fail_cleanly_and_write_nothing(tmp_path):
    header = "nctid,status,why_stop,label,phase,diseases,icdcodes,drugs,smiless,criteria\n"
    bad_literal = tmp_path / "bad_literal.csv"
    bad_literal.write_text(header + "NCT00000001,completed,,1,phase 1,['a'],[],['x'],[],c\n"
                           "NCT00000002,completed,,1,phase 1,['a',[],['x'],[],c\n")
    no_columns = tmp_path / "no_columns.csv"
    no_columns.write_text("nctid,label\nNCT00000001,1\n")
    truncated_xml = tmp_path / "NCT00000378.xml"
    truncated_xml.write_bytes(XML_FILE.read_bytes()[:3000])
    bad_zip = tmp_path / "bad.zip"
    bad_zip.write_bytes(b"PK\x03\x04 not really a zip")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"studies": [')
    cases = [
        (tmp_path / "absent.csv", "no such file"),
        (bad_literal, "bad_literal.csv:row 3 (NCT00000002): column 'diseases' is not a valid list literal"),
        (no_columns, "missing column(s)"),
        (truncated_xml, "corrupt or truncated XML"),
        (bad_zip, "corrupt or truncated zip"),
        (bad_json, "corrupt or truncated JSON"),
    ]
    store = tmp_path / "store"
    for path, message in cases:
        result = cli("ingest", str(TOP / "phase_I_valid.csv"), str(path), "--store", str(store))
        assert result.returncode == 2, (path, result.stderr)
        assert message in result.stderr.replace("\n", ""), result.stderr
        _no_traceback(result)
        stats = cli("store", "stats", "--json", "--store", str(store))
        assert json.loads(stats.stdout)["trials"] == 0  # nothing half-written


def test_skip_bad_stores_good_records_and_writes_rejects(tmp_path):
    archive = tmp_path / "mixed.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("NCT00000378.xml", XML_FILE.read_bytes())
        zf.writestr("NCT00000379.xml", XML_FILE.read_bytes()[:4000])
    header = "nctid,status,why_stop,label,phase,diseases,icdcodes,drugs,smiless,criteria\n"
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text(header + "NCT00000001,completed,,1,phase 1,['a'],[],['x'],[],c\n"
                        "NCT00000002,completed,,1,phase 7,['a'],[],['x'],[],c\n")
    store = tmp_path / "store"
    rejected = tmp_path / "rejected.jsonl"
    result = cli("ingest", str(archive), str(csv_file), "--store", str(store), "--skip-bad", "--rejected", str(rejected))
    assert result.returncode == 0, result.stderr
    assert "stored 2 trials" in result.stdout and "rejected 2 records" in result.stdout
    rows = [json.loads(l) for l in rejected.read_text().splitlines()]
    assert {r["source"].split("!")[-1].split("/")[-1] for r in rows} == {"NCT00000379.xml", "rows.csv"}
    assert any("unknown phase" in r["problem"] for r in rows) and any("XML" in r["problem"] for r in rows)


def test_store_commands_on_missing_store(tmp_path):
    result = cli("store", "stats", "--store", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "no trial store here" in result.stderr
    _no_traceback(result)
    assert not (tmp_path / "nothing").exists()
