"""The embedded writer's speed on this machine: weight formats, batched decoding, grammar, and a
whole generation run (issue 19).

1. Decoding (`--prompts` adapted-writer prompts of real phase_I_train grounding, the same for every
   arm): today's path (llama-cpp-python in process, LoRA at run time, one call at a time, grammar
   always) against llama.cpp's server with the adapter at run time on the shipped Q4_1, and merged
   into the base as Q8_0 and Q4_0, at 1 / 8 / 16 parallel slots; with the grammar always, and
   decoded freely with the grammar only on failure. Aggregate completion tokens/s, answers that
   parse and fit the schema, and how many free answers needed the grammar.
2. Determinism: the same prompts and seeds twice on the server (8 slots), and at 1 slot.
3. A generation run (`--draws`, the adapted writer, the calibrated critic, the fastest arm):
   accepted/min, acceptance, outputs that parse, seconds per draw by node, trial length (criteria
   and words per accepted trial; real grounding trials beside them).
4. Kill and resume (`--kill-at`): the same run as a `synthtrials generate` process, SIGKILLed once it
   has accepted that many trials, then resumed: exactly N trials, none duplicated, the trials
   written before the kill unchanged, and no llama-server process left behind.

    python benchmarks/bench_writer_speed.py --store benchmarks/out/phase1_store \
        --adapter benchmarks/out/adapter_phase1 [--prompts 32] [--draws 100] [--kill-at 30] [--skip-decoding]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, fixed_draws, print_table  # noqa: E402
from synthtrials.agents.writer import ANSWER_TOKENS, PROMPT_TOKENS, adapted_writer_messages, writer_json_schema  # noqa: E402
from synthtrials.graphs.config import GenerationConfig  # noqa: E402
from synthtrials.graphs.resolve import settle_generation  # noqa: E402
from synthtrials.graphs.runner import RunOptions  # noqa: E402
from synthtrials.tools.llm.adapter_folder import adapter_sha256  # noqa: E402
from synthtrials.tools.llm.llama_server import running_servers, stop_servers  # noqa: E402
from synthtrials.tools.llm.client import LLMClient, LLMConfig, StructuredOutputError  # noqa: E402
from synthtrials.tools.llm.config import backend_of  # noqa: E402
from synthtrials.tools.store.protocol import (
    eligible,
    grounding_filter,
)
from synthtrials.tools.store.trial_store import open_store
from synthtrials.tools.records.trial import Trial, render_for_classifier  # noqa: E402


def writer_prompts(store_path: str, n: int, seed: int = 0):
    """n (drug, label, examples, vocabulary) draws like the retriever's: 2 real grounding trials of the
    drug and label, rendered with the writer's fields."""
    store = open_store(store_path, create=False)
    settled = settle_generation(GenerationConfig(reasoner="evidence", llm_critic="off"), store)
    grounding = settled.grounding()
    drugs = [d.intervention for d in eligible(store, k=2, flt=grounding)]
    rng = random.Random(seed)
    draws = []
    for index in range(n):
        drug, label = rng.choice(drugs), index % 2
        pool = sorted(store.filter_ids(grounding.narrowed(intervention=drug, label=label)))
        ids = rng.sample(pool, min(2, len(pool)))
        texts = [render_for_classifier(t, settled.draft.fields)[:900] for t in store.get_many(ids)]
        draws.append((drug, label, texts))
    spec = settled.draft
    store.close()
    return spec, draws


def server_writer_config(adapter: str, slots: int, threads: int, grammar: str = "always") -> LLMConfig:
    """The adapted writer behind llama-server as the grammar and flag benchmarks call it: merged Q4_0, `slots` calls
    at once, the run's answer budget, temperature 0.7."""
    return LLMConfig(adapter=adapter, max_tokens=ANSWER_TOKENS + 64, n_ctx=PROMPT_TOKENS + ANSWER_TOKENS + 128,
                     temperature=0.7, backend="llamacpp-server", weights="Q4_0", max_concurrency=slots,
                     n_threads=threads, timeout_s=600, grammar=grammar)


