"""Step-by-step trace inspection of a run's threads, read from the checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from synthtrials.graphs.runner import started_threads, thread_id
from synthtrials.graphs.state import GenerationState, StepLog
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.run_folder import CHECKPOINTS_FILE, RUN_FILE


class TrialTrace(BaseModel):
    plan_index: int
    thread_id: str
    trial_id: str | None
    intervention: str
    label: int
    verdict: str
    reject_reasons: list[str]
    checkpoints: int
    steps: list[StepLog]


def _open(run_dir: Path):
    from synthtrials.graphs.runner import open_checkpointer

    if not (run_dir / RUN_FILE).exists() or not (run_dir / CHECKPOINTS_FILE).exists():
        raise ConfigError(f"{run_dir}: not a synthtrials run folder (no {RUN_FILE} / {CHECKPOINTS_FILE})")
    return open_checkpointer(run_dir)


def _latest(checkpointer: Any, index: int) -> tuple[GenerationState | None, int]:
    config = {"configurable": {"thread_id": thread_id(index)}}
    history = list(checkpointer.list(config))
    if not history:
        return None, 0
    values = history[0].checkpoint["channel_values"]
    try:
        state = GenerationState.model_validate({k: v for k, v in values.items() if not k.startswith("__")})
    except Exception:
        return None, len(history)
    return state, len(history)


def list_trials(run_dir: str | Path) -> list[TrialTrace]:
    """Every thread of the run (without step details)."""
    run_dir = Path(run_dir)
    checkpointer = _open(run_dir)
    out = []
    for index in started_threads(checkpointer):
        trace = _trace(checkpointer, index, with_steps=False)
        if trace:
            out.append(trace)
    checkpointer.conn.close()
    return out


def _trace(checkpointer: Any, index: int, with_steps: bool = True) -> TrialTrace | None:
    state, count = _latest(checkpointer, index)
    if state is None:
        return None
    return TrialTrace(plan_index=index, thread_id=thread_id(index),
                      trial_id=state.draft.nct_id if state.draft else None,
                      intervention=state.target.intervention, label=state.target.label, verdict=state.verdict,
                      reject_reasons=state.reject_reasons, checkpoints=count, steps=state.log if with_steps else [])


def trial_trace(run_dir: str | Path, trial: str | int) -> TrialTrace:
    """The steps of one trial, by plan index, thread id (trial-000003) or synthetic id (SYN-...)."""
    run_dir = Path(run_dir)
    checkpointer = _open(run_dir)
    try:
        indices = started_threads(checkpointer)
        text = str(trial)
        if text.isdigit():
            wanted = [int(text)]
        elif text.startswith("trial-"):
            wanted = [int(text.split("-")[1])]
        else:
            wanted = [i for i in indices if (t := _trace(checkpointer, i, False)) and t.trial_id == text]
        for index in wanted:
            trace = _trace(checkpointer, index)
            if trace:
                return trace
        raise ConfigError(f"{run_dir}: no trial {trial!r} (give a plan index, trial-NNNNNN or a SYN- id)")
    finally:
        checkpointer.conn.close()


def trace_json(trace: TrialTrace) -> str:
    return json.dumps(trace.model_dump(mode="json"), indent=2)
