"""Tokens/s of the embedded backend (llama.cpp, bundled SmolLM2), free and schema-constrained."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table  # noqa: E402
from langchain_core.messages import HumanMessage  # noqa: E402
from synthtrials.agents.writer import write_draft  # noqa: E402
from synthtrials.tools.records.writer_format import DraftSpec  # noqa: E402
from synthtrials.tools.llm.client import LLMClient, LLMConfig, LLMError  # noqa: E402

RUNS = 5


def main(model: str = "smollm2") -> None:
    rows = []
    free = LLMClient(LLMConfig(model_path=model, max_tokens=256, temperature=0.7))
    start = time.perf_counter()
    for i in range(RUNS):
        free.text([HumanMessage(content="Describe a phase 2 trial of metformin in type 2 diabetes.")], seed=i)
    elapsed = time.perf_counter() - start
    u = free.usage
    rows.append(["free text", RUNS, u.prompt_tokens // RUNS, u.completion_tokens // RUNS, elapsed / RUNS,
                 u.completion_tokens / elapsed])
    constrained = LLMClient(LLMConfig(model_path=model, max_tokens=700, temperature=0.7, repair_retries=0))
    start = time.perf_counter()
    for i in range(RUNS):
        try:
            write_draft(constrained, DraftSpec(), "metformin", 1, [], [], [], seed=i)
        except LLMError:
            pass
    elapsed = time.perf_counter() - start
    u = constrained.usage
    rows.append(["TrialDraft (JSON-schema grammar)", RUNS, u.prompt_tokens // RUNS, u.completion_tokens // RUNS,
                 elapsed / RUNS, u.completion_tokens / elapsed])
    print_table(f"Embedded backend speed ({model}, llama.cpp, {RUNS} calls each)",
                ["mode", "calls", "prompt tok/call", "completion tok/call", "s/call", "completion tokens/s"], rows)


if __name__ == "__main__":
    main(*sys.argv[1:])
