"""What the writer's JSON-schema grammar costs in llama.cpp's server, and whether the adapted writer's
answers need it (issue 19): the same adapted-writer prompts of phase_I_train grounding (as
bench_writer_speed builds them), the adapter merged into Q4_0, `--slots` parallel requests, with

- `bounded`: the writer's schema as the run sends it (drug pinned, list and length bounds);
- `unbounded`: the same without maxLength / maxItems (pydantic trims what runs over);
- `free`: decoded without the grammar, parsed and validated, the grammar only where it does not fit.

Aggregate completion tokens/s, answers valid, repairs, free answers that needed the grammar.

    python benchmarks/bench_writer_grammar.py --store benchmarks/out/phase1_store \
        --adapter benchmarks/out/adapter_phase1 [--prompts 16] [--slots 8 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_writer_speed import server_writer_config, writer_prompts  # noqa: E402
from common import OUT, print_table  # noqa: E402
from synthtrials.agents.writer import adapted_writer_messages, writer_json_schema  # noqa: E402
from synthtrials.tools.llm.llama_server import stop_servers  # noqa: E402
from synthtrials.tools.llm.client import LLMClient, LLMConfig, StructuredOutputError, _without_length_bounds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default=str(OUT / "phase1_store"))
    parser.add_argument("--adapter", default=str(OUT / "adapter_phase1"))
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--slots", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arms", nargs="+", default=["free", "bounded", "unbounded"])
    args = parser.parse_args()
    print(f"command: python benchmarks/bench_writer_grammar.py {' '.join(sys.argv[1:])}", flush=True)
    spec, draws = writer_prompts(args.store, args.prompts)
    counter = LLMClient(LLMConfig(max_tokens=8, n_ctx=1024))  # tokens counted as in process: same prompts
    model = spec.model()
    rows = []
    for slots in args.slots:
        for arm in args.arms:
            client = LLMClient(server_writer_config(args.adapter, slots, args.threads,
                                                    "on_failure" if arm == "free" else "always"))

            def one(i: int) -> bool:
                drug, label, texts = draws[i]
                messages = adapted_writer_messages(drug, label, texts, [], [], counter.message_tokens)
                schema = writer_json_schema(spec, drug)
                if arm == "unbounded":
                    schema = _without_length_bounds(schema)
                try:
                    client.structured(messages, model, seed=i * 16, temperature=0.7, json_schema=schema)
                    return True
                except StructuredOutputError:
                    return False

            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=slots) as pool:
                valid = sum(pool.map(one, range(len(draws))))
            seconds = time.perf_counter() - start
            stop_servers()
            usage = client.usage
            rows.append([arm, slots, args.threads, len(draws), round(usage.completion_tokens / seconds, 1),
                         f"{valid}/{len(draws)}", usage.repairs, f"{usage.grammar_fallbacks}/{usage.free_calls}"])
            print(" | ".join(str(c) for c in rows[-1]), flush=True)
    print_table(f"Writer grammar in llama-server, merged Q4_0, {len(draws)} adapted-writer prompts",
                ["arm", "slots", "threads", "calls", "completion tok/s (aggregate)", "valid", "repairs",
                 "free answers that needed the grammar"], rows)


if __name__ == "__main__":
    main()
