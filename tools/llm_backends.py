"""The chat models behind the LLM layer, and their quirks (kept here, not in the agents):

- ``llamacpp`` (offline default): langchain-community `ChatLlamaCpp` in process, with a GGUF
  model shipped in a PyPI package (``smollm2``, the default; ``gemma3-270m``) or any local GGUF,
  and optionally a writer's LoRA adapter; structured output through llama.cpp's JSON-schema
  grammar (`grammar_schema` adapts schemas to it).
- ``llamacpp-server``: llama.cpp's own server (`tools.llama_server`), started by synthtrials on
  127.0.0.1 with parallel slots (continuous batching) and reached through `ChatOpenAI` like any
  hosted model; an adapted writer's server decodes the adapter merged into the base weights
  (`tools.merged_weights`); tokens are counted with the model's own vocabulary.
- ``openai``: langchain-openai `ChatOpenAI` against any OpenAI-compatible server (OpenAI, vLLM,
  Ollama, llama.cpp server). The API key is read from the environment variable named by
  `api_key_env` and never stored. Retries with exponential backoff honouring Retry-After are the
  OpenAI SDK's own (`max_retries`); `InMemoryRateLimiter` spaces requests.
- ``transformers``: a local Hugging Face causal LM (a folder, or a GGUF file that transformers
  dequantises) wrapped as a LangChain chat model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel
from synthtrials.tools.llm_config import BACKENDS, LLMConfig, StructuredMethod, resolve_gguf, traits
from synthtrials.tools.llm_errors import LLMConfigError


def llm_cache(config: LLMConfig):
    if not config.cache_path:
        return None
    from langchain_community.cache import SQLiteCache

    Path(config.cache_path).parent.mkdir(parents=True, exist_ok=True)
    return SQLiteCache(database_path=str(config.cache_path))


def make_chat_model(config: LLMConfig) -> BaseChatModel:
    """Build the LangChain chat model a configuration names (loads local models)."""
    cache = llm_cache(config)
    if config.backend == "llamacpp":
        from synthtrials.tools.llamacpp_chat import ChatLlamaCppWithUsage

        path = resolve_gguf(config.model_path)
        lora_path, adapter_hash = checked_adapter(config, path)
        try:
            return ChatLlamaCppWithUsage(
                model_path=path, n_ctx=config.n_ctx, temperature=config.temperature, max_tokens=config.max_tokens,
                seed=config.seed, n_threads=config.n_threads or max(1, os.cpu_count() or 1), n_batch=512,
                verbose=False, cache=cache, streaming=False, lora_path=lora_path, adapter_sha256=adapter_hash,
            )
        except ValueError as exc:
            raise LLMConfigError(f"{path}: llama.cpp cannot load it ({' '.join(str(exc).split())[:160]})") from None
    if config.backend == "llamacpp-server":
        from synthtrials.tools.llamacpp_server_chat import IN_PROCESS_SAMPLING, ChatLlamaServer
        from synthtrials.tools.llama_server import ServerSpec, serve

        base = resolve_gguf(config.model_path)
        lora_path, adapter_hash = checked_adapter(config, base)
        weights = base
        if lora_path and adapter_hash and config.weights != "adapter":
            from synthtrials.tools.merged_weights import merged_weights

            weights = str(merged_weights(base, lora_path, adapter_hash, config.weights))
        server = serve(ServerSpec(model_path=weights, lora_path=lora_path if config.weights == "adapter" else None,
                                  slots=config.max_concurrency, ctx_per_slot=config.n_ctx,
                                  threads=config.n_threads or 0, port=config.server_port,
                                  log_dir=config.server_log_dir))
        return ChatLlamaServer(
            model=Path(weights).name, base_url=server.url, api_key="not-needed", temperature=config.temperature,
            max_tokens=config.max_tokens, timeout=config.timeout_s, max_retries=config.max_retries, cache=cache,
            vocab_path=base, adapter_sha256=adapter_hash, extra_body=dict(IN_PROCESS_SAMPLING))
    if config.backend == "openai":
        from langchain_core.rate_limiters import InMemoryRateLimiter
        from langchain_openai import ChatOpenAI

        api_key = os.environ.get(config.api_key_env)
        if not api_key:
            if not config.base_url:
                raise LLMConfigError(f"set {config.api_key_env} (the API key) in the environment, or give --base-url")
            api_key = "not-needed"  # local OpenAI-compatible servers ignore the key
        limiter = (InMemoryRateLimiter(requests_per_second=config.requests_per_second, check_every_n_seconds=0.05,
                                       max_bucket_size=max(1, config.max_concurrency))
                   if config.requests_per_second else None)
        return ChatOpenAI(
            model=config.model or "gpt-4o-mini", base_url=config.base_url, api_key=api_key,
            temperature=config.temperature, max_tokens=config.max_tokens, timeout=config.timeout_s,
            max_retries=config.max_retries, rate_limiter=limiter, cache=cache,
        )
    if config.backend == "transformers":
        from synthtrials.tools.transformers_chat import TransformersChatModel

        return TransformersChatModel.load(config, cache=cache)
    raise LLMConfigError(f"unknown backend {config.backend!r} ({', '.join(BACKENDS)})")


def checked_adapter(config: LLMConfig, base_path: str | None) -> tuple[str | None, str | None]:
    """The adapter's llama.cpp GGUF and hash, after checking it was trained on this very base."""
    if not config.adapter:
        return None, None
    from synthtrials.tools.adapter_folder import (
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
    if traits(config.backend).local_gguf and not gguf.is_file():
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
