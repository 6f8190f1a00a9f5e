"""The `synthtrials` command line: thin wrappers over the functions scripts and tests call."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from synthtrials.tools.errors import ConfigError, InputError

app = typer.Typer(help="Synthetic labelled clinical trials from a LangGraph team of agents.",
                  pretty_exceptions_enable=False, no_args_is_help=True, add_completion=False)
store_app = typer.Typer(help="Inspect a trial store.", no_args_is_help=True)
app.add_typer(store_app, name="store")
llm_app = typer.Typer(help="Check the configured LLM.", no_args_is_help=True)
app.add_typer(llm_app, name="llm")
data_app = typer.Typer(help="Download public data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def one_line_errors(func: F) -> F:
    """Bad input and bad configuration end the command with one line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (InputError, ConfigError) as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def progress_bar() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False)


StoreOpt = Annotated[str, typer.Option("--store", help="Store folder (local) or Weaviate URL (http://host:8080).")]


def _open_store(location: str, create: bool = False):
    from synthtrials.tools.store import open_store

    return open_store(location, create=create)


@app.command()
@one_line_errors
def ingest(
    sources: Annotated[list[Path], typer.Argument(help="TOP CSVs, ClinicalTrials.gov XML/JSON files, folders or zips.")],
    store: StoreOpt,
    labels: Annotated[Optional[Path], typer.Option(help="CSV of nctid,label joined by NCT id.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Split of every trial read: train, valid, test or pool "
                                                      "(default: from each file name, *_train*, *_valid*, *_test*, else pool).")] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Store good records; write bad ones with reasons to --rejected.")] = False,
    rejected: Annotated[Optional[Path], typer.Option(help="Where --skip-bad writes rejected records (default STORE/rejected.jsonl).")] = None,
) -> None:
    """Read real trials into a TrialStore (upsert by NCT id; all or nothing).

    A trial keeps the strictest split it was ever given (test > valid > train > pool).
    """
    from synthtrials.tools.ingest import ingest as run_ingest
    from synthtrials.tools.splits import check_split

    if split is not None:
        check_split(split)
    backend = _open_store(store, create=True)
    from synthtrials.tools.store import is_remote_store

    rejected_path = rejected or (Path("rejected.jsonl") if is_remote_store(store) else Path(store) / "rejected.jsonl")
    with progress_bar() as progress:
        reading = progress.add_task("reading records", total=None)
        embedding = progress.add_task("embedding", total=None, visible=False)

        sections = progress.add_task("embedding sections (critic knowledge)", total=None, visible=False)

        def on_embed(done: int, total: int) -> None:
            progress.update(embedding, completed=done, total=total, visible=True)

        def on_sections(done: int, total: int) -> None:
            progress.update(sections, completed=done, total=total, visible=True)

        report = run_ingest(backend, [str(s) for s in sources], labels_csv=labels, split=split, skip_bad=skip_bad,
                            rejected_path=rejected_path,
                            on_record=lambda n: progress.update(reading, completed=n) if n % 200 == 0 else None,
                            on_embed=on_embed, on_sections=on_sections)
        progress.update(reading, completed=report.read, total=report.read)
    console.print(f"stored {report.stored} trials in {store} ({report.inserted} new, {report.updated} updated, "
                  f"{report.embedded} embedded; {report.duplicates} duplicate records merged)")
    if report.label_conflicts:
        console.print(f"[yellow]{len(report.label_conflicts)} trials carry different labels in different sources; "
                      "the first source named was kept[/] (e.g. "
                      + ", ".join(f"{c['nct_id']}: kept {c['kept_label']} from {Path(str(c['kept_from'])).name}"
                                  for c in report.label_conflicts[:3]) + ")")
    console.print("splits: " + ", ".join(f"{name} {n}" for name, n in report.splits.items()))
    if report.split_upgrades:
        console.print(f"[yellow]{len(report.split_upgrades)} trials took a stricter split[/] (a trial keeps the strictest "
                      "it was given), e.g. " + ", ".join(f"{u['nct_id']} {u['old']} -> {u['new']} ({Path(u['because']).name})"
                                                        for u in report.split_upgrades[:3]))
    if report.rejected:
        console.print(f"[yellow]rejected {len(report.rejected)} records[/], reasons in {report.rejected_file}")
    backend.close()


