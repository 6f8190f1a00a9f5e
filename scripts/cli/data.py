"""Getting trials in: `ingest`, `import-synthetic`, `fetch` (top-level commands) and `data download`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from synthtrials.scripts.cli.common import StoreOpt, _open_store, console, err_console, one_line_errors, progress_bar
from synthtrials.tools.errors import ConfigError

app = typer.Typer()  # the top-level commands of this module (merged into the root app)
data_app = typer.Typer(help="Download public data sets.", no_args_is_help=True)


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
    from synthtrials.tools.store.ingest import ingest as run_ingest
    from synthtrials.tools.records.splits import check_split

    if split is not None:
        check_split(split)
    backend = _open_store(store, create=True)
    from synthtrials.tools.store.trial_store import is_remote_store

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
    labels: Annotated[Path, typer.Option(help="The seed paper's labels file: one 0/1 per line in report-number "
                                         "order (report n takes line n+1: the full file serves any subset).")],
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
    from synthtrials.tools.readers.ctgov_client import CtGovClient

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


@data_app.command("download")
@one_line_errors
def data_download(
    name: Annotated[str, typer.Argument(help="Data set: top (the TOP benchmark CSVs).")],
    dest: Annotated[Path, typer.Option(help="Destination folder.")] = Path("data/top"),
    base_url: Annotated[Optional[str], typer.Option(help="Mirror URL (default: the HINT repository).")] = None,
) -> None:
    """Download a public data set and check its hashes."""
    from synthtrials.tools.readers.datasets import TOP_BASE_URL, download_top

    if name != "top":
        raise ConfigError(f"unknown data set {name!r} (top)")
    with err_console.status("downloading...") as status:
        files = download_top(dest, base_url or TOP_BASE_URL, progress=lambda f: status.update(f"downloading {f}"))
    console.print(f"{len(files)} files in {dest}, hashes checked")
