"""The demo's generation stage, timed: every slot kept busy until the run has its trials (before) against
draws started only while the run still needs them (`graphs.runner.more_draws_needed`).

It runs the demo's own generation (the same GenerationConfig, 16 parallel draws through llama.cpp's
server, the demo's adapter, n=20; not the demo's 4-minute budget, which only stops new draws from
starting, so both ways run until they have their trials) on an existing demo folder's store and adapter
(`synthtrials demo` makes one), into fresh run folders under --out, for each seed and each way of
starting draws. Printed per run: wall seconds, draws, accepted trials kept, accepted trials past
them (surplus), draws stopped in flight, writer calls and completion tokens.

    python benchmarks/bench_demo_generation.py --demo demo_out --out /tmp/bench_demo_generation [--seeds 0 1]

Alone on the machine: the draws share its cores.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, required=True, help="a demo folder (its store/ and adapter/)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()

    from synthtrials.graphs import runner
    from synthtrials.graphs.config import GenerationConfig
    from synthtrials.scripts.demo import DemoOptions
    from synthtrials.tools.llm.adapter_folder import adapter_sha256
    from synthtrials.tools.llm.client import LLMConfig
    from synthtrials.tools.llm.llama_server import stop_servers

    needed = runner.more_draws_needed
    ways = {"every slot busy (before)": lambda n, results, inflight: True, "only draws still needed": needed}
    options = DemoOptions()
    adapter = args.demo / "adapter"
    rows = []
    for seed in args.seeds:
        for way, rule in ways.items():
            out = args.out / f"seed{seed}-{'busy' if rule is not needed else 'needed'}"
            shutil.rmtree(out, ignore_errors=True)
            generation = GenerationConfig(llm=LLMConfig(backend=options.backend), ground_on=["train"], k=2,
                                          writer_adapter=str(adapter), writer_adapter_sha256=adapter_sha256(adapter),
                                          reasoner="evidence", seed=seed)
            runner.more_draws_needed = rule
            started = time.perf_counter()
            try:
                summary = runner.run_generation(runner.RunOptions(
                    store=str(args.demo / "store"), out=out, n=args.n, generation=generation, plan_min_trials=1,
                    concurrency=options.concurrency), say=lambda m: None)
            finally:
                runner.more_draws_needed = needed
                stop_servers()
            seconds = time.perf_counter() - started
            rows.append([seed, way, f"{seconds:.0f}", summary.draws, summary.accepted, summary.surplus_accepted,
                         summary.stopped_draws, summary.writer_calls, summary.tokens.get("completion_tokens")])
            print(rows[-1], flush=True)
    print_table(f"python benchmarks/bench_demo_generation.py --demo {args.demo} --out {args.out} --seeds "
                + " ".join(map(str, args.seeds)),
                ["seed", "draws started", "seconds", "draws", "accepted (kept)", "accepted past them", "stopped in flight",
                 "writer calls", "completion tokens"], rows)


if __name__ == "__main__":
    main()
