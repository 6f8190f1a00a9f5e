"""64 requests through ChatOpenAI to a local OpenAI-compatible server that answers after 1 s.

Concurrency 1, 4, 8, 16 (LangChain's `batch(max_concurrency=...)`); target within 20% of the
ideal speed-up at 8. The seed paper's generation loop is strictly sequential (concurrency 1).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from common import print_table  # noqa: E402
from fake_openai import FakeOpenAIServer  # noqa: E402
from langchain_core.messages import HumanMessage  # noqa: E402
from synthtrials.tools.llm.backends import make_chat_model  # noqa: E402
from synthtrials.tools.llm.config import LLMConfig  # noqa: E402

REQUESTS = 64
DELAY = 1.0


def main() -> None:
    rows = []
    with FakeOpenAIServer(default_content="ok", delay_s=DELAY) as server:
        model = make_chat_model(LLMConfig(backend="openai", model="fake", base_url=server.base_url, max_retries=0,
                                          api_key_env="UNSET_KEY_FOR_BENCH"))
        inputs = [[HumanMessage(content=f"request {i}")] for i in range(REQUESTS)]
        for concurrency in (1, 4, 8, 16):
            start = time.perf_counter()
            answers = model.batch(inputs, config={"max_concurrency": concurrency})
            elapsed = time.perf_counter() - start
            assert len(answers) == REQUESTS
            ideal = REQUESTS * DELAY / concurrency
            speedup = REQUESTS * DELAY / elapsed
            rows.append([concurrency, REQUESTS, elapsed, ideal, speedup, f"{speedup / concurrency:.0%}"])
    print_table(f"{REQUESTS} requests through ChatOpenAI, server answers after {DELAY:g} s",
                ["concurrency", "requests", "seconds", "ideal seconds", "speed-up", "of ideal"], rows)
    print("\ntarget: within 20% of ideal speed-up at concurrency 8")


if __name__ == "__main__":
    main()
