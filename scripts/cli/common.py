"""What every command group shares: one-line errors, the progress bar, the consoles, the shared
option types (--store and the LLM options) and the helpers that turn options into configs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, Optional, TypeVar

import typer
from synthtrials.tools.llm.config import BACKENDS
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from synthtrials.tools.errors import ConfigError, InputError

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def one_line_errors(func: F) -> F:
    """Bad input and bad configuration end the command with one line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (InputError, ConfigError) as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def progress_bar() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False)


StoreOpt = Annotated[str, typer.Option("--store", help="Store folder (local) or Weaviate URL (http://host:8080).")]


def _open_store(location: str, create: bool = False):
    from synthtrials.tools.store.trial_store import open_store

    return open_store(location, create=create)


# --- LLM options, shared by every command that talks to a model ------------------------------
# Every option defaults to None: the pydantic config models (LLMConfig, GenerationConfig, RunOptions,
# EvalOptions...) hold every default, in one place; the CLI passes only what the user gave.
MODEL_PANEL = "Model"
BackendOpt = Annotated[Optional[str], typer.Option(help="; ".join(f"{name} ({backend.summary})" for name, backend in BACKENDS.items()) + ".", rich_help_panel=MODEL_PANEL)]
ModelOpt = Annotated[Optional[str], typer.Option(help="openai: model name (gpt-4o-mini, a vLLM/Ollama model); transformers: folder.", rich_help_panel=MODEL_PANEL)]
ModelPathOpt = Annotated[Optional[str], typer.Option(help="llamacpp, llamacpp-server: GGUF path, or a bundled name (smollm2, gemma3-270m).", rich_help_panel=MODEL_PANEL)]
BaseUrlOpt = Annotated[Optional[str], typer.Option(help="openai: server URL, e.g. http://127.0.0.1:8000/v1 (vLLM, Ollama, llama.cpp).", rich_help_panel=MODEL_PANEL)]
ApiKeyEnvOpt = Annotated[Optional[str], typer.Option(help="Environment variable holding the API key (default OPENAI_API_KEY; never stored).", rich_help_panel=MODEL_PANEL)]
StructuredOpt = Annotated[Optional[str], typer.Option(help="auto (default), json_schema, json_object_schema (llama.cpp server), json_mode, tool_calling, prompt.", rich_help_panel=MODEL_PANEL)]


def given(**values: Any) -> dict[str, Any]:
    """The options the user gave (the others are left to the config models' defaults)."""
    return {k: v for k, v in values.items() if v is not None}


def llm_config(backend: str | None, model: str | None, model_path: str | None, base_url: str | None,
               api_key_env: str | None, structured: str | None, **extra: Any):
    from pydantic import ValidationError
    from synthtrials.tools.errors import describe
    from synthtrials.tools.llm.client import LLMConfig

    try:
        return LLMConfig(**given(backend=backend, model=model, model_path=model_path, base_url=base_url,
                                 api_key_env=api_key_env, structured=structured, **extra))
    except ValidationError as exc:
        raise ConfigError(f"LLM options: {describe(exc)}") from None
