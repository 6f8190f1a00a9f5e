"""The `demo` command: a thin wrapper over synthtrials.scripts.demo (scripts/demo.py), which runs the pipeline."""

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
    console,
    llm_config,
    one_line_errors,
    progress_bar,
)
from synthtrials.tools.errors import ConfigError

app = typer.Typer()  # the top-level command of this module (merged into the root app)


@app.command()
@one_line_errors
def demo(
    data: Annotated[Path, typer.Option(help="Folder with the TOP CSVs (phase_I_train/valid/test.csv ...).")],
    out: Annotated[Path, typer.Option(help="Demo output folder (re-run to resume).")] = Path("demo_out"),
    n: Annotated[Optional[int], typer.Option("--n", help="Synthetic trials to aim for (default 20).")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Time budget for generation (default 4).")] = None,
    adapt_trials: Annotated[Optional[int], typer.Option(help="Train trials the writer is adapted on (default 60).")] = None,
    adapt_minutes: Annotated[Optional[float], typer.Option(help="Time budget for the adaptation (default 4).")] = None,
    adapt_learning_rate: Annotated[Optional[float], typer.Option(help="The adaptation's peak learning rate (default 1e-3).")] = None,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    model_path: ModelPathOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    transformer_train: Annotated[Optional[int], typer.Option(help="Train MiniLM on the first N real trials only.")] = None,
) -> None:
    """Ingest, calibrate, adapt, generate, judge, evaluate (TF-IDF and MiniLM) and report, offline."""
    from pydantic import ValidationError
    from synthtrials.scripts.demo import DemoOptions, run_demo
    from synthtrials.tools.errors import describe

    given = {"n": n, "minutes": minutes, "adapt_trials": adapt_trials, "adapt_minutes": adapt_minutes,
             "adapt_learning_rate": adapt_learning_rate,
             "transformer_train": transformer_train}
    try:
        options = DemoOptions(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(f"demo options: {describe(exc)}") from None
    # no model option given: the demo's own default (llama.cpp's server with the embedded model)
    config = llm_config(backend, model, model_path, base_url, api_key_env, None) \
        if any(v is not None for v in (backend, model, model_path, base_url, api_key_env)) else None
    with progress_bar() as progress:
        task = progress.add_task("demo", total=None)

        def stage(label: str, done: int, total: int) -> None:
            progress.update(task, description=label, completed=done, total=total)

        from synthtrials.tools.llm.client import LLMError

        try:
            results = run_demo(data, out, options, llm=config, say=lambda m: progress.console.print(m),
                               stage_progress=stage)
        except LLMError as exc:
            raise ConfigError(str(exc)) from None
    table = Table(title="demo results (mean over seeds; test: phase_I_test.csv)", title_justify="left")
    for col in ("classifier", "training set", "roc_auc", "pr_auc", "f1"):
        table.add_column(col)
    for key in ("tfidf", "minilm"):
        for name, values in results[key].training_sets.items():
            table.add_row(key, name, *[f"{values.metric(m).mean:.3f}" for m in ("roc_auc", "pr_auc", "f1")])
    console.print(table)
    gen = results["generation"]
    console.print(f"synthetic: {gen.accepted} accepted of {gen.draws} draws; "
                  f"report: {results.get('report', '(none: no synthetic trial)')}")
