"""The end-to-end demo: ingest, generate, judge, evaluate (TF-IDF and MiniLM), report.

Runs offline on the embedded model by default, within a time budget; every stage is the same
function the CLI and the tests call, and every stage resumes (re-run the demo to continue).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field
from synthtrials.agents.writer_adaptation import AdaptOptions, adapt
from synthtrials.evals.data import load_synthetic
from synthtrials.evals.experiment import EvalOptions, run_evaluation
from synthtrials.evals.judge import run_judge
from synthtrials.evals.report import create_report
from synthtrials.graphs.config import GenerationConfig
from synthtrials.graphs.runner import RunOptions, run_generation
from synthtrials.tools.llm.adapter_folder import adapter_sha256
from synthtrials.tools.knowledge.calibration import load_or_calibrate
from synthtrials.tools.errors import ConfigError, InputError
from synthtrials.tools.store.ingest import ingest
from synthtrials.tools.llm.llama_server import stop_servers
from synthtrials.tools.llm.client import LLMConfig
from synthtrials.tools.llm.config import backend_named, backend_of
from synthtrials.tools.progress import ProgressFn, SayFn, StageProgressFn
from synthtrials.tools.run_folder import trials_file
from synthtrials.tools.store.protocol import (
    eligible,
    grounding_filter,
)
from synthtrials.tools.store.trial_store import open_store

TOP_FILES = ("phase_I_train.csv", "phase_I_valid.csv", "phase_I_test.csv")


def embedded_backend(name: str) -> str:
    """The demo runs the bundled model: a backend that decodes a local GGUF file."""
    if not backend_named(name).local_gguf:
        raise ValueError(f"{name} does not run the bundled model (give a model option to use it)")
    return name


class DemoOptions(BaseModel):
    """Every default of the demo, in one place (the CLI passes only what the user gave)."""

    n: int = Field(20, ge=1, description="synthetic trials to aim for")
    minutes: float = Field(4.0, gt=0, description="time budget for generation")
    adapt_trials: int = Field(60, ge=1, description="grounding trials the writer is adapted on")
    adapt_minutes: float = Field(4.0, gt=0, description="time budget for the adaptation (about 40k training tokens)")
    adapt_learning_rate: float = Field(1e-3, gt=0, description="the adaptation's peak learning rate: 14 steps at "
                                                               "`adapt`'s 2e-4 barely moved the loss and 27% of the "
                                                               "drafts were accepted; at 1e-3, 65% (benchmarks/RESULTS.md)")
    judge_trials: int = Field(10, ge=1, description="synthetic trials the LLM judge scores")
    backend: Annotated[str, AfterValidator(embedded_backend)] = Field(
        "llamacpp-server", description="the embedded model's backend when no model option is given: llama.cpp's "
                                       "server (parallel draws, the adapter merged into Q4_0 weights) or in process")
    concurrency: int = Field(16, ge=1, description="parallel draws (llama.cpp's server slots; 16 decoded 1.4x "
                                                   "faster than 8 under the grammar: benchmarks/RESULTS.md)")
    transformer_train: int | None = Field(None, ge=10, description="train MiniLM on the first N real trials only")


def run_demo(data: Path, out: Path, options: DemoOptions | None = None, *, llm: LLMConfig | None = None,
             say: SayFn = print, stage_progress: StageProgressFn | None = None) -> dict[str, Any]:
    options = options or DemoOptions()
    n, minutes = options.n, options.minutes
    missing = [name for name in TOP_FILES if not (data / name).is_file()]
    if missing:
        raise ConfigError(f"{data}: missing {', '.join(missing)} (the TOP benchmark CSVs; see `synthtrials data download top`)")
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"out": str(out)}
    embedded = llm is None  # no model option given: the embedded model on options.backend
    llm = llm or LLMConfig(backend=options.backend)

    def stage(label: str) -> ProgressFn | None:
        return (lambda done, total: stage_progress(label, done, total)) if stage_progress else None

    marks: list[tuple[str, float]] = []  # (stage, its start)

    def begin(name: str, message: str) -> None:
        marks.append((name, time.perf_counter()))
        say(message)

    begin("ingest", "1/6 ingest TOP phase I (train, valid, test) into a store; embed the train split's sections for the critic")
    store = open_store(out / "store")
    report = ingest(store, [data / name for name in TOP_FILES], on_embed=stage("embedding trials"),
                    on_sections=stage("embedding sections"))
    results["store_trials"] = store.count()
    results["eligible"] = len(eligible(store, k=3, flt=grounding_filter(["train"])))
    calibration = load_or_calibrate(store, ["train"], say=lambda m: say("    " + m), progress=stage("calibrating the critic"))
    store.close()
    say(f"    {report.stored} trials, splits " + ", ".join(f"{name} {c}" for name, c in report.splits.items())
        + f"; {results['eligible']} drugs eligible at k=3; critic calibrated: rejects "
        f"{calibration.real_rejection:.1%} of real train trials"
        + (f" ({calibration.cross_fitted_rejection:.1%} cross-fitted)" if calibration.cross_fitted_rejection is not None else ""))

    adapter = None
    if backend_of(llm).adapts:
        begin("adapt", f"2/6 adapt the embedded writer to {options.adapt_trials} train trials (LoRA, at most "
            f"{options.adapt_minutes:g} min; cached: a re-run skips it)")
        adapter = out / "adapter"
        info = adapt(AdaptOptions(store=str(out / "store"), out=adapter, ground_on=["train"], base=llm.model_path or "smollm2",
                                  max_trials=options.adapt_trials, minutes=options.adapt_minutes,
                                  learning_rate=options.adapt_learning_rate),
                     progress=(lambda step, steps, loss, speed: stage_progress("adapting", step, steps))
                     if stage_progress else None, say=lambda m: say("    " + m))
        results["adapter"] = info.model_dump(exclude={"draft", "trained_on", "loss"})
        say(f"    {info.steps} steps, {info.tokens} tokens, {info.tokens_per_second:.0f} tokens/s, "
            f"loss {info.loss[0]:.2f} -> {info.loss[-1]:.2f}")
    else:
        begin("adapt", "2/6 adapt: skipped (the model is behind an API)")

    begin("generate", f"3/6 generate up to {n} synthetic trials ({minutes:g} min budget, {llm.model_label()}"
        f"{' + adapter' if adapter else ''}), grounded on the train split only: no valid or test trial is read")
    # the embedded model's reasons are templated from the registry evidence (its own measured as mostly
    # invalid: benchmarks/RESULTS.md); a hosted model's are measured once and picked (auto)
    generation = GenerationConfig(llm=llm, ground_on=["train"], k=2, writer_adapter=str(adapter) if adapter else None,
                                  writer_adapter_sha256=adapter_sha256(adapter) if adapter else None,
                                  reasoner="evidence" if adapter else "auto")
    run_dir = out / "run"
    summary = run_generation(RunOptions(store=str(out / "store"), out=run_dir, n=n, generation=generation,
                                        max_minutes=minutes, plan_min_trials=1,
                                        concurrency=options.concurrency if embedded else None),
                             on_progress=(lambda p: stage_progress("generating", p.accepted, n)) if stage_progress else None,
                             say=lambda m: say("    " + m))
    results["generation"] = summary
    say(f"    accepted {summary.accepted} of {summary.draws} draws "
        f"(acceptance {summary.acceptance_rate:.0%}, writer valid {summary.writer_valid_share:.0%})")

    synthetic = load_synthetic_or_empty(run_dir)
    labels = {t.label for t in synthetic}
    usable = len(synthetic) >= 4 and labels == {0, 1} and min(
        sum(t.label == label for t in synthetic) for label in (0, 1)) >= 2

    begin("judge", f"4/6 LLM judge ({options.judge_trials} synthetic trials and 5 real ones as calibration)")
    store = open_store(out / "store", create=False)
    real = [t for t in store.filter(grounding_filter(["train"])) if t.label is not None]
    store.close()
    if synthetic:
        results["judge"] = run_judge(synthetic[:options.judge_trials], real,
                                     generation.llm.model_copy(update={"max_tokens": 300}),
                                     run_dir / "judge", n_real=5)
        stop_servers()  # the judge's model server is not needed past this stage
    else:
        say("    no accepted synthetic trial to judge")

    begin("evaluate", "5/6 evaluate outcome prediction: TF-IDF (3 seeds) and MiniLM (1 seed); the leakage guard checks the "
        "synthetic trials against phase_I_test and phase_I_valid")
    common = dict(real_train=str(data / "phase_I_train.csv"), real_test=str(data / "phase_I_test.csv"),
                  real_valid=str(data / "phase_I_valid.csv"), synthetic=str(run_dir) if usable else None)
    if not usable:
        say("    too few synthetic trials of each label for synthetic/hybrid training: real-only baselines")
    results["tfidf"] = run_evaluation(EvalOptions(**common, classifier="tfidf", out=run_dir / "eval_tfidf",
                                                  sweeps=["ratio", "fidelity"] if usable else []))
    train = common["real_train"]
    if options.transformer_train:
        train = str(_subset_csv(data / "phase_I_train.csv", run_dir / "phase_I_train_subset.csv",
                                options.transformer_train))
    results["minilm"] = run_evaluation(
        EvalOptions(**{**common, "real_train": train}, classifier="transformer", epochs=1, seeds=[40],
                    out=run_dir / "eval_minilm"),
        step_progress=stage_progress)

    begin("report", "6/6 report")
    if synthetic:
        results["report"] = str(create_report(run_dir, max_real=800))
    else:
        say("    no synthetic trial: no report")
    ends = [start for _, start in marks[1:]] + [time.perf_counter()]
    results["stage_seconds"] = seconds = {name: round(end - start, 1) for (name, start), end in zip(marks, ends)}
    say("    wall time by stage: " + ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items())
        + f"; total {sum(seconds.values()) / 60:.1f} min")
    return results


def load_synthetic_or_empty(run_dir: Path) -> list:
    try:
        return load_synthetic(run_dir)
    except (ConfigError, InputError):  # no trials, or one label only: reported by the caller
        file = trials_file(run_dir)
        if not file.exists():
            return []
        from synthtrials.tools.records.trial import Trial

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
