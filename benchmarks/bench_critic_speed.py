"""The critic's speed, and the fixed set of trials on which its verdicts must not change.

The cases (`critic_cases`): 30 real phase_I_valid trials, 10 phase_I_train trials of the store
(scored leave-one-out, as `synthtrials check` scores a trial the store holds) and the valid trials
spoiled one way each (another trial's conditions, eligibility or drugs; a condition listed as a
drug; criteria cut to fragments; fluent criteria of another domain; no eligibility; no conditions).
Two paths of the critic run on them (`critic_records`): `check_trials` (what `synthtrials check`,
bench_critic and calibration use) and `critique_trial` one draft at a time, as the graph's critique
node calls it, with the index of accepted synthetic trials filling up (near-duplicate checks).

    python benchmarks/bench_critic_speed.py --calibration 100   # seconds per draft (the table)
    python benchmarks/bench_critic_speed.py --write-fixture tests/fixtures/critic_verdicts.json

The timings run on phase_I_train whole (the critic the project ships) and the first 120 trials of
phase_I_test, each path on a fresh copy of the store whose section cache holds the real sections
only (a draft's sections are new to the critic). `--write-fixture` records the verdicts, failed
checks and scores of both paths, and the calibrated thresholds they were judged with, on a store
made as the tests' `phase1_store_path` is (tests/support.py); tests/test_critic_speed.py recomputes
them with the code of the day. The file was first written by the critic before batching (commit
ed083e5), which the batched critic of issue 19 matched; issue 20 added the coherence scores and
spent the calibration budget otherwise, and the file was re-recorded with that critic (again
when calibration version 5 bagged and cross-fitted the budget, when version 6 scored each spoiled
copy without the trial it took its section from, and when version 7 added the joint score, recorded with
the thresholds: `recorded_thresholds`; and when the reader split criteria written without headers and
version 8 added a spoiled kind, stop 46)
(`critic_files` holds the blob ids of the files that ran). Re-record it whenever the critic's
verdicts change on purpose, or the tests' store changes (the store this script keeps is built again when
the reader's files change: `reader_stamp`):

    python benchmarks/bench_critic_speed.py --write-fixture tests/fixtures/critic_verdicts.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).parents[1] / "tests"))  # support: the tests' store recipe
import synthtrials  # noqa: E402
from common import OUT, TOP, print_table  # noqa: E402
from synthtrials.agents.critic import check_trials, critique_trial  # noqa: E402
from synthtrials.graphs.resources import SyntheticIndex  # noqa: E402
from synthtrials.tools.knowledge.calibration import build_knowledge, load_or_calibrate  # noqa: E402
from synthtrials.tools.knowledge.checks import CriticThresholds  # noqa: E402
from synthtrials.tools.knowledge.domain import DomainKnowledge, trial_sections  # noqa: E402
from synthtrials.tools.knowledge.joint import JointScore  # noqa: E402
from synthtrials.tools.readers import read_trials  # noqa: E402
from synthtrials.tools.store.protocol import (
    TrialStore,
    grounding_filter,
)
from synthtrials.tools.store.trial_store import open_store
from synthtrials.tools.records.trial import Eligibility, Intervention, Trial, render_for_embedding  # noqa: E402
from synthtrials.tools.records.writer_format import DraftSpec  # noqa: E402

SPLITS = ["train"]
N_VALID = 30
N_HELD = 10
N_EDGE = 5  # valid trials that lose their eligibility / their conditions
#: fluent English criteria of another domain (any text a writer could produce instead of criteria)
OFF_DOMAIN = ("The package must be delivered to the front desk before noon on weekdays.",
              "Customers may return unused items within thirty days of purchase.",
              "The train leaves the central station every fifteen minutes during rush hour.",
              "Spreadsheets should be saved in the shared folder at the end of each week.",
              "The recipe calls for two cups of flour and a pinch of salt.")


def open_phase1_store(path: Path, like_tests: bool = False) -> TrialStore:
    """The phase I store, built on first use (ingest embeds every trial and section): phase_I_train
    whole (the critic the project ships: the timings), or as the tests' session store has it
    (`like_tests`: the subset `tests/support.drug_complete_subset` keeps: the fixture), and the first
    120 trials of phase_I_test."""
    from support import drug_complete_subset, head_csv
    from synthtrials.tools.store.ingest import ingest

    stamp = reader_stamp()
    done = path / "DONE"
    if not done.exists() or done.read_text() != stamp:  # none yet, or ingested by another reader: build it again
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
        store = open_store(path)
        train = TOP / "phase_I_train.csv"
        if like_tests:
            train = drug_complete_subset(train, path / "phase_I_train.csv")
        ingest(store, [train, head_csv(TOP / "phase_I_test.csv", path / "phase_I_test.csv", 120)])
        store.close()
        done.write_text(stamp)
    return open_store(path, create=False)


#: the files that read the TOP CSVs into trials and store them: a store ingested by other versions of them
#: holds other trials
READER_FILES = ("tools/readers/text.py", "tools/readers/top_csv.py", "tools/records/trial.py", "tools/store/ingest.py")


def reader_stamp() -> str:
    """The blob ids of `READER_FILES`, as the store's DONE marker records them."""
    package = Path(synthtrials.__file__).parent
    return "".join(f"ingested by {name} {git_blob_id(package / name)}\n" for name in READER_FILES)


