"""The LLM layer: the client agents call, its configuration, the chat-model backends, llama.cpp's server, usage, errors and the writer's adapter files."""

from synthtrials.tools.llm import backends as _backends  # noqa: F401  (registers every backend with LLMConfig)
