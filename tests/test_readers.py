import json
import shutil
import zipfile

import pytest
from support import FIXTURES, TOP_FILES, XML_FILE
from synthtrials.tools.errors import InputError
from synthtrials.tools.readers import (
    dedupe_trials,
    iter_sources,
    read_labels_csv,
    read_trials,
)
from synthtrials.tools.readers.top_csv import parse_list_literal
from synthtrials.tools.records.trial import Phase, Trial


def test_all_top_files_load_completely():
    assert len(TOP_FILES) == 8
    items = list(iter_sources(TOP_FILES))
    assert all(isinstance(i, Trial) for i in items)
    assert len(items) == 4047  # rows in the eight files
    kept, conflicts = dedupe_trials(items)
    assert len(kept) == 3722
    assert sum(t.label == 1 for t in kept) + sum(t.label == 0 for t in kept) == 3722
    assert len(conflicts) == 17  # trials labelled differently in phase_I_* and toy_* files
    assert all(t.phase is not None and t.interventions and t.conditions for t in kept)
    trial = next(t for t in kept if t.nct_id == "NCT01187615")
    assert trial.label == 0 and trial.phase == Phase.PHASE_1 and trial.overall_status == "terminated"
    assert trial.conditions == ["small cell lung carcinoma"]
    assert trial.eligibility.inclusion[0] == "Age >= 18 years."
    assert trial.eligibility.exclusion


def test_criteria_without_inclusion_and_exclusion_headers_are_split():
    """6% of TOP's trials (one in ten of phase_I_train's) write their criteria without "Inclusion Criteria:" /
    "Exclusion Criteria:" headers (most in the NCI PDQ form); every one of them now gets its items, all
    read as inclusion criteria where no exclusion header exists."""
    trials = {t.nct_id: t for t in iter_sources(TOP_FILES) if isinstance(t, Trial)}
    assert all(t.eligibility.inclusion or t.eligibility.exclusion for t in trials.values())
    # the PDQ form over bulleted items: section headings dropped, a label put before the item under it
    pdq = trials["NCT00068757"].eligibility
    assert pdq.inclusion[0] == "Histologically or cytologically confirmed breast cancer"
    assert "Age: 18 and over" in pdq.inclusion and "Hepatic: Bilirubin no greater than 1.5 times upper limit of normal (ULN)" in pdq.inclusion
    assert not any("CHARACTERISTICS" in item or "PRIOR CONCURRENT THERAPY" in item for item in pdq.inclusion)
    assert pdq.exclusion == [] and pdq.raw.startswith("DISEASE CHARACTERISTICS:")
    # the PDQ form in paragraphs: one item per paragraph, its heading cut off
    inline = trials["NCT00003005"].eligibility.inclusion
    assert len(inline) == 3 and inline[0].startswith("TdT positive acute lymphocytic leukemia")
    # headers written other ways: "Inclusion" / "Exclusion" alone on their lines, "Inc Criteria:", "Inclusion:"
    plain = trials["NCT00063583"].eligibility
    assert plain.inclusion[0] == "Type 1 or type 2 diabetes" and plain.exclusion[0] == "Cancer, liver disease, hepatitis, HIV+"
    assert len(plain.inclusion) == len(plain.exclusion) == 5
    short = trials["NCT01160926"].eligibility
    assert short.inclusion[0] == "Histologically confirmed rectal adenocarcinoma" and len(short.exclusion) == 33
    assert trials["NCT00038194"].eligibility.exclusion[0] == "Patients with severe intercurrent infection."
    # a heading line alone ("Criteria:") goes, a criterion that ends with a colon stays
    assert trials["NCT00379080"].eligibility.inclusion[0] == "Histologically confirmed glioblastoma:"
    # one header standard, the other written another way: "Inclusion:" comes before a criterion that mentions
    # "additional inclusion criteria for Cohort 6", and "Exclusion" alone opens the exclusion list
    mixed = trials["NCT01294540"].eligibility
    assert mixed.inclusion[0] == "Healthy males and females" and len(mixed.inclusion) == 4
    assert mixed.exclusion[0] == "Females of child-bearing potential" and len(mixed.exclusion) == 5
    # a criterion wrapped before its last word ("... do not result in\n exclusion") is no header
    wrapped = trials["NCT03040011"].eligibility
    assert wrapped.inclusion[1].endswith("do not result in exclusion") and len(wrapped.exclusion) == 15


def test_list_literals_are_parsed_safely():
    assert parse_list_literal("['a', \"b\"]", "drugs") == ["a", "b"]
    for bad in ("__import__('os').system('true')", "['a'", "[1, 2]", "{'a': 1}"):
        with pytest.raises(ValueError):
            parse_list_literal(bad, "drugs")


