"""LLM-judge runs: every trial scored on a written rubric (agents/prompts/judge.*.j2), with the
same rubric applied to a sample of real trials as calibration. Any backend of the LLM layer;
the LLM cache and an append-only results file make a run resumable.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, Field
from synthtrials.agents.prompting import (
    OUTCOME_PHRASES,
    prompt_version,
    render_messages,
)
from synthtrials.evals.results import JudgeSide, JudgeSummary
from synthtrials.tools.atomic import write_json_atomic
from synthtrials.tools.llm.client import LLMClient, LLMConfig, LLMError
from synthtrials.tools.progress import ProgressFn
from synthtrials.tools.records.trial import Sentence, Trial, render_for_classifier
from synthtrials.tools.seeds import llm_seed, stream

CRITERIA = ("realism", "domain_consistency", "label_consistency", "coherence")
Score = Annotated[int, Field(ge=1, le=5)]


class JudgeScores(BaseModel):
    realism: Score
    domain_consistency: Score
    label_consistency: Score
    coherence: Score
    rationale: Sentence


def judge_json_schema() -> dict:
    schema = JudgeScores.model_json_schema()
    for name in CRITERIA:  # small grammars: an enum is simpler for llama.cpp than integer bounds
        schema["properties"][name] = {"enum": [1, 2, 3, 4, 5]}
    return schema


def judge_trial(llm: LLMClient, trial: Trial, seed: int = 0) -> dict[str, Any]:
    messages = render_messages("judge", outcome_phrase=OUTCOME_PHRASES[int(trial.label or 0)],
                               trial=render_for_classifier(trial)[:3000])
    result = llm.structured(messages, JudgeScores, seed=seed, temperature=0.0,
                            json_schema=judge_json_schema())
    return {**result.value.model_dump(), "tokens": result.usage.total_tokens}


#: the judge's meta-evaluation on benchmarks/bench_critic.py (real phase II trials vs spoiled copies):
#: the AUC of its mean rubric score, per model; 0.5 is chance
MEASURED_JUDGES: dict[str, str] = {
    "SmolLM2-135M-Instruct.Q4_1.gguf": (
        "no better than chance: on benchmarks/bench_critic.py (150 real TOP phase II trials vs spoiled copies of 7 "
        "kinds and base-model drafts, 8 scored per kind) it gave every trial the same scores, AUC 0.50 for every "
        "kind; read its scores as a smoke test of the pipeline, not as quality"),
}


def judge_trust(model: str) -> str:
    """How far a model's judge scores can be trusted, as measured."""
    return MEASURED_JUDGES.get(model, "not measured: run benchmarks/bench_critic.py with this model before relying "
                                      "on its scores")


def run_judge(synthetic: list[Trial], real: list[Trial], config: LLMConfig, out: Path, n_real: int = 20,
              seed: int = 0, progress: ProgressFn | None = None) -> JudgeSummary:
    """Score every synthetic trial and `n_real` real ones; append per-trial results to judge.jsonl."""
    out.mkdir(parents=True, exist_ok=True)
    config = config.model_copy(update={"cache_path": str(out / "llm_cache.sqlite")})
    llm = LLMClient(config)
    calibration = stream(seed, "judge").sample(real, min(n_real, len(real))) if real else []
    items = [("synthetic", t) for t in synthetic] + [("real", t) for t in calibration]
    results_file = out / "judge.jsonl"
    done: dict[str, dict] = {}
    if results_file.exists():
        for line in results_file.read_text().splitlines():
            try:
                row = json.loads(line)
                done[f"{row['source']}:{row['nct_id']}"] = row
            except (json.JSONDecodeError, KeyError):
                continue  # a line cut by an interruption is redone
    def judged(number: int, source: str, trial: Trial) -> dict[str, Any]:
        try:
            return {"source": source, "nct_id": trial.nct_id, "label": trial.label,
                    **judge_trial(llm, trial, llm_seed(seed, "judge", number))}
        except LLMError as exc:
            if exc.fatal:
                raise
            return {"source": source, "nct_id": trial.nct_id, "label": trial.label, "error": str(exc)}

    todo = [(number, source, trial) for number, (source, trial) in enumerate(items, 1)
            if f"{source}:{trial.nct_id}" not in done]
    finished = len(items) - len(todo)
    if progress:
        progress(finished, len(items))
    # the judge's calls travel in parallel, as many as the model's client takes (a server's slots, a
    # hosted API's concurrency); each row is appended as it comes, so an interruption keeps it
    workers = max(1, min(len(todo), config.max_concurrency))
    with results_file.open("a", encoding="utf-8") as handle, ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(judged, *item) for item in todo]
        try:
            for future in as_completed(futures):
                row = future.result()
                handle.write(json.dumps(row) + "\n")
                handle.flush()
                done[f"{row['source']}:{row['nct_id']}"] = row
                finished += 1
                if progress:
                    progress(finished, len(items))
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    rows = list(done.values())
    sides: dict[str, JudgeSide] = {}
    for source in ("synthetic", "real"):
        scored = [r for r in rows if r["source"] == source and "error" not in r]
        sides[source] = JudgeSide(
            n=len([r for r in rows if r["source"] == source]), scored=len(scored),
            **{c: {"mean": float(np.mean([r[c] for r in scored])) if scored else None,
                   "std": float(np.std([r[c] for r in scored])) if scored else None} for c in CRITERIA})
    summary = JudgeSummary(model=config.model_label(), backend=config.backend, rubric=prompt_version("judge"),
                           criteria=list(CRITERIA), synthetic=sides["synthetic"], real=sides["real"],
                           trust=judge_trust(config.model_label()))
    write_json_atomic(out / "judge_summary.json", summary.model_dump(mode="json"))
    return summary
