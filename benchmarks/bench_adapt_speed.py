"""Writer adaptation speed: training tokens per second before and after the speed changes, on the
same batches of the same examples, and one epoch's time extrapolated from them.

The examples are built from a store as `synthtrials adapt` builds them (timed: the preparation is
part of an epoch). Then each arm, in its own process (its own peak memory), trains a fresh LoRA
(same seed, same options as `adapt`) for `--steps` optimizer steps on the first batches of the
length-grouped plan, the first step a warm-up left out of the timing:

- before: the code as it was: each batch of 4 padded to its longest sequence, one forward and
  backward pass, fp32, LoRA dropout 0.05 (its epoch plan: all examples sorted by length, so its
  padding share is that plan's);
- after_dropout: `agents.writer_adaptation.train_step` as `adapt` runs it (one padding-free pass per
  sequence, bf16 autocast where the CPU has bf16 units, `--precision` to force one) but with the old
  LoRA dropout 0.05;
- after_cast: no LoRA dropout, the frozen projections kept in fp32 and cast to bf16 by autocast at
  every use (as `adapt` ran until 2026-12-04);
- after: as `adapt` runs now (no LoRA dropout, the frozen projections stored in bf16: `store_in_bf16`).

Tokens per second count real (non-padding) tokens; "per CPU-second" divides by the process's CPU
time, which other jobs on shared cores disturb less than wall time. The epoch estimate is an
extrapolation: preparation + model loading + the epoch's real tokens at the measured rate.

    python benchmarks/bench_adapt_speed.py --store benchmarks/out/phase1_store [--steps 6] [--prep-before]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, print_table  # noqa: E402

OLD_DROPOUT = 0.05
ARMS = ("before", "after_dropout", "after_cast", "after")


def prepare(store_path: str, max_trials: int | None, cached_count: bool, one_thread: bool) -> dict:
    """The examples as `adapt` builds them; the seconds it took (tokenizer and store included)."""
    from functools import lru_cache

    from synthtrials.agents import writer_adaptation as wa
    from synthtrials.tools.store.protocol import (
        default_grounding_splits,
        grounding_filter,
    )
    from synthtrials.tools.store.trial_store import open_store
    from synthtrials.tools.records.writer_format import DraftSpec

    start = time.perf_counter()
    options = wa.AdaptOptions(store=store_path, out=Path(tempfile.gettempdir()) / "unused", max_trials=max_trials)
    store = open_store(store_path, create=False)
    splits = list(default_grounding_splits(store))
    tokenizer, _ = wa.load_base(options.base)
    loaded = time.perf_counter()
    spec = DraftSpec.from_trials(store.filter(grounding_filter(splits)))

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    if cached_count:
        count = lru_cache(maxsize=None)(count)
    import contextlib

    with wa.torch_threads(1) if one_thread else contextlib.nullcontext():
        examples = wa.training_examples(store, splits, spec, count, options)
    encoded = [wa.encode(e, tokenizer) for e in examples]
    store.close()
    return {"encoded": encoded, "load_seconds": loaded - start, "prep_seconds": time.perf_counter() - loaded}


def run_arm(arm: str, data_file: str, steps: int, precision: str, threads: int | None) -> dict:
    """Train `steps` optimizer steps as `adapt` does, with the arm's step; per-step timings."""
    import torch

    from synthtrials.agents import writer_adaptation as wa

    if threads:
        torch.set_num_threads(threads)
    data = pickle.loads(Path(data_file).read_bytes())
    encoded, planned = data["encoded"], data["planned"][:steps]
    options = wa.AdaptOptions(store="unused", out=Path("unused"))
    tokenizer, model = wa.load_base(options.base)
    resolved = "fp32" if arm == "before" else wa.resolve_precision(precision, "cpu")  # type: ignore[arg-type]
    torch.manual_seed(options.seed)
    if arm in ("before", "after_dropout", "after_cast"):  # the frozen weights as they were: fp32, cast at every use
        wa.store_in_bf16 = lambda layer: None
    model = wa.lora_model(model, options, "cpu", resolved,
                          dropout=None if arm in ("after", "after_cast") else OLD_DROPOUT)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=options.learning_rate)
    model.train()
    rows = []
    for batch in planned:
        wall, cpu = time.perf_counter(), time.process_time()
        loss, tokens, computed = wa.train_step(model, encoded, batch, tokenizer.pad_token_id, "cpu", resolved,
                                               micro=arm != "before")
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        rows.append({"loss": loss, "tokens": tokens, "computed": computed, "wall": time.perf_counter() - wall,
                     "cpu": time.process_time() - cpu, "load": os.getloadavg()[0]})
        print(f"  {arm} step {len(rows)}/{len(planned)}: {tokens} tokens ({computed} computed), loss {loss:.4f}, "
              f"{rows[-1]['wall']:.1f} s (load {rows[-1]['load']:.1f})", file=sys.stderr, flush=True)
    return {"arm": arm, "precision": resolved, "threads": torch.get_num_threads(), "steps": rows,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", default=str(OUT / "phase1_store"))
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per arm (the first is a warm-up)")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="the after arm's")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, the cores)")
    parser.add_argument("--max-trials", type=int, default=None, help="build examples from this many trials only")
    parser.add_argument("--prep-before", action="store_true",
                        help="also time the examples' preparation as it was (no token-count cache, torch's threads)")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:  # a child process: one arm
        print(json.dumps(run_arm(args.arm, args.data, args.steps, args.precision, args.threads)))
        return

    from synthtrials.agents import writer_adaptation as wa

    print(f"preparing the examples from {args.store} (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    prep = prepare(args.store, args.max_trials, cached_count=True, one_thread=True)
    prep_before = (prepare(args.store, args.max_trials, cached_count=False, one_thread=False)["prep_seconds"]
                   if args.prep_before else None)
    encoded = prep["encoded"]
    lengths = [len(e[0]) for e in encoded]
    options = wa.AdaptOptions(store=args.store, out=Path("unused"))
    steps_per_epoch = math.ceil(len(encoded) / options.batch_size)
    plans = {"before": wa.plan_batches(lengths, options.batch_size, 1, options.seed, steps_per_epoch, "sorted"),
             "after": wa.plan_batches(lengths, options.batch_size, 1, options.seed, steps_per_epoch)}
    epoch_tokens = sum(lengths)
    with tempfile.TemporaryDirectory() as tmp:
        data_file = Path(tmp) / "data.pkl"
        data_file.write_bytes(pickle.dumps({"encoded": encoded, "planned": plans["after"]}))
        results = {}
        for arm in [a for a in args.arms.split(",") if a]:
            command = [sys.executable, __file__, "--arm", arm, "--data", str(data_file), "--steps", str(args.steps),
                       "--precision", args.precision] + (["--threads", str(args.threads)] if args.threads else [])
            done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
            results[arm] = json.loads(done.stdout.strip().splitlines()[-1])
    rows = []
    prep_minutes = {"before": (prep_before if prep_before is not None else math.nan) / 60,
                    "after": prep["prep_seconds"] / 60}
    for arm, result in results.items():
        prep_arm = prep_minutes["before" if arm == "before" else "after"]
        timed = result["steps"][1:] or result["steps"]
        tokens = sum(s["tokens"] for s in timed)
        computed = sum(s["computed"] for s in timed)
        per_second = tokens / sum(s["wall"] for s in timed)
        per_cpu_second = tokens / sum(s["cpu"] for s in timed)
        epoch_padding = wa.padding_share(lengths, plans[arm]) if arm == "before" else 0.0
        train_minutes = epoch_tokens / per_second / 60
        epoch_minutes = prep["load_seconds"] / 60 + prep_arm + train_minutes
        rows.append([arm, result["precision"], result["threads"], len(timed), tokens,
                     f"{1 - tokens / computed:.2%}", f"{epoch_padding:.2%}", f"{per_second:.1f}",
                     f"{per_cpu_second:.1f}", f"{result['peak_rss_gib']:.1f}",
                     f"{sum(s['load'] for s in timed) / len(timed):.1f}",
                     "-" if math.isnan(prep_arm) else f"{prep_arm:.1f}", f"{train_minutes:.1f}",
                     "-" if math.isnan(prep_arm) else f"{epoch_minutes:.1f}",
                     " ".join(f"{s['loss']:.3f}" for s in result["steps"])])
    print_table(f"Writer adaptation speed ({len(encoded)} examples from {args.store}, {epoch_tokens:,} real tokens per "
                f"epoch, {steps_per_epoch} steps of {options.batch_size}; the same {args.steps} batches in each arm, "
                "the first a warm-up)",
                ["arm", "precision", "threads", "timed steps", "real tokens", "padding (these steps)",
                 "padding (its epoch plan)", "real tokens/s", "real tokens per CPU-s", "peak RSS GiB",
                 "load average", "preparation min", "training min per epoch (extrapolated)",
                 "epoch min (extrapolated, with model loading)", "loss per step"], rows)
    print(f"\nexamples: {len(encoded)} prepared in {prep['prep_seconds'] / 60:.1f} min"
          + (f" (as before: {prep_before / 60:.1f} min)" if prep_before is not None else "")
          + f"; model loading {prep['load_seconds']:.0f} s; load average {os.getloadavg()[0]:.1f}")
    by_arm = {row[0]: row for row in rows}
    for arm in ("after_dropout", "after"):
        if "before" in by_arm and arm in by_arm:
            print(f"\n{arm} vs before (same batches): real tokens/s {float(by_arm[arm][7]) / float(by_arm['before'][7]):.2f}x, "
                  f"per CPU-second {float(by_arm[arm][8]) / float(by_arm['before'][8]):.2f}x")


if __name__ == "__main__":
    main()
