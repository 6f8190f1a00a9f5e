"""Batch generation runs: a sampling plan, one checkpointed graph thread per planned trial,
bounded concurrency, resume after any interruption, and atomically written outputs (the run
folder's format: `tools.run_folder`).
"""

from __future__ import annotations

import copy
import shutil
import sqlite3
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from synthtrials.agents.critic import index_accepted
from synthtrials.agents.writer import ANSWER_TOKENS, PROMPT_TOKENS
from synthtrials.graphs.config import GenerationConfig
from synthtrials.graphs.context import RunContext
from synthtrials.graphs.generation import build_graph
from synthtrials.graphs.plan import DEFAULT_PLAN_MODE, PLAN_MODES, PLAN_VERSION, PlanMode, SamplingPlan, anchors_of
from synthtrials.graphs.resolve import settle_generation
from synthtrials.graphs.resources import Resources
from synthtrials.graphs.state import GenerationState
from synthtrials.tools.llm.adapter_folder import read_adapter
from synthtrials.tools.atomic import atomic_open, write_json_atomic, write_jsonl_atomic
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.llm.client import LLMClient, LLMError
from synthtrials.tools.llm.backends import checked_adapter
from synthtrials.tools.llm.llama_server import running_servers, stop_servers
from synthtrials.tools.llm.config import backend_of, resolve_gguf
from synthtrials.tools.llm.usage import Usage
from synthtrials.tools.progress import SayFn
from synthtrials.tools.run_folder import (
    CHECKPOINTS_FILE,
    HF_DATASET_DIR,
    LLM_CACHE_FILE,
    PARQUET_FILE,
    PLAN_FILE,
    REJECTED_FILE,
    SUMMARY_FILE,
    TRIALS_FILE,
    GenerationSummary,
    RunConfigRecord,
    RunGrounding,
    RunRecord,
    read_run_record,
    read_summary,
    write_run_config,
    write_run_grounding,
    write_run_record,
    write_summary,
)
from synthtrials.tools.store.protocol import eligible
from synthtrials.tools.store.trial_store import open_store
from synthtrials.tools.records.trial import Trial, render_for_classifier
from synthtrials.tools.seeds import SEED_SCHEME_VERSION

MAX_CONSECUTIVE_ERRORS = 3


class RunOptions(BaseModel):
    store: str
    out: Path
    n: int
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    plan_mode: PlanMode = DEFAULT_PLAN_MODE
    interventions: list[str] | None = None
    eligibility_rule: str = "first"
    concurrency: int | None = Field(None, ge=1, description="parallel draws; None: the backend's default "
                                                          "(16 llama-server slots, 4 for a hosted API, 1 in process)")
    plan_min_trials: int | None = Field(
        None, ge=1, description="successful and failed grounding trials a drug needs to be planned (None: k); "
                                "below k, semantic neighbours fill the examples")
    max_draws_factor: int = 10
    force: bool = False
    hf_dataset: bool = False
    max_minutes: float | None = Field(None, description="stop starting new draws after this long (resumable)")

    def fingerprint(self) -> dict[str, Any]:
        generation = self.generation.fingerprint()
        # what the writer is held to, not how it was asked for: `auto` under a plan without anchors is `free`
        anchored = PLAN_MODES[self.plan_mode].anchored
        generation["writer_conditions"] = "anchor" if self.generation.pins_conditions(anchored) else "free"
        generation["writer_interventions"] = "anchor" if self.generation.pins_interventions(anchored) else "free"
        return {"store": str(self.store), "generation": generation, "plan_mode": self.plan_mode,
                "plan_version": PLAN_VERSION, "seed_scheme": SEED_SCHEME_VERSION,
                "interventions": self.interventions, "eligibility_rule": self.eligibility_rule,
                **({"plan_min_trials": self.plan_min_trials} if self.plan_min_trials is not None else {})}


class RunProgress(BaseModel):
    draws: int = 0
    accepted: int = 0
    rejected: int = 0
    revisions: int = 0
    errors: int = 0
    tokens: int = 0
    elapsed_s: float = 0.0
    target: int = 0


def thread_id(index: int) -> str:
    return f"trial-{index:06d}"


def thread_config(index: int) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id(index)}}


