"""The seed paper's released synthetic reports: repairs, leakage, ids, label order, inputs, CLI."""

import json
import shutil
import zipfile

import pytest
from support import FIXTURES, cli
from synthtrials.tools.errors import InputError
from synthtrials.tools.readers.seed_reports import (
    COMMENTS,
    FENCE,
    LIST_FOR_ONE,
    MISSING_BRACE,
    PLAIN_BLOCK,
    STRAY_BRACE,
    load_report_json,
    read_seed_reports,
)
from synthtrials.tools.records.trial import NCT_ID_ANYWHERE, SYNTHETIC_ID, Phase, Trial

SEED = FIXTURES / "seed_reports"
REPORTS = SEED / "retrieval_reasoning_reports"
LABELS = SEED / "retrieval_reasoning_label.txt"
NAME = "synthetic_clinical_report_{}.txt"


@pytest.fixture(scope="module")
def imported():
    return read_seed_reports(REPORTS, LABELS)


@pytest.fixture(scope="module")
def by_number(imported):
    return {int(t.provenance["source_file"].rsplit("_", 1)[1].split(".")[0]): t for t in imported.trials}


def test_each_quirk_is_repaired_or_reported(imported, by_number):
    assert imported.reports == 9 and sorted(by_number) == [0, 1, 2, 3, 4, 5, 10]
    assert {n: t.provenance["repairs"] for n, t in by_number.items()} == {
        0: [], 1: [FENCE], 2: [COMMENTS], 3: [STRAY_BRACE], 4: sorted([LIST_FOR_ONE, PLAIN_BLOCK]), 5: [FENCE],
        10: [MISSING_BRACE],
    }
    assert imported.repaired == 6
    assert imported.repairs == {
        FENCE: 2, COMMENTS: 1, STRAY_BRACE: 1, LIST_FOR_ONE: 1, PLAIN_BLOCK: 1, MISSING_BRACE: 1}
    lines = [p.line for p in imported.problems]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert lines[0].startswith(str(REPORTS / NAME.format(6)) + ": not valid JSON, even repaired (Unterminated string")
    assert "line 9 column" in lines[0]  # positions count the fence line: true to the file
    assert lines[1] == (f"{REPORTS / NAME.format(7)}: not a ClinicalTrials.gov report in xmltodict shape "
                        "(no clinical_study object)")


def test_comment_markers_inside_strings_are_text(by_number):
    assert by_number[2].brief_summary.endswith("https://example.org/protocol // not a comment")
    assert [i.other_names for i in by_number[2].interventions] == [["Effient"], ["Plavix"]]


def test_fields_are_mapped_like_the_legacy_xml_reader(by_number):
    trial = by_number[0]
    assert trial.brief_title == "Saxagliptin Added to Metformin in Type 2 Diabetes"
    assert trial.official_title.startswith("A Randomized, Double-Blind")
    assert trial.phase is Phase.PHASE_3 and trial.enrollment == 400 and trial.sponsor == "Example Pharma"
    assert trial.conditions == ["Diabetes Mellitus, Type 2", "Hyperglycemia"] and trial.keywords == ["DPP-4 inhibitor"]
    assert [(i.name, i.type.value, i.other_names) for i in trial.interventions] == [
        ("Saxagliptin", "drug", ["Onglyza", "BMS-477118"]), ("Placebo", "drug", [])]
    e = trial.eligibility
    assert e.inclusion == ["Type 2 diabetes on metformin for at least 8 weeks", "HbA1c between 7.0% and 10.0%"]
    assert e.exclusion == ["Type 1 diabetes", "Creatinine clearance below 60 mL/min"]
    assert (e.sex, e.minimum_age, e.healthy_volunteers) == ("All", "18 Years", False)
    assert trial.design.allocation == "Randomized" and trial.design.masking.startswith("Double")
    assert [(a.label, a.interventions) for a in trial.design.arms] == [
        ("Saxagliptin", ["Saxagliptin"]), ("Placebo", ["Placebo"])]
    assert [o.measure for o in trial.primary_outcomes] == ["Change in HbA1c from baseline"]
    assert len(trial.secondary_outcomes) == 2
    assert by_number[3].eligibility.exclusion == ["Prior chemotherapy for prostate cancer"]  # \r\n criteria


def test_a_field_may_be_an_object_or_a_list(by_number):
    single, listed = by_number[4], by_number[0]
    assert single.conditions == ["HIV Infections"] and len(listed.conditions) == 2
    assert [i.name for i in single.interventions] == ["Enfuvirtide"] and len(listed.interventions) == 2
    assert [(a.label, a.interventions) for a in single.design.arms] == [("Enfuvirtide plus OBT", ["Enfuvirtide"])]
    assert [o.measure for o in single.primary_outcomes] == ["HIV-1 RNA below 50 copies/mL", "Change in CD4 count"]
    assert single.phase is Phase.PHASE_1_2  # "phase": ["Phase 1", "Phase 2"]
    assert single.brief_summary.startswith("A study of enfuvirtide")  # a text block given as a plain string


