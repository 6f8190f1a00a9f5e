"""Outcome-prediction grids.

1. TF-IDF + LR on TOP phase I (train 1,044, test 627), 3 seeds: wall time (target < 60 s), and
   real-only figures next to HINT's published phase I numbers (PR-AUC .745, F1 .820, ROC-AUC .726,
   on its own test split).
2. MiniLM fine-tuning grid, max length 256, ~1,000 real + ~1,000 "synthetic" trials: wall time
   (target < 20 min for 3 seeds) and peak memory. The synthetic set here is a timing stand-in
   (real toy_train/valid/test trials recorded as synthetic): the embedded model cannot produce
   1,000 accepted trials on this machine in the time (see bench_generation).

    python benchmarks/bench_evals.py [--minilm-seeds 40 41 42] [--epochs 1] [--skip-minilm]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import TOP, peak_rss_mib, print_table  # noqa: E402

from synthtrials.evals.experiment import EvalOptions, run_evaluation  # noqa: E402
from synthtrials.tools.readers import read_trials  # noqa: E402

HINT_PHASE_I = {"pr_auc": 0.745, "f1": 0.820, "roc_auc": 0.726}


def stand_in(path: Path, n: int) -> Path:
    trials = read_trials([TOP / "toy_train.csv", TOP / "toy_valid.csv", TOP / "toy_test.csv"])
    phase_one = {t.nct_id for t in read_trials([TOP / "phase_I_test.csv"])}
    rows = [t.model_copy(update={"nct_id": f"SYN-{i:08x}", "source": "synthetic", "overall_status": None,
                                 "why_stopped": None}).model_dump(mode="json")
            for i, t in enumerate(x for x in trials if x.nct_id not in phase_one)][:n]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minilm-seeds", type=int, nargs="+", default=[40, 41, 42])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--skip-minilm", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = run_evaluation(EvalOptions(real_train=str(TOP / "phase_I_train.csv"),
                                            real_test=str(TOP / "phase_I_test.csv"), out=Path(tmp) / "tfidf"))
        seconds = time.perf_counter() - start
        real = result["training_sets"]["real"]
        print_table(f"TF-IDF + LR, TOP phase I (train 1,044, test 627), seeds 40-42: {seconds:.1f} s (target < 60 s)",
                    ["metric", "ours (real only, mean ± std)", "HINT phase I (published)"],
                    [[m, f"{real[m]['mean']:.3f} ± {real[m]['std']:.3f}", HINT_PHASE_I.get(m, "-")]
                     for m in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")])
        if args.skip_minilm:
            return
        synthetic = stand_in(Path(tmp) / "synthetic.jsonl", 1000)
        start = time.perf_counter()
        minilm = run_evaluation(EvalOptions(
            real_train=str(TOP / "phase_I_train.csv"), real_valid=str(TOP / "phase_I_valid.csv"),
            real_test=str(TOP / "phase_I_test.csv"), synthetic=str(synthetic), classifier="transformer",
            max_length=256, epochs=args.epochs, batch_size=8, learning_rate=5e-5, seeds=args.minilm_seeds,
            out=Path(tmp) / "minilm", n_boot=300), progress=lambda m: print("  " + m, file=sys.stderr, flush=True))
        seconds = time.perf_counter() - start
        rows = [[name, minilm["sizes"][name]] + [f"{v[m]['mean']:.3f} ± {v[m]['std']:.3f}" for m in ("roc_auc", "pr_auc", "f1")]
                for name, v in minilm["training_sets"].items()]
        print_table(f"MiniLM grid, max length 256, {args.epochs} epoch(s), seeds {args.minilm_seeds}: "
                    f"{seconds / 60:.1f} min, peak RSS {peak_rss_mib():.0f} MiB (target < 20 min for 3 seeds)",
                    ["training set", "trials", "roc_auc", "pr_auc", "f1"], rows)
        boot = minilm.get("bootstrap_hybrid_minus_real", {})
        if boot:
            print("\nhybrid - real (stand-in synthetic):", json.dumps({k: round(v["difference"], 3) for k, v in boot.items()}))


if __name__ == "__main__":
    main()
