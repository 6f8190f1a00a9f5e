"""The end-to-end demo: ingest, generate, judge, evaluate (TF-IDF and MiniLM), report.

Runs offline on the embedded model by default, within a time budget; every stage is the same
function the CLI and the tests call, and every stage resumes (re-run the demo to continue).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthtrials.evals.data import load_synthetic
from synthtrials.evals.experiment import EvalOptions, run_evaluation
from synthtrials.evals.judge import run_judge
from synthtrials.evals.report import create_report
from synthtrials.graphs.config import GenerationConfig
from synthtrials.graphs.runner import RunOptions, run_generation
from synthtrials.tools.errors import ConfigError, InputError
from synthtrials.tools.ingest import ingest
from synthtrials.tools.llm import LLMConfig
from synthtrials.tools.store import TrialFilter, eligible, grounding_filter, open_store

TOP_FILES = ("phase_I_train.csv", "phase_I_valid.csv", "phase_I_test.csv")
Say = Callable[[str], None]


def run_demo(data: Path, out: Path, *, n: int = 6, minutes: float = 7.0, llm: LLMConfig | None = None,
             transformer_train: int | None = None, say: Say = print,
             stage_progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    missing = [name for name in TOP_FILES if not (data / name).is_file()]
    if missing:
        raise ConfigError(f"{data}: missing {', '.join(missing)} (the TOP benchmark CSVs; see `synthtrials data download top`)")
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"out": str(out)}

    say("1/5 ingest the real trials into a store")
    store = open_store(out / "store")
    report = ingest(store, sorted(data.glob("*.csv")),
                    on_embed=(lambda d, t: stage_progress("embedding", d, t)) if stage_progress else None)
    results["store_trials"] = store.count()
    results["eligible"] = len(eligible(store, k=3, flt=grounding_filter(["train"])))
    store.close()
    say(f"    {report.stored} trials, {results['eligible']} eligible drugs (k=3); splits "
        + ", ".join(f"{name} {n}" for name, n in report.splits.items()))

    say(f"2/5 generate up to {n} synthetic trials ({minutes:g} min budget, {(llm or LLMConfig()).model_label()})")
    generation = GenerationConfig(llm=llm or LLMConfig(), ground_on=["train"])
    say("    grounded on the train split only: no valid or test trial is read while generating")
    run_dir = out / "run"
    summary = run_generation(RunOptions(store=str(out / "store"), out=run_dir, n=n, generation=generation,
                                        max_minutes=minutes, concurrency=4),
                             on_progress=(lambda p: stage_progress("generating", p.accepted, n)) if stage_progress else None)
    results["generation"] = summary
    say(f"    accepted {summary['accepted']} of {summary['draws']} draws "
        f"(acceptance {summary['acceptance_rate']:.0%}, writer valid {summary['writer_valid_share']:.0%})")

    synthetic = load_synthetic_or_empty(run_dir)
    labels = {t.label for t in synthetic}
    usable = len(synthetic) >= 4 and labels == {0, 1} and min(
        sum(t.label == label for t in synthetic) for label in (0, 1)) >= 2

    say("3/5 LLM judge (synthetic trials and 5 real ones as calibration)")
    store = open_store(out / "store", create=False)
    real = [t for t in store.filter(TrialFilter(source="real")) if t.label is not None]
    store.close()
    if synthetic:
        results["judge"] = run_judge(synthetic, real, generation.llm.model_copy(update={"max_tokens": 300}),
                                     run_dir / "judge", n_real=5)
    else:
        say("    no accepted synthetic trial to judge")

    say("4/5 evaluate outcome prediction: TF-IDF (3 seeds) and MiniLM (1 seed)")
    common = dict(real_train=str(data / "phase_I_train.csv"), real_test=str(data / "phase_I_test.csv"),
                  real_valid=str(data / "phase_I_valid.csv"), synthetic=str(run_dir) if usable else None)
    if not usable:
        say("    too few synthetic trials of each label for synthetic/hybrid training: real-only baselines")
    results["tfidf"] = run_evaluation(EvalOptions(**common, classifier="tfidf", out=run_dir / "eval_tfidf",
                                                  sweeps=["ratio", "fidelity"] if usable else []))
    train = common["real_train"]
    if transformer_train:
        train = str(_subset_csv(data / "phase_I_train.csv", run_dir / "phase_I_train_subset.csv", transformer_train))
    results["minilm"] = run_evaluation(
        EvalOptions(**{**common, "real_train": train}, classifier="transformer", max_length=128, epochs=1,
                    batch_size=16, learning_rate=5e-5, seeds=[40], out=run_dir / "eval_minilm"),
        step_progress=stage_progress)

    say("5/5 report")
    if synthetic:
        results["report"] = str(create_report(run_dir, max_real=800))
    else:
        say("    no synthetic trial: no report")
    return results


def load_synthetic_or_empty(run_dir: Path) -> list:
    try:
        return load_synthetic(run_dir)
    except (ConfigError, InputError):  # no trials, or one label only: reported by the caller
        file = run_dir / "trials.jsonl"
        if not file.exists():
            return []
        from synthtrials.tools.trial import Trial

        return [Trial.model_validate_json(line) for line in file.read_text().splitlines() if line.strip()]


def _subset_csv(source: Path, target: Path, rows: int) -> Path:
    import csv

    from synthtrials.tools.atomic import atomic_open

    with source.open(newline="") as handle, atomic_open(target) as out:
        reader = csv.reader(handle)
        writer = csv.writer(out)
        for number, row in enumerate(reader):
            if number > rows:
                break
            writer.writerow(row)
    return target
