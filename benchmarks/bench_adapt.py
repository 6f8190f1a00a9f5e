"""Base vs adapted writer: the same plan, seeds, store and critic; only the writer differs.

For each writer, a fixed number of draws of the generation graph on the phase I store (grounding
split phase_I_train): writer outputs that parse, critic acceptance, accepted trials per minute,
seconds per draw by node; then, on the accepted trials, the real-vs-synthetic discriminator AUC
(like-for-like rendering; its chance level is the same AUC between two halves of the real data),
the n-gram copy rate against every trial the adapter was trained on, and the distance to the
closest real trial against the same distance between two halves of the real data (memorisation).
Training speed comes from the adapter's own record (adapter.json). Two accepted trials of each
writer, picked at random, are printed.

    python benchmarks/bench_adapt.py --adapter benchmarks/out/adapter_phase1 [--draws 30] [--skip-base]
    python benchmarks/bench_adapt.py --run benchmarks/out/run_central   # the same figures for a finished run
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, fixed_draws, print_table  # noqa: E402
from synthtrials.evals.fidelity import discriminator_auc, real_halves_auc  # noqa: E402
from synthtrials.graphs.config import GenerationConfig  # noqa: E402
from synthtrials.graphs.runner import RunOptions  # noqa: E402
from synthtrials.scripts.demo import load_synthetic_or_empty  # noqa: E402
from synthtrials.tools.llm.adapter_folder import adapter_sha256, read_adapter  # noqa: E402
from synthtrials.tools.knowledge.checks import ngrams  # noqa: E402
from synthtrials.tools.records.fields import field_set  # noqa: E402
from synthtrials.tools.store.protocol import grounding_filter
from synthtrials.tools.store.trial_store import open_store
from synthtrials.tools.records.trial import Trial, render_for_classifier, render_for_embedding  # noqa: E402


def run(store: str, out: Path, draws: int, adapter: Path | None, seed: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    generation = GenerationConfig(k=2, seed=seed, writer_adapter=str(adapter) if adapter else None,
                                  writer_adapter_sha256=adapter_sha256(adapter) if adapter else None)
    start = time.perf_counter()
    summary = fixed_draws(RunOptions(store=store, out=out, n=draws, generation=generation, plan_min_trials=1,
                                     max_draws_factor=1)).model_dump()
    summary["wall_seconds"] = time.perf_counter() - start
    accepted = load_synthetic_or_empty(out)
    return {"summary": summary, "accepted": accepted}


def copy_rate(trial: Trial, sources: list[set], fields, n: int = 8) -> float:
    """The largest share of the trial's n-grams found in one source trial (`sources`: their n-gram sets)."""
    mine = ngrams(render_for_classifier(trial, fields), n)
    if not mine:
        return 0.0
    return max(len(mine & grams) / len(mine) for grams in sources)


def closest_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1 - (a @ b.T).max(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", default=str(OUT / "phase1_store"))
    parser.add_argument("--adapter", default=str(OUT / "adapter_phase1"))
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-base", action="store_true")
    parser.add_argument("--run", help="measure this run folder's accepted trials (its own adapter) instead of drawing")
    args = parser.parse_args()
    if args.run:
        config = json.loads((Path(args.run) / "config.json").read_text())
        args.store, args.adapter = config["store"], config["generation"]["writer_adapter"]
    adapter = Path(args.adapter)
    info = read_adapter(adapter)
    store = open_store(args.store, create=False)
    real = store.filter(grounding_filter(["train"]))
    trained = {t.nct_id: t for t in store.get_many(info.trained_on)}
    fields = field_set(real)
    embed = store.embeddings.embed_array
    real_v = embed([render_for_embedding(t) for t in real])
    halves = np.random.default_rng(0).permutation(len(real))
    first, second = real_v[halves[: len(real) // 2]], real_v[halves[len(real) // 2:]]
    real_to_real = float(np.median(closest_distance(first, second)))
    trained_grams = [ngrams(render_for_classifier(t, fields), 8) for t in trained.values()]  # once, for every writer
    writers = {"adapted": adapter} if args.skip_base or args.run else {"base": None, "adapted": adapter}
    rows, examples = [], {}
    for name, folder in writers.items():
        if args.run:
            s, accepted = json.loads((Path(args.run) / "summary.json").read_text()), load_synthetic_or_empty(Path(args.run))
            s["wall_seconds"] = s["seconds"]
        else:
            result = run(args.store, OUT / f"bench_adapt_{name}", args.draws, folder, args.seed)
            s, accepted = result["summary"], result["accepted"]
        nodes = s["seconds_per_draw_by_node"]
        if accepted:
            syn_v = embed([render_for_embedding(t) for t in accepted])
            dcr = float(np.median(closest_distance(syn_v, real_v)))
            copies = [copy_rate(t, trained_grams, fields) for t in accepted]
            auc = discriminator_auc(real, accepted, fields=fields) if len(accepted) >= 5 else float("nan")
        else:
            dcr, copies, auc = float("nan"), [float("nan")], float("nan")
        rows.append([name, s["draws"], f"{s['writer_valid_share']:.0%}", f"{s['acceptance_rate']:.0%}",
                     f"{s['accepted'] / (s['wall_seconds'] / 60):.2f}", f"{s['wall_seconds'] / max(1, s['draws']):.1f}",
                     " / ".join(f"{nodes.get(n, 0):.1f}" for n in ("retrieve", "reason", "write", "critique")),
                     f"{auc:.3f}", f"{np.max(copies):.2f}", f"{dcr:.3f} (real-real {real_to_real:.3f})",
                     json.dumps(s["rejections_by_reason"])])
        examples[name] = random.Random(0).sample(accepted, min(2, len(accepted)))
    what = (f"run {args.run} ({s['draws']} draws, {s['accepted']} accepted)" if args.run else
            f"{args.draws} draws each, seed {args.seed}, k=2, plan over drugs with >= 1 success and 1 failure in phase_I_train")
    print_table(f"Writers on the phase I store ({what}; critic calibration "
                f"{[c['key'] for c in store.calibrations() if 'thresholds' in c][-1]})",
                ["writer", "draws", "outputs that parse", "critic acceptance", "accepted / min", "s / draw",
                 "s per draw: retrieve / reason / write / critique", "discriminator AUC (real halves: "
                 f"{real_halves_auc(real, fields=fields):.3f})", "max 8-gram copy rate vs adapter's trials",
                 "median distance to closest real", "rejections by reason"], rows)
    print(f"\nadaptation (adapter.json): {info.steps}/{info.steps_planned} steps on {len(info.trained_on)} trials, "
          f"{info.tokens} tokens in {info.seconds / 60:.1f} min = {info.tokens_per_second:.0f} tokens/s, "
          f"loss {info.loss[0]:.3f} -> {np.mean(info.loss[-10:]):.3f} (mean of the last 10 steps)")
    for name, picked in examples.items():
        for trial in picked:
            print(f"\n{name} writer, accepted at random ({trial.nct_id}):\n```json\n"
                  + trial.model_dump_json(indent=1, exclude_none=True, exclude={"provenance"}) + "\n```")


if __name__ == "__main__":
    main()
