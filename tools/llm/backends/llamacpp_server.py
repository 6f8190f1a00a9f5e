"""``llamacpp-server``: llama.cpp's own server (`tools.llm.llama_server`), started by synthtrials on
127.0.0.1 with parallel slots (continuous batching) and reached through `ChatOpenAI` like any hosted
model; an adapted writer's server decodes the adapter merged into the base weights
(`tools.llm.merged_weights`); tokens are counted with the model's own vocabulary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthtrials.tools.llm.backends.shared import checked_adapter, llm_cache
from synthtrials.tools.llm.config import ChatBackend, LLMConfig, resolve_gguf

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel


#: the slowest a slot of the local server is expected to decode, all slots busy (2 cores, 16 slots: 9-11 tokens/s
#: measured, benchmarks/RESULTS.md); a call's timeout covers its whole answer budget at this rate
SLOWEST_SLOT_TOKENS_PER_S = 4.0


def call_timeout(config: LLMConfig) -> float:
    """Seconds one call may take: `timeout_s`, or longer where the answer budget needs it. With every slot busy a
    1,400-token answer takes 150 s on 2 cores; a 120 s timeout made the client abandon and resend it until the run
    stopped (an adapter with `--answer-tokens auto` and DRY sampling, 2026-12-05)."""
    return max(config.timeout_s, 30.0 + config.max_tokens / SLOWEST_SLOT_TOKENS_PER_S)


class LlamaCppServerBackend(ChatBackend):
    structured = "json_object_schema"
    in_process = False
    local_gguf = True
    grammar = True
    knows_window = True
    default_concurrency = 16
    adapts = True
    dry_sampler = True
    summary = "llama.cpp's server started on 127.0.0.1: parallel draws, fastest on a laptop"

    @classmethod
    def make_chat_model(cls, config: LLMConfig) -> BaseChatModel:
        from synthtrials.tools.llm.llama_server import ServerSpec, serve
        from synthtrials.tools.llm.llamacpp_server_chat import (
            IN_PROCESS_SAMPLING,
            ChatLlamaServer,
        )

        cache = llm_cache(config)
        base = resolve_gguf(config.model_path)
        lora_path, adapter_hash = checked_adapter(config, base)
        weights = base
        if lora_path and adapter_hash and config.weights != "adapter":
            from synthtrials.tools.llm.merged_weights import merged_weights

            weights = str(merged_weights(base, lora_path, adapter_hash, config.weights))
        server = serve(ServerSpec(model_path=weights, lora_path=lora_path if config.weights == "adapter" else None,
                                  slots=config.max_concurrency, ctx_per_slot=config.n_ctx,
                                  threads=config.n_threads or 0, port=config.server_port,
                                  log_dir=config.server_log_dir))
        return ChatLlamaServer(
            model=Path(weights).name, base_url=server.url, api_key="not-needed", temperature=config.temperature,
            max_tokens=config.max_tokens, timeout=call_timeout(config), max_retries=config.max_retries, cache=cache,
            http_client=server.http_client(), vocab_path=base, adapter_sha256=adapter_hash, extra_body={
                **IN_PROCESS_SAMPLING, "repeat_penalty": config.repeat_penalty,
                **({"dry_multiplier": config.dry_multiplier} if config.dry_multiplier else {})})

    @classmethod
    def count_tokens(cls, model: Any, text: str) -> int:
        return int(model.get_num_tokens(text))  # `ChatLlamaServer`: the GGUF's own vocabulary