@app.command("import-synthetic")
@one_line_errors
def import_synthetic(
    path: Annotated[Path, typer.Argument(help="A seed-paper report (.json/.txt), a folder of them or a zip.")],
    labels: Annotated[Path, typer.Option(help="The seed paper's labels file: one 0/1 per line, in report-number order.")],
    out: Annotated[Path, typer.Option(help="Write the synthetic trials here (JSONL); skipped reports go to OUT.rejected.jsonl.")],
) -> None:
    """Import the seed paper's released synthetic reports (Xu et al. 2024) as synthetic trials."""
    import time

    from synthtrials.tools.atomic import write_jsonl_atomic
    from synthtrials.tools.readers.seed_reports import read_seed_reports

    started = time.monotonic()
    with progress_bar() as progress:
        task = progress.add_task("importing reports", total=None, visible=False)

        def on_report(done: int, total: int) -> None:  # the bar shows only if the import takes a moment
            progress.update(task, completed=done, total=total, visible=time.monotonic() - started > 0.5)

        result = read_seed_reports(path, labels, on_report=on_report)
    rejected = out.with_name(f"{out.stem}.rejected.jsonl")
    write_jsonl_atomic(out, (t.model_dump(mode="json") for t in result.trials))
    write_jsonl_atomic(rejected, ({"file": p.source, "problem": p.problem} for p in result.problems))
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in result.repairs.most_common())
    dropped = ", ".join(f"{key} {n:,}" for key, n in result.dropped.most_common())
    console.print(f"imported {len(result.trials):,} of {result.reports:,} reports to {out}; "
                  f"repaired {result.repaired:,}" + (f" ({kinds})" if kinds else "")
                  + f"; skipped {len(result.problems):,}" + (f" (reasons in {rejected})" if result.problems else "")
                  + (f"; dropped leakage fields: {dropped}" if dropped else ""), highlight=False, soft_wrap=True)
    console.print("[yellow]grounding unknown:[/] these trials cannot be checked for test-set leakage")


