"""Where the calibration with the cross-encoder spends its budget (issue 20, stop 49): the grounding spoils caught,
cross-fitted, at each part of the budget the scores spend one by one (`SCORE_SHARES`; the joint score the rest), for
four designs on the same scores of the same store: without the cross-encoder (calibration version 8), with it in
the joint score (what `store calibrate --cross-encoder` builds), with it on its own threshold only (the joint
score fitted without it), and two joint scores, one without it and one with it, the rest of the budget split
between them (the split that catches the most, in tenths; not built). The store must have been calibrated with `--cross-encoder` (its fold models score the
trials out of fold). No trial outside the grounding split is read.

    SYNTHTRIALS_EMBEDDING_PRECISION=float32 python benchmarks/bench_cross_encoder_allocation.py --store STORE

Cost on the 2-core CPU: about 3 minutes for phase_I_train (the scores), 2 more for the allocations.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    args = parser.parse_args()

    from synthtrials.tools.knowledge import calibration as cal
    from synthtrials.tools.knowledge.cross_encoder import CROSS_ENCODER
    from synthtrials.tools.knowledge.joint import JOINT
    from synthtrials.tools.store.protocol import default_grounding_splits
    from synthtrials.tools.store.trial_store import open_store

    start = time.perf_counter()
    store = open_store(args.store, create=False)
    splits = default_grounding_splits(store)
    knowledge = cal.build_knowledge(store, splits)
    if knowledge.cross_encoder is None:
        sys.exit(f"{args.store}: not calibrated with the cross-encoder (run `synthtrials store calibrate --cross-encoder`)")
    real, spoiled, spoiled_of = cal.calibration_scores(knowledge)

    def without(scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: values for name, values in scores.items() if name != CROSS_ENCODER}

    designs = {"without the cross-encoder": (without(real), {k: without(s) for k, s in spoiled.items()}, None),
               "the cross-encoder in the joint score (built)": (real, spoiled, None),
               "the cross-encoder on its own threshold only": (real, spoiled, CROSS_ENCODER)}
    rows = []
    for design, (scores, spoiled_scores, left_out) in designs.items():
        fit_real = {n: v for n, v in scores.items() if n != left_out}
        fit_spoiled = {k: {n: v for n, v in s.items() if n != left_out} for k, s in spoiled_scores.items()}
        _, joint_real, joint_kind = cal.cross_fitted_joint(fit_real, fit_spoiled, spoiled_of)
        with_joint = scores | {JOINT: joint_real}
        spoiled_joint = {k: s | {JOINT: joint_kind[k]} for k, s in spoiled_scores.items()}
        for share in cal.SCORE_SHARES:
            quantiles = cal.allocate_scores(scores, spoiled_scores, spoiled_of, share * 0.05)[0]
            quantiles[JOINT] = cal.joint_quantile(with_joint, quantiles, 0.05)
            thresholds = cal._thresholds_at(with_joint, quantiles)
            caught = {k: float(cal._rejected(s, thresholds).mean()) for k, s in spoiled_joint.items()}
            rows.append([design, f"{share:.0%}", f"{cal.cross_fitted_rejection(with_joint, quantiles):.1%}",
                         f"{np.mean(list(caught.values())):.1%}", *(f"{v:.1%}" for v in caught.values())])
    # two joint scores: the one without the cross-encoder and the one with it, the rest of the budget split between them
    _, plain_real, plain_kind = cal.cross_fitted_joint(without(real), {k: without(s) for k, s in spoiled.items()},
                                                       spoiled_of)
    _, with_real, with_kind = cal.cross_fitted_joint(real, spoiled, spoiled_of)
    both = real | {"joint_without": plain_real, "joint_with": with_real}
    both_spoiled = {k: s | {"joint_without": plain_kind[k], "joint_with": with_kind[k]} for k, s in spoiled.items()}
    for share in cal.SCORE_SHARES:
        quantiles = cal.allocate_scores(real, spoiled, spoiled_of, share * 0.05)[0]
        best = None
        for part in np.linspace(0.0, 1.0, 11):
            low, high = 0.0, 0.1
            while high - low > 1e-4:  # the highest level of the two joint quantiles within the budget
                middle = (low + high) / 2
                split = quantiles | {"joint_without": middle * part, "joint_with": middle * (1 - part)}
                low, high = (middle, high) if cal.cross_fitted_rejection(both, split) <= 0.05 else (low, middle)
            split = quantiles | {"joint_without": low * part, "joint_with": low * (1 - part)}
            thresholds = cal._thresholds_at(both, split)
            caught = {k: float(cal._rejected(s, thresholds).mean()) for k, s in both_spoiled.items()}
            if best is None or np.mean(list(caught.values())) > best[0]:
                best = (float(np.mean(list(caught.values()))), part, cal.cross_fitted_rejection(both, split), caught)
        mean, part, rejected, caught = best
        rows.append([f"two joint scores (the one without it: {part:.0%} of their part)", f"{share:.0%}",
                     f"{rejected:.1%}", f"{mean:.1%}", *(f"{v:.1%}" for v in caught.values())])
    print_table(f"python benchmarks/bench_cross_encoder_allocation.py --store {args.store}: grounding spoils caught "
                f"({len(knowledge.trials)} {'/'.join(splits)} trials; {time.perf_counter() - start:.0f} s)",
                ["design", "budget the scores spend one by one", "real rejected, cross-fitted", "mean over kinds",
                 *(f"{kind} caught" for kind in spoiled)], rows)


if __name__ == "__main__":
    main()
