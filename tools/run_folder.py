"""The run folder's format, owned here: file names, and the typed records written into it.

A generation run folder holds:

    run.json           `RunRecord`: what must match to resume, and the settled configuration
    config.json        `RunConfigRecord`: the run's options, its settled generation config
    grounding.json     `RunGrounding`: every real trial the run read as a whole (leakage guard)
    plan.json          the sampling plan and the targets drawn so far
    checkpoints.sqlite every step of every graph thread (LangGraph SqliteSaver)
    llm_cache.sqlite   LangChain's LLM cache (a re-run call costs nothing)
    trials.jsonl       exactly N accepted synthetic trials (the first N accepted by plan index)
    trials.parquet     the same, flattened, with the classifier rendering
    rejected.jsonl     rejected drafts with their reasons
    summary.json       `GenerationSummary`
    hf_dataset/        optional Hugging Face `datasets` folder
    judge/             `synthtrials judge`: judge.jsonl, judge_summary.json
    eval_*/            `synthtrials evaluate --out RUN/eval_...`: metrics.json
    report.html/.md    `synthtrials report`; fidelity.json

Runner, trace, evaluation and report read and write run folders through this module only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from synthtrials.tools.atomic import write_json_atomic, write_text_atomic
from synthtrials.tools.errors import ConfigError

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
GROUNDING_FILE = "grounding.json"
PLAN_FILE = "plan.json"
CHECKPOINTS_FILE = "checkpoints.sqlite"
LLM_CACHE_FILE = "llm_cache.sqlite"
TRIALS_FILE = "trials.jsonl"
PARQUET_FILE = "trials.parquet"
REJECTED_FILE = "rejected.jsonl"
SUMMARY_FILE = "summary.json"
HF_DATASET_DIR = "hf_dataset"
JUDGE_DIR = "judge"
METRICS_FILE = "metrics.json"
FIDELITY_FILE = "fidelity.json"


class RunRecord(BaseModel):
    """run.json: the run's id, what must match to resume it, and its settled configuration."""

    run_id: str
    created: str
    fingerprint: dict[str, Any]
    settled: dict[str, Any] | None = Field(None, description="the settled generation config (absent in old runs)")


class RunConfigRecord(BaseModel):
    """config.json."""

    n: int
    store: str
    plan_mode: str
    interventions: list[str] | None = None
    concurrency: int | None = None
    eligibility_rule: str
    plan_min_trials: int | None = None
    generation: dict[str, Any]


class RunGrounding(BaseModel):
    """grounding.json: what a generation run read as a whole, for the leakage guard."""

    store: str
    splits: list[str]
    trial_ids: list[str] = Field(default_factory=list, description="every real trial of the grounding splits "
                                                                  "(with `ground_sample`: of the sample)")
    ground_sample: float | None = Field(None, description="`generate --ground-sample F`: the run grounded on a seeded, "
                                                         "label-stratified fraction F of the grounding splits (trial_ids)")
    ground_sample_seed: int | None = None
    plan: str | None = Field(None, description="the run's plan mode")
    anchor_ids: list[str] = Field(default_factory=list, description="anchored plan: the grounding trials targets "
                                                                    "are modelled on (never shown to the writer)")
    adapter: str | None = Field(None, description="the adapted writer's folder, if any")
    adapter_trial_ids: list[str] = Field(default_factory=list, description="the trials the writer was adapted on")

    def ids(self) -> set[str]:
        return set(self.trial_ids) | set(self.adapter_trial_ids) | set(self.anchor_ids)


class GenerationSummary(BaseModel):
    """summary.json."""

    requested: int
    accepted: int
    draws: int
    rejected: int
    acceptance_rate: float
    rejections_by_reason: dict[str, int]
    revisions: int
    revisions_by_reason: dict[str, int]
    writer_calls: int
    writer_valid_share: float
    errors: int
    tokens: dict[str, Any]
    tokens_per_accepted: float
    accepted_per_minute: float
    seconds: float = Field(description="time spent generating, summed over every session of the run (resumes)")
    sessions: int = Field(1, description="how many times the run was started or resumed")
    seconds_per_draw_by_node: dict[str, float] = Field(default_factory=dict)
    backend: str
    model: str
    writer_model: str | None = None
    surplus_accepted: int = Field(0, description="accepted draws past the first `requested` in plan order (finished "
                                                 "before the run had its trials)")
    stopped_draws: int = Field(0, description="draws still in flight when the run had its trials, stopped at their "
                                              "current model call (a run resumed with a larger --n continues them)")
    concurrency: int = Field(1, description="parallel draws of the last session")
    free_decoded: int = Field(0, description="structured answers first decoded without the grammar (an adapted "
                                             "writer's: `writer_grammar`)")
    grammar_fallbacks: int = Field(0, description="of those, answers that did not parse or fit the schema and were "
                                                  "asked again under the grammar")
    complete: bool = False
    stopped_by_time_budget: bool = False


def run_dir_of(path: str | Path) -> Path:
    """The run folder of a run folder or of a file inside one (trials.jsonl)."""
    path = Path(path)
    return path if path.is_dir() else path.parent


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


def trials_file(path: str | Path) -> Path:
    """The accepted trials of a run folder, or the file itself."""
    path = Path(path)
    return path / TRIALS_FILE if path.is_dir() else path


def _read(model: type[BaseModel], file: Path):
    try:
        return model.model_validate_json(file.read_text())
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{file}: unreadable ({' '.join(str(exc).split())[:160]})") from None


def read_run_record(run_dir: Path) -> RunRecord | None:
    file = Path(run_dir) / RUN_FILE
    return _read(RunRecord, file) if file.exists() else None


def write_run_record(run_dir: Path, record: RunRecord) -> None:
    write_json_atomic(Path(run_dir) / RUN_FILE, record.model_dump(mode="json"))


def read_run_config(path: str | Path) -> RunConfigRecord | None:
    file = run_dir_of(path) / CONFIG_FILE
    return _read(RunConfigRecord, file) if file.exists() else None


def write_run_config(run_dir: Path, record: RunConfigRecord) -> None:
    write_json_atomic(Path(run_dir) / CONFIG_FILE, record.model_dump(mode="json"))


def read_run_grounding(path: str | Path) -> RunGrounding | None:
    """The grounding.json of the run folder that holds `path`, if there is one."""
    file = run_dir_of(path) / GROUNDING_FILE
    return _read(RunGrounding, file) if file.is_file() else None


def write_run_grounding(run_dir: Path, grounding: RunGrounding) -> None:
    write_text_atomic(Path(run_dir) / GROUNDING_FILE, json.dumps(grounding.model_dump(mode="json"), indent=1) + "\n")


def read_summary(run_dir: str | Path) -> GenerationSummary | None:
    file = Path(run_dir) / SUMMARY_FILE
    return _read(GenerationSummary, file) if file.exists() else None


def write_summary(run_dir: Path, summary: GenerationSummary) -> None:
    write_json_atomic(Path(run_dir) / SUMMARY_FILE, summary.model_dump(mode="json"))
