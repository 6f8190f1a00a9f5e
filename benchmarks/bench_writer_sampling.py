"""Why the adapted writer's trials are short (issue 18, shape parity): its answers against the
sampler's repetition penalty. llama.cpp's server is sent the in-process backend's sampling defaults
(repetition penalty 1.1 over the last 64 tokens: `IN_PROCESS_SAMPLING`), added when a 25-minute
adapter looped on one criterion. The penalty also falls on the tokens every list item repeats (the
quotes and commas between criteria), which makes closing the list likelier with each criterion.

The same adapted-writer prompts of the grounding split (as bench_writer_speed builds them), the
adapter merged into Q4_0, `--slots` parallel requests under the run's grammar, one arm per
(penalty, window): criteria and words per answer (median, and the share of answers over 10
criteria), answers closed at their token limit (loops or long answers), completion tokens/s. An arm
may add llama.cpp's DRY sampler ("don't repeat yourself"), which penalises a repeated sequence of
tokens rather than every repeated token.

    python benchmarks/bench_writer_sampling.py --store STORE --adapter ADAPTER \\
        [--prompts 32] [--slots 16] [--penalties 1.1:64 1.0:64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_writer_speed import criteria_and_words, writer_prompts  # noqa: E402
from common import OUT, print_table  # noqa: E402
from synthtrials.agents.writer import adapted_writer_messages, writer_json_schema  # noqa: E402
from synthtrials.graphs.runner import adapted_writer_client  # noqa: E402
from synthtrials.graphs.config import GenerationConfig  # noqa: E402
from synthtrials.tools.llm.client import LLMClient, LLMConfig, StructuredOutputError  # noqa: E402
from synthtrials.tools.llm.llama_server import stop_servers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default=str(OUT / "phase1_store"))
    parser.add_argument("--adapter", default=str(OUT / "adapter_phase1"))
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--penalties", nargs="+", default=["1.1:64", "1.0:64"],
                        help="arms as penalty:window[:dry], the repetition penalty over the last `window` tokens "
                             "and llama.cpp's DRY multiplier (repeated sequences, not tokens; 0: off)")
    parser.add_argument("--answer-tokens", type=int, default=None,
                        help="the writer's answer budget (default: the adapter's, as a run uses it)")
    args = parser.parse_args()
    print(f"command: python benchmarks/bench_writer_sampling.py {' '.join(sys.argv[1:])}", flush=True)
    spec, draws = writer_prompts(args.store, args.prompts)
    counter = LLMClient(LLMConfig(max_tokens=8, n_ctx=1024))
    model = spec.model()
    generation = GenerationConfig(llm=LLMConfig(backend="llamacpp-server", max_concurrency=args.slots,
                                                n_threads=args.threads, timeout_s=900),
                                  writer_adapter=args.adapter, writer_temperature=0.7)
    rows = []
    for arm in args.penalties:
        parts = arm.split(":")
        penalty, window = float(parts[0]), int(parts[1])
        dry = float(parts[2]) if len(parts) > 2 else 0.0
        client = adapted_writer_client(generation)
        assert client is not None
        if args.answer_tokens:
            client = LLMClient(client.config.model_copy(update={
                "max_tokens": args.answer_tokens + 64, "n_ctx": max(client.config.n_ctx, 256 + args.answer_tokens + 192)}))
        client.model.extra_body = {**(client.model.extra_body or {}), "repeat_penalty": penalty,
                                   "repeat_last_n": window, **({"dry_multiplier": dry} if dry else {})}

        def one(i: int):
            drug, label, texts = draws[i]
            messages = adapted_writer_messages(drug, label, texts, [], [], counter.message_tokens)
            try:
                result = client.structured(messages, model, seed=i * 16, temperature=0.7,
                                           json_schema=writer_json_schema(spec, drug))
            except StructuredOutputError:
                return None
            return spec.to_trial(result.value, f"SYN-{i:06d}", label=label, provenance={})

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.slots) as pool:
            trials = list(pool.map(one, range(len(draws))))
        seconds = time.perf_counter() - start
        stop_servers()
        usage = client.usage
        valid = [t for t in trials if t is not None]
        pairs = [criteria_and_words(t) for t in valid]
        rows.append([penalty, window, dry or "-", len(draws), len(valid), statistics.median(p[0] for p in pairs) if pairs else "-",
                     f"{sum(p[0] > 10 for p in pairs) / max(1, len(pairs)):.0%}",
                     statistics.median(p[1] for p in pairs) if pairs else "-", usage.closed_at_limit,
                     round(usage.completion_tokens / max(1, usage.calls)), round(usage.completion_tokens / seconds, 1)])
        print(" | ".join(str(v) for v in rows[-1]), flush=True)
    budget = args.answer_tokens or "the adapter's"
    print_table(f"The adapted writer's answers by repetition penalty, merged Q4_0, {args.prompts} prompts, "
                f"{args.slots} slots, grammar, answer budget {budget} tokens (+64)", [
                    "penalty", "window (tokens)", "DRY multiplier", "calls", "valid", "criteria (median)", "over 10 criteria",
                    "words (median)", "closed at limit", "completion tokens/call", "completion tok/s"], rows)


if __name__ == "__main__":
    main()
