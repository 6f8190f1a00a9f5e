"""The run folder's format, owned here: file names, and the typed records written into it.

Runner, trace, evaluation and report read and write run folders through this module only.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field

from synthtrials.tools.atomic import write_text_atomic
from synthtrials.tools.errors import ConfigError

GROUNDING_FILE = "grounding.json"


class RunGrounding(BaseModel):
    """What a generation run read as a whole (RUN_DIR/grounding.json), for the leakage guard."""

    store: str
    splits: list[str]
    trial_ids: list[str] = Field(default_factory=list, description="every real trial of the grounding splits")
    adapter: str | None = Field(None, description="the adapted writer's folder, if any")
    adapter_trial_ids: list[str] = Field(default_factory=list, description="the trials the writer was adapted on")

    def ids(self) -> set[str]:
        return set(self.trial_ids) | set(self.adapter_trial_ids)


def run_dir_of(path: str | Path) -> Path:
    """The run folder of a run folder or of a file inside one (trials.jsonl)."""
    path = Path(path)
    return path if path.is_dir() else path.parent


def read_run_grounding(path: str | Path) -> RunGrounding | None:
    """The grounding.json of the run folder that holds `path`, if there is one."""
    file = run_dir_of(path) / GROUNDING_FILE
    if not file.is_file():
        return None
    try:
        return RunGrounding.model_validate_json(file.read_text())
    except ValueError as exc:
        raise ConfigError(f"{file}: unreadable run grounding ({' '.join(str(exc).split())[:160]})") from None


def write_run_grounding(run_dir: Path, grounding: RunGrounding) -> None:
    write_text_atomic(run_dir / GROUNDING_FILE, json.dumps(grounding.model_dump(mode="json"), indent=1) + "\n")