#: settings the run fingerprint gained after run folders were made without them, each with the value
#: that does what those runs did: a folder whose fingerprint lacks one resumes when the run asks for
#: that value (the adapted writer's sampler: llama.cpp's repetition penalty of 1.1, no DRY)
ADDED_SETTINGS: dict[str, Any] = {
    "generation.writer_sampling": "penalty",
    "generation.llm.repeat_penalty": 1.1,
    "generation.llm.dry_multiplier": 0.0,
    "generation.writer_criteria": "free",
    "generation.writer_conditions": "free",
    "generation.writer_interventions": "free",
    "generation.writer_prompt_tokens": None,
}


def with_added_settings(settled: dict[str, Any]) -> dict[str, Any]:
    """A recorded generation settlement with the settings it predates at the values that do what its run did
    (not at today's defaults, which may differ: `writer_conditions` is `auto` today, `free` before)."""
    out = copy.deepcopy(settled)
    for path, value in ADDED_SETTINGS.items():
        keys = path.split(".")[1:]  # "generation.llm.x" -> the settlement's ["llm", "x"]
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node.setdefault(keys[-1], value)
    return out


def _added_hints(old: dict[str, Any], differences: list[str]) -> list[str]:
    """For each differing setting that the recorded run predates: the value it ran with."""
    hints = []
    for path in differences:
        node: Any = old
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if node is None and path in ADDED_SETTINGS:
            hints.append(f"it was made before {path} existed, as {path} = {ADDED_SETTINGS[path]}")
    return hints


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The settings (dotted paths) that differ between two fingerprints; a setting `old` lacks is no
    difference where `new` holds the value `ADDED_SETTINGS` gives it."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            path = f"{prefix}{key}"
            if key not in old and path in ADDED_SETTINGS and new[key] == ADDED_SETTINGS[path]:
                continue
            out += _diff(old.get(key), new.get(key), f"{path}.")
        return out
    return [prefix.rstrip(".")] if old != new else []


def settled_generation(options: RunOptions, store: Any, llm: Callable[[], LLMClient] | None = None,
                       say: SayFn | None = None) -> GenerationConfig:
    """The generation config with its data-dependent defaults settled (`graphs.resolve`).

    A resumed run keeps the settlement it recorded (a re-ingested or re-calibrated store never
    changes a run midway); a new run settles them against the store now. Writes nothing.
    """
    saved = read_run_record(options.out)
    if saved is not None and saved.settled and not _diff(saved.fingerprint, options.fingerprint()):
        settled = GenerationConfig.model_validate(with_added_settings(saved.settled))
        return settled.model_copy(update={"llm": options.generation.llm})
    return settle_generation(options.generation, store, say=say, llm=llm)


def prepare_run_folder(options: RunOptions, settled: GenerationConfig) -> str:
    """Create or reopen the run folder (recording `settled`); returns the run id.

    Refuses a different configuration unless forced (which keeps the old run aside).
    """
    out = options.out
    fingerprint = options.fingerprint()
    saved = read_run_record(out)
    if saved is not None:
        differences = _diff(saved.fingerprint, fingerprint)
        if not differences:
            for stale in out.glob(".*.tmp"):  # a write interrupted by a kill never replaced its target
                stale.unlink()
            if saved.settled is None:  # a run folder written before settlements were recorded
                write_run_record(out, saved.model_copy(update={"settled": settled.model_dump(mode="json")}))
            return saved.run_id
        if not options.force:
            hints = "".join(f"; {h}" for h in _added_hints(saved.fingerprint, differences[:4]))
            raise ConfigError(f"{out}: holds a run with a different configuration ({', '.join(differences[:4])}{hints}); "
                              "resume it with the same options, or use --force to start over (the old run is kept aside)")
        aside = out.with_name(f"{out.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        out.rename(aside)
    elif out.exists() and any(out.iterdir()):
        if not options.force:
            raise ConfigError(f"{out}: folder exists and is not a synthtrials run; choose another --out or use --force")
        out.rename(out.with_name(f"{out.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"))
    out.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:12]
    for stale in out.glob(".*.tmp"):  # a write interrupted by a kill never replaced its target
        stale.unlink()
    write_run_record(out, RunRecord(run_id=run_id, created=time.strftime("%Y-%m-%dT%H:%M:%S"), fingerprint=fingerprint,
                                    settled=settled.model_dump(mode="json")))
    return run_id


