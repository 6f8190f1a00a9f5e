"""Measuring synthetic trials: `evaluate`, `judge`, `report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from synthtrials.scripts.cli.common import (
    ApiKeyEnvOpt,
    BackendOpt,
    BaseUrlOpt,
    ModelOpt,
    ModelPathOpt,
    StructuredOpt,
    console,
    err_console,
    given,
    llm_config,
    one_line_errors,
    progress_bar,
)
from synthtrials.tools.errors import ConfigError

app = typer.Typer()  # the top-level commands of this module (merged into the root app)


@app.command()
@one_line_errors
def evaluate(
    out: Annotated[Path, typer.Option(help="Folder for metrics.json.")],
    real_train: Annotated[Optional[Path], typer.Option(help="Real training trials (any reader format).", rich_help_panel="Data")] = None,
    real_test: Annotated[Optional[Path], typer.Option(help="Real test trials.", rich_help_panel="Data")] = None,
    real_valid: Annotated[Optional[Path], typer.Option(help="Real validation trials (thresholds, early stopping).", rich_help_panel="Data")] = None,
    real_pool: Annotated[Optional[list[Path]], typer.Option(help="With --split-mode paper: real files to split 60/20/20.", rich_help_panel="Data")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="CSV of nctid,label for real files without labels.", rich_help_panel="Data")] = None,
    synthetic: Annotated[Optional[Path], typer.Option(help="A run folder or a JSONL of synthetic trials.", rich_help_panel="Data")] = None,
    split_mode: Annotated[Optional[str], typer.Option("--split-mode", "--split", help="files (default: the given train/valid/test) or paper (60/20/20 of --real-pool per seed).", rich_help_panel="Data")] = None,
    no_provenance_check: Annotated[bool, typer.Option("--no-provenance-check", help="Accept synthetic trials without provenance (metrics.json says so).", rich_help_panel="Data")] = False,
    drop_contaminated: Annotated[bool, typer.Option("--drop-contaminated", help="Drop synthetic trials whose text reproduces a test or validation trial (13-gram overlap or embedding similarity above the threshold calibrated on real train-vs-held-out pairs) instead of refusing the set; metrics.json lists them.", rich_help_panel="Data")] = False,
    classifier: Annotated[Optional[str], typer.Option(help="tfidf (default) or transformer.", rich_help_panel="Classifier")] = None,
    model: Annotated[Optional[str], typer.Option(help="Transformer: Hugging Face id or local path (default bundled MiniLM).", rich_help_panel="Classifier")] = None,
    seeds: Annotated[Optional[list[int]], typer.Option(help="Seeds (default 40 41 42): --seeds 40 41, --seeds 40,41 or repeated.", rich_help_panel="Classifier")] = None,
    sweeps: Annotated[Optional[list[str]], typer.Option(help="ratio, low_resource, generalisation, fidelity.", rich_help_panel="Classifier")] = None,
    ladder: Annotated[Optional[bool], typer.Option("--ladder/--no-ladder", help="The utility ladder: the synthetic set against shuffled, plan-only and echo controls from the real training trials (default: on for tfidf; for transformer 8 more fine-tunings per seed, so ask).", rich_help_panel="Classifier")] = None,
    max_length: Annotated[Optional[int], typer.Option(help="Transformer: tokens per trial.", rich_help_panel="Classifier")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Transformer: epochs.", rich_help_panel="Classifier")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="Transformer: learning rate.", rich_help_panel="Classifier")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Transformer: batch size.", rich_help_panel="Classifier")] = None,
) -> None:
    """Train classifiers on real / synthetic / hybrid trials over seeds; write metrics.json.

    Synthetic trials grounded on a test or validation trial are refused (the leakage guard), so are
    those whose text reproduces one (decontamination; --drop-contaminated drops them), and every
    classifier reads the fields most real training trials have (like for like).
    """
    from pydantic import ValidationError
    from synthtrials.evals.experiment import EvalOptions, Evaluation
    from synthtrials.evals.metrics import METRICS
    from synthtrials.tools.errors import describe

    try:
        options = EvalOptions(out=out, real_pool=[str(p) for p in real_pool or []],
                              provenance_check=not no_provenance_check, drop_contaminated=drop_contaminated,
                              sweeps=sweeps or [], **given(
                                  real_train=str(real_train) if real_train else None,
                                  real_test=str(real_test) if real_test else None,
                                  real_valid=str(real_valid) if real_valid else None,
                                  labels=str(labels) if labels else None,
                                  synthetic=str(synthetic) if synthetic else None, classifier=classifier, model=model,
                                  seeds=seeds, split_mode=split_mode, max_length=max_length, epochs=epochs,
                                  learning_rate=learning_rate, batch_size=batch_size, ladder=ladder))
    except ValidationError as exc:
        raise ConfigError(f"evaluate options: {describe(exc)}") from None
    evaluation = Evaluation(options)  # reads and checks every input (the leakage guard too) before any bar is drawn
    for warning in evaluation.leakage.warnings if evaluation.leakage else []:
        err_console.print(f"[yellow]{warning}[/]")
    if evaluation.decontamination is not None and evaluation.decontamination.dropped:
        found = evaluation.decontamination
        err_console.print(f"[yellow]dropped {len(found.dropped)} of {found.checked} synthetic trials that reproduce "
                          f"held-out trials (e.g. {found.contaminated[0].id} ~ {found.contaminated[0].held_out_id}; "
                          "--drop-contaminated)[/]")
    with progress_bar() as progress:
        task = progress.add_task("preparing", total=None)
        steps = progress.add_task("training steps", total=None, visible=False)

        def on_step(label: str, done: int, total: int) -> None:
            progress.update(steps, description=label, completed=done, total=total, visible=True)

        evaluation.progress = lambda m: progress.update(task, description=m)
        evaluation.step_progress = on_step
        result = evaluation.run()
    table = Table(title=f"{result.classifier}: mean ± std over seeds {result.seeds} -> {out / 'metrics.json'} "
                        f"(fields: {', '.join(result.field_set)})", title_justify="left")
    table.add_column("training set")
    for m in METRICS:
        table.add_column(m, justify="right")
    for name, values in result.training_sets.items():
        table.add_row(name + (" [collapsed]" if values.collapsed else ""),
                      *[f"{values.metric(m).mean:.3f} ± {values.metric(m).std:.3f}" for m in METRICS])
    console.print(table)
    for key, value in result.bootstrap().items():
        console.print(f"hybrid - real {key}: {value.difference:+.3f} (95% CI {value.ci_low:+.3f} to {value.ci_high:+.3f})")
    if result.real_arm is not None:
        arm = result.real_arm
        console.print(f"real arm: the run's grounding sample ({arm.ground_sample:g}): {arm.trials} of {arm.of} real "
                      "training trials")
    if result.ladder is not None and result.ladder.skipped:
        err_console.print(f"[yellow]utility ladder skipped: {result.ladder.skipped}[/]")
    elif result.ladder is not None:
        ladder = result.ladder
        for warning in ladder.warnings:
            err_console.print(f"[yellow]{warning}[/]")
        rungs = ", ".join(f"{name} {arm.tstr.roc_auc.mean:.3f}" for name, arm in ladder.arms.items())
        console.print(f"utility ladder ({ladder.n} trials per rung), ROC-AUC trained alone: {rungs}")
        for control in ("plan_only", "echo"):
            b = ladder.place_of(control).get("roc_auc")
            if b is not None:
                console.print(f"synthetic - {control} ROC-AUC: {b.difference:+.3f} (95% CI {b.ci_low:+.3f} to "
                              f"{b.ci_high:+.3f})")


@app.command()
@one_line_errors
def judge(
    trials: Annotated[Path, typer.Argument(help="A run folder or a JSONL of synthetic trials.")],
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default RUN_DIR/judge).")] = None,
    real: Annotated[Optional[Path], typer.Option(help="Real trials for calibration (default: the run's store).")] = None,
    n_real: Annotated[int, typer.Option(help="Real trials scored as calibration.")] = 20,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    model_path: ModelPathOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    structured: StructuredOpt = None,
) -> None:
    """Score trials with an LLM judge on a written rubric, with real trials as calibration."""
    from synthtrials.evals.data import load_synthetic, real_reference
    from synthtrials.evals.judge import CRITERIA, run_judge

    synthetic = load_synthetic(trials)
    out = out or ((trials if trials.is_dir() else trials.parent) / "judge")
    real_trials = real_reference(trials, real)
    config = llm_config(backend, model, model_path, base_url, api_key_env, structured, max_tokens=300)
    with progress_bar() as progress:
        task = progress.add_task("judging", total=len(synthetic) + min(n_real, len(real_trials)))
        summary = run_judge(synthetic, real_trials, config, out, n_real=n_real,
                            progress=lambda done, total: progress.update(task, completed=done, total=total))
    table = Table(title=f"LLM judge ({summary.model}) -> {out}", title_justify="left")
    for col in ("criterion", "synthetic", "real (calibration)"):
        table.add_column(col)
    for c in CRITERIA:
        cells = [summary.synthetic.mean(c), summary.real.mean(c)]
        table.add_row(c, *[f"{v:.2f}" if v is not None else "-" for v in cells])
    console.print(table)
    console.print(f"how far to trust these scores: {summary.trust}")


@app.command()
@one_line_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="A generation run folder (its eval/judge results are picked up).")],
    real: Annotated[Optional[Path], typer.Option(help="Real trials for fidelity (default: the run's store).")] = None,
    max_real: Annotated[int, typer.Option(help="Real trials sampled for fidelity.")] = 1500,
) -> None:
    """Write RUN_DIR/report.html (self-contained) and report.md."""
    from synthtrials.evals.report import create_report

    with err_console.status("fidelity, diversity, privacy and plots..."):
        page = create_report(run_dir, real, max_real)
    console.print(f"wrote {page} and {page.with_suffix('.md')}")
