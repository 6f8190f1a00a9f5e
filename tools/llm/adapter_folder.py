"""The adapter folder's format, owned here: file names, `adapter.json` (`AdapterInfo`), reading and
hashing. `synthtrials adapt` (`agents.writer_adaptation`) writes adapter folders; the LLM layer
loads them; the leakage guard reads the NCT ids they were trained on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from synthtrials.tools.readers.datasets import sha256_of
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.records.writer_format import DraftSpec

ADAPTER_FILE = "adapter.json"
GGUF_FILE = "adapter.gguf"
PEFT_DIR = "peft"


class AdapterInfo(BaseModel):
    """adapter.json."""

    base: str
    base_path: str
    base_sha256: str
    gguf: str | None
    store: str
    splits: list[str]
    trained_on: list[str] = Field(description="NCT ids of the trials the writer was adapted on")
    draft: DraftSpec
    prompt_template: str
    options: dict[str, Any]
    answer_tokens: int | None = Field(None, description="the answer budget trained with (options.answer_tokens "
                                      "resolved: `auto` is measured on the grounding answers); None in older adapters")
    steps: int
    steps_planned: int
    tokens: int
    loss: list[float]
    seconds: float
    tokens_per_second: float
    complete: bool


def base_weights_sha256(path: Path) -> str:
    """The hash an adapter records of its base: a GGUF file's, or a model folder's weights and config."""
    if path.is_file():
        return sha256_of(path)
    digest = hashlib.sha256()
    for file in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) + sorted(path.glob("config.json")):
        digest.update(file.name.encode())
        digest.update(sha256_of(file).encode())
    return digest.hexdigest()


def read_adapter(folder: str | Path) -> AdapterInfo:
    """adapter.json of an adapter folder, or a one-line error."""
    file = Path(folder) / ADAPTER_FILE
    if not file.is_file():
        raise ConfigError(f"{folder}: not an adapter folder (no {ADAPTER_FILE}; make one with `synthtrials adapt`)")
    try:
        return AdapterInfo.model_validate_json(file.read_text())
    except ValueError as exc:
        raise ConfigError(f"{file}: unreadable ({' '.join(str(exc).split())[:160]})") from None


def adapter_sha256(folder: str | Path) -> str:
    """A hash of the adapter's weights and record (LLM cache key, run fingerprint)."""
    folder = Path(folder)
    digest = hashlib.sha256((folder / ADAPTER_FILE).read_bytes())
    for file in sorted((folder / PEFT_DIR).glob("*")) + ([folder / GGUF_FILE] if (folder / GGUF_FILE).exists() else []):
        if file.is_file():
            digest.update(sha256_of(file).encode())
    return digest.hexdigest()