def test_xml_file_yields_every_field():
    (trial,) = list(iter_sources([XML_FILE]))
    assert trial.nct_id == "NCT00000378"
    assert trial.brief_title == "Antidepressant Treatment of Melancholia in Late Life"
    assert trial.official_title.startswith("Antidepressant Treatment of Melancholia")
    assert trial.phase == Phase.PHASE_4
    assert trial.conditions == ["Depression", "Melancholia"]
    assert [i.name for i in trial.interventions] == ["Sertraline", "Nortriptyline"]
    assert trial.interventions[1].other_names == ["nortiptyline"]
    assert trial.interventions[0].description == "12 week trial dose up to 200mgs"
    assert [a.label for a in trial.design.arms] == ["sertaline", "nortriptyline"]
    assert trial.design.arms[0].interventions == ["Sertraline"]
    assert trial.design.allocation == "Randomized" and trial.design.masking.startswith("Triple")
    assert trial.design.primary_purpose == "Treatment" and trial.design.intervention_model == "Parallel Assignment"
    assert trial.primary_outcomes[0].measure == "HAMILTON Rating Scale for DEPRESSION Range"
    assert trial.primary_outcomes[0].time_frame == "BASELINE COMPARED TO 12 WEEK MEASUREMENT"
    assert trial.enrollment == 110
    assert trial.sponsor == "New York State Psychiatric Institute"
    assert (trial.start_date, trial.completion_date) == ("1997-07", "2002-06")
    assert trial.overall_status == "Completed" and trial.why_stopped is None
    e = trial.eligibility
    assert "Unipolar major depression" in " ".join(e.inclusion)
    assert "Psychotic or atypical subtype" in " ".join(e.exclusion)
    assert "\r" not in e.raw and "Exclusion Criteria" in e.raw
    assert (e.sex, e.minimum_age, e.maximum_age, e.healthy_volunteers) == ("All", "60 Years", "95 Years", False)
    assert "\r" not in trial.brief_summary and "sertraline" in trial.brief_summary
    assert "Nortriptyline" in trial.keywords
    assert trial.label is None


def _xml_with_id(nct_id: str) -> bytes:
    return XML_FILE.read_bytes().replace(b"NCT00000378", nct_id.encode())


def test_xml_folder_tree_and_zip(tmp_path):
    ids = ["NCT00000378", "NCT00000379", "NCT01000001"]
    for nct in ids:
        folder = tmp_path / "tree" / f"{nct[:7]}xxxx"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{nct}.xml").write_bytes(_xml_with_id(nct))
    assert sorted(t.nct_id for t in iter_sources([tmp_path / "tree"])) == ids
    archive = tmp_path / "AllPublicXML.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for nct in ids:
            zf.writestr(f"{nct[:7]}xxxx/{nct}.xml", _xml_with_id(nct))
        zf.writestr("Contents.txt", "not a study")
    assert sorted(t.nct_id for t in iter_sources([archive])) == ids


def test_truncated_xml_is_a_record_error(tmp_path):
    bad = tmp_path / "NCT00000001.xml"
    bad.write_bytes(XML_FILE.read_bytes()[:5000])
    (item,) = list(iter_sources([bad]))
    assert isinstance(item, InputError) and str(bad) in item.line and "XML" in item.line
    with pytest.raises(InputError, match="truncated XML"):
        read_trials([bad])


