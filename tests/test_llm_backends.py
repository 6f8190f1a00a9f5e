"""The chat-backend protocol: a new backend is one class and one registration; callers ask its
capabilities; the LLM layer has no import cycle (function-level and TYPE_CHECKING imports included).
The fake chat model below tests our own control flow (registry -> config -> client), not a model."""

import ast
from pathlib import Path
from typing import ClassVar

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage
from pydantic import ValidationError
from synthtrials.tools.llm.backends import make_chat_model
from synthtrials.tools.llm.client import LLMClient, LLMConfig, LLMConfigError
from synthtrials.tools.llm.config import (
    BACKENDS,
    ChatBackend,
    backend_named,
    backend_of,
    register,
)

LLM_DIR = Path(__file__).resolve().parents[1] / "tools" / "llm"
PACKAGE = "synthtrials.tools.llm"
CAPABILITIES = ("structured", "in_process", "local_gguf", "grammar", "knows_window", "default_concurrency", "adapts")


class EchoBackend(ChatBackend):
    """A backend in one class: scripted answers, three characters a token."""

    structured = "json_mode"
    in_process = False
    local_gguf = False
    grammar = False
    knows_window = True
    default_concurrency = 3
    adapts = False
    built: ClassVar[list[LLMConfig]] = []

    @classmethod
    def make_chat_model(cls, config):
        cls.built.append(config)
        return FakeListChatModel(responses=[f"echo from {config.model}", '{"answer": "yes"}'])

    @classmethod
    def count_tokens(cls, model, text):
        return len(text) // 3


@pytest.fixture
def echo_backend():
    register("echo", EchoBackend)  # the one registration line a new backend needs
    yield EchoBackend
    BACKENDS.pop("echo")
    EchoBackend.built.clear()


def test_a_new_backend_is_one_class_and_one_registration(echo_backend):
    config = LLMConfig(backend="echo", model="parrot", n_ctx=60, max_tokens=10)
    assert backend_of(config) is echo_backend
    assert config.model_label() == "parrot"  # the protocol's default label: the configured model
    assert LLMConfig.model_validate_json(config.model_dump_json()).backend == "echo"  # run folders record the name
    assert isinstance(make_chat_model(config), FakeListChatModel) and echo_backend.built == [config]

    client = LLMClient(config)
    assert echo_backend.built == [config, config]  # the client built its model through the backend
    assert client.text([HumanMessage(content="hello")]) == "echo from parrot"
    assert client.count_tokens("x" * 30) == 10  # the backend's own token count
    assert client._lock is None  # not in process: calls run in parallel
    # it knows its window: a prompt that cannot fit n_ctx with the answer is refused before any call
    with pytest.raises(Exception, match="exceeds the 60-token context window of parrot"):
        client.text([HumanMessage(content="y" * 200)])


def test_unknown_backend_names_the_registered_ones():
    with pytest.raises(ValidationError, match=r"unknown backend 'nope' \(known: llamacpp, llamacpp-server, openai, "
                                              r"transformers\)"):
        LLMConfig(backend="nope")
    with pytest.raises(LLMConfigError, match="unknown backend 'nope'"):
        backend_named("nope")


def test_the_shipped_backends_keep_their_names_and_capabilities():
    assert list(BACKENDS) == ["llamacpp", "llamacpp-server", "openai", "transformers"]
    table = {name: tuple(getattr(cls, c) for c in CAPABILITIES) for name, cls in BACKENDS.items()}
    assert table == {
        "llamacpp": ("json_object_schema", True, True, True, True, 1, True),
        "llamacpp-server": ("json_object_schema", False, True, True, True, 16, True),
        "openai": ("json_schema", False, False, False, False, 4, False),
        "transformers": ("prompt", True, False, False, True, 1, True),
    }
    assert LLMConfig(backend="openai").model_label() == "gpt-4o-mini"
    assert LLMConfig(backend="openai", model="m").model_label() == "m"
    assert LLMConfig(backend="transformers", model_path="smollm2").model_label() == "smollm2"
    assert BACKENDS["openai"].count_tokens(None, "x" * 40) == 10


def _module_of(path: Path) -> str:
    parts = path.relative_to(LLM_DIR).with_suffix("").parts
    return ".".join((PACKAGE, *(parts[:-1] if parts[-1] == "__init__" else parts)))


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every module of the LLM layer `path` imports, anywhere in the file (functions, TYPE_CHECKING)."""
    me = _module_of(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names}
    return {m for m in found if m in modules and m != me}


def test_the_llm_layer_has_no_import_cycle():
    files = sorted(LLM_DIR.rglob("*.py"))
    modules = {_module_of(f) for f in files}
    graph = {_module_of(f): _imports(f, modules) for f in files}
    assert graph[f"{PACKAGE}.config"] >= {f"{PACKAGE}.errors"}  # the scan sees imports
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(module):] + (module,)))
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())
