"""llama-server's own settings on the writer's real workload (issue 19): does any flag lift the
grammar-constrained writer's decoding rate on these cores?

Each arm starts the server that a run starts (`tools.llm.llama_server`, merged adapter in Q4_0,
`--slots` parallel slots, 2 threads), adds the arm's llama-server flags to its command line ("base":
none), sends one warm-up call, then the same adapted-writer prompts as bench_writer_grammar (phase_I_train
grounding, the run's bounded JSON schema, temperature 0.7, fixed seeds) with `--slots` calls at once.
It prints completion tokens/s and all tokens/s (prompt + completion) over the arm's wall time: the
second shows how much work the cores did, the first how much of it was the answer.

    python benchmarks/bench_server_flags.py --store demo_out/store --adapter runs/adapter_epoch \
        --arms base "-fa off" "-fa on" "--poll 0" "--samplers top_k;penalties;top_p;min_p;temperature" \
        "-ub 128" "--cache-type-k q8_0 --cache-type-v q8_0" [--prompts 32] [--slots 16]
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
from synthtrials.tools.llm import llama_server  # noqa: E402
from synthtrials.tools.llm.client import LLMClient, LLMConfig, StructuredOutputError  # noqa: E402

#: the arm's flags, appended to the command line synthtrials builds for the server
EXTRA_FLAGS: list[str] = []
_COMMAND = llama_server.LlamaServer.command
llama_server.LlamaServer.command = lambda self: [*_COMMAND(self), *EXTRA_FLAGS]  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default=str(OUT / "phase1_store"))
    parser.add_argument("--adapter", default=str(OUT / "adapter_phase1"))
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arms", nargs="+", default=["base", "-fa off", "-fa on"])
    args = parser.parse_args()
    print(f"command: python benchmarks/bench_server_flags.py {' '.join(repr(a) for a in sys.argv[1:])}", flush=True)
    spec, draws = writer_prompts(args.store, args.prompts)
    counter = LLMClient(LLMConfig(max_tokens=8, n_ctx=1024))  # tokens counted as in process: same prompts
    model = spec.model()
    rows = []
    for arm in args.arms:
        EXTRA_FLAGS[:] = [] if arm == "base" else arm.split()
        client = LLMClient(server_writer_config(args.adapter, args.slots, args.threads))

        def one(i: int) -> bool:
            drug, label, texts = draws[i]
            messages = adapted_writer_messages(drug, label, texts, [], [], counter.message_tokens)
            try:
                client.structured(messages, model, seed=i * 16, temperature=0.7, json_schema=writer_json_schema(spec, drug))
                return True
            except StructuredOutputError:
                return False

        one(0)  # starts the server and loads the weights outside the timed part
        before = client.usage
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.slots) as pool:
            valid = sum(pool.map(one, range(len(draws))))
        seconds = time.perf_counter() - start
        llama_server.stop_servers()
        after = client.usage
        completion = after.completion_tokens - before.completion_tokens
        prompt = after.prompt_tokens - before.prompt_tokens
        rows.append([arm, len(draws), round(prompt / len(draws)), round(completion / len(draws)),
                     round(completion / seconds, 1), round((prompt + completion) / seconds, 1),
                     f"{valid}/{len(draws)}", round(seconds)])
        print(" | ".join(str(c) for c in rows[-1]), flush=True)
    print_table(f"llama-server flags, merged Q4_0, {args.slots} slots, {args.threads} threads, grammar always",
                ["llama-server flags", "calls", "prompt tok/call", "completion tok/call", "completion tok/s",
                 "all tok/s (prompt + completion)", "valid", "seconds"], rows)


if __name__ == "__main__":
    main()