@store_app.command("stats")
@one_line_errors
def store_stats(store: StoreOpt, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Counts by label, phase, source, split and intervention."""
    backend = _open_store(store)
    stats = backend.stats()
    backend.close()
    if as_json:
        print(json.dumps(stats, indent=2))
        return
    console.print(f"[bold]{stats['trials']}[/] trials in {store}")
    for key in ("label", "phase", "source", "split", "intervention"):
        table = Table(title=f"by {key}" + (" (top 20)" if key == "intervention" else ""), title_justify="left")
        table.add_column(key)
        table.add_column("trials", justify="right")
        for name, n in stats[key].items():
            table.add_row(str(name), str(n))
        console.print(table)
    backend = _open_store(store)
    calibrations = backend.calibrations()
    backend.close()
    for calibration in calibrations:
        if calibration["key"].startswith("reasons:"):  # the reasoner's measured mode (graphs/resolve.py)
            _, critic_key, model = calibration["key"].split(":", 2)
            mode = "llm" if calibration["validity"] >= calibration["threshold"] else "evidence"
            console.print(f"reasoner on {model} (calibration {critic_key}): {calibration['validity']:.0%} of its "
                          f"reasons valid (needs {calibration['threshold']:.0%}): `--reasoner auto` uses {mode}")
        else:
            _print_calibration(calibration)
    if not calibrations:
        console.print("no critic calibration yet (`synthtrials store calibrate`, or the first `generate`/`check` does it)")


@store_app.command("calibrate")
@one_line_errors
def store_calibrate(
    store: StoreOpt,
    ground_on: Annotated[Optional[list[str]], typer.Option(help="Grounding splits (default: train when the store has one, else pool).")] = None,
    force: Annotated[bool, typer.Option(help="Recompute even if this calibration exists.")] = False,
) -> None:
    """Calibrate the critic's domain checks on the real grounding trials (saved with the store)."""
    from synthtrials.tools.calibration import (
        build_knowledge,
        calibrate,
        calibration_key,
    )
    from synthtrials.tools.splits import check_split
    from synthtrials.tools.store import default_grounding_splits, grounding_filter

    splits = [check_split(s) for s in ground_on] if ground_on else None
    backend = _open_store(store)
    splits = splits or default_grounding_splits(backend)
    if not backend.filter_ids(grounding_filter(splits)):
        raise ConfigError(f"{store}: no real trials in split(s) {', '.join(splits)} to calibrate on")
    key = calibration_key(backend, splits)
    saved = None if force else backend.load_calibration(key)
    if saved is None:
        with progress_bar() as progress:
            embedding = progress.add_task("embedding sections", total=None)
            knowledge = build_knowledge(backend, splits, lambda d, t: progress.update(embedding, completed=d, total=t))
            progress.update(embedding, visible=False)
            scoring = progress.add_task(f"scoring real {'/'.join(splits)} trials leave-one-out", total=len(knowledge.trials))
            result = calibrate(knowledge, key, splits, progress=lambda d, t: progress.update(scoring, completed=d, total=t))
        backend.save_calibration(key, result.model_dump())
        saved = result.model_dump()
    backend.close()
    _print_calibration(saved)


def _print_calibration(calibration: dict) -> None:
    table = Table(title=f"calibration {calibration['key']}", title_justify="left")
    table.add_column("score", no_wrap=True)  # the names are what a user looks up
    for column in ("threshold", "quantile", "real trials rejected alone", "trials scored"):
        table.add_column(column, justify="right")
    for name, value in calibration["thresholds"].items():
        quantile = calibration.get("quantiles", {}).get(name, calibration["quantile"])
        table.add_row(name, f"{value:.3f}", f"{quantile:.4f}", f"{calibration['rejection_rates'][name]:.1%}",
                      str(calibration["scored"][name]))
    console.print(table)
    console.print(f"{'/'.join(calibration['splits'])}, {calibration['trials']} real trials: together the checks reject "
                  f"{calibration['real_rejection']:.1%} of real trials", soft_wrap=True)
    if calibration.get("spoiled_caught"):
        console.print("spoiled grounding trials caught: " + ", ".join(
            f"{kind} {rate:.0%}" for kind, rate in calibration["spoiled_caught"].items()), soft_wrap=True)


@store_app.command("eligible")
@one_line_errors
def store_eligible(
    store: StoreOpt,
    k: Annotated[int, typer.Option(help="Minimum successful and failed trials per intervention.")] = 3,
    rule: Annotated[str, typer.Option(help="first: each trial counts its first-listed drug (default, the paper's); any: every listed drug.")] = "first",
    names: Annotated[str, typer.Option(help="normalized: case, spaces and dose text removed (default); lowercase: lower-cased only.")] = "normalized",
    splits: Annotated[Optional[list[str]], typer.Option(help="Count only real trials of these splits (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Interventions with at least k successful and k failed trials (the paper's rule)."""
    from synthtrials.tools.store import TrialFilter, eligible

    if k < 1:
        raise ConfigError(f"--k must be at least 1, got {k}")
    flt = TrialFilter(source="real", splits=frozenset(splits) if splits else None).normalised()
    backend = _open_store(store)
    drugs = eligible(backend, k=k, rule=rule, names=names, flt=flt)  # type: ignore[arg-type]
    backend.close()
    if as_json:
        print(json.dumps([e.model_dump() for e in drugs], indent=2))
        return
    table = Table(title=f"{len(drugs)} eligible interventions (k={k}, rule={rule}, names={names})", title_justify="left")
    for col in ("intervention", "successes", "failures"):
        table.add_column(col, justify="left" if col == "intervention" else "right")
    for e in drugs:
        table.add_row(e.intervention, str(e.successes), str(e.failures))
    console.print(table)


@store_app.command("search")
@one_line_errors
def store_search(
    query: str,
    store: StoreOpt,
    k: int = 5,
    mode: Annotated[str, typer.Option(help="semantic, bm25 or hybrid")] = "semantic",
    label: Optional[int] = None,
    intervention: Optional[str] = None,
    phase: Optional[str] = None,
    condition: Optional[str] = None,
    splits: Annotated[Optional[list[str]], typer.Option(help="Only trials of these splits (train valid test pool).")] = None,
) -> None:
    """Search the store (semantic, BM25 or hybrid) with filters."""
    from synthtrials.tools.store import TrialFilter

    try:
        flt = TrialFilter(intervention=intervention, label=label, phase=phase, condition=condition,
                          splits=frozenset(splits) if splits else None).normalised()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    backend = _open_store(store)
    hits = backend.search(query, k=k, flt=flt, mode=mode)  # type: ignore[arg-type]
    backend.close()
    table = Table(title=f"{len(hits)} hits for {query!r} ({mode})", title_justify="left")
    for col in ("nct_id", "score", "label", "phase", "interventions", "conditions"):
        table.add_column(col)
    for hit in hits:
        t = hit.trial
        table.add_row(t.nct_id, f"{hit.score:.3f}", str(t.label), t.phase.value if t.phase else "",
                      "; ".join(t.intervention_names)[:60], "; ".join(t.conditions)[:60])
    console.print(table)


@app.command()
@one_line_errors
def fetch(
    out: Annotated[Path, typer.Option(help="Write the studies here as an API v2 JSON page ({\"studies\": [...]}).")],
    nct: Annotated[Optional[list[str]], typer.Option("--nct", help="NCT id (repeatable).")] = None,
    query: Annotated[Optional[str], typer.Option(help="Full-text query (query.term).")] = None,
    max_studies: Annotated[int, typer.Option("--max", help="Stop after this many studies for --query.")] = 100,
    base_url: Annotated[str, typer.Option(help="API base URL.")] = "https://clinicaltrials.gov/api/v2",
    min_interval: Annotated[float, typer.Option(help="Seconds between requests (politeness).")] = 1.2,
) -> None:
    """Download studies from the ClinicalTrials.gov API v2 (then `synthtrials ingest OUT`)."""
    from synthtrials.tools.atomic import write_json_atomic
    from synthtrials.tools.ctgov_client import CtGovClient

    if not nct and not query:
        raise ConfigError("give --nct ID (repeatable) or --query TEXT")
    studies: list[dict] = []
    with CtGovClient(base_url, min_interval=min_interval) as client, progress_bar() as progress:
        task = progress.add_task("fetching studies", total=len(nct or []) + (max_studies if query else 0))
        for nct_id in nct or []:
            studies.append(client.study(nct_id))
            progress.advance(task)
        if query:
            for study in client.search(query, max_studies=max_studies):
                studies.append(study)
                progress.advance(task)
        progress.update(task, total=len(studies), completed=len(studies))
    write_json_atomic(out, {"studies": studies})
    console.print(f"wrote {len(studies)} studies to {out} ({client.requests_made} requests, {client.retries} retries)")


# --- LLM options, shared by every command that talks to a model ------------------------------
# Every option defaults to None: the pydantic config models (LLMConfig, GenerationConfig, RunOptions,
# EvalOptions...) hold every default, in one place; the CLI passes only what the user gave.
MODEL_PANEL = "Model"
BackendOpt = Annotated[Optional[str], typer.Option(help="llamacpp (offline default, in process), llamacpp-server (llama.cpp's server started on 127.0.0.1: parallel draws, fastest on a laptop), openai (any OpenAI-compatible server) or transformers.", rich_help_panel=MODEL_PANEL)]
ModelOpt = Annotated[Optional[str], typer.Option(help="openai: model name (gpt-4o-mini, a vLLM/Ollama model); transformers: folder.", rich_help_panel=MODEL_PANEL)]
ModelPathOpt = Annotated[Optional[str], typer.Option(help="llamacpp, llamacpp-server: GGUF path, or a bundled name (smollm2, gemma3-270m).", rich_help_panel=MODEL_PANEL)]
BaseUrlOpt = Annotated[Optional[str], typer.Option(help="openai: server URL, e.g. http://127.0.0.1:8000/v1 (vLLM, Ollama, llama.cpp).", rich_help_panel=MODEL_PANEL)]
ApiKeyEnvOpt = Annotated[Optional[str], typer.Option(help="Environment variable holding the API key (default OPENAI_API_KEY; never stored).", rich_help_panel=MODEL_PANEL)]
StructuredOpt = Annotated[Optional[str], typer.Option(help="auto (default), json_schema, json_object_schema (llama.cpp server), json_mode, tool_calling, prompt.", rich_help_panel=MODEL_PANEL)]


def given(**values: Any) -> dict[str, Any]:
    """The options the user gave (the others are left to the config models' defaults)."""
    return {k: v for k, v in values.items() if v is not None}


def llm_config(backend: str | None, model: str | None, model_path: str | None, base_url: str | None,
               api_key_env: str | None, structured: str | None, **extra: Any):
    from pydantic import ValidationError
    from synthtrials.tools.errors import describe
    from synthtrials.tools.llm import LLMConfig

    try:
        return LLMConfig(**given(backend=backend, model=model, model_path=model_path, base_url=base_url,
                                 api_key_env=api_key_env, structured=structured, **extra))
    except ValidationError as exc:
        raise ConfigError(f"LLM options: {describe(exc)}") from None


@llm_app.command("try")
@one_line_errors
def llm_try(
    intervention: Annotated[str, typer.Option(help="The drug the trial must test.")],
    label: Annotated[int, typer.Option(help="1: a trial that succeeds, 0: one that fails.")] = 1,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    model_path: ModelPathOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    temperature: Annotated[Optional[float], typer.Option(help="Sampling temperature (default 0.7).")] = None,
    structured: StructuredOpt = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed (default 0).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Answer tokens (default 900).")] = None,
) -> None:
    """Ask the configured model for one Trial (no retrieval) and print it as JSON."""
    import uuid

    from synthtrials.agents.prompting import prompt_version
    from synthtrials.agents.writer import write_draft
    from synthtrials.tools.llm import LLMClient
    from synthtrials.tools.writer_format import DraftSpec

    if label not in (0, 1):
        raise ConfigError(f"--label must be 0 or 1, got {label}")
    config = llm_config(backend, model, model_path, base_url, api_key_env, structured, temperature=temperature,
                        seed=seed, max_tokens=max_tokens)
    spec = DraftSpec()  # the full registry record: no store, no grounding data to follow
    with err_console.status(f"asking {config.model_label()} ({config.backend}) for a trial of {intervention}..."):
        client = LLMClient(config)
        _, result = write_draft(client, spec, intervention, label, examples=[], reasons=[], feedback=[])
    trial = spec.to_trial(result.value, f"SYN-{uuid.uuid4().hex[:12]}", label=label, provenance={
        "backend": config.backend, "model": config.model_label(), "template": prompt_version("writer"),
        "seed": config.seed, "attempts": result.attempts})
    print(trial.model_dump_json(indent=2, exclude_none=True))
    usage = client.usage
    err_console.print(f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens in "
                      f"{usage.seconds:.1f} s ({result.attempts} attempt(s))")


@app.command()
@one_line_errors
def generate(
    store: StoreOpt,
    n: Annotated[int, typer.Option("--n", help="Number of accepted synthetic trials to produce.")],
    out: Annotated[Path, typer.Option(help="Run folder (resumable: re-run the same command after any interruption).")],
    backend: BackendOpt = None,
    model: ModelOpt = None,
    model_path: ModelPathOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    structured: StructuredOpt = None,
    adapter: Annotated[Optional[Path], typer.Option(help="Writer adapted by `synthtrials adapt` (its folder); the reasoner and critic keep the base model.", rich_help_panel=MODEL_PANEL)] = None,
    threads: Annotated[Optional[int], typer.Option(help="llamacpp / llamacpp-server: llama.cpp's threads (default: all cores; fewer where other jobs load the cores).", rich_help_panel=MODEL_PANEL)] = None,
    weights: Annotated[Optional[str], typer.Option(help="llamacpp-server with --adapter: the adapter merged into the base weights as Q4_0 (default, fastest), Q8_0 or F16 (cached beside the adapter), or `adapter` to apply the LoRA at run time.", rich_help_panel=MODEL_PANEL)] = None,
    writer_grammar: Annotated[Optional[str], typer.Option(help="The writer's JSON-schema grammar: always, on_failure (decode freely, parse, ask again under the grammar when the answer does not fit), or auto (default: on_failure for an adapted writer).", rich_help_panel=MODEL_PANEL)] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Writer temperature (default 0.7).", rich_help_panel=MODEL_PANEL)] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Answer tokens per call (default 900).", rich_help_panel=MODEL_PANEL)] = None,
    max_retries: Annotated[Optional[int], typer.Option(help="Retries per call: 429/5xx/timeouts, with backoff (default 4).", rich_help_panel=MODEL_PANEL)] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Seconds per model call (default 120).", rich_help_panel=MODEL_PANEL)] = None,
    price_prompt: Annotated[Optional[float], typer.Option(help="USD per million prompt tokens (cost accounting).", rich_help_panel=MODEL_PANEL)] = None,
    price_completion: Annotated[Optional[float], typer.Option(help="USD per million completion tokens.", rich_help_panel=MODEL_PANEL)] = None,
    ground_on: Annotated[Optional[list[str]], typer.Option(help="Splits generation may read (default: train when the store has one, else pool); valid/test only when named.", rich_help_panel="Grounding")] = None,
    k: Annotated[Optional[int], typer.Option(help="Real examples per draw (default 3).", rich_help_panel="Grounding")] = None,
    neighbours: Annotated[Optional[str], typer.Option(help="Semantic neighbours: off, fallback (default) or add.", rich_help_panel="Grounding")] = None,
    plan: Annotated[Optional[str], typer.Option(help="Drugs: uniform over eligible (default), proportional, or list.", rich_help_panel="Grounding")] = None,
    intervention: Annotated[Optional[list[str]], typer.Option(help="With --plan list: a drug (repeatable).", rich_help_panel="Grounding")] = None,
    rule: Annotated[Optional[str], typer.Option(help="Eligibility: first (default) or any listed drug.", rich_help_panel="Grounding")] = None,
    plan_min_trials: Annotated[Optional[int], typer.Option(help="Successful and failed grounding trials a planned drug needs (default: k; below k, neighbours fill in).", rich_help_panel="Grounding")] = None,
    reasoner: Annotated[Optional[str], typer.Option(help="Reasons from: auto (default), llm, evidence or none.", rich_help_panel="Agents")] = None,
    reasons: Annotated[Optional[int], typer.Option(help="Reasons per draw (default 5).", rich_help_panel="Agents")] = None,
    revisions: Annotated[Optional[int], typer.Option(help="Critic -> writer loops before rejection (default 2).", rich_help_panel="Agents")] = None,
    llm_critic: Annotated[Optional[str], typer.Option(help="LLM critic: off, advisory or enforce (default: advisory for the embedded models, else enforce).", rich_help_panel="Agents")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Run seed (default 0).", rich_help_panel="Run")] = None,
    concurrency: Annotated[Optional[int], typer.Option(help="Parallel draws (default: 16 for llamacpp-server, whose slots decode together; 4 for openai; 1 in process).", rich_help_panel="Run")] = None,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop starting new draws after this long (resume later).", rich_help_panel="Run")] = None,
    force: Annotated[bool, typer.Option(help="Start over in a run folder that holds another configuration.", rich_help_panel="Run")] = False,
    hf_dataset: Annotated[bool, typer.Option(help="Also write a Hugging Face datasets folder.", rich_help_panel="Run")] = False,
) -> None:
    """Generate N accepted synthetic trials with the retriever-reasoner-writer-critic graph."""
    from pydantic import ValidationError
    from synthtrials.graphs.config import GenerationConfig
    from synthtrials.graphs.runner import RunOptions, check_run_options, run_generation
    from synthtrials.tools.adapter_folder import adapter_sha256, read_adapter
    from synthtrials.tools.errors import describe
    from synthtrials.tools.splits import HELD_OUT, check_split

    if adapter is not None:
        read_adapter(adapter)
    llm = llm_config(backend, model, model_path, base_url, api_key_env, structured, seed=seed, max_tokens=max_tokens,
                     max_retries=max_retries, timeout_s=timeout, price_prompt_per_m=price_prompt,
                     price_completion_per_m=price_completion, weights=weights, n_threads=threads)
    try:
        generation = GenerationConfig(llm=llm, **given(
            k=k, n_reasons=reasons, max_revisions=revisions, neighbours=neighbours, llm_critic=llm_critic, seed=seed,
            reasoner=reasoner, writer_temperature=temperature, writer_grammar=writer_grammar,
            ground_on=[check_split(s) for s in ground_on] if ground_on else None,
            writer_adapter=str(adapter) if adapter else None,
            writer_adapter_sha256=adapter_sha256(adapter) if adapter else None))
        options = RunOptions(store=store, out=out, n=n, generation=generation, force=force, hf_dataset=hf_dataset,
                             **given(plan_mode=plan, interventions=intervention, eligibility_rule=rule,
                                     concurrency=concurrency, plan_min_trials=plan_min_trials, max_minutes=max_minutes))
    except ValidationError as exc:
        raise ConfigError(f"generate options: {describe(exc)}") from None
    check_run_options(options)
    held_out = sorted({s for s in generation.ground_on or [] if s in HELD_OUT})
    if held_out:
        err_console.print(f"[yellow]grounding on held-out split(s) {', '.join(held_out)}: the run records it, and "
                          "`evaluate` will refuse these trials against those splits[/]")
    from synthtrials.tools.llm import LLMError

    with progress_bar() as progress:
        task = progress.add_task("generating", total=n)

        def on_progress(p) -> None:
            rate = p.tokens / p.elapsed_s if p.elapsed_s > 0 else 0.0
            progress.update(task, completed=p.accepted, description=(
                f"accepted {p.accepted}/{n} | draws {p.draws} | revised {p.revisions} | rejected {p.rejected} | "
                f"{rate:.0f} tok/s"))

        try:
            summary = run_generation(options, on_progress=on_progress)
        except LLMError as exc:
            raise ConfigError(str(exc)) from None
    table = Table(title=f"run {out}", title_justify="left")
    table.add_column("")
    table.add_column("value", justify="right")
    for key in ("accepted", "draws", "rejected", "acceptance_rate", "revisions", "writer_valid_share",
                "tokens_per_accepted", "accepted_per_minute", "seconds"):
        table.add_row(key, str(getattr(summary, key)))
    table.add_row("rejections by reason", json.dumps(summary.rejections_by_reason))
    console.print(table)
    console.print(f"trials: {out / 'trials.jsonl'}  (also trials.parquet, rejected.jsonl, summary.json)")
    if summary.stopped_by_time_budget:
        console.print(f"[yellow]time budget reached with {summary.accepted} of {n} accepted; "
                      "re-run the same command to continue[/]")


@app.command()
@one_line_errors
def adapt(
    store: StoreOpt,
    out: Annotated[Path, typer.Option(help="Adapter folder (PEFT adapter, llama.cpp GGUF adapter, adapter.json); resumable.")],
    ground_on: Annotated[Optional[list[str]], typer.Option(help="Splits to adapt on (default: train when the store has one, else pool).")] = None,
    base: Annotated[Optional[str], typer.Option(help="Base model: smollm2 (default), a GGUF path, or a Hugging Face causal LM folder or cached id.")] = None,
    max_trials: Annotated[Optional[int], typer.Option(help="Adapt on this many grounding trials (seeded sample).")] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Passes over the trials (default 1).")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Stop at the first step boundary after this long (re-run to continue).")] = None,
    rank: Annotated[Optional[int], typer.Option(help="LoRA rank (default 16).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed (default 0).")] = None,
) -> None:
    """Adapt the writer (LoRA) to the real trials of the grounding splits, for offline generation."""
    from pydantic import ValidationError
    from synthtrials.agents.writer_adaptation import AdaptOptions
    from synthtrials.agents.writer_adaptation import adapt as run_adapt
    from synthtrials.tools.errors import describe
    from synthtrials.tools.splits import check_split

    given = {"ground_on": [check_split(s) for s in ground_on] if ground_on else None, "base": base,
             "max_trials": max_trials, "epochs": epochs, "minutes": minutes, "rank": rank, "seed": seed}
    try:
        options = AdaptOptions(store=store, out=out, **{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(f"adapt options: {describe(exc)}") from None
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]}"), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err_console) as progress:
        task = progress.add_task("adapting", total=None, loss="-", speed="")

        def on_step(step: int, steps: int, loss: float, tokens_per_second: float) -> None:
            progress.update(task, completed=step, total=steps, loss=f"{loss:.3f}", speed=f"{tokens_per_second:.0f} tok/s")

        info = run_adapt(options, progress=on_step, say=progress.console.print)
    console.print(f"adapter: {out} ({info.steps}/{info.steps_planned} steps on {len(info.trained_on)} trials, "
                  f"{info.tokens} tokens in {info.seconds / 60:.1f} min = {info.tokens_per_second:.0f} tokens/s; "
                  f"loss {info.loss[0]:.3f} -> {info.loss[-1]:.3f}){'' if info.complete else ' [unfinished: re-run to continue]'}")
    console.print(f"generate with it: synthtrials generate --store {store} --adapter {out} ...")


@app.command()
@one_line_errors
def check(
    files: Annotated[list[Path], typer.Argument(help="Trials: a run folder or trials.jsonl, a JSONL of Trials, TOP CSV, ClinicalTrials.gov XML/JSON.")],
    store: StoreOpt,
    out: Annotated[Path, typer.Option(help="Write one JSON verdict per input trial here (JSONL).")],
    ground_on: Annotated[Optional[list[str]], typer.Option(help="Grounding splits whose knowledge the critic uses (default: train, else pool).")] = None,
    llm_critic: Annotated[str, typer.Option(help="LLM critic too: off (default), advisory (recorded) or enforce (counts).")] = "off",
    backend: BackendOpt = None,
    model: ModelOpt = None,
    model_path: ModelPathOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
) -> None:
    """Critique any trials as candidate synthetic trials: the checks the critic applies to drafts."""
    from collections import Counter

    from synthtrials.agents.critic import check_trials
    from synthtrials.tools.atomic import write_jsonl_atomic
    from synthtrials.tools.calibration import build_knowledge, load_or_calibrate
    from synthtrials.tools.llm import LLMClient
    from synthtrials.tools.readers import read_trials
    from synthtrials.tools.splits import check_split
    from synthtrials.tools.store import default_grounding_splits, grounding_filter
    from synthtrials.tools.writer_format import DraftSpec

    if llm_critic not in ("off", "advisory", "enforce"):
        raise ConfigError(f"--llm-critic must be off, advisory or enforce, got {llm_critic!r}")
    splits = [check_split(s) for s in ground_on] if ground_on else None
    trials = read_trials(files)
    if not trials:
        raise ConfigError(f"{files[0]}: no trials to check")
    store_backend = _open_store(store)
    splits = splits or default_grounding_splits(store_backend)
    grounding = store_backend.filter(grounding_filter(splits))
    if not grounding:
        raise ConfigError(f"{store}: no real trials in split(s) {', '.join(splits)}")
    llm = LLMClient(llm_config(backend, model, model_path, base_url, api_key_env, None, temperature=0.0, max_tokens=300)) \
        if llm_critic != "off" else None
    with progress_bar() as progress:
        knowledge = build_knowledge(store_backend, splits)
        calibration = load_or_calibrate(store_backend, splits, knowledge, say=progress.console.print)
        from synthtrials.tools.checks import CriticThresholds

        thresholds = CriticThresholds(calibrated=calibration.thresholds, calibration=calibration.key)
        task = progress.add_task("checking", total=len(trials))
        verdicts = check_trials(trials, store=store_backend, splits=splits, knowledge=knowledge, thresholds=thresholds,
                                fields=DraftSpec.from_trials(grounding).fields, llm=llm,
                                llm_mode=llm_critic,  # type: ignore[arg-type]
                                progress=lambda d, t: progress.update(task, completed=d))
    store_backend.close()
    write_jsonl_atomic(out, (v.model_dump() for v in verdicts))
    failed = Counter(c for v in verdicts for c in v.failed_checks)
    accepted = sum(v.verdict == "accept" for v in verdicts)
    table = Table(title=f"{len(verdicts)} trials checked against {store} ({'/'.join(splits)}, calibration "
                        f"{calibration.key}) -> {out}", title_justify="left")
    table.add_column("")
    table.add_column("trials", justify="right")
    table.add_row("accepted", str(accepted))
    table.add_row("rejected", str(len(verdicts) - accepted))
    for name, n in failed.most_common():
        table.add_row(f"  failed {name}", str(n))
    console.print(table)
    if any(t.overall_status or t.why_stopped for t in trials):
        console.print("status and why-stopped were dropped before checking (no draft has them)")


@app.command()
@one_line_errors
def trace(
    run_dir: Annotated[Path, typer.Argument(help="A generation run folder.")],
    trial: Annotated[Optional[str], typer.Argument(help="Plan index, trial-NNNNNN or SYN- id; omit to list all.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    full: Annotated[bool, typer.Option(help="Print whole prompts and answers.")] = False,
) -> None:
    """List a run's trials, or one trial's steps: node, reads, writes, prompt, answer, verdicts, timing."""
    from synthtrials.graphs.trace import list_trials, trace_json, trial_trace

    if trial is None:
        traces = list_trials(run_dir)
        if as_json:
            print(json.dumps([t.model_dump(mode="json", exclude={"steps"}) for t in traces], indent=2))
            return
        table = Table(title=f"{len(traces)} trials in {run_dir}", title_justify="left")
        for col in ("index", "trial", "intervention", "label", "verdict", "reason", "checkpoints"):
            table.add_column(col)
        for t in traces:
            table.add_row(str(t.plan_index), t.trial_id or "", t.intervention, str(t.label), t.verdict,
                          t.reject_reason or "", str(t.checkpoints))
        console.print(table)
        return
    result = trial_trace(run_dir, trial)
    if as_json:
        print(trace_json(result))
        return
    console.print(f"[bold]{result.thread_id}[/] {result.trial_id or ''}: {result.intervention}, label {result.label} "
                  f"-> {result.verdict} {result.reject_reason or ''} ({result.checkpoints} checkpoints)")
    for number, step in enumerate(result.steps, 1):
        console.rule(f"{number}. {step.node}  {step.seconds:.2f} s  {step.tokens} tokens")
        console.print("[bold]read[/]", json.dumps(step.read, default=str))
        console.print("[bold]wrote[/]", json.dumps(step.wrote, default=str))
        limit = None if full else 600
        if step.prompt:
            console.print("[bold]prompt[/]", step.prompt[:limit], highlight=False)
        if step.answer:
            console.print("[bold]answer[/]", step.answer[:limit], highlight=False)


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
    classifier: Annotated[Optional[str], typer.Option(help="tfidf (default) or transformer.", rich_help_panel="Classifier")] = None,
    model: Annotated[Optional[str], typer.Option(help="Transformer: Hugging Face id or local path (default bundled MiniLM).", rich_help_panel="Classifier")] = None,
    seeds: Annotated[Optional[list[int]], typer.Option(help="Seeds (default 40 41 42): --seeds 40 41, --seeds 40,41 or repeated.", rich_help_panel="Classifier")] = None,
    sweeps: Annotated[Optional[list[str]], typer.Option(help="ratio, low_resource, generalisation, fidelity.", rich_help_panel="Classifier")] = None,
    max_length: Annotated[Optional[int], typer.Option(help="Transformer: tokens per trial.", rich_help_panel="Classifier")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Transformer: epochs.", rich_help_panel="Classifier")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="Transformer: learning rate.", rich_help_panel="Classifier")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Transformer: batch size.", rich_help_panel="Classifier")] = None,
) -> None:
    """Train classifiers on real / synthetic / hybrid trials over seeds; write metrics.json.

    Synthetic trials grounded on a test or validation trial are refused (the leakage guard), and
    every classifier reads the fields most real training trials have (like for like).
    """
    from pydantic import ValidationError
    from synthtrials.evals.experiment import EvalOptions, Evaluation
    from synthtrials.evals.metrics import METRICS
    from synthtrials.tools.errors import describe

    try:
        options = EvalOptions(out=out, real_pool=[str(p) for p in real_pool or []],
                              provenance_check=not no_provenance_check, sweeps=sweeps or [], **given(
                                  real_train=str(real_train) if real_train else None,
                                  real_test=str(real_test) if real_test else None,
                                  real_valid=str(real_valid) if real_valid else None,
                                  labels=str(labels) if labels else None,
                                  synthetic=str(synthetic) if synthetic else None, classifier=classifier, model=model,
                                  seeds=seeds, split_mode=split_mode, max_length=max_length, epochs=epochs,
                                  learning_rate=learning_rate, batch_size=batch_size))
    except ValidationError as exc:
        raise ConfigError(f"evaluate options: {describe(exc)}") from None
    evaluation = Evaluation(options)  # reads and checks every input (the leakage guard too) before any bar is drawn
    for warning in evaluation.leakage.warnings if evaluation.leakage else []:
        err_console.print(f"[yellow]{warning}[/]")
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


@data_app.command("download")
@one_line_errors
def data_download(
    name: Annotated[str, typer.Argument(help="Data set: top (the TOP benchmark CSVs).")],
    dest: Annotated[Path, typer.Option(help="Destination folder.")] = Path("data/top"),
    base_url: Annotated[Optional[str], typer.Option(help="Mirror URL (default: the HINT repository).")] = None,
) -> None:
    """Download a public data set and check its hashes."""
    from synthtrials.tools.datasets import TOP_BASE_URL, download_top

    if name != "top":
        raise ConfigError(f"unknown data set {name!r} (top)")
    with err_console.status("downloading...") as status:
        files = download_top(dest, base_url or TOP_BASE_URL, progress=lambda f: status.update(f"downloading {f}"))
    console.print(f"{len(files)} files in {dest}, hashes checked")


@app.command()
@one_line_errors
def demo(
    data: Annotated[Path, typer.Option(help="Folder with the TOP CSVs (phase_I_train/valid/test.csv ...).")],
    out: Annotated[Path, typer.Option(help="Demo output folder (re-run to resume).")] = Path("demo_out"),
    n: Annotated[Optional[int], typer.Option("--n", help="Synthetic trials to aim for (default 30).")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Time budget for generation (default 4).")] = None,
    adapt_trials: Annotated[Optional[int], typer.Option(help="Train trials the writer is adapted on (default 60).")] = None,
    adapt_minutes: Annotated[Optional[float], typer.Option(help="Time budget for the adaptation (default 4).")] = None,
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

        from synthtrials.tools.llm import LLMError

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


def main() -> None:
    from synthtrials.scripts.cli_args import expand_multi_value

    app(args=expand_multi_value(sys.argv[1:]), prog_name="synthtrials")


if __name__ == "__main__":
    main()
