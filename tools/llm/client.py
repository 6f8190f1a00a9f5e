"""The LLM layer: `LLMClient` is what agents call.

`structured(messages, Schema)` returns a validated pydantic object (native constraint where the
backend has one, else JSON mode + validation + a bounded repair retry); every call goes through
LangChain's SQLite LLM cache when one is configured, with the call's `seed` bound (each node's sample
has its own, derived from the run seed by `tools.seeds.llm_seed`) so that sampled calls are distinct,
reproducible cache entries; token usage and cost are
accumulated per client. The configuration and the backend protocol (`config`), the backends
(`backends/`), usage (`usage`), errors (`errors`) and their mapping (`failures`) live beside it;
their public names are re-exported here. What differs between backends is asked of
`backend_of(config)`, never of the backend's name.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from pydantic import BaseModel, ValidationError
from synthtrials.tools.errors import describe
from synthtrials.tools.llm.backends import (
    grammar_schema,
    make_chat_model,
    response_format,
)
from synthtrials.tools.llm.config import (
    BUNDLED_GGUF,
    DEFAULT_GGUF,
    LLMConfig,
    backend_of,
    resolve_gguf,
    structured_method,
)
from synthtrials.tools.llm.errors import CallsStopped, LLMConfigError, LLMError, StructuredOutputError
from synthtrials.tools.llm.failures import classify, malformed_answer
from synthtrials.tools.llm.usage import Usage, UsageCallback
from synthtrials.tools.records.surrogates import without_lone_surrogates

__all__ = ["BUNDLED_GGUF", "CHAT_TOKENS_PER_MESSAGE", "DEFAULT_GGUF", "LLMClient", "LLMConfig", "LLMConfigError",
           "LLMError", "StructuredOutputError", "StructuredResult", "Usage", "close_cut_answer", "extract_json", "grammar_schema",
           "resolve_gguf"]

T = TypeVar("T", bound=BaseModel)


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def extract_json(text: str) -> Any:
    """The JSON object in a model answer (code fences and chatter around it tolerated)."""
    cleaned = _FENCE.sub("", text.strip())
    try:
        return without_lone_surrogates(json.loads(cleaned, strict=False))  # strict=False: raw newlines inside strings
    except json.JSONDecodeError:
        pass
    start = cleaned.find("{")
    end = cleaned.rfind("}")
    if start == -1 or end <= start:
        raise ValueError("the answer holds no JSON object")
    return without_lone_surrogates(json.loads(cleaned[start:end + 1], strict=False))


def close_cut_answer(text: str) -> Any | None:
    """The JSON of a grammar-constrained answer cut at its token limit, up to its last whole value:
    the cut is moved back to the end of the last complete list item (a string, an object) or list,
    and the brackets still open are closed (a criterion cut mid-sentence is dropped, as `adapt` drops the criteria
    over its answer budget from the end of the lists); None where no such prefix parses. Only a
    constrained answer is closed: the grammar makes every prefix of it a prefix of valid JSON."""
    text = text.strip()
    stack: list[str] = []
    in_string = escaped = False
    cuts: list[tuple[int, str]] = []  # (end of a complete value, the closers it needs)
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
                if stack and stack[-1] == "]":  # a whole list item (a key or an object's field is no place to stop)
                    cuts.append((i + 1, "".join(reversed(stack))))
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
            cuts.append((i + 1, "".join(reversed(stack))))
    for end, closers in reversed(cuts):
        try:  # a cut after an object's key does not parse: the value before it is tried next
            value = json.loads(text[:end] + closers, strict=False)
        except json.JSONDecodeError:
            continue
        return without_lone_surrogates(value) if isinstance(value, dict) else None
    return None


#: bounds llama.cpp's grammar would unroll into that many nested rules: longer ones are left to validation

#: what a ChatML-style template adds per message (<|im_start|>role\n ... <|im_end|>\n)
CHAT_TOKENS_PER_MESSAGE = 5


def _without_length_bounds(schema: Any) -> Any:
    """A schema without its length bounds: validation trims long texts and lists to the bounds, as
    it does for the grammar's answers (whose grammar drops long bounds too); constants, enums and
    types stay, so a free answer must name the pinned drug and keep to the vocabulary."""
    if isinstance(schema, list):
        return [_without_length_bounds(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    return {k: _without_length_bounds(v) for k, v in schema.items() if k not in ("maxLength", "maxItems")}


def truncated_answer(exc: Exception) -> AIMessage | None:
    """The text of an answer that hit its token limit, where the OpenAI client raised instead of
    returning it (its parse path raises `LengthFinishReasonError` for a constrained answer): such an
    answer is judged by validation and repaired like any invalid one, as in process."""
    try:
        import openai
    except ImportError:  # pragma: no cover - langchain-openai depends on it
        return None
    if not isinstance(exc, openai.LengthFinishReasonError):
        return None
    completion = getattr(exc, "completion", None)
    choices = getattr(completion, "choices", None) or []
    content = getattr(getattr(choices[0], "message", None), "content", None) if choices else None
    usage = getattr(completion, "usage", None)
    if usage is None:
        return AIMessage(content=content or "")
    return AIMessage(content=content or "", usage_metadata={  # its tokens were spent: they count
        "input_tokens": int(usage.prompt_tokens or 0), "output_tokens": int(usage.completion_tokens or 0),
        "total_tokens": int(usage.total_tokens or 0)})


@dataclass
class StructuredResult:
    value: BaseModel
    raw: str
    attempts: int
    usage: Usage = field(default_factory=Usage)


class LLMClient:
    """A chat model plus its configuration, usage accounting and structured-output strategy."""

    def __init__(self, config: LLMConfig, model: BaseChatModel | None = None, *, lazy: bool = False) -> None:
        """`lazy`: the chat model (for a local server, the server itself) starts at the first call,
        not here: a run whose graph may never call this model starts nothing for it."""
        self.config = config
        self._model = model
        self._model_lock = threading.Lock()
        if not lazy:
            _ = self.model
        self.usage_callback = UsageCallback()
        self.chat_backend = backend_of(config)  # what differs between backends is asked of it
        self._lock = threading.Lock() if self.chat_backend.in_process else None  # in process: one call at a time
        self._extra = Usage()
        self._extra_lock = threading.Lock()
        self._stopped = threading.Event()

    @contextmanager
    def calls_stopped(self) -> Iterator[None]:
        """Within the block every call raises `CallsStopped` before it reaches the model (calls already
        with the model end as they would): a run that has its trials ends the draws it no longer
        needs, then the client serves its caller again."""
        self._stopped.set()
        try:
            yield
        finally:
            self._stopped.clear()

    def _refuse_if_stopped(self) -> None:
        if self._stopped.is_set():
            raise CallsStopped(f"{self.model_name}: calls stopped (the run has its trials)")

    @property
    def model(self) -> BaseChatModel:
        if self._model is None:
            with self._model_lock:
                if self._model is None:
                    self._model = make_chat_model(self.config)
        return self._model

    @property
    def started(self) -> bool:
        """Whether the chat model exists (a lazy client's first call builds it)."""
        return self._model is not None

    @property
    def usage(self) -> Usage:
        total = Usage()
        total.add(self.usage_callback.usage)
        with self._extra_lock:
            total.seconds += self._extra.seconds
            total.failures += self._extra.failures
            total.repairs += self._extra.repairs
            total.free_calls += self._extra.free_calls
            total.grammar_fallbacks += self._extra.grammar_fallbacks
            total.closed_at_limit += self._extra.closed_at_limit
        return total

    @property
    def model_name(self) -> str:
        return self.config.model_label()

    def count_tokens(self, text: str) -> int:
        return self.chat_backend.count_tokens(self.model, text)

    def message_tokens(self, messages: list[BaseMessage]) -> int:
        """Tokens of a chat prompt: its messages plus the chat template's few tokens per message."""
        return sum(self.count_tokens(str(m.content)) + CHAT_TOKENS_PER_MESSAGE for m in messages)

    def check_context(self, messages: list[BaseMessage]) -> None:
        """Refuse a prompt that cannot fit the context window with room for the answer."""
        if not self.chat_backend.knows_window:
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
                    self._refuse_if_stopped()  # also between the retries of a malformed answer
                    if self._lock is not None:
                        with self._lock:  # in process, calls queue here: the stop reaches those that wait
                            self._refuse_if_stopped()
                            return runnable.invoke(messages, config=config)
                    return runnable.invoke(messages, config=config)
                except Exception as exc:  # CallsStopped is neither cut nor malformed: raised below
                    cut = truncated_answer(exc)
                    if cut is not None:  # the answer ran out of tokens: the caller's validation judges it
                        if cut.usage_metadata:  # no callback saw this answer end: its tokens are counted here
                            ended = LLMResult(generations=[[ChatGeneration(message=cut)]])
                            for callback in (self.usage_callback, call):
                                callback.on_llm_end(ended)
                        return cut
                    if not malformed_answer(exc) or attempt >= self.config.max_retries:
                        raise
                    attempt += 1
                    with self._extra_lock:
                        self._extra.repairs += 1
                    time.sleep(min(8.0, 0.5 * 2 ** (attempt - 1)))
        except CallsStopped:
            raise
        except Exception as exc:
            if self._stopped.is_set():  # an answer lost when the run stopped its server: not a failure
                raise CallsStopped(f"{self.model_name}: call ended by the run's stop ({type(exc).__name__})") from None
            with self._extra_lock:
                self._extra.failures += 1
            from synthtrials.tools.llm.llama_server import dead_server_error

            raise (dead_server_error(getattr(self.model, "openai_api_base", None)) or classify(exc, self.config)) from None
        finally:
            elapsed = time.perf_counter() - start
            with self._extra_lock:
                self._extra.seconds += elapsed
            if usage is not None:
                usage.add(call.usage)
                usage.seconds += elapsed

    def text(self, messages: list[BaseMessage], *, seed: int = 0, temperature: float | None = None) -> str:
        """A free-text answer."""
        bound = self.model.bind(**self._sampling(seed, temperature))
        return without_lone_surrogates(str(self._invoke(bound, messages).content))

    def _sampling(self, seed: int, temperature: float | None) -> dict[str, Any]:
        params: dict[str, Any] = {"seed": seed}
        if temperature is not None:
            params["temperature"] = temperature
        return params

    def _repair_history(self, messages: list[BaseMessage], raw: str, problem: str) -> list[BaseMessage] | None:
        """The prompt of a repair: the invalid answer and what was wrong with it; where that does not
        fit a local model's context window, what was wrong only; None where not even that fits."""
        ask = "Answer again with one JSON object only, matching the requested fields."
        candidates = [[*messages, AIMessage(content=raw[:4000]),
                       HumanMessage(content=f"That answer was not valid: {problem}. {ask}")],
                      [*messages, HumanMessage(content=f"A previous answer was not valid: {problem[:300]}. {ask}")]]
        for history in candidates:
            fits = self.message_tokens(history) + self.config.max_tokens <= self.config.n_ctx
            if not self.chat_backend.knows_window or fits:
                return history
        return None

    def _free_answer(self, messages: list[BaseMessage], schema: type[T], json_schema: dict[str, Any] | None,
                     params: dict[str, Any], usage: Usage) -> StructuredResult | None:
        """One answer decoded without the grammar, if it parses and fits the schema (the narrowed
        `json_schema` too: a pinned drug, a vocabulary); None sends the call to the grammar."""
        import jsonschema

        with self._extra_lock:
            self._extra.free_calls += 1
        answer = self._invoke(self.model.bind(**params), list(messages), usage)
        raw = str(answer.content)
        try:
            data = extract_json(raw)
            if json_schema is not None:
                jsonschema.validate(data, _without_length_bounds(json_schema))
            return StructuredResult(value=schema.model_validate(data), raw=raw, attempts=1, usage=usage)
        except (ValueError, ValidationError, jsonschema.ValidationError, jsonschema.SchemaError):
            with self._extra_lock:
                self._extra.grammar_fallbacks += 1
            return None

    def structured(self, messages: list[BaseMessage], schema: type[T], *, seed: int = 0,
                   temperature: float | None = None, json_schema: dict[str, Any] | None = None) -> StructuredResult:
        """A validated `schema` object; raises `StructuredOutputError` after the repair retries.

        `json_schema` narrows the constraint sent to the backend (e.g. a const intervention
        name); the answer is still validated against `schema`.
        """
        method = structured_method(self.config)
        params = self._sampling(seed, temperature)
        if method == "tool_calling":
            runnable = self.model.bind_tools([schema], tool_choice=schema.__name__).bind(**params)
        else:
            fmt = response_format(method, schema, json_schema)
            runnable = self.model.bind(**params, **({"response_format": fmt} if fmt else {}))
        usage = Usage()
        if self.config.grammar == "on_failure" and method in ("json_object_schema", "json_schema"):
            free = self._free_answer(messages, schema, json_schema, params, usage)
            if free is not None:
                return free
        history = list(messages)
        raw = ""
        problem = ""
        for attempt in range(1, self.config.repair_retries + 2):
            answer = self._invoke(runnable, history, usage)
            try:
                if method == "tool_calling":
                    if not answer.tool_calls:
                        raise ValueError("the answer holds no tool call")
                    data = without_lone_surrogates(answer.tool_calls[0]["args"])
                    raw = json.dumps(data)
                else:
                    raw = str(answer.content)
                    closed = False
                    try:
                        data = extract_json(raw)
                    except ValueError:
                        # a constrained answer that does not parse was cut at its token limit
                        data = close_cut_answer(raw) if method in ("json_object_schema", "json_schema") else None
                        if data is None:
                            raise
                        closed = True
                value = schema.model_validate(data)
                if method != "tool_calling" and closed:
                    with self._extra_lock:
                        self._extra.closed_at_limit += 1
                return StructuredResult(value=value, raw=raw, attempts=attempt, usage=usage)
            except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
                problem = describe(exc)
                if attempt > self.config.repair_retries:
                    break
                with self._extra_lock:
                    self._extra.repairs += 1
                history = self._repair_history(messages, raw, problem)
                if history is None:
                    break
        with self._extra_lock:
            self._extra.failures += 1
        raise StructuredOutputError(f"{self.model_name}: no valid {schema.__name__} after "
                                    f"{self.config.repair_retries + 1} attempts ({problem})", raw=raw, usage=usage)
