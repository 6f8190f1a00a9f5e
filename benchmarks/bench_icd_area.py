"""Would an ICD-10 chapter "area" score catch swapped conditions the critic misses? (issue 20; measured, not built)

TOP's CSVs carry each trial's ICD-10 codes (`icdcodes`), which the reader does not keep. Their chapters
(the code's letter; D00-D49 counted with the neoplasms) are a coarse label of a trial's disease area that
could generalise to conditions phase_I_train never saw. This bench learns, from phase_I_train alone, two
one-vs-rest logistic regressions over the store's profiles (`CoherenceModel`: the unit centroids of a
trial's criteria and of its conditions): criteria -> chapters and conditions -> chapters. A trial's score
is how likely its criteria make the chapters its conditions point to (the mean log-probability, weighted by
the conditions' predicted chapters). Real grounding trials are scored out of fold (5 folds); their
quantiles set the thresholds.

Printed: the score alone on grounding swaps (another grounding trial's conditions, centroid similarity
< 0.35), and on bench_critic's phase II trials (the same seeded 150 positives and swapped conditions):
real rejected, swaps caught alone, and caught by the critic with and without the score.

    python benchmarks/bench_icd_area.py --store STORE

Run with SYNTHTRIALS_EMBEDDING_PRECISION=float32 to compare with RESULTS.md.
"""

from __future__ import annotations

import ast
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_critic import doc_sentences, phase2_positives, spoil  # noqa: E402
from common import TOP, critic_rejects, phase2_arguments, print_table  # noqa: E402

QUANTILES = (0.01, 0.02, 0.03, 0.05)


def chapter(code: str) -> str:
    """An ICD-10 code's chapter letter; D00-D49 (neoplasms) counted with C."""
    if code[:1] == "D" and code[1:3].isdigit():
        return "C" if int(code[1:3]) < 50 else "D"
    return code[:1]


def chapters_of(path: Path) -> dict[str, set[str]]:
    csv.field_size_limit(16 * 1024 * 1024)
    with path.open(newline="") as handle:
        return {row["nctid"]: {chapter(c) for s in ast.literal_eval(row["icdcodes"] or "[]") for c in ast.literal_eval(s)}
                for row in csv.DictReader(handle)}


def main() -> None:
    args = phase2_arguments(__doc__)

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from synthtrials.tools.knowledge.calibration import build_knowledge
    from synthtrials.tools.knowledge.coherence import unit_centroid
    from synthtrials.tools.store.protocol import default_grounding_splits
    from synthtrials.tools.store.trial_store import open_store

    store = open_store(args.store, create=False)
    splits = default_grounding_splits(store)
    knowledge = build_knowledge(store, splits)
    model = knowledge.coherence
    icd = chapters_of(TOP / "phase_I_train.csv")
    names = sorted({c for i in model.ids for c in icd.get(i, ())})
    labels = np.array([[c in icd.get(i, ()) for c in names] for i in model.ids], dtype=int)

    def fit(x: np.ndarray, y: np.ndarray) -> list:
        return [LogisticRegression(C=4.0, max_iter=2000).fit(x, y[:, j]) if 0 < y[:, j].sum() < len(y) else None
                for j in range(y.shape[1])]

    def proba(models: list, x: np.ndarray) -> np.ndarray:
        return np.column_stack([m.predict_proba(x)[:, 1] if m is not None else np.zeros(len(x)) for m in models])

    def score(by_conditions: np.ndarray, by_criteria: np.ndarray) -> np.ndarray:
        weights = by_conditions / by_conditions.sum(axis=1, keepdims=True)
        return (weights * np.log(np.clip(by_criteria, 1e-4, 1.0))).sum(axis=1)

    criteria_oof, conditions_oof = np.zeros(labels.shape), np.zeros(labels.shape)
    for kept, held in KFold(5, shuffle=True, random_state=0).split(model.criteria):
        criteria_oof[held] = proba(fit(model.criteria[kept], labels[kept]), model.criteria[held])
        conditions_oof[held] = proba(fit(model.conditions[kept], labels[kept]), model.conditions[held])
    real = score(conditions_oof, criteria_oof)
    rng = np.random.default_rng(args.seed)
    similar = model.conditions @ model.conditions.T
    donors = [rng.choice(np.flatnonzero(similar[i] < 0.35)) for i in range(len(model.ids))]
    swapped = np.array([score(conditions_oof[j:j + 1], criteria_oof[i:i + 1])[0] for i, j in enumerate(donors)])
    limits = {q: float(np.quantile(real, q)) for q in QUANTILES}

    criteria_model, conditions_model = fit(model.criteria, labels), fit(model.conditions, labels)
    positives, why_stopped = phase2_positives(store, args.n, args.seed)
    kinds = spoil(positives, args.seed, why_stopped, doc_sentences(), store.embeddings.embed_array)
    embed = store.embeddings.embed_array

    def scores(trials: list) -> np.ndarray:
        out = []
        for trial in trials:
            texts = (list(trial.eligibility.inclusion) + list(trial.eligibility.exclusion)) if trial.eligibility else []
            criteria = unit_centroid(embed(texts)) if texts else None
            conditions = unit_centroid(embed(list(trial.conditions))) if trial.conditions else None
            out.append(np.inf if criteria is None or conditions is None else
                       score(proba(conditions_model, conditions[None]), proba(criteria_model, criteria[None]))[0])
        return np.array(out)

    gate = critic_rejects(store, splits, knowledge)
    real_ii, swapped_ii = scores(positives), scores(kinds["unrelated_conditions"])
    gate_real, gate_swapped = gate(positives), gate(kinds["unrelated_conditions"])
    rows = []
    for q, limit in limits.items():
        rows.append([f"{q:.0%}", f"{(swapped < limit).mean():.1%}", f"{(real_ii < limit).mean():.1%}",
                     f"{((real_ii < limit) | gate_real).mean():.1%} ({gate_real.mean():.1%})",
                     f"{(swapped_ii < limit).mean():.1%}",
                     f"{((swapped_ii < limit) | gate_swapped).mean():.1%} ({gate_swapped.mean():.1%})"])
    print_table(f"python benchmarks/bench_icd_area.py --store {args.store} ({len(model.ids)} grounding trials, "
                f"{len(names)} chapters)",
                ["threshold: quantile of real grounding trials (out of fold)", "grounding swaps caught",
                 "phase II real rejected", "phase II real rejected with the critic (critic alone)",
                 "phase II swapped conditions caught", "with the critic (critic alone)"], rows)


if __name__ == "__main__":
    main()
