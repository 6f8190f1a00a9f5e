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
tokens rather than every repeated token. An arm may also ask, through the grammar, for at least as many
inclusion and exclusion criteria as a real grounding trial of the draw's drug and label has (`anchor`: what
an anchored plan's target has; capped at `--anchor-cap` per list), so the lists' lengths follow the real ones.

    python benchmarks/bench_writer_sampling.py --store STORE --adapter ADAPTER \\
        [--prompts 32] [--slots 16] [--penalties 1.1:64 1.0:64 1.1:64:0:anchor]
"""

from __future__ import annotations

import argparse
import random
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
from synthtrials.graphs.resolve import settle_generation  # noqa: E402
from synthtrials.tools.store.trial_store import open_store  # noqa: E402
from synthtrials.tools.llm.client import LLMClient, LLMConfig, StructuredOutputError  # noqa: E402
from synthtrials.tools.llm.llama_server import stop_servers  # noqa: E402


def anchor_minimums(store_path: str, draws, cap: int) -> list[tuple[int, int]]:
    """Per draw, the (inclusion, exclusion) criteria counts of a random real grounding trial of its drug and
    label (seeded), each capped at `cap`."""
    store = open_store(store_path, create=False)
    grounding = settle_generation(GenerationConfig(reasoner="evidence", llm_critic="off"), store).grounding()
    rng = random.Random(1)
    out = []
    for drug, label, _ in draws:
        trial = store.get_many([rng.choice(sorted(store.filter_ids(grounding.narrowed(intervention=drug, label=label))))])[0]
        eligibility = trial.eligibility
        out.append((min(cap, len(eligibility.inclusion) if eligibility else 0),
                    min(cap, len(eligibility.exclusion) if eligibility else 0)))
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default=str(OUT / "phase1_store"))
    parser.add_argument("--adapter", default=str(OUT / "adapter_phase1"))
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--penalties", nargs="+", default=["1.1:64", "1.0:64"],
                        help="arms as penalty:window[:dry[:anchor]], the repetition penalty over the last `window` "
                             "tokens, llama.cpp's DRY multiplier (repeated sequences, not tokens; 0: off), and `anchor`: "
                             "at least a real trial's number of criteria per list")
    parser.add_argument("--anchor-cap", type=int, default=30, help="the most criteria per list an `anchor` arm asks for")
    parser.add_argument("--answer-tokens", type=int, default=None,
                        help="the writer's answer budget (default: the adapter's, as a run uses it)")
    args = parser.parse_args()
    print(f"command: python benchmarks/bench_writer_sampling.py {' '.join(sys.argv[1:])}", flush=True)
    spec, draws = writer_prompts(args.store, args.prompts)
    minimums = anchor_minimums(args.store, draws, args.anchor_cap)
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
        anchored = len(parts) > 3 and parts[3] == "anchor"
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
            schema = writer_json_schema(spec, drug)
            if anchored:
                for key, minimum in zip(("inclusion_criteria", "exclusion_criteria"), minimums[i]):
                    schema["properties"][key]["minItems"] = minimum
            try:
                result = client.structured(messages, model, seed=i * 16, temperature=0.7, json_schema=schema)
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
        rows.append([penalty, window, dry or "-", "anchor's" if anchored else "-", len(draws), len(valid), statistics.median(p[0] for p in pairs) if pairs else "-",
                     f"{sum(p[0] > 10 for p in pairs) / max(1, len(pairs)):.0%}",
                     statistics.median(p[1] for p in pairs) if pairs else "-", usage.closed_at_limit,
                     round(usage.completion_tokens / max(1, usage.calls)), round(usage.completion_tokens / seconds, 1)])
        print(" | ".join(str(v) for v in rows[-1]), flush=True)
    budget = args.answer_tokens or "the adapter's"
    print_table(f"The adapted writer's answers by repetition penalty, merged Q4_0, {args.prompts} prompts, "
                f"{args.slots} slots, grammar, answer budget {budget} tokens (+64)", [
                    "penalty", "window (tokens)", "DRY multiplier", "criteria at least", "calls", "valid", "criteria (median)", "over 10 criteria",
                    "words (median)", "closed at limit", "completion tokens/call", "completion tok/s"], rows)


if __name__ == "__main__":
    main()
