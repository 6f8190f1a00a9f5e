"""`synthtrials store ...`: stats, calibrate, eligible, search."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table
from synthtrials.scripts.cli.common import StoreOpt, _open_store, console, one_line_errors, progress_bar
from synthtrials.tools.errors import ConfigError

store_app = typer.Typer(help="Inspect a trial store.", no_args_is_help=True)


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
    cross_encoder: Annotated[bool, typer.Option(
        "--cross-encoder", help="Also train a cross-encoder on the grounding trials' (conditions, criteria) pairs, one "
                                "model per fold (about 6 minutes a fold on 2 CPU cores, 29 in all; a minute or two on a GPU), and "
                                "calibrate it with the other checks; generate and check then use it.")] = False,
    cross_encoder_epochs: Annotated[int, typer.Option(min=1, help="The cross-encoder's training epochs.")] = 2,
) -> None:
    """Calibrate the critic's domain checks on the real grounding trials (saved with the store)."""
    from synthtrials.tools.knowledge.calibration import (
        build_knowledge,
        calibrate,
        calibration_key,
        cross_encoder_key,
        train_cross_encoder,
    )
    from synthtrials.tools.knowledge.cross_encoder import FOLDS
    from synthtrials.graphs.resolve import settle_grounding

    backend = _open_store(store)
    splits = settle_grounding(backend, ground_on, "calibrate on")
    key = cross_encoder_key(backend, splits) if cross_encoder else calibration_key(backend, splits)
    saved = None if force else backend.load_calibration(key)
    if saved is None:
        with progress_bar() as progress:
            embedding = progress.add_task("embedding sections", total=None)
            knowledge = build_knowledge(backend, splits, lambda d, t: progress.update(embedding, completed=d, total=t),
                                        cross_encoder=False)
            progress.update(embedding, visible=False)
            if cross_encoder:
                training = progress.add_task("training the cross-encoder", total=None)

                def trained(fold: int, done: int, total: int) -> None:
                    progress.update(training, description=f"training the cross-encoder, fold {fold + 1} of {FOLDS}",
                                    completed=fold * total + done, total=FOLDS * total)

                train_cross_encoder(backend, knowledge, splits, cross_encoder_epochs, progress=trained)
                progress.update(training, visible=False)
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
    cross_fitted = calibration.get("cross_fitted_rejection")
    console.print(f"{'/'.join(calibration['splits'])}, {calibration['trials']} real trials: together the checks reject "
                  f"{calibration['real_rejection']:.1%} of real trials"
                  + (f" ({cross_fitted:.1%} cross-fitted: on trials the thresholds were not read from; "
                     f"budget {calibration['max_real_rejection']:.0%})" if cross_fitted is not None else ""),
                  soft_wrap=True)
    if calibration.get("score_share") is not None:
        console.print(f"the checks one by one spend {calibration['score_share']:.0%} of the budget, the joint score "
                      f"(coherence_joint, {len(calibration['joint']['names'])} scores weighed together) the rest",
                      soft_wrap=True)
    if cross_fitted is not None and cross_fitted > calibration["max_real_rejection"]:
        from synthtrials.tools.knowledge.calibration import Calibration, over_budget

        console.print(over_budget(Calibration.model_validate(calibration)), soft_wrap=True)
    if calibration.get("cross_encoder"):
        settings = calibration["cross_encoder"]
        console.print(f"with the cross-encoder (coherence_cross_encoder): {settings['folds']} fold models, "
                      f"{settings['epochs']} epochs, {settings['max_tokens']} tokens, in {settings['folder']}",
                      soft_wrap=True)
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
    from synthtrials.tools.store.protocol import (
        TrialFilter,
        eligible,
    )

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
    from synthtrials.tools.store.protocol import TrialFilter

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
