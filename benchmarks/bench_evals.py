"""Outcome-prediction grids.

1. TF-IDF + LR on TOP phase I (train 1,044, test 627), 3 seeds: wall time (target < 60 s), and
   real-only figures next to HINT's published phase I numbers (PR-AUC .745, F1 .820, ROC-AUC .726,
   on its own test split).
2. MiniLM grid (no_fine_tuning, real, synthetic, hybrid; ~1,000 real + ~1,000 "synthetic" trials)
   with the evaluation defaults (max length, frozen layers), at each max length of --max-lengths,
   each grid in a fresh process: wall time (target < 20 min for 3 seeds), peak RSS, the metrics with
   each classifier's decision threshold (chosen on phase_I_valid) and collapse flag, and the
   max-length comparison (ROC-AUC against the first length, 256: the default is the shortest length
   whose ROC-AUC stays within 0.01). The synthetic set is a stand-in (real toy_train/valid/test
   trials recorded as synthetic): the embedded model cannot produce 1,000 accepted trials on this
   machine in the time (see bench_adapt).

    python benchmarks/bench_evals.py [--minilm-seeds 40 41 42] [--epochs 1] [--max-lengths 256 192 128 96]
                                     [--skip-minilm]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import TOP, peak_rss_mib, print_table  # noqa: E402
from synthtrials.evals.experiment import EvalOptions, run_evaluation  # noqa: E402
from synthtrials.tools.readers import read_trials  # noqa: E402

HINT_PHASE_I = {"pr_auc": 0.745, "f1": 0.820, "roc_auc": 0.726}
WITHIN = 0.01  # ROC-AUC a shorter max length may lose against the longest


def stand_in(path: Path, n: int) -> Path:
    trials = read_trials([TOP / "toy_train.csv", TOP / "toy_valid.csv", TOP / "toy_test.csv"])
    phase_one = {t.nct_id for t in read_trials([TOP / "phase_I_test.csv"])}
    rows = [t.model_copy(update={"nct_id": f"SYN-{i:08x}", "source": "synthetic", "overall_status": None,
                                 "why_stopped": None, "provenance": {"examples": []}}).model_dump(mode="json")
            for i, t in enumerate(x for x in trials if x.nct_id not in phase_one)][:n]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def minilm_grid(synthetic: Path, out: Path, max_length: int, epochs: int, seeds: list[int]) -> dict[str, Any]:
    """One MiniLM grid (run in a fresh process, so that its peak RSS and CPU time are its own)."""
    start = time.perf_counter()
    load = os.getloadavg()[0]
    result = run_evaluation(EvalOptions(
        real_train=str(TOP / "phase_I_train.csv"), real_valid=str(TOP / "phase_I_valid.csv"),
        real_test=str(TOP / "phase_I_test.csv"), synthetic=str(synthetic), classifier="transformer",
        max_length=max_length, epochs=epochs, batch_size=8, learning_rate=5e-5, seeds=seeds, out=out, n_boot=300),
        progress=lambda m: print(f"  length {max_length}: {m}", file=sys.stderr, flush=True)).model_dump(mode="json")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"result": result, "minutes": (time.perf_counter() - start) / 60, "peak_rss_mib": peak_rss_mib(),
            "cpu_minutes": (usage.ru_utime + usage.ru_stime) / 60, "load": (load, os.getloadavg()[0])}


def in_fresh_process(*args: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(minilm_grid, *args).result()


def grid_roc_auc(result: dict[str, Any]) -> float:
    """Mean ROC-AUC over the grid's training sets (no_fine_tuning, real, synthetic, hybrid)."""
    sets = result["training_sets"].values()
    return sum(v["roc_auc"]["mean"] for v in sets) / len(sets)