def test_status_why_stopped_dates_people_and_results_are_dropped(imported, by_number):
    for trial in imported.trials:
        assert trial.overall_status is None and trial.why_stopped is None
        assert trial.start_date is None and trial.completion_date is None
    dumped = by_number[5].model_dump_json()
    for leaked in ("RESULTS-MARKER", "futility", "Terminated", "Adams", "Site 1", "2008"):
        assert leaked not in dumped
    assert imported.dropped == {"overall_status": 2, "why_stopped": 1, "clinical_results": 1}


def test_ids_are_synthetic_deterministic_and_the_source_id_stays_in_provenance(imported, by_number, tmp_path):
    for trial in imported.trials:
        assert SYNTHETIC_ID.match(trial.nct_id) and not NCT_ID_ANYWHERE.search(trial.nct_id)
        assert trial.source == "synthetic"
        assert {k: trial.provenance[k] for k in ("imported_from", "grounding")} == {
            "imported_from": "seed-paper", "grounding": "unknown"}
    assert by_number[0].provenance["source_id"] == "NCT01234567"
    assert by_number[0].provenance["source_file"] == NAME.format(0)
    assert by_number[4].provenance["source_id"] == "ENF-019"  # no nct_id: the org study id
    assert [t.nct_id for t in read_seed_reports(REPORTS, LABELS).trials] == [t.nct_id for t in imported.trials]
    same_content = tmp_path / "0.json"
    shutil.copy(REPORTS / NAME.format(0), same_content)
    (tmp_path / "labels.txt").write_text("1\n")
    assert read_seed_reports(same_content, tmp_path / "labels.txt").trials[0].nct_id != by_number[0].nct_id


def test_labels_follow_file_number_order(by_number, tmp_path):
    assert {n: t.label for n, t in by_number.items()} == {0: 1, 1: 0, 2: 1, 3: 0, 4: 1, 5: 0, 10: 0}
    assert by_number[10].label_source == "seed-paper labels file retrieval_reasoning_label.txt, line 11"
    folder = tmp_path / "reports"
    folder.mkdir()
    for number, name in ((0, "10.json"), (1, "2.json"), (3, "report_1.json")):
        shutil.copy(REPORTS / NAME.format(number), folder / name)
    (folder / "notes.txt").write_text("not a report")
    labels = tmp_path / "labels.txt"
    labels.write_text("1\n0\n1\n1\n1\n1\n1\n1\n1\n1\n0\n\n")  # line n + 1 for report n, whatever is present
    result = read_seed_reports(folder, labels)
    assert [(t.provenance["source_file"], t.label) for t in result.trials] == [
        ("report_1.json", 0), ("2.json", 1), ("10.json", 0)]
    assert [p.line for p in result.problems] == [
        f"{folder / 'notes.txt'}: no report number in the file name, so no label; skipped"]


def test_a_subset_of_the_release_imports_with_the_full_labels_file(by_number, tmp_path):
    """A user who downloaded part of the release: each report keeps the label of its number."""
    subset = tmp_path / "part"
    subset.mkdir()
    for number in (3, 10, 5):
        shutil.copy(REPORTS / NAME.format(number), subset / NAME.format(number))
    full = tmp_path / "retrieval_reasoning_label.txt"
    full.write_text(LABELS.read_text() + "1\n" * 3347)  # 3,358 labels, as released
    result = read_seed_reports(subset, full)
    assert result.reports == 3 and not result.problems
    assert [(t.provenance["source_file"], t.label) for t in result.trials] == [
        (NAME.format(n), by_number[n].label) for n in (3, 5, 10)]
    assert [t.label_source for t in result.trials] == [
        f"seed-paper labels file {full.name}, line {n + 1}" for n in (3, 5, 10)]
    assert [t.nct_id for t in result.trials] == [by_number[n].nct_id for n in (3, 5, 10)]


def test_zip_input_reads_like_the_folder(imported, tmp_path):
    archive = tmp_path / "seed.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in REPORTS.iterdir():
            zf.write(file, f"retrieval_reasoning_reports/{file.name}")
        zf.writestr("__MACOSX/retrieval_reasoning_reports/._synthetic_clinical_report_0.txt", b"\x00\x05")
    result = read_seed_reports(archive, LABELS)
    assert [t.model_dump() for t in result.trials] == [t.model_dump() for t in imported.trials]
    assert [p.source for p in result.problems] == [
        f"{archive}!retrieval_reasoning_reports/{NAME.format(n)}" for n in (6, 7)]


