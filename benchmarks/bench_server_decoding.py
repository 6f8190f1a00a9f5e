"""Aggregate decoding speed of llama-server on a GGUF: threads x parallel requests (issue 19).

Every request asks for the same prompt and exactly `--tokens` completion tokens (`ignore_eos`), so
arms compare like for like. The server is the one synthtrials starts (`tools.llm.llama_server`).

    python benchmarks/bench_server_decoding.py [--model smollm2|PATH] [--quantize Q4_0] \
        [--threads 1 2] [--parallel 1 8] [--requests 16] [--tokens 128]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table  # noqa: E402
from synthtrials.tools.llm.llama_server import ServerSpec, llama_cpp_tool, serve, stop_servers  # noqa: E402
from synthtrials.tools.llm.client import resolve_gguf  # noqa: E402

PROMPT = "Write a detailed eligibility section for a phase 1 trial of metformin in adults with cancer."


def measure(url: str, requests: int, parallel: int, tokens: int) -> float:
    def one(i: int) -> int:
        answer = httpx.post(f"{url}/chat/completions", timeout=900, json={
            "messages": [{"role": "user", "content": PROMPT}], "max_tokens": tokens, "seed": i, "ignore_eos": True})
        return int(answer.json()["usage"]["completion_tokens"])

    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        total = sum(pool.map(one, range(requests)))
    return total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--quantize", default=None, help="requantize the model first (e.g. Q4_0, Q8_0)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    model = resolve_gguf(args.model)
    work = tempfile.mkdtemp(prefix="bench-server-")
    if args.quantize:
        target = Path(work) / f"model.{args.quantize}.gguf"
        subprocess.run([str(llama_cpp_tool("llama-quantize")), "--allow-requantize", model, str(target), args.quantize],
                       check=True, capture_output=True)
        model = str(target)
    rows = []
    for threads in args.threads:
        for parallel in args.parallel:
            server = serve(ServerSpec(model_path=model, slots=parallel, ctx_per_slot=1024, threads=threads, log_dir=work))
            rate = measure(server.url, max(parallel, args.requests if parallel > 1 else 2), parallel, args.tokens)
            stop_servers()
            rows.append([Path(model).name, threads, parallel, round(rate, 1)])
            print(rows[-1], flush=True)
    print_table(f"llama-server decoding, {args.tokens} tokens per request",
                ["weights", "threads", "parallel requests", "completion tokens/s (aggregate)"], rows)


if __name__ == "__main__":
    main()
