"""One learnt score over all the critic's calibrated scores, measured on the grounding split alone (issue 20):
how calibration version 7 (`tools.knowledge.joint`) was chosen, and what it gives against version 6.

The calibrated gate rejects a trial where any of its ~13 scores falls below its own threshold (a
union of one-score rules, `tools.knowledge.calibration.allocate_scores`, versions 5-6). A union cannot weigh two
scores that are each only a little low: a swapped section often lowers several coherence scores at
once without pushing any past its threshold. This bench fits one classifier on the score vectors
(real grounding trials against their spoiled copies, as the calibration makes them), cross-fitted
by trial (a trial and its spoiled copies in the same fold), and reads its out-of-fold scores:
- each model's share of every spoiled kind caught at its 2%, 3% and 5% quantile of real trials;
- the same with the gate (calibration version 6) kept beside it, the joint score given what the gate
  leaves of the 5% budget, and with every other score at its floor quantile (0.1%) instead;
- an additive model (each score through its own spline, then a logistic regression), measured and not
  shipped (RESULTS.md, "The joint score's form"): level with the logistic model;
- the shipped allocation (version 7, `tools.knowledge.calibration.allocate_budget`: the logistic
  model without missing-score indicators; the scores one by one spend the part of the budget, of 0%,
  20%, ... 100%, that with the joint score on the rest catches the most; cross-fitted to the budget).
Nothing outside the grounding split is read: whether to ship a joint score is decided on these figures.

    python benchmarks/bench_joint_score.py --store STORE [--cache scores.npz]

Run with SYNTHTRIALS_EMBEDDING_PRECISION=float32 to compare with RESULTS.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

FOLDS = 5
QUANTILES = (0.02, 0.03, 0.05)


def score_arrays(store_path: str, cache: Path | None):
    if cache and cache.exists():
        saved = np.load(cache, allow_pickle=True)
        return saved["real"].item(), saved["spoiled"].item(), saved["spoiled_of"].item()
    from synthtrials.tools.knowledge.calibration import build_knowledge, calibration_scores
    from synthtrials.tools.store.protocol import default_grounding_splits
    from synthtrials.tools.store.trial_store import open_store

    store = open_store(store_path, create=False)
    knowledge = build_knowledge(store, default_grounding_splits(store))
    real, spoiled, spoiled_of = calibration_scores(knowledge)
    if cache:
        np.savez(cache, real=np.asarray(real, dtype=object), spoiled=np.asarray(spoiled, dtype=object),
                 spoiled_of=np.asarray(spoiled_of, dtype=object))
    return real, spoiled, spoiled_of


def models():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import SplineTransformer, StandardScaler

    return {
        "logistic": lambda: make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                                          LogisticRegression(C=1.0, max_iter=2000)),
        # a missing score's indicator learns that trials without eligibility are real (no spoiled copy lacks it)
        "logistic with missing-score indicators": lambda: make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True), StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)),
        # an additive model: each score through its own cubic spline (knots at its quantiles), then one logistic
        # regression; nonlinear per score like the trees, still a sum of per-score parts (measured, not shipped)
        "logistic over per-score splines (4 knots)": lambda: make_pipeline(
            SimpleImputer(strategy="median"), SplineTransformer(n_knots=4, degree=3, knots="quantile",
                                                                extrapolation="linear"),
            StandardScaler(), LogisticRegression(C=0.1, max_iter=5000)),
        "boosted trees": lambda: HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                                                min_samples_leaf=40, random_state=0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--cache", type=Path, default=None, help="keep the scores here (scoring takes about a minute)")
    parser.add_argument("--halves", type=int, default=10, help="random halves: allocated on one, judged on the other (0: none)")
    args = parser.parse_args()

    from synthtrials.tools.knowledge.calibration import (
        _columns,
        _rejected,
        allocate_budget,
        allocate_scores,
        copy_sources,
        resampled,
    )

    real, spoiled, spoiled_of = score_arrays(args.store, args.cache)
    names = sorted(n for n, v in real.items() if np.isfinite(v).any())
    kinds = list(spoiled)
    rows = len(real[names[0]])
    fold_of = np.random.default_rng(0).permutation(rows) % FOLDS
    x_real = _columns(real, names)
    x_kind = {k: _columns(spoiled[k], names) for k in kinds}
    source = copy_sources(spoiled_of)  # each spoiled row's real trial

    _, thresholds, gate_rate, gate_cf = allocate_scores(real, spoiled, spoiled_of)
    gate_real = _rejected(real, thresholds)
    gate_kind = {k: _rejected(spoiled[k], thresholds) for k in kinds}
    print(f"scores: {', '.join(names)}")
    print(f"\n| model | quantile | real rejected | {' | '.join(kinds)} |")
    print("|---|---|---|" + "---|" * len(kinds))
    print(f"| the gate (version 6) | - | {gate_rate:.1%} ({gate_cf:.1%} cross-fitted) | "
          + " | ".join(f"{gate_kind[k].mean():.1%}" for k in kinds) + " |")
    shipped = allocate_budget(real, spoiled, spoiled_of)
    print(f"| **version 7 (shipped)**: the scores one by one {shipped.score_share:.0%} of the budget, the joint score "
          f"the rest | joint {shipped.quantiles['coherence_joint']:.1%} | {shipped.real_rejection:.1%} "
          f"({shipped.cross_fitted_rejection:.1%} cross-fitted) | "
          + " | ".join(f"{_rejected(shipped.spoiled[k], shipped.thresholds).mean():.1%}" for k in kinds) + " |")

    for label, make in models().items():
        oof_real = np.empty(rows)
        oof_kind = {k: np.empty(len(x_kind[k])) for k in kinds}
        for fold in range(FOLDS):
            train_real = fold_of != fold
            xs = [x_real[train_real]] + [x_kind[k][fold_of[source[k]] != fold] for k in kinds]
            ys = [np.zeros(train_real.sum())] + [np.ones(len(x)) for x in xs[1:]]
            # real trials weigh as much as all spoiled kinds together, each kind as much as another
            ws = [np.full(train_real.sum(), 1.0 / train_real.sum())] + [np.full(len(x), 1.0 / (len(kinds) * len(x)))
                                                                          for x in xs[1:]]
            model = make()
            weights = np.concatenate(ws) * len(np.concatenate(ws))
            fit_params = ({"sample_weight": weights} if not hasattr(model, "steps")
                          else {f"{model.steps[-1][0]}__sample_weight": weights})
            model.fit(np.vstack(xs), np.concatenate(ys), **fit_params)
            # the joint score: high is real-like, as every other score
            oof_real[~train_real] = model.predict_proba(x_real[~train_real])[:, 0]
            for k in kinds:
                held = fold_of[source[k]] == fold
                oof_kind[k][held] = model.predict_proba(x_kind[k][held])[:, 0]
        for q in QUANTILES:
            limit = np.quantile(oof_real, q)
            print(f"| {label} | {q:.0%} | {(oof_real < limit).mean():.1%} | "
                  + " | ".join(f"{(oof_kind[k] < limit).mean():.1%}" for k in kinds) + " |")
        # beside the gate: the joint score's threshold raised until the union spends the 5% budget
        order = np.sort(oof_real)
        best = None
        for limit in order:
            union = gate_real | (oof_real < limit)
            if union.mean() > 0.05:
                break
            best = limit
        if best is not None:
            print(f"| the gate + {label} | union at 5% | {(gate_real | (oof_real < best)).mean():.1%} | "
                  + " | ".join(f"{(gate_kind[k] | (oof_kind[k] < best)).mean():.1%}" for k in kinds) + " |")
        floors = {n: float(np.nanquantile(real[n], 0.001)) for n in names}
        floor_real = _rejected(real, floors)
        floor_kind = {k: _rejected(spoiled[k], floors) for k in kinds}
        best = None
        for limit in order:
            if (floor_real | (oof_real < limit)).mean() > 0.05:
                break
            best = limit
        if best is not None:
            print(f"| each score's 0.1% floor + {label} | union at 5% | {(floor_real | (oof_real < best)).mean():.1%} | "
                  + " | ".join(f"{(floor_kind[k] | (oof_kind[k] < best)).mean():.1%}" for k in kinds) + " |")


    # versions 6 and 7 allocated on one random half of the grounding trials (with their spoiled copies) and
    # judged on the other half: what the budget is worth on trials the calibration did not see
    if args.halves < 1:
        return
    rates: dict[str, list[list[float]]] = {"version 6": [], "version 7": []}
    shares = []
    for half in range(args.halves):
        order = np.random.default_rng(100 + half).permutation(rows)
        seen, unseen = (resampled(real, spoiled, spoiled_of, np.sort(part)) for part in np.array_split(order, 2))
        _, limits, _, _ = allocate_scores(*seen)
        rates["version 6"].append([_rejected(unseen[0], limits).mean()]
                                  + [_rejected(unseen[1][k], limits).mean() for k in kinds])
        budget = allocate_budget(*seen)
        shares.append(budget.score_share)

        def judged(scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return scores | {"coherence_joint": budget.joint.values(_columns(scores, budget.joint.names))}

        rates["version 7"].append([_rejected(judged(unseen[0]), budget.thresholds).mean()]
                                  + [_rejected(judged(unseen[1][k]), budget.thresholds).mean() for k in kinds])
    print(f"\n{args.halves} random halves, allocated on one and judged on the other (mean ± std); version 7's "
          f"scores one by one spent {', '.join(f'{s:.0%}' for s in shares)} of the budget")
    print(f"\n| allocation | real rejected | {' | '.join(kinds)} |")
    print("|---|---|" + "---|" * len(kinds))
    for label, values in rates.items():
        table = np.asarray(values)
        print(f"| {label} | " + " | ".join(f"{m:.1%} ± {d:.1%}" for m, d in zip(table.mean(axis=0), table.std(axis=0)))
              + " |")


if __name__ == "__main__":
    main()
