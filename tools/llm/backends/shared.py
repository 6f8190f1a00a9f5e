"""What the chat backends share: the LLM cache, the writer adapter's check, and llama.cpp's
JSON-schema grammar dialect (`grammar_schema`, `response_format`), kept here, not in the agents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel
from synthtrials.tools.llm.config import LLMConfig, StructuredMethod, backend_of
from synthtrials.tools.llm.errors import LLMConfigError


def llm_cache(config: LLMConfig):
    """LangChain's SQLite LLM cache at `config.cache_path`, or None."""
    if not config.cache_path:
        return None
    from langchain_community.cache import SQLiteCache

    Path(config.cache_path).parent.mkdir(parents=True, exist_ok=True)
    return SQLiteCache(database_path=str(config.cache_path))


def checked_adapter(config: LLMConfig, base_path: str | None) -> tuple[str | None, str | None]:
    """The adapter's llama.cpp GGUF and hash, after checking it was trained on this very base."""
    if not config.adapter:
        return None, None
    from synthtrials.tools.llm.adapter_folder import (
        GGUF_FILE,
        adapter_sha256,
        base_weights_sha256,
        read_adapter,
    )

    info = read_adapter(config.adapter)
    if base_path is not None and info.base_sha256 != base_weights_sha256(Path(base_path)):
        raise LLMConfigError(f"{config.adapter}: adapted from {Path(info.base_path).name} "
                             f"(sha256 {info.base_sha256[:12]}), not from {Path(base_path).name}: give the same base")
    gguf = Path(config.adapter) / GGUF_FILE
    if backend_of(config).local_gguf and not gguf.is_file():
        raise LLMConfigError(f"{config.adapter}: no {GGUF_FILE} (the base was not a GGUF model): use --backend transformers")
    return str(gguf), adapter_sha256(config.adapter)


GRAMMAR_MAX_LENGTH = 200
GRAMMAR_MAX_ITEMS = 16


def grammar_schema(schema: Any) -> Any:
    """The schema adapted to llama.cpp's grammar compiler (a backend quirk, kept here).

    - a string maxLength of N unrolls into N nested rules: above 200 the grammar drops the bound
      (1,200 was refused as "exceeds sane defaults", long ones slow sampling) and validation trims
      the answer to the schema's bound instead;
    - likewise an array maxItems above 16 is dropped (validation keeps the first items);
    - ``prefixItems`` (a fixed first item, e.g. the pinned drug) becomes one tuple per allowed
      length: llama.cpp reads an ``items`` list as a tuple;
    - a bounded integer becomes a digit string of at most as many digits (the compiler ignores
      minimum/maximum, and small models write 20-digit enrollments); pydantic reads it back.
    Small bounds and enums stay: they stop a small model looping.
    """
    if isinstance(schema, list):
        return [grammar_schema(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("type") == "integer" and isinstance(schema.get("maximum"), int) and schema["maximum"] >= 10:
        digits = len(str(schema["maximum"] + 1)) - 1  # digits every value up to maximum may need
        return {"type": "string", "pattern": f"^[1-9][0-9]{{0,{digits - 1}}}$"}
    if schema.get("type") == "array" and "prefixItems" in schema:
        prefix = [grammar_schema(item) for item in schema["prefixItems"]]
        rest = grammar_schema(schema.get("items", {}))
        longest = min(schema.get("maxItems", len(prefix) + 2), len(prefix) + GRAMMAR_MAX_ITEMS)
        return {"anyOf": [{"type": "array", "items": prefix + [rest] * n} for n in range(longest - len(prefix) + 1)]}
    out = {}
    for key, value in schema.items():
        if key == "maxLength" and isinstance(value, int) and value > GRAMMAR_MAX_LENGTH:
            continue
        if key == "maxItems" and isinstance(value, int) and value > GRAMMAR_MAX_ITEMS:
            continue
        out[key] = grammar_schema(value)
    return out


def response_format(method: StructuredMethod, schema: type[BaseModel],
                     json_schema: dict[str, Any] | None = None) -> dict[str, Any] | None:
    json_schema = json_schema or schema.model_json_schema()
    if method == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": json_schema, "strict": False}}
    if method == "json_object_schema":  # llama.cpp (in process and server) grammar dialect
        return {"type": "json_object", "schema": grammar_schema(json_schema)}
    if method == "json_mode":
        return {"type": "json_object"}
    return None