def compare_lengths(grids: dict[int, dict[str, Any]], reference: int) -> tuple[list[list[Any]], int]:
    """Rows of the max-length comparison, and the shortest length whose real-only and grid-mean ROC-AUC
    lose at most WITHIN against `reference`."""
    base = grids[reference]["result"]
    rows, within = [], []
    for length, grid in grids.items():
        sets = grid["result"]["training_sets"]
        real = sets["real"]["roc_auc"]["mean"] - base["training_sets"]["real"]["roc_auc"]["mean"]
        mean = grid_roc_auc(grid["result"]) - grid_roc_auc(base)
        if real >= -WITHIN and mean >= -WITHIN:
            within.append(length)
        rows.append([length, f"{grid['minutes']:.1f}", f"{grid['cpu_minutes']:.1f}", f"{grid['peak_rss_mib']:.0f}",
                     f"{grid['load'][0]:.1f}-{grid['load'][1]:.1f}"]
                    + [f"{v['roc_auc']['mean']:.3f} ± {v['roc_auc']['std']:.3f}" for v in sets.values()]
                    + [f"{grid_roc_auc(grid['result']):.3f}", f"{real:+.3f}", f"{mean:+.3f}", "yes" if length in within else "no"])
    return rows, min(within)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minilm-seeds", type=int, nargs="+", default=[40, 41, 42])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-lengths", type=int, nargs="+", default=[256, 192, 128, 96],
                        help="the first is the reference the others are compared with")
    parser.add_argument("--skip-minilm", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = run_evaluation(EvalOptions(real_train=str(TOP / "phase_I_train.csv"),
                                            real_test=str(TOP / "phase_I_test.csv"), out=Path(tmp) / "tfidf")).model_dump(mode="json")
        seconds = time.perf_counter() - start
        real = result["training_sets"]["real"]
        print_table(f"TF-IDF + LR, TOP phase I (train 1,044, test 627), seeds 40-42: {seconds:.1f} s (target < 60 s)",
                    ["metric", "ours (real only, mean ± std)", "HINT phase I (published)"],
                    [[m, f"{real[m]['mean']:.3f} ± {real[m]['std']:.3f}", HINT_PHASE_I.get(m, "-")]
                     for m in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")])
        if args.skip_minilm:
            return
        synthetic = stand_in(Path(tmp) / "synthetic.jsonl", 1000)
        defaults = EvalOptions(out=Path(tmp))
        grids = {length: in_fresh_process(synthetic, Path(tmp) / f"minilm_{length}", length, args.epochs,
                                          args.minilm_seeds)
                 for length in args.max_lengths}
    reference = args.max_lengths[0]
    comparison, chosen = compare_lengths(grids, reference)
    grid = grids[chosen]
    rows = [[name, grid["result"]["sizes"][name]]
            + [f"{v[m]['mean']:.3f} ± {v[m]['std']:.3f}" for m in ("roc_auc", "pr_auc", "f1", "precision", "recall")]
            + [" / ".join(f"{x:.3f}" for x in v["threshold"]["per_seed"]), "YES" if v["collapsed"] else "no"]
            for name, v in grid["result"]["training_sets"].items()]
    print_table(f"MiniLM grid, max length {chosen}, frozen layers {defaults.frozen_layers}, {args.epochs} epoch(s), "
                f"seeds {args.minilm_seeds}: {grid['minutes']:.1f} min (CPU {grid['cpu_minutes']:.1f} min), peak RSS "
                f"{grid['peak_rss_mib']:.0f} MiB (target < 20 min for 3 seeds; load average {grid['load'][0]:.1f} at "
                f"start, {grid['load'][1]:.1f} at end)",
                ["training set", "trials", "roc_auc", "pr_auc", "f1", "precision", "recall",
                 "threshold (per seed, chosen on valid)", "collapsed to one class"], rows)
    boot = grid["result"].get("bootstrap_hybrid_minus_real", {})
    if boot:
        print("\nhybrid - real (stand-in synthetic):", json.dumps({k: round(v["difference"], 3) for k, v in boot.items()}))
    names = list(grids[reference]["result"]["training_sets"])
    print_table(f"MiniLM ROC-AUC by max length (mean ± std over seeds {args.minilm_seeds}, frozen layers "
                f"{defaults.frozen_layers}, {args.epochs} epoch(s)): the shortest within {WITHIN} of {reference} "
                f"(real and grid mean) is {chosen}; the evaluation default is {defaults.max_length}",
                ["max length", "grid min", "CPU min", "peak RSS MiB", "load avg (start-end)", *names, "grid mean",
                 f"real vs {reference}", f"grid mean vs {reference}", f"within {WITHIN}"], comparison)


if __name__ == "__main__":
    main()