def decode(config: LLMConfig, spec, draws, slots: int, token_counter: LLMClient) -> dict:
    """Every draw's writer call through `config` with `slots` calls at once."""
    client = LLMClient(config)
    model = spec.model()
    start = time.perf_counter()

    def one(i: int):
        drug, label, texts = draws[i]
        messages = adapted_writer_messages(drug, label, texts, [], [], token_counter.message_tokens)
        try:
            return client.structured(messages, model, seed=i * 16, temperature=0.7,
                                     json_schema=writer_json_schema(spec, drug)).raw
        except StructuredOutputError:
            return None

    with ThreadPoolExecutor(max_workers=slots) as pool:
        answers = list(pool.map(one, range(len(draws))))
    seconds = time.perf_counter() - start
    usage = client.usage
    return {"answers": answers, "seconds": seconds, "completion": usage.completion_tokens,
            "prompt": usage.prompt_tokens, "valid": sum(a is not None for a in answers),
            "free": usage.free_calls, "fallbacks": usage.grammar_fallbacks}


def criteria_and_words(trial: Trial) -> tuple[int, int]:
    criteria = (trial.eligibility.inclusion + trial.eligibility.exclusion) if trial.eligibility else []
    return len(criteria), len(render_for_classifier(trial).split())


def length_row(name: str, trials: list[Trial]) -> list[object]:
    pairs = [criteria_and_words(t) for t in trials]
    if not pairs:
        return [name, 0, "-", "-"]
    return [name, len(pairs), statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)]


