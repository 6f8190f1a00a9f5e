"""Making and checking synthetic trials: `generate`, `adapt`, `check`, `trace`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from synthtrials.graphs.plan import DEFAULT_PLAN_MODE, PLAN_MODES
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
from synthtrials.scripts.cli.common import (
    MODEL_PANEL,
    ApiKeyEnvOpt,
    BackendOpt,
    BaseUrlOpt,
    ModelOpt,
    ModelPathOpt,
    StoreOpt,
    StructuredOpt,
    _open_store,
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
    writer_grammar: Annotated[Optional[str], typer.Option(help="The writer's JSON-schema grammar: always, on_failure (decode freely, parse, ask again under the grammar when the answer does not fit), or auto (default: always; measured in benchmarks/RESULTS.md).", rich_help_panel=MODEL_PANEL)] = None,
    writer_criteria: Annotated[Optional[str], typer.Option(help="How many eligibility criteria the writer writes: free (default) or anchor (exactly as many inclusion and exclusion criteria as the target's anchor, through the grammar; anchored plans; pair with `adapt --answer-tokens auto` so that the answer budget holds them).", rich_help_panel=MODEL_PANEL)] = None,
    writer_conditions: Annotated[Optional[str], typer.Option(help="The draft's conditions and phase: anchor (exactly the target's anchor's, through the grammar, before the writer writes the rest; anchored plans), free (the writer chooses), or auto (default: anchor under an anchored plan, else free).", rich_help_panel=MODEL_PANEL)] = None,
    writer_interventions: Annotated[Optional[str], typer.Option(help="The draft's interventions: anchor (exactly the target's anchor's, its drug first, through the grammar; anchored plans), free (the drug, then whatever the writer adds), or auto (default: anchor under an anchored plan, else free).", rich_help_panel=MODEL_PANEL)] = None,
    writer_sampling: Annotated[Optional[str], typer.Option(help="How an adapted writer avoids loops: penalty (default: every repeated token; short criteria lists) or dry (llama.cpp's DRY, repeated sequences only, llamacpp-server: lists twice as long, lower acceptance; benchmarks/RESULTS.md).", rich_help_panel=MODEL_PANEL)] = None,
    writer_prompt_tokens: Annotated[Optional[int], typer.Option(help="An adapted writer's prompt budget in tokens: how much of its two examples it sees (default: the budget the adapter was trained with, `adapt --prompt-tokens`, 256 by default).", rich_help_panel=MODEL_PANEL)] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Writer temperature (default 0.7).", rich_help_panel=MODEL_PANEL)] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Answer tokens per call (default 900).", rich_help_panel=MODEL_PANEL)] = None,
    max_retries: Annotated[Optional[int], typer.Option(help="Retries per call: 429/5xx/timeouts, with backoff (default 4).", rich_help_panel=MODEL_PANEL)] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Seconds per model call (default 120; llamacpp-server: at least 30 s + the answer budget at 4 tokens/s, what a busy slot may need).", rich_help_panel=MODEL_PANEL)] = None,
    price_prompt: Annotated[Optional[float], typer.Option(help="USD per million prompt tokens (cost accounting).", rich_help_panel=MODEL_PANEL)] = None,
    price_completion: Annotated[Optional[float], typer.Option(help="USD per million completion tokens.", rich_help_panel=MODEL_PANEL)] = None,
    ground_on: Annotated[Optional[list[str]], typer.Option(help="Splits generation may read (default: train when the store has one, else pool); valid/test only when named.", rich_help_panel="Grounding")] = None,
    ground_sample: Annotated[Optional[float], typer.Option(help="Ground on a seeded, label-stratified fraction of the grounding splits (0-1]: an honest low-resource run; give `adapt` the same.", rich_help_panel="Grounding")] = None,
    k: Annotated[Optional[int], typer.Option(help="Real examples per draw (default 3).", rich_help_panel="Grounding")] = None,
    neighbours: Annotated[Optional[str], typer.Option(help="Semantic neighbours: off, fallback (default) or add.", rich_help_panel="Grounding")] = None,
    plan: Annotated[Optional[str], typer.Option(help=f"Plan mode (default {DEFAULT_PLAN_MODE}): " + "; ".join(f"{name}: {rule.use}" for name, rule in PLAN_MODES.items()) + ".", rich_help_panel="Grounding")] = None,
    intervention: Annotated[Optional[list[str]], typer.Option(help="With --plan list: a drug (repeatable).", rich_help_panel="Grounding")] = None,
    rule: Annotated[Optional[str], typer.Option(help="Eligibility: first (default) or any listed drug.", rich_help_panel="Grounding")] = None,
    plan_min_trials: Annotated[Optional[int], typer.Option(help="Successful and failed grounding trials a planned drug needs (default: k; below k, neighbours fill in).", rich_help_panel="Grounding")] = None,
    reasoner: Annotated[Optional[str], typer.Option(help="Reasons from: auto (default), llm, evidence or none.", rich_help_panel="Agents")] = None,
    label_fit: Annotated[Optional[bool], typer.Option("--label-fit/--no-label-fit", help="The critic also rejects drafts a TF-IDF classifier of the grounding trials finds unlikely for their label (off by default: see benchmarks/RESULTS.md).", rich_help_panel="Agents")] = None,
    reasons: Annotated[Optional[int], typer.Option(help="Reasons per draw (default 5).", rich_help_panel="Agents")] = None,
    revisions: Annotated[Optional[int], typer.Option(help="Critic -> writer loops before rejection (default 3).", rich_help_panel="Agents")] = None,
    llm_critic: Annotated[Optional[str], typer.Option(help="LLM critic: off, advisory or enforce (default: off for the embedded model, whose judgement was measured at chance; else enforce).", rich_help_panel="Agents")] = None,
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
    from synthtrials.tools.llm.adapter_folder import adapter_sha256, read_adapter
    from synthtrials.tools.errors import describe
    from synthtrials.tools.records.splits import HELD_OUT, check_split

    if adapter is not None:
        read_adapter(adapter)
    llm = llm_config(backend, model, model_path, base_url, api_key_env, structured, max_tokens=max_tokens,
                     max_retries=max_retries, timeout_s=timeout, price_prompt_per_m=price_prompt,
                     price_completion_per_m=price_completion, weights=weights, n_threads=threads)
    try:
        generation = GenerationConfig(llm=llm, **given(
            k=k, n_reasons=reasons, max_revisions=revisions, neighbours=neighbours, llm_critic=llm_critic, seed=seed,
            reasoner=reasoner, writer_temperature=temperature, writer_grammar=writer_grammar, writer_sampling=writer_sampling, label_fit=label_fit,
            writer_criteria=writer_criteria, writer_conditions=writer_conditions,
            writer_interventions=writer_interventions, writer_prompt_tokens=writer_prompt_tokens,
            ground_on=[check_split(s) for s in ground_on] if ground_on else None, ground_sample=ground_sample,
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
    from synthtrials.tools.llm.client import LLMError

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


def _answer_budget(value: str | None) -> int | str | None:
    """--answer-tokens: a positive number of tokens or `auto`."""
    if value is None or value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"--answer-tokens {value}: give a positive number of tokens or auto")
    return int(value)


@app.command()
@one_line_errors
def adapt(
    store: StoreOpt,
    out: Annotated[Path, typer.Option(help="Adapter folder (PEFT adapter, llama.cpp GGUF adapter, adapter.json); resumable.")],
    ground_on: Annotated[Optional[list[str]], typer.Option(help="Splits to adapt on (default: train when the store has one, else pool).")] = None,
    ground_sample: Annotated[Optional[float], typer.Option(help="Adapt on a seeded, label-stratified fraction of them (0-1], the same trials `generate --ground-sample` with the same seed grounds on.")] = None,
    base: Annotated[Optional[str], typer.Option(help="Base model: smollm2 (default), a GGUF path, or a Hugging Face causal LM folder or cached id.")] = None,
    max_trials: Annotated[Optional[int], typer.Option(help="Adapt on this many grounding trials (seeded sample).")] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Passes over the trials (default 1).")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Stop at the first step boundary after this long (re-run to continue).")] = None,
    rank: Annotated[Optional[int], typer.Option(help="LoRA rank (default 16).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed (default 0).")] = None,
    prompt_tokens: Annotated[Optional[int], typer.Option(help="Prompt budget in tokens, the same at generation (default 256: each of the two examples trimmed to about 100 tokens, its first criteria).")] = None,
    answer_tokens: Annotated[Optional[str], typer.Option(help="Answer budget in tokens, the same at generation (default 384), or auto: the grounding answers' 95th percentile (TOP phase I train: 1,342; median 544: see benchmarks/RESULTS.md).")] = None,
) -> None:
    """Adapt the writer (LoRA) to the real trials of the grounding splits, for offline generation."""
    from pydantic import ValidationError
    from synthtrials.agents.writer_adaptation import AdaptOptions
    from synthtrials.agents.writer_adaptation import adapt as run_adapt
    from synthtrials.tools.errors import describe
    from synthtrials.tools.records.splits import check_split

    given = {"ground_on": [check_split(s) for s in ground_on] if ground_on else None, "base": base,
             "max_trials": max_trials, "epochs": epochs, "minutes": minutes, "rank": rank, "seed": seed,
             "answer_tokens": _answer_budget(answer_tokens), "ground_sample": ground_sample,
             "prompt_tokens": prompt_tokens}
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
    from synthtrials.evals.decontamination import CONTAMINATED, MEASURES, check_store
    from synthtrials.graphs.resolve import settle_draft, settle_grounding, settle_thresholds
    from synthtrials.tools.atomic import write_jsonl_atomic
    from synthtrials.tools.knowledge.calibration import build_knowledge
    from synthtrials.tools.knowledge.checks import CriticThresholds
    from synthtrials.tools.llm.client import LLMClient
    from synthtrials.tools.readers import read_trials

    if llm_critic not in ("off", "advisory", "enforce"):
        raise ConfigError(f"--llm-critic must be off, advisory or enforce, got {llm_critic!r}")
    trials = read_trials(files)
    if not trials:
        raise ConfigError(f"{files[0]}: no trials to check")
    store_backend = _open_store(store)
    splits = settle_grounding(store_backend, ground_on, "check against")
    llm = LLMClient(llm_config(backend, model, model_path, base_url, api_key_env, None, temperature=0.0, max_tokens=300)) \
        if llm_critic != "off" else None
    with progress_bar() as progress:
        knowledge = build_knowledge(store_backend, splits)
        thresholds = settle_thresholds(CriticThresholds(), store_backend, splits, knowledge, say=progress.console.print)
        task = progress.add_task("checking", total=len(trials))
        fields = settle_draft(store_backend, splits).fields
        verdicts = check_trials(trials, store=store_backend, splits=splits, knowledge=knowledge, thresholds=thresholds,
                                fields=fields, llm=llm,
                                llm_mode=llm_critic,  # type: ignore[arg-type]
                                progress=lambda d, t: progress.update(task, completed=d))
        progress.update(task, description="against the held-out trials")
        held_out = check_store(trials, store_backend, splits, fields)
    store_backend.close()
    if held_out is not None:  # decontamination: a trial that reproduces a held-out (valid/test) trial fails
        limits = held_out.calibration.thresholds
        for verdict, score, matched in zip(verdicts, held_out.scores, held_out.matched):
            verdict.scores |= {f"held_out_{m}": getattr(score, m) for m in MEASURES}
            if exceeded := score.exceeded(limits):
                measure = exceeded[0]
                verdict.verdict = "reject"
                verdict.failed_checks = sorted({*verdict.failed_checks, CONTAMINATED})
                verdict.problems.append(f"reproduces held-out trial {matched[measure]} ({measure} "
                                        f"{getattr(score, measure):.3f} > {getattr(limits, measure):.3f}, calibrated "
                                        "on the store's real trials)")
    write_jsonl_atomic(out, (v.model_dump() for v in verdicts))
    failed = Counter(c for v in verdicts for c in v.failed_checks)
    accepted = sum(v.verdict == "accept" for v in verdicts)
    table = Table(title=f"{len(verdicts)} trials checked against {store} ({'/'.join(splits)}, calibration "
                        f"{thresholds.calibration}) -> {out}", title_justify="left")
    table.add_column("")
    table.add_column("trials", justify="right")
    table.add_row("accepted", str(accepted))
    table.add_row("rejected", str(len(verdicts) - accepted))
    for name, n in failed.most_common():
        table.add_row(f"  failed {name}", str(n))
    console.print(table)
    if any(t.overall_status or t.why_stopped for t in trials):
        console.print("status and why-stopped were dropped before checking (no draft has them)")
    if held_out is None:
        console.print("no held-out (valid/test) real trials in the store: not checked for contamination")
    else:
        limits = held_out.calibration.thresholds
        console.print(f"{CONTAMINATED}: reproduces a held-out trial (13-gram overlap above {limits.text_ngram:.3f}, "
                      f"of the criteria above {limits.criteria_ngram:.3f}, or similarity above {limits.similarity:.3f}: "
                      f"calibrated on {held_out.calibration.train_trials} real grounding trials against "
                      f"{held_out.calibration.held_out_trials} held-out ones)", highlight=False, soft_wrap=True)


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
                          ",".join(t.reject_reasons), str(t.checkpoints))
        console.print(table)
        return
    result = trial_trace(run_dir, trial)
    if as_json:
        print(trace_json(result))
        return
    console.print(f"[bold]{result.thread_id}[/] {result.trial_id or ''}: {result.intervention}, label {result.label} "
                  f"-> {result.verdict} {','.join(result.reject_reasons)} ({result.checkpoints} checkpoints)")
    for number, step in enumerate(result.steps, 1):
        console.rule(f"{number}. {step.node}  {step.seconds:.2f} s  {step.tokens} tokens")
        console.print("[bold]read[/]", json.dumps(step.read, default=str))
        console.print("[bold]wrote[/]", json.dumps(step.wrote, default=str))
        limit = None if full else 600
        if step.prompt:
            console.print("[bold]prompt[/]", step.prompt[:limit], highlight=False)
        if step.answer:
            console.print("[bold]answer[/]", step.answer[:limit], highlight=False)
