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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from synthtrials.tools.errors import ConfigError, InputError

app = typer.Typer(help="Synthetic labelled clinical trials from a LangGraph team of agents.",
                  pretty_exceptions_enable=False, no_args_is_help=True, add_completion=False)
store_app = typer.Typer(help="Inspect a trial store.", no_args_is_help=True)
app.add_typer(store_app, name="store")

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
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Store good records; write bad ones with reasons to --rejected.")] = False,
    rejected: Annotated[Optional[Path], typer.Option(help="Where --skip-bad writes rejected records (default STORE/rejected.jsonl).")] = None,
) -> None:
    """Read real trials into a TrialStore (upsert by NCT id; all or nothing)."""
    from synthtrials.tools.ingest import ingest as run_ingest

    backend = _open_store(store, create=True)
    rejected_path = rejected or (Path(store) / "rejected.jsonl" if not store.startswith(("http", "weaviate+")) else Path("rejected.jsonl"))
    with progress_bar() as progress:
        reading = progress.add_task("reading records", total=None)
        embedding = progress.add_task("embedding", total=None, visible=False)

        def on_embed(done: int, total: int) -> None:
            progress.update(embedding, completed=done, total=total, visible=True)

        report = run_ingest(backend, [str(s) for s in sources], labels_csv=labels, skip_bad=skip_bad,
                            rejected_path=rejected_path,
                            on_record=lambda n: progress.update(reading, completed=n) if n % 200 == 0 else None,
                            on_embed=on_embed)
        progress.update(reading, completed=report.read, total=report.read)
    console.print(f"stored {report.stored} trials in {store} ({report.inserted} new, {report.updated} updated, "
                  f"{report.embedded} embedded; {report.duplicates} duplicate records merged)")
    if report.label_conflicts:
        console.print(f"[yellow]{len(report.label_conflicts)} trials carry different labels in different sources; "
                      "the first source named was kept[/] (e.g. "
                      + ", ".join(f"{c['nct_id']}: kept {c['kept_label']} from {Path(str(c['kept_from'])).name}"
                                  for c in report.label_conflicts[:3]) + ")")
    if report.rejected:
        console.print(f"[yellow]rejected {len(report.rejected)} records[/], reasons in {report.rejected_file}")
    backend.close()


@store_app.command("stats")
@one_line_errors
def store_stats(store: StoreOpt, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Counts by label, phase, source and intervention."""
    backend = _open_store(store)
    stats = backend.stats()
    backend.close()
    if as_json:
        print(json.dumps(stats, indent=2))
        return
    console.print(f"[bold]{stats['trials']}[/] trials in {store}")
    for key in ("label", "phase", "source", "intervention"):
        table = Table(title=f"by {key}" + (" (top 20)" if key == "intervention" else ""), title_justify="left")
        table.add_column(key)
        table.add_column("trials", justify="right")
        for name, n in stats[key].items():
            table.add_row(str(name), str(n))
        console.print(table)


@store_app.command("eligible")
@one_line_errors
def store_eligible(
    store: StoreOpt,
    k: Annotated[int, typer.Option(help="Minimum successful and failed trials per intervention.")] = 3,
    rule: Annotated[str, typer.Option(help="first: each trial counts its first-listed drug (default, the paper's); any: every listed drug.")] = "first",
    names: Annotated[str, typer.Option(help="normalized: case, spaces and dose text removed (default); lowercase: lower-cased only.")] = "normalized",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Interventions with at least k successful and k failed trials (the paper's rule)."""
    if k < 1:
        raise ConfigError(f"--k must be at least 1, got {k}")
    backend = _open_store(store)
    eligible = backend.eligible(k=k, rule=rule, names=names)  # type: ignore[arg-type]
    backend.close()
    if as_json:
        print(json.dumps([e.model_dump() for e in eligible], indent=2))
        return
    table = Table(title=f"{len(eligible)} eligible interventions (k={k}, rule={rule}, names={names})", title_justify="left")
    for col in ("intervention", "successes", "failures"):
        table.add_column(col, justify="left" if col == "intervention" else "right")
    for e in eligible:
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
) -> None:
    """Search the store (semantic, BM25 or hybrid) with filters."""
    from synthtrials.tools.store import TrialFilter

    backend = _open_store(store)
    try:
        flt = TrialFilter(intervention=intervention, label=label, phase=phase, condition=condition).normalised()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