def _criteria(trial: Trial) -> list[str]:
    return (trial.eligibility.inclusion + trial.eligibility.exclusion) if trial.eligibility else []


def critic_cases(store: TrialStore, top: Path = TOP) -> list[tuple[str, Trial]]:
    """(case id, trial) for every case, in a fixed order, from the real TOP files (the held trials:
    the first phase_I_train trials of the store's grounding split)."""
    valid = read_trials([top / "phase_I_valid.csv"])[:N_VALID]
    grounding = set(store.filter_ids(grounding_filter(SPLITS)))
    held = [t for t in read_trials([top / "phase_I_train.csv"]) if t.nct_id in grounding][:N_HELD]
    rng = random.Random(19)
    cases = [(f"valid:{t.nct_id}", t) for t in valid] + [(f"held:{t.nct_id}", t) for t in held]
    for i, trial in enumerate(valid):
        other = valid[(i + N_VALID // 2) % N_VALID]
        inclusion = trial.eligibility.inclusion if trial.eligibility else []
        exclusion = trial.eligibility.exclusion if trial.eligibility else []
        cut = [c[:rng.randint(8, 20)] for c in inclusion + exclusion]
        spoiled = {
            "swapped_conditions": {"conditions": other.conditions},
            "swapped_eligibility": {"eligibility": other.eligibility},
            "swapped_drugs": {"interventions": other.interventions},
            "condition_as_drug": {"interventions": trial.interventions[:1] + [
                Intervention(name=(other.conditions or ["tuberculosis infection"])[0])]},
            "fragments": {"eligibility": Eligibility(inclusion=cut[:len(inclusion)], exclusion=cut[len(inclusion):])},
            "off_domain_criteria": {"eligibility": Eligibility(
                inclusion=rng.sample(OFF_DOMAIN, 3), exclusion=exclusion[:2])},
        }
        if i < N_EDGE:
            spoiled["no_eligibility"] = {"eligibility": None}
            spoiled["no_conditions"] = {"conditions": []}
        cases += [(f"{kind}:{trial.nct_id}", trial.model_copy(update=update)) for kind, update in spoiled.items()]
    return cases


def as_draft(number: int, trial: Trial) -> Trial:
    """A case as the graph sees a draft: a synthetic id, no status."""
    return trial.model_copy(update={"nct_id": f"SYN-{number:08x}", "source": "synthetic", "overall_status": None,
                                    "why_stopped": None})


def graph_critiques(cases: Sequence[tuple[str, Trial]], store: TrialStore, knowledge: DomainKnowledge,
                    thresholds: CriticThresholds, fields: Sequence[str]) -> dict[str, dict]:
    """`critique_trial` draft by draft, as the graph's node calls it; accepted drafts join the
    synthetic index the way the graph adds them (their rendering embedded on its own)."""
    grounding = grounding_filter(SPLITS)
    synthetic = SyntheticIndex()
    out = {}
    for number, (case, trial) in enumerate(cases):
        draft = as_draft(number, trial)
        target = draft.interventions[0].name if draft.interventions else None
        result = critique_trial(draft, store=store, knowledge=knowledge, thresholds=thresholds, fields=fields,
                                grounding=grounding, target=target, synthetic=synthetic)
        if not result.problems:
            synthetic.add(draft.nct_id, store.embeddings.embed_array([render_for_embedding(draft)])[0])
        out[case] = {"failed_checks": result.failed_checks, "scores": result.scores, "neighbours": result.neighbours}
    return out


def checked(cases: Sequence[tuple[str, Trial]], store: TrialStore, knowledge: DomainKnowledge,
            thresholds: CriticThresholds, fields: Sequence[str]) -> dict[str, dict]:
    verdicts = check_trials([t for _, t in cases], store=store, splits=SPLITS, knowledge=knowledge,
                            thresholds=thresholds, fields=fields)
    return {case: {"verdict": v.verdict, "failed_checks": v.failed_checks, "scores": v.scores}
            for (case, _), v in zip(cases, verdicts)}


def critic_records(cases: Sequence[tuple[str, Trial]], store: TrialStore, knowledge: DomainKnowledge,
                   thresholds: CriticThresholds, fields: Sequence[str]) -> dict[str, dict[str, dict]]:
    return {"check_trials": checked(cases, store, knowledge, thresholds, fields),
            "critique_trial": graph_critiques(cases, store, knowledge, thresholds, fields)}


def differences(expected: dict[str, dict], actual: dict[str, dict], tolerance: float = 1e-4) -> list[str]:
    """Every way `actual` differs from `expected` (verdicts, failed checks, neighbours exactly; scores
    within `tolerance`), one line each."""
    out = [f"{case}: missing" for case in expected if case not in actual]
    for case, want in expected.items():
        got = actual.get(case)
        if got is None:
            continue
        for key in ("verdict", "failed_checks", "neighbours"):
            if key in want and want[key] != got.get(key):
                out.append(f"{case}: {key} {want[key]} != {got.get(key)}")
        if set(want["scores"]) != set(got["scores"]):
            out.append(f"{case}: scores {sorted(want['scores'])} != {sorted(got['scores'])}")
        for name in sorted(set(want["scores"]) & set(got["scores"])):
            a, b = want["scores"][name], got["scores"][name]
            if (a is None) != (b is None) or (a is not None and abs(a - b) > tolerance):
                out.append(f"{case}: score {name} {a} != {b}")
    return out


def setting(store_path: Path, like_tests: bool = False
            ) -> tuple[TrialStore, DomainKnowledge, CriticThresholds, tuple[str, ...], float]:
    store = open_phase1_store(store_path, like_tests)
    start = time.perf_counter()
    knowledge = build_knowledge(store, SPLITS)
    built = time.perf_counter() - start
    calibration = load_or_calibrate(store, SPLITS, knowledge, say=print)
    thresholds = calibration.critic_thresholds()
    fields = DraftSpec.from_trials(store.filter(grounding_filter(SPLITS))).fields
    return store, knowledge, thresholds, fields, built


RECORDS = ("check_trials", "critique_trial")
ABSENT = "absent"


def dump_fixture(data: dict) -> str:
    """The fixture as JSON, one line per case, each case's scores a list in the order of
    `score_names`, "absent" for a score the critic did not report (small, and a changed case is a
    one-line diff)."""
    names = sorted({name for key in RECORDS for record in data[key].values() for name in record["scores"]})
    lines = [f"{json.dumps(key)}: {json.dumps(value)}" for key, value in data.items() if key not in RECORDS]
    lines.append(f'"score_names": {json.dumps(names)}')
    for key in RECORDS:
        cases = [f"  {json.dumps(case)}: "
                 + json.dumps({**record, "scores": [record["scores"].get(n, ABSENT) for n in names]})
                 for case, record in data[key].items()]
        lines.append(f"{json.dumps(key)}: {{\n" + ",\n".join(cases) + "\n}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def load_fixture(path: Path) -> dict:
    """The fixture `dump_fixture` wrote, each case's scores a dict again."""
    data = json.loads(path.read_text())
    names = data.pop("score_names")
    for key in RECORDS:
        for record in data[key].values():
            record["scores"] = {n: v for n, v in zip(names, record["scores"]) if v != ABSENT}
    return data


def recorded_thresholds(recorded: dict) -> CriticThresholds:
    """The thresholds (and the joint score) the fixture's verdicts were judged with."""
    joint = recorded.get("joint")
    return CriticThresholds(calibrated=recorded["thresholds"], calibration=recorded["calibration"],
                            joint=JointScore.model_validate(joint) if joint else None)


CRITIC_FILES = ("agents/critic.py", "tools/knowledge/domain.py", "tools/knowledge/calibration.py", "tools/knowledge/checks.py", "tools/store/embeddings.py",
                "tools/knowledge/coherence.py", "tools/knowledge/joint.py", "tools/knowledge/cross_encoder.py",
                "tools/knowledge/criterion_fit.py", "tools/knowledge/criterion_language.py")


def git_blob_id(path: Path) -> str:
    """The file's git blob id (what `git ls-tree` shows for it in a commit)."""
    import hashlib

    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def write_fixture(target: Path, store_path: Path) -> None:
    store, knowledge, thresholds, fields, _ = setting(store_path, like_tests=True)
    cases = critic_cases(store)
    records = critic_records(cases, store, knowledge, thresholds, fields)
    package = Path(synthtrials.__file__).parent
    blobs = {name: git_blob_id(package / name) for name in CRITIC_FILES}  # `git ls-tree <commit>` names them
    data = {"written_by": "benchmarks/bench_critic_speed.py --write-fixture",
            "critic_files": blobs,
            "store": "tests' phase1_store_path: drug_complete_subset(phase_I_train) (train) + first 120 of "
                     "phase_I_test (test); grounding train",
            "calibration": thresholds.calibration, "thresholds": thresholds.calibrated,
            "joint": thresholds.joint.model_dump() if thresholds.joint else None, "fields": list(fields),
            "cases": len(cases), **records}
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(dump_fixture(data))
    verdicts = records["check_trials"].values()
    print(f"{target}: {len(cases)} cases, {sum(v['verdict'] == 'accept' for v in verdicts)} accepted by check_trials")
    store.close()


def fresh_copy(store_path: Path, target: Path) -> Path:
    """A copy of the store whose cache of section vectors holds the grounding sections only: the
    drafts' sections are new to it, as a new draft's are to the critic (an earlier run of this script
    may have cached them)."""
    import sqlite3

    open_phase1_store(store_path).close()
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(store_path, target)
    store = open_store(target, create=False)
    grounding = [text for t in store.filter(grounding_filter(SPLITS)) for _, text in trial_sections(t)]
    store.close()
    with sqlite3.connect(target / "trials.sqlite") as db:
        db.execute("CREATE TEMP TABLE keep (text TEXT PRIMARY KEY)")
        db.executemany("INSERT OR IGNORE INTO keep VALUES (?)", ((t,) for t in grounding))
        db.execute("DELETE FROM section_vectors WHERE text NOT IN (SELECT text FROM keep)")
    return target


def timing(store_path: Path, calibration: int) -> None:
    """Seconds per draft of each path, each on its own fresh copy of the store."""
    store = open_phase1_store(store_path)
    cases = critic_cases(store)
    store.close()
    rows: list[list[object]] = []
    paths = {"critique_trial, one draft at a time (graph node)": graph_critiques,
             "check_trials, all cases (synthtrials check)": checked}
    criteria = 0
    for what, run in paths.items():
        copy = fresh_copy(store_path, OUT / "critic_speed_store_timing")
        store, knowledge, thresholds, fields, built = setting(copy)
        criteria = len(knowledge.index["criterion"])
        if not rows:
            rows.append(["domain knowledge of the train split (load)", len(knowledge.trials), f"{built:.2f}", "-"])
        store.embeddings.embed_array(["the encoder loaded before timing"])
        start = time.perf_counter()
        run(cases, store, knowledge, thresholds, fields)
        seconds = time.perf_counter() - start
        rows.append([what, len(cases), f"{seconds:.2f}", f"{seconds / len(cases):.4f}"])
        if calibration and run is checked:
            trials = knowledge.trials[:calibration]
            start = time.perf_counter()
            for trial in trials:  # what `tools.knowledge.calibration.score_matrix` does for every grounding trial
                knowledge.scores(trial, exclude=trial.nct_id)
            seconds = time.perf_counter() - start
            rows.append([f"calibration: train trials scored leave-one-out (first {len(trials)})", len(trials),
                         f"{seconds:.2f}", f"{seconds / len(trials):.4f}"])
        store.close()
    shutil.rmtree(OUT / "critic_speed_store_timing", ignore_errors=True)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print_table(f"Critic speed ({len(cases)} drafts: real phase_I_valid/train trials and spoiled copies; store "
                f"{store_path.name}, grounding train, {criteria} distinct real criteria; load average after: {load})",
                ["what", "trials", "seconds", "seconds per trial"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=None,
                        help="default: benchmarks/out/critic_speed_store (timings: phase_I_train whole), "
                             "benchmarks/out/critic_fixture_store (--write-fixture: the tests' store)")
    parser.add_argument("--write-fixture", type=Path, default=None, help="record the verdicts to this JSON file")
    parser.add_argument("--calibration", type=int, default=0, metavar="N",
                        help="also time the calibration's scoring of the first N train trials")
    args = parser.parse_args()
    if args.write_fixture:
        # the tests compare in float32 (tests/conftest.py), which every CPU computes alike
        os.environ["SYNTHTRIALS_EMBEDDING_PRECISION"] = "float32"
        write_fixture(args.write_fixture, Path(args.store or OUT / "critic_fixture_store"))
    else:
        timing(Path(args.store or OUT / "critic_speed_store"), args.calibration)


if __name__ == "__main__":
    main()
