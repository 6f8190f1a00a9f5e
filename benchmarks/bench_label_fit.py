"""`label_fit` (LAMBADA's filter) measured on data it was not tuned on: how many real trials it rejects and how
many trials with the wrong label it catches.

Fit and calibrated (out of fold, at most 5% of the grounding trials rejected) on TOP phase_I_train; measured on
phase_I_test with its true labels (false rejections) and with every label flipped (a writer that ignores its label
entirely: what the check can catch at best). Also a synthetic run's accepted trials, where one is given.

    python benchmarks/bench_label_fit.py [--synthetic RUN_DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import TOP, print_table  # noqa: E402
from synthtrials.evals.data import load_synthetic  # noqa: E402
from synthtrials.tools.knowledge.label_fit import LabelFit  # noqa: E402
from synthtrials.tools.readers import read_trials  # noqa: E402
from synthtrials.tools.records.fields import field_set  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", type=Path, help="a run folder or trials.jsonl")
    args = parser.parse_args()
    train = read_trials([TOP / "phase_I_train.csv"])
    test = read_trials([TOP / "phase_I_test.csv"])
    start = time.perf_counter()
    fit = LabelFit(field_set(train)).fit(train)
    seconds = time.perf_counter() - start
    rows = [["phase_I_train, out of fold (calibration)", fit.n_trials_, f"{fit.real_rejection_:.1%}"],
            ["phase_I_test, true labels (false rejections)", len(test),
             f"{1 - fit.agrees(test, [t.label for t in test]).mean():.1%}"],
            ["phase_I_test, every label flipped (caught)", len(test),
             f"{1 - fit.agrees(test, [1 - t.label for t in test]).mean():.1%}"]]
    if args.synthetic:
        synthetic = load_synthetic(args.synthetic)
        rows.append([f"synthetic {args.synthetic}", len(synthetic),
                     f"{1 - fit.agrees(synthetic, [t.label for t in synthetic]).mean():.1%}"])
    print_table(f"label_fit: TF-IDF + LR fit on phase_I_train ({seconds:.0f} s), threshold {fit.threshold_:.3f} "
                "(probability of the trial's own label)", ["trials", "n", "rejected"], rows)


if __name__ == "__main__":
    main()