def test_a_single_file_is_one_report_and_its_problem_is_an_error(tmp_path):
    trial, = read_seed_reports(REPORTS / NAME.format(1), LABELS).trials
    assert trial.label == 0 and trial.brief_title.startswith("Ixabepilone")  # line 2 for report 1
    assert trial.label_source.endswith("line 2")
    with pytest.raises(InputError, match="no clinical_study object"):
        read_seed_reports(REPORTS / NAME.format(7), LABELS)
    with pytest.raises(InputError, match="not valid JSON"):
        read_seed_reports(REPORTS / NAME.format(6), LABELS)
    unnumbered = tmp_path / "report.json"
    shutil.copy(REPORTS / NAME.format(1), unnumbered)
    one_label = tmp_path / "labels.txt"
    one_label.write_text("1\n")
    assert [t.label for t in read_seed_reports(unnumbered, one_label).trials] == [1]  # the only label
    with pytest.raises(InputError) as error:
        read_seed_reports(unnumbered, LABELS)
    assert error.value.line.startswith(f"{unnumbered}: no report number in the file name, so no label among the 11")


def test_bad_labels_and_bad_sources_raise_one_line(tmp_path):
    many = tmp_path / "many.txt"
    many.write_text("1\n" * 1001)
    assert len(read_seed_reports(REPORTS / NAME.format(0), many).trials) == 1  # more labels than reports: a subset
    few = tmp_path / "few.txt"
    few.write_text("1\n0\n")
    with pytest.raises(InputError) as error:
        read_seed_reports(REPORTS / NAME.format(2), few)
    assert error.value.line == (f"{REPORTS / NAME.format(2)}: report number 2 is beyond the labels file {few} "
                                "(2 labels, for reports 0-1)")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="the labels file is empty"):
        read_seed_reports(REPORTS, empty)
    bad = tmp_path / "bad.txt"
    bad.write_text("1\n0\nyes\n")
    with pytest.raises(InputError) as error:
        read_seed_reports(REPORTS, bad)
    assert error.value.line == f"{bad}:line 3: label 'yes' is not 0 or 1"
    twice = tmp_path / "twice"
    twice.mkdir()
    for name in ("1.json", "report_01.json"):
        shutil.copy(REPORTS / NAME.format(0), twice / name)
    with pytest.raises(InputError, match="two reports numbered 1"):
        read_seed_reports(twice, many)
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(InputError, match="corrupt or truncated zip"):
        read_seed_reports(corrupt, many)


@pytest.mark.parametrize("text, value, repairs", [
    ('{"a": "x // y"} // note\n', {"a": "x // y"}, [COMMENTS]),
    ('{"a": {"b": 1}}\n}\n}', {"a": {"b": 1}}, [STRAY_BRACE]),
    ('Here is the trial:\n```json\n{"a": 1}\n```\nI hope this helps.', {"a": 1}, [FENCE]),
    ('```\n{"a": {"b": [1]}', {"a": {"b": [1]}}, [FENCE, MISSING_BRACE]),
])
def test_load_report_json_repairs(text, value, repairs):
    assert load_report_json(text.encode()) == (value, repairs)


@pytest.mark.parametrize("data, problem", [
    (b'{"a": {"b": {"c": 1}', "Expecting ',' delimiter: line 1 column 21"),  # two braces missing: truncated
    (b'{"a": 1}\n and more', "Extra data: line 2 column 2"),
    (b"\xff", "not UTF-8"),
])
def test_load_report_json_refuses_unsafe_repairs(data, problem):
    with pytest.raises(ValueError, match=problem):
        load_report_json(data)


def test_cli_imports_end_to_end(tmp_path):
    out = tmp_path / "seed" / "trials.jsonl"
    result = cli("import-synthetic", str(REPORTS), "--labels", str(LABELS), "--out", str(out))
    assert result.returncode == 0, result.stderr
    trials = [Trial.model_validate_json(line) for line in out.read_text().splitlines()]
    assert len(trials) == 7 and {t.label for t in trials} == {0, 1} and all(t.source == "synthetic" for t in trials)
    rejected = [json.loads(line) for line in (out.parent / "trials.rejected.jsonl").read_text().splitlines()]
    assert [r["file"] for r in rejected] == [str(REPORTS / NAME.format(n)) for n in (6, 7)]
    summary = " ".join(result.stdout.split())
    assert "imported 7 of 9 reports" in summary and "repaired 6 (code fence 2," in summary
    assert "skipped 2 (reasons in" in summary and "dropped leakage fields: overall_status 2" in summary
    assert "Traceback" not in result.stderr


def test_cli_report_beyond_the_labels_file_is_one_line_and_writes_nothing(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(LABELS.read_text().splitlines(keepends=True)[:9]))  # reports 0-8: not 10
    out = tmp_path / "trials.jsonl"
    result = cli("import-synthetic", str(REPORTS), "--labels", str(labels), "--out", str(out))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {REPORTS / NAME.format(10)}: report number 10 is beyond the labels file {labels} "
                      "(9 labels, for reports 0-8)"]
    assert "Traceback" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == [labels]