def checkpoint_serializer():
    """LangGraph's serializer, allowed to revive exactly our state's pydantic types."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from synthtrials.graphs import state as state_module
    from synthtrials.tools.records import trial as trial_module

    allowed = [(state_module.__name__, name) for name in ("GenerationState", "Target", "Critique", "StepLog")]
    allowed += [(trial_module.__name__, name) for name in (
        "Trial", "Intervention", "InterventionType", "Eligibility", "Arm", "Design", "Outcome", "Phase")]
    return JsonPlusSerializer(allowed_msgpack_modules=allowed)


def open_checkpointer(out: Path):
    from langgraph.checkpoint.sqlite import SqliteSaver

    connection = sqlite3.connect(out / CHECKPOINTS_FILE, check_same_thread=False)
    saver = SqliteSaver(connection, serde=checkpoint_serializer())
    saver.setup()
    return saver


def started_threads(checkpointer: Any) -> list[int]:
    """Plan indices of every thread with at least one checkpoint."""
    rows = checkpointer.conn.execute("SELECT DISTINCT thread_id FROM checkpoints").fetchall()
    return sorted(int(r[0].split("-")[1]) for r in rows if r[0].startswith("trial-"))


def thread_values(graph: Any, index: int) -> tuple[GenerationState | None, bool]:
    """The thread's latest state (or None) and whether it is finished. A thread whose only checkpoint is
    LangGraph's input checkpoint (a process killed before its first step: the reducers' empty channels, no
    target yet) has not started."""
    snapshot = graph.get_state(thread_config(index))
    if not snapshot.values or "target" not in snapshot.values:
        return None, False
    state = GenerationState.model_validate(snapshot.values)
    return state, state.verdict != "pending" and not snapshot.next


def run_thread(graph: Any, plan: SamplingPlan, index: int, context: RunContext) -> GenerationState:
    """Run (or continue, or just read) the thread of planned trial `index`."""
    config = thread_config(index)
    state, finished = thread_values(graph, index)
    if finished and state is not None:
        return state
    if state is not None:  # interrupted: continue from the last checkpoint
        values = graph.invoke(None, config, context=context)
    else:
        values = graph.invoke(GenerationState(target=plan.target(index)), config, context=context)
    return GenerationState.model_validate(values)


def select_accepted(results: dict[int, GenerationState], n: int) -> list[Trial]:
    """The first n accepted trials by plan index, over the contiguous finished prefix."""
    accepted: list[Trial] = []
    index = 0
    while index in results and len(accepted) < n:
        state = results[index]
        if state.verdict == "accept" and state.draft is not None:
            accepted.append(state.draft)
        index += 1
    return accepted


def more_draws_needed(n: int, results: dict[int, GenerationState], inflight: int) -> bool:
    """Whether another draw can still help the run reach `n` accepted trials: the trials accepted so far
    (at any plan index: the first `n` by index are kept once the draws before them finish) and those
    the draws in flight are expected to bring (each accepted at the run's acceptance so far, smoothed:
    (accepted + 1) / (finished + 2)) fall short of `n`. A draw started past that point only competes for
    the writer with the draws the run waits for (measured: the demo kept 20 of 51 accepted trials,
    benchmarks/RESULTS.md "Draws the run does not need"), and a hosted model bills it. A draw missing below
    the last finished one (a resumed run's) is always run: the kept trials' prefix needs it."""
    accepted = sum(1 for state in results.values() if state.verdict == "accept" and state.draft is not None)
    rate = (accepted + 1) / (len(results) + 2)
    return accepted + rate * inflight < n


def trial_row(trial: Trial) -> dict[str, Any]:
    return {
        "nct_id": trial.nct_id, "label": trial.label, "phase": trial.phase.value if trial.phase else None,
        "interventions": trial.intervention_names, "conditions": trial.conditions, "enrollment": trial.enrollment,
        "source": trial.source, "text": render_for_classifier(trial), "record": trial.model_dump_json(),
    }


def write_parquet(path: Path, trials: list[Trial]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("nct_id", pa.string()), ("label", pa.int8()), ("phase", pa.string()),
                        ("interventions", pa.list_(pa.string())), ("conditions", pa.list_(pa.string())),
                        ("enrollment", pa.int64()), ("source", pa.string()), ("text", pa.string()),
                        ("record", pa.string())])
    table = pa.Table.from_pylist([trial_row(t) for t in trials], schema=schema)
    with atomic_open(path, "wb") as handle:
        pq.write_table(table, handle)


def write_hf_dataset(folder: Path, trials: list[Trial]) -> None:
    try:
        import datasets
    except ImportError:
        raise ConfigError("--hf-dataset needs the `datasets` package (pip install datasets)") from None
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    datasets.Dataset.from_list([trial_row(t) for t in trials]).save_to_disk(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


@dataclass(frozen=True)
class EarlierSessions:
    """What the earlier sessions of a resumed run spent (from its summary.json): the run's summary
    counts time and tokens over all of them, so that a resume does not inflate accepted/min."""

    seconds: float = 0.0
    usage: Usage = field(default_factory=Usage)
    sessions: int = 0

    @classmethod
    def of(cls, run_dir: Path) -> EarlierSessions:
        summary = read_summary(run_dir)
        if summary is None:
            return cls()
        return cls(seconds=summary.seconds, usage=Usage.from_dict(summary.tokens), sessions=summary.sessions)


def summarize(results: dict[int, GenerationState], accepted: list[Trial], options: RunOptions,
              clients: list[LLMClient], seconds: float, errors: int, final: bool,
              earlier: EarlierSessions | None = None, stopped_draws: int = 0) -> GenerationSummary:
    finished = list(results.values())
    rejected = [s for s in finished if s.verdict == "reject"]
    by_reason: Counter = Counter()
    for state in rejected:
        for check in state.reject_reasons or ["rejected"]:
            by_reason[check] += 1
    revised_by: Counter = Counter()
    node_seconds: dict[str, float] = defaultdict(float)
    writes = valid = 0
    for state in finished:
        for critique in state.critiques:
            if critique.verdict == "revise":
                revised_by.update(critique.failed_checks)
        for step in state.log:
            node_seconds[step.node] += step.seconds
            if step.node == "write":
                writes += 1
                valid += int("error" not in step.wrote)
    earlier = earlier or EarlierSessions()
    usage = Usage()
    usage.add(earlier.usage)
    for client in clients:
        usage.add(client.usage)
    seconds = round(seconds + earlier.seconds, 3)  # rounded once, as written: resumed sums never shrink
    accepted_ids = {t.nct_id for t in accepted}
    llm = options.generation.llm
    return GenerationSummary(
        requested=options.n, accepted=len(accepted), draws=len(finished), rejected=len(rejected),
        acceptance_rate=round(sum(s.verdict == "accept" for s in finished) / max(1, len(finished)), 4),
        rejections_by_reason=dict(by_reason.most_common()),
        revisions=sum(1 for s in finished for c in s.critiques if c.verdict == "revise"),
        revisions_by_reason=dict(revised_by.most_common()), writer_calls=writes,
        writer_valid_share=round(valid / max(1, writes), 4), errors=errors, tokens=usage.as_dict(llm),
        tokens_per_accepted=round(usage.total_tokens / max(1, len(accepted)), 1),
        accepted_per_minute=round(len(accepted) / max(seconds / 60, 1e-9), 3), seconds=seconds,
        seconds_per_draw_by_node={n: round(v / max(1, len(finished)), 2) for n, v in node_seconds.items()},
        backend=llm.backend, model=llm.model_label(), writer_model=clients[-1].config.model_label()
        + (" + adapter" if clients[-1].config.adapter else ""),
        surplus_accepted=sum(1 for s in finished if s.verdict == "accept" and s.draft and s.draft.nct_id not in accepted_ids),
        stopped_draws=stopped_draws, concurrency=effective_concurrency(options), free_decoded=usage.free_calls,
        grammar_fallbacks=usage.grammar_fallbacks,
        complete=final and len(accepted) == options.n, sessions=earlier.sessions + 1)


def write_outputs(options: RunOptions, generation: GenerationConfig, plan: SamplingPlan,
                  results: dict[int, GenerationState], clients: list[LLMClient], seconds: float, errors: int,
                  final: bool, earlier: EarlierSessions | None = None, stopped_draws: int = 0) -> GenerationSummary:
    out = options.out
    accepted = select_accepted(results, options.n)
    write_jsonl_atomic(out / TRIALS_FILE, (t.model_dump(mode="json") for t in accepted))
    rejected_rows = [
        {"plan_index": i, "target": s.target.model_dump(), "reasons": s.reject_reasons,
         "problems": s.critiques[-1].problems if s.critiques else [],
         "draft": s.draft.model_dump(mode="json") if s.draft else None}
        for i, s in sorted(results.items()) if s.verdict == "reject"
    ]
    write_jsonl_atomic(out / REJECTED_FILE, rejected_rows)
    write_json_atomic(out / PLAN_FILE, {**plan.model_dump(mode="json"),
                                        "targets": [plan.target(i).model_dump() for i in range(max(results, default=-1) + 1)]})
    summary = summarize(results, accepted, options, clients, seconds, errors, final, earlier, stopped_draws)
    if final:
        write_parquet(out / PARQUET_FILE, accepted)
        if options.hf_dataset:
            write_hf_dataset(out / HF_DATASET_DIR, accepted)
    write_summary(out, summary)
    write_run_config(out, RunConfigRecord(
        n=options.n, store=options.store, plan_mode=options.plan_mode, interventions=options.interventions,
        concurrency=options.concurrency, eligibility_rule=options.eligibility_rule,
        plan_min_trials=options.plan_min_trials, generation=generation.model_dump(mode="json")))
    return summary


def stop_inflight(inflight: dict[Future, int], results: dict[int, GenerationState], clients: list[LLMClient],
                  release_servers: Callable[[], None]) -> int:
    """End the draws a run no longer needs at their current model call, not at their last revision:
    every client refuses further calls and the servers the run started stop (a local server's
    answers in decoding end with it; a hosted call runs to its answer). A draw that still finishes
    joins `results`; the others keep their checkpoints, so a longer run resumes them. Returns how
    many were stopped."""
    stopped = 0
    with ExitStack() as stack:
        for client in clients:
            stack.enter_context(client.calls_stopped())
        release_servers()
        for future in as_completed(list(inflight)):
            try:
                results[inflight[future]] = future.result()
            except Exception:  # CallsStopped, or what the stop caused in the graph: the draw is unfinished
                stopped += 1
    inflight.clear()
    return stopped


#: the adapted writer's DRY multiplier (`GenerationConfig.writer_sampling`), llama.cpp's suggested value:
#: no loops, criteria lists 2.7 times as long as under the penalty (benchmarks/bench_writer_sampling.py)
WRITER_DRY_MULTIPLIER = 0.8


def adapted_writer_client(generation: GenerationConfig) -> LLMClient | None:
    """The writer's own client when it was adapted: the base model with the adapter, the answer
    budget it was trained for, its grammar mode; the reasoner and critic keep the base model."""
    if not generation.writer_adapter:
        return None
    info = read_adapter(generation.writer_adapter)
    trained = info.options  # the budgets it was adapted with
    prompt_tokens = generation.writer_prompt_tokens or int(trained.get("prompt_tokens") or PROMPT_TOKENS)
    answer_tokens = info.answer_tokens or int(trained.get("answer_tokens") or ANSWER_TOKENS)
    sampling = {"repeat_penalty": 1.0, "dry_multiplier": WRITER_DRY_MULTIPLIER} if generation.writer_dry() else {}
    return LLMClient(generation.llm.model_copy(update={
        "adapter": generation.writer_adapter, "max_tokens": answer_tokens + 64,
        "n_ctx": max(1024, prompt_tokens + answer_tokens + 128), "grammar": generation.writer_grammar_mode(),
        **sampling}))


def base_model_needed(generation: GenerationConfig) -> bool:
    """Whether a settled run's graph calls the base model: it writes (no adapter), reasons or
    judges. An adapted writer with templated reasons and the LLM critic off never does, so no
    second server runs beside the writer's (`graphs.resolve.CHANCE_CRITIC_MODELS` says what it cost)."""
    return not generation.writer_adapter or generation.reasoner == "llm" or generation.llm_critic != "off"


def effective_concurrency(options: RunOptions) -> int:
    """Parallel draws: a model in this process answers one call at a time; a server several."""
    backend = backend_of(options.generation.llm)
    if backend.in_process:
        return 1
    return options.concurrency or backend.default_concurrency


def check_run_options(options: RunOptions) -> None:
    """Bad options as one-line errors, before anything is drawn or written."""
    if options.n <= 0:
        raise ConfigError(f"--n must be positive, got {options.n}")
    generation = options.generation
    for option, value in (("--writer-criteria", generation.writer_criteria), ("--writer-conditions", generation.writer_conditions),
                          ("--writer-interventions", generation.writer_interventions)):
        if value == "anchor" and not PLAN_MODES[options.plan_mode].anchored:
            raise ConfigError(f"{option} anchor needs an anchored plan (--plan anchored), not --plan {options.plan_mode}")
    if generation.writer_prompt_tokens is not None and not generation.writer_adapter:
        raise ConfigError("--writer-prompt-tokens sets an adapted writer's prompt budget: give --adapter too (a "
                          "prompted writer's examples follow the model's context window)")
    if generation.writer_adapter:
        generation.writer_dry()  # a sampler the backend lacks is refused here, before anything is written
        llm = generation.llm
        base = resolve_gguf(llm.model_path) if backend_of(llm).local_gguf else None
        checked_adapter(llm.model_copy(update={"adapter": generation.writer_adapter}), base)
    store = open_store(options.store, create=False)
    try:
        if store.count() == 0:
            raise ConfigError(f"{options.store}: the store is empty (run `synthtrials ingest` first)")
    finally:
        store.close()


def run_generation(options: RunOptions, on_progress: Callable[[RunProgress], None] | None = None,
                   llm: LLMClient | None = None, say: SayFn | None = None) -> GenerationSummary:
    """Run (or resume) a generation run until exactly `options.n` trials are accepted.

    Raises `ConfigError` on bad input before anything is written, and `LLMError` when the
    backend fails every call (the run folder stays resumable).
    """
    check_run_options(options)
    servers_before = running_servers()

    def release_servers() -> None:  # the servers this run started end with it
        stop_servers(keep=servers_before)

    try:
        return _settle_and_run(options, on_progress, llm, say, release_servers)
    finally:
        release_servers()


def _settle_and_run(options: RunOptions, on_progress: Callable[[RunProgress], None] | None,
                    llm: LLMClient | None, say: SayFn | None, release_servers: Callable[[], None]) -> GenerationSummary:
    store = open_store(options.store, create=False)
    concurrency = effective_concurrency(options)
    # a server's parallel slots follow the draws (settlement's calls then reuse the run's server)
    transport = options.generation.llm.model_copy(
        update={"max_concurrency": max(options.generation.llm.max_concurrency, concurrency)})
    generation = settled_generation(options, store, llm=lambda: llm or LLMClient(transport), say=say)
    plan = plan_for(options, generation, store)  # refused here, before the run folder is written
    run_id = prepare_run_folder(options, generation)
    plan = plan.model_copy(update={"run_id": run_id})
    generation = generation.model_copy(deep=True)
    generation.llm.cache_path = str(options.out / LLM_CACHE_FILE)
    generation.llm.max_concurrency = transport.max_concurrency
    generation.llm.server_log_dir = str(options.out)
    return _run(options, generation, store, plan, run_id, concurrency, llm, on_progress, release_servers)


def plan_for(options: RunOptions, generation: GenerationConfig, store: Any) -> SamplingPlan:
    """The run's sampling plan: over the grounding trials (anchored) or the eligible drugs."""
    grounding = generation.grounding()
    if PLAN_MODES[options.plan_mode].anchored:
        anchors = anchors_of(store.filter(grounding))
        if not anchors:
            raise ConfigError(f"{options.store}: --plan {options.plan_mode}: no labelled trial with a drug in the "
                              f"grounding split(s) {', '.join(generation.ground_on or [])}")
        return SamplingPlan.create("", generation.seed, [], options.plan_mode, anchors=anchors)
    min_trials = options.plan_min_trials or generation.k
    drugs = eligible(store, k=min_trials, rule=options.eligibility_rule,  # type: ignore[arg-type]
                     flt=grounding)
    if not drugs:
        raise ConfigError(f"{options.store}: no intervention has {min_trials} successful and {min_trials} failed "
                          f"trials in the grounding split(s) {', '.join(generation.ground_on or [])} (lower --k)")
    return SamplingPlan.create("", generation.seed, drugs, options.plan_mode, options.interventions)


def _run(options: RunOptions, generation: GenerationConfig, store: Any, plan: SamplingPlan, run_id: str,
         concurrency: int, llm: LLMClient | None, on_progress: Callable[[RunProgress], None] | None,
         release_servers: Callable[[], None]) -> GenerationSummary:
    adapter = read_adapter(generation.writer_adapter) if generation.writer_adapter else None
    write_run_grounding(options.out, RunGrounding(
        store=str(options.store), splits=list(generation.ground_on or []),
        trial_ids=sorted(store.filter_ids(generation.grounding())), adapter=generation.writer_adapter,
        adapter_trial_ids=adapter.trained_on if adapter else [], plan=plan.mode,
        anchor_ids=[a.nct_id for a in plan.anchors], ground_sample=generation.ground_sample,
        ground_sample_seed=generation.seed if generation.ground_sample is not None else None))
    llm = llm or LLMClient(generation.llm, lazy=not base_model_needed(generation))
    resources = Resources(store=store, llm=llm, writer_llm=adapted_writer_client(generation))
    clients = [llm] + ([resources.writer_llm] if resources.writer_llm else [])
    checkpointer = open_checkpointer(options.out)
    graph = build_graph(resources, checkpointer)
    context = RunContext(generation=generation, run_id=run_id)
    max_draws = options.n * options.max_draws_factor

    results: dict[int, GenerationState] = {}
    for index in started_threads(checkpointer):  # finished threads of an earlier run, and the synthetic index
        state, finished = thread_values(graph, index)
        if state is not None and finished:
            results[index] = state
            if state.verdict == "accept" and state.draft is not None:
                index_accepted(resources, state.draft, anchored=bool(state.target.anchor))

    earlier = EarlierSessions.of(options.out)  # read before this session writes its first summary
    start = time.perf_counter()
    progress = RunProgress(target=options.n)
    errors = consecutive_errors = 0
    retries: Counter = Counter()

    def report() -> None:
        finished = list(results.values())
        progress.draws = len(finished)
        progress.accepted = len(select_accepted(results, options.n))
        progress.rejected = sum(s.verdict == "reject" for s in finished)
        progress.revisions = sum(1 for s in finished for c in s.critiques if c.verdict == "revise")
        progress.errors = errors
        progress.tokens = sum(client.usage.total_tokens for client in clients)  # the writer's own client too
        progress.elapsed_s = time.perf_counter() - start
        if on_progress:
            on_progress(progress)

    def enough() -> bool:
        return len(select_accepted(results, options.n)) >= options.n

    report()
    next_index = 0
    stopped_draws = 0
    failure: LLMError | None = None
    deadline = start + options.max_minutes * 60 if options.max_minutes else None
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        inflight: dict[Future, int] = {}
        while True:
            while (len(inflight) < concurrency and not enough() and failure is None
                   and (next_index < max(results, default=-1) or more_draws_needed(options.n, results, len(inflight)))
                   and next_index < max_draws and (deadline is None or time.perf_counter() < deadline)):
                if next_index in results:
                    next_index += 1
                    continue
                inflight[pool.submit(run_thread, graph, plan, next_index, context)] = next_index
                next_index += 1
            if not inflight:
                break
            if enough():  # the draws still in flight lie past the selected prefix: they cannot change it
                stopped_draws = stop_inflight(inflight, results, clients, release_servers)
                break
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for future in done:
                i = inflight.pop(future)
                try:
                    results[i] = future.result()
                    consecutive_errors = 0
                except LLMError as exc:
                    errors += 1
                    consecutive_errors += 1
                    if exc.fatal or consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                        failure = failure or exc
                    elif retries[i] < 1:  # one more try within this run; resume retries again
                        retries[i] += 1
                        inflight[pool.submit(run_thread, graph, plan, i, context)] = i
                    else:
                        failure = failure or exc
            report()
            if len(results) % 5 == 0:
                write_outputs(options, generation, plan, results, clients, time.perf_counter() - start, errors,
                              final=False, earlier=earlier)
    seconds = time.perf_counter() - start
    summary = write_outputs(options, generation, plan, results, clients, seconds, errors, final=failure is None,
                            earlier=earlier, stopped_draws=stopped_draws)
    checkpointer.conn.close()
    if failure is not None:
        raise LLMError(f"generation stopped: {failure} (the run folder is intact; re-run the same command to resume)")
    timed_out = deadline is not None and time.perf_counter() >= deadline
    summary.stopped_by_time_budget = timed_out and summary.accepted < options.n
    if summary.stopped_by_time_budget:
        write_summary(options.out, summary)
        return summary
    if summary.accepted < options.n:
        raise ConfigError(f"only {summary.accepted} of {options.n} trials accepted after {summary.draws} draws "
                          f"(limit {max_draws}); see {options.out / SUMMARY_FILE} for the rejection reasons")
    return summary