def test_corrupt_zip(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("NCT00000378.xml", XML_FILE.read_bytes())
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(InputError, match="corrupt or truncated zip"):
        list(iter_sources([truncated]))


def test_api_v2_json_single_page_folder_zip(tmp_path):
    study = json.loads((FIXTURES / "ctgov_v2_study.json").read_text())
    (trial,) = list(iter_sources([FIXTURES / "ctgov_v2_study.json"]))
    assert trial.nct_id == "NCT01234567" and trial.phase == Phase.PHASE_2_3
    assert trial.overall_status == "terminated" and trial.why_stopped == "Slow accrual"
    assert trial.enrollment == 140 and trial.design.allocation == "randomized" and trial.design.masking == "quadruple"
    assert trial.eligibility.inclusion == ["Age 12 to 19 years", "Type 1 diabetes for at least 1 year", "HbA1c 7.5% to 9.9%"]
    assert trial.eligibility.exclusion == ["Renal impairment", "Pregnancy"]
    assert trial.interventions[0].other_names == ["Glucophage"] and trial.sponsor == "Example University Hospital"
    assert [o.measure for o in trial.secondary_outcomes] == ["Total daily insulin dose", "BMI z-score"]
    assert (trial.start_date, trial.completion_date) == ("2012-03", "2014-09")

    second = json.loads(json.dumps(study))
    second["protocolSection"]["identificationModule"]["nctId"] = "NCT07654321"
    second["protocolSection"]["designModule"]["phases"] = ["NA"]
    page = tmp_path / "page.json"
    page.write_text(json.dumps({"studies": [study, second], "nextPageToken": "abc"}))
    trials = list(iter_sources([page]))
    assert [t.nct_id for t in trials] == ["NCT01234567", "NCT07654321"]
    assert trials[1].phase == Phase.NOT_APPLICABLE

    folder = tmp_path / "studies"
    folder.mkdir()
    shutil.copy(FIXTURES / "ctgov_v2_study.json", folder / "NCT01234567.json")
    (folder / "NCT07654321.json").write_text(json.dumps(second))
    assert sorted(t.nct_id for t in iter_sources([folder])) == ["NCT01234567", "NCT07654321"]
    archive = tmp_path / "studies.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(folder / "NCT01234567.json", "a/NCT01234567.json")
        zf.write(folder / "NCT07654321.json", "a/NCT07654321.json")
    assert sorted(t.nct_id for t in iter_sources([archive])) == ["NCT01234567", "NCT07654321"]


def test_bad_json(tmp_path):
    truncated = tmp_path / "t.json"
    truncated.write_text((FIXTURES / "ctgov_v2_study.json").read_text()[:400])
    with pytest.raises(InputError, match="corrupt or truncated JSON"):
        list(iter_sources([truncated]))
    wrong = tmp_path / "w.json"
    wrong.write_text(json.dumps({"studies": [{"protocolSection": {"identificationModule": {}}}]}))
    (item,) = list(iter_sources([wrong]))
    assert isinstance(item, InputError) and "study 0" in item.line and "nctId" in item.line
    shape = tmp_path / "s.json"
    shape.write_text(json.dumps({"hello": 1}))
    with pytest.raises(InputError, match="not a ClinicalTrials.gov"):
        list(iter_sources([shape]))


def test_labels_csv_join(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("nctid,label\nNCT00000378,1\nNCT99999999,0\n")
    (trial,) = read_trials([XML_FILE], labels_csv=labels)
    assert trial.label == 1 and "labels.csv" in trial.label_source
    assert read_labels_csv(labels) == {"NCT00000378": 1, "NCT99999999": 0}
    bad = tmp_path / "bad.csv"
    bad.write_text("nctid,label\nNCT00000378,yes\n")
    with pytest.raises(InputError, match=r"bad.csv:row 2: label 'yes' is not 0 or 1"):
        read_labels_csv(bad)
    missing = tmp_path / "missing.csv"
    missing.write_text("id,outcome\nNCT00000378,1\n")
    with pytest.raises(InputError, match="needs the columns nctid and label"):
        read_labels_csv(missing)



def test_csv_problems_name_file_and_row(tmp_path):
    header = "nctid,status,why_stop,label,phase,diseases,icdcodes,drugs,smiless,criteria\n"
    good = "NCT00000001,completed,,1,phase 1,['asthma'],[],['drug a'],[],Inclusion Criteria: - adults\n"
    cases = {
        "literal.csv": (header + good + "NCT00000002,completed,,1,phase 1,['asthma',[],['drug a'],[],x\n",
                        r"literal.csv:row 3 \(NCT00000002\): column 'diseases' is not a valid list literal"),
        "phase.csv": (header + "NCT00000002,completed,,1,phase 9,['asthma'],[],['drug a'],[],x\n",
                      r"phase.csv:row 2 \(NCT00000002\): unknown phase 'phase 9'"),
        "columns.csv": ("nctid,label\nNCT00000001,1\n", r"columns.csv: missing column\(s\) phase, diseases, drugs, criteria"),
        "label.csv": (header + "NCT00000002,completed,,maybe,phase 1,['asthma'],[],['drug a'],[],x\n",
                      r"label.csv:row 2 .*label 'maybe' is not 0 or 1"),
        "id.csv": (header + "NCT2,completed,,1,phase 1,['asthma'],[],['drug a'],[],x\n", r"id.csv:row 2 .*NCT \+ 8 digits"),
    }
    for name, (text, pattern) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(InputError, match=pattern):
            read_trials([path])
    with pytest.raises(InputError, match="no such file"):
        read_trials([tmp_path / "absent.csv"])
