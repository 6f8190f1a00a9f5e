"""The chat backends: one `ChatBackend` class per file, registered here by name (the names are
`LLMConfig.backend`'s values and are recorded in run folders). A new backend is one new file and
one `register` line; `tools.llm` imports this package, so every backend is known to `LLMConfig`.

`make_chat_model(config)` builds the LangChain chat model a configuration names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from synthtrials.tools.llm.backends.llamacpp import LlamaCppBackend
from synthtrials.tools.llm.backends.llamacpp_server import LlamaCppServerBackend
from synthtrials.tools.llm.backends.openai_compatible import OpenAIBackend
from synthtrials.tools.llm.backends.shared import (
    checked_adapter,
    grammar_schema,
    llm_cache,
    response_format,
)
from synthtrials.tools.llm.backends.transformers_local import TransformersBackend
from synthtrials.tools.llm.config import LLMConfig, backend_of, register

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

register("llamacpp", LlamaCppBackend)
register("llamacpp-server", LlamaCppServerBackend)
register("openai", OpenAIBackend)
register("transformers", TransformersBackend)

__all__ = ["checked_adapter", "grammar_schema", "llm_cache", "make_chat_model", "response_format"]


def make_chat_model(config: LLMConfig) -> BaseChatModel:
    """Build the LangChain chat model a configuration names (loads local models)."""
    return backend_of(config).make_chat_model(config)