def server_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "llama-server"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default=str(OUT / "phase1_store"))
    parser.add_argument("--adapter", default=str(OUT / "adapter_phase1"))
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--formats", nargs="+", default=["adapter", "Q8_0", "Q4_0"])
    parser.add_argument("--draws", type=int, default=100, help="accepted trials the run asks for (0: no run)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--weights", default="Q4_0")
    parser.add_argument("--kill-at", type=int, default=30, help="accepted trials before the SIGKILL (0: no kill test)")
    parser.add_argument("--threads", type=int, default=None, help="llama-server threads (default: all cores)")
    parser.add_argument("--skip-decoding", action="store_true")
    parser.add_argument("--skip-inprocess", action="store_true")
    parser.add_argument("--out", default=str(OUT / "writer_speed"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"command: python benchmarks/bench_writer_speed.py {' '.join(sys.argv[1:])}", flush=True)
    adapter_hash = adapter_sha256(args.adapter)
    writer = LLMConfig(adapter=args.adapter, max_tokens=ANSWER_TOKENS + 64, n_ctx=PROMPT_TOKENS + ANSWER_TOKENS + 128,
                       temperature=0.7, n_threads=args.threads)

    if not args.skip_decoding:
        spec, draws = writer_prompts(args.store, args.prompts)
        counter = LLMClient(LLMConfig(max_tokens=8, n_ctx=1024))  # tokens counted as in process: same prompts
        rows = []
        arms: list[tuple[str, LLMConfig, int]] = []
        if not args.skip_inprocess:
            arms.append(("llama-cpp-python in process, Q4_1 + LoRA at run time (today)", writer, 1))
        for fmt in args.formats:
            for slots in args.slots:
                config = writer.model_copy(update={"backend": "llamacpp-server", "weights": fmt,
                                                   "max_concurrency": slots})
                label = "Q4_1 + LoRA at run time" if fmt == "adapter" else f"merged {fmt}"
                arms.append((f"llama-server, {label}", config, slots))
        best = ("", 0.0)
        for name, config, slots in arms:
            for grammar in ("always", "on_failure"):
                if grammar == "on_failure" and backend_of(config).in_process:
                    continue
                result = decode(config.model_copy(update={"grammar": grammar}), spec, draws, slots, counter)
                stop_servers()
                rate = result["completion"] / result["seconds"]
                rows.append([name, slots, grammar, len(draws), result["completion"] / len(draws), round(rate, 1),
                             f"{result['valid'] / len(draws):.1%}", result["fallbacks"]])
                print(" | ".join(str(c) for c in rows[-1]), flush=True)
                if rate > best[1]:
                    best = (f"{name}, {slots} slots, grammar {grammar}", rate)
        print_table(f"Writer decoding, {len(draws)} adapted-writer prompts of phase_I_train grounding "
                    f"(prompt <= {PROMPT_TOKENS} tokens, answer <= {ANSWER_TOKENS + 64})",
                    ["arm", "slots", "grammar", "calls", "completion tok/call", "completion tok/s (aggregate)",
                     "valid", "free answers that needed the grammar"], rows)
        print(f"\nfastest: {best[0]} ({best[1]:.0f} tok/s)")

        # determinism: the same prompts and seeds twice at 8 slots, and once at 1 slot
        config = writer.model_copy(update={"backend": "llamacpp-server", "weights": args.weights,
                                           "max_concurrency": 8, "grammar": "always"})
        subset = draws[:8]
        first = decode(config, spec, subset, 8, counter)["answers"]
        second = decode(config, spec, subset, 8, counter)["answers"]
        stop_servers()
        single = decode(config.model_copy(update={"max_concurrency": 1}), spec, subset, 1, counter)["answers"]
        stop_servers()
        print_table("Determinism of batched decoding (same prompts and seeds, temperature 0.7)",
                    ["comparison", "identical texts"],
                    [["8 slots, run 1 vs run 2", f"{sum(a == b for a, b in zip(first, second))}/{len(subset)}"],
                     ["8 slots vs 1 slot", f"{sum(a == b for a, b in zip(first, single))}/{len(subset)}"]])

    if args.draws:
        run_dir = out / "run"
        shutil.rmtree(run_dir, ignore_errors=True)
        generation = GenerationConfig(writer_adapter=args.adapter, writer_adapter_sha256=adapter_hash, k=2,
                                      llm=LLMConfig(backend="llamacpp-server", weights=args.weights,
                                                    n_threads=args.threads))
        options = RunOptions(store=args.store, out=run_dir, n=args.draws, generation=generation,
                             concurrency=args.concurrency, plan_min_trials=1)
        summary = fixed_draws(options)
        assert not running_servers(), "the run left a server running"
        accepted = [Trial.model_validate_json(line) for line in (run_dir / "trials.jsonl").read_text().splitlines()]
        store = open_store(args.store, create=False)
        real = store.filter(grounding_filter(["train"]))
        store.close()
        print_table(f"Generation run: {args.draws} accepted asked, adapted writer ({args.weights} merged), "
                    f"llama-server, {summary.concurrency} parallel draws, calibrated critic",
                    ["accepted", "draws", "acceptance", "accepted/min", "writer outputs valid", "free answers",
                     "needed the grammar", "s/draw by node", "minutes"],
                    [[summary.accepted, summary.draws, f"{summary.acceptance_rate:.1%}", summary.accepted_per_minute,
                      f"{summary.writer_valid_share:.1%}", summary.free_decoded, summary.grammar_fallbacks,
                      json.dumps(summary.seconds_per_draw_by_node), round(summary.seconds / 60, 1)]])
        print_table("Trial length (medians)", ["trials", "n", "criteria per trial", "words per trial (rendered)"],
                    [length_row("accepted synthetic", accepted), length_row("real phase_I_train", real)])

    if args.kill_at:
        run_dir = out / "run_killed"
        shutil.rmtree(run_dir, ignore_errors=True)
        n = max(args.kill_at * 2, 10)
        command = [sys.executable, "-m", "synthtrials.scripts.cli", "generate", "--store", args.store, "--n", str(n),
                   "--out", str(run_dir), "--adapter", args.adapter, "--backend", "llamacpp-server", "--k", "2",
                   "--plan-min-trials", "1", "--concurrency", str(args.concurrency), "--weights", args.weights,
                   *(["--threads", str(args.threads)] if args.threads else [])]
        before = server_pids()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        trials_file = run_dir / "trials.jsonl"
        while process.poll() is None:
            if trials_file.is_file() and len(trials_file.read_text().splitlines()) >= args.kill_at:
                break
            time.sleep(0.5)
        process.send_signal(signal.SIGKILL)
        process.wait()
        written = trials_file.read_text().splitlines()
        time.sleep(1.0)
        orphans = server_pids() - before
        resumed = subprocess.run(command, capture_output=True, text=True)
        final = trials_file.read_text().splitlines()
        ids = [json.loads(line)["nct_id"] for line in final]
        kept = sum(line in final for line in written)
        print_table(f"SIGKILL at {len(written)} accepted, then resume (N = {n})",
                    ["trials after resume", "distinct ids", "written before the kill kept unchanged",
                     "llama-server processes left after the kill", "resume exit code", "servers after resume"],
                    [[len(final), len(set(ids)), f"{kept}/{len(written)}", len(orphans), resumed.returncode,
                      len(server_pids() - before)]])
    os.environ.pop("_", None)


if __name__ == "__main__":
    main()
