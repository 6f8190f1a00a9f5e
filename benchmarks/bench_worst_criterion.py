"""Is the worst criterion's typicality a fair score for trials of every length? Measured, not built.

The critic's `typicality_criterion` is the trial's worst criterion: its cosine to the closest real
criterion of the grounding split. The more criteria a trial has, the lower its worst one falls by
chance, so one threshold is lenient on short trials and strict on long ones (real TOP trials hold
1 to 100+ criteria). This bench scores the grounding split's own trials (leave-one-trial-out) and
two of the calibration's spoiled kinds (`foreign_sentence`: one sentence from outside medicine among
the criteria; `off_topic_criterion`: one real criterion of an unrelated trial), each scored without
its own trial and its donor, under five forms of the score, and reports how many spoiled trials each
form catches at the same share of real trials rejected:

- `min`: the worst criterion's similarity (today's score);
- `sidak`: the worst criterion's percentile among all real criteria, corrected for the number of
  criteria (1 - (1 - p)^n: the chance that the worst of n real criteria is as low);
- `min - median`: the worst criterion against the trial's own median criterion;
- `z`: the worst criterion in standard deviations of the trial's own criteria;
- `gap`: how far the worst criterion stands below the second worst.

Nothing outside the grounding split is read.

    python benchmarks/bench_worst_criterion.py --store STORE
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table  # noqa: E402

from synthtrials.tools.knowledge.calibration import build_knowledge, spoiled_with_donors  # noqa: E402
from synthtrials.tools.knowledge.domain import DomainKnowledge  # noqa: E402
from synthtrials.tools.knowledge.coherence import Excluded  # noqa: E402
from synthtrials.tools.records.trial import Trial  # noqa: E402
from synthtrials.tools.store.protocol import default_grounding_splits  # noqa: E402
from synthtrials.tools.store.trial_store import open_store  # noqa: E402

KINDS = ("foreign_sentence", "off_topic_criterion")
LEVELS = (0.01, 0.02, 0.03, 0.05)


def criterion_similarities(knowledge: DomainKnowledge, trial: Trial, exclude: Excluded) -> np.ndarray | None:
    """Each criterion's cosine to the closest real criterion (`exclude`'s own criteria masked)."""
    sections = knowledge._sections(trial, exclude)
    if not sections.texts.get("criterion"):
        return None
    return sections.sims("criterion", "criterion").max(axis=1)


def score_forms(best: np.ndarray, real_pool: np.ndarray) -> dict[str, float]:
    """The worst criterion under each form; lower is less typical."""
    n, worst = len(best), float(best.min())
    percentile = max(np.searchsorted(real_pool, worst) / len(real_pool), 1e-6)
    ordered = np.sort(best)
    return {"min": worst,
            "sidak": 1.0 - (1.0 - percentile) ** n,
            "min - median": worst - float(np.median(best)),
            "z": (worst - float(best.mean())) / (float(best.std()) + 1e-3),
            "gap": -(float(ordered[1] - ordered[0]) if n > 1 else 0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="an ingested store (its grounding split is read)")
    args = parser.parse_args()
    store = open_store(args.store)
    knowledge = build_knowledge(store, default_grounding_splits(store))
    real = [b for t in knowledge.trials
            if (b := criterion_similarities(knowledge, t, t.nct_id)) is not None and len(b)]
    pool = np.sort(np.concatenate(real))
    spoiled = {kind: [b for t, ex in pairs if (b := criterion_similarities(knowledge, t, ex)) is not None and len(b)]
               for kind, pairs in spoiled_with_donors(knowledge).items() if kind in KINDS}
    real_forms = [score_forms(b, pool) for b in real]
    spoiled_forms = {kind: [score_forms(b, pool) for b in bs] for kind, bs in spoiled.items()}
    counts = np.array([len(b) for b in real])
    worst = np.array([f["min"] for f in real_forms])
    print(f"{len(real)} real grounding trials with criteria (median {np.median(counts):.0f} criteria); "
          f"correlation of log(criteria) with the worst criterion's similarity: "
          f"{np.corrcoef(np.log(counts), worst)[0, 1]:.3f}; spoiled: "
          + ", ".join(f"{kind} {len(bs)}" for kind, bs in spoiled.items()))
    rows = []
    for form in real_forms[0]:
        values = np.array([f[form] for f in real_forms])
        row: list[object] = [form]
        for level in LEVELS:
            limit = np.quantile(values, level)
            row.append(" / ".join(f"{np.mean([f[form] < limit for f in spoiled_forms[kind]]):.1%}" for kind in KINDS))
        rows.append(row)
    print_table("spoiled grounding trials caught (foreign sentence / off-topic criterion) at each share of real "
                "trials rejected, the score alone",
                ["form"] + [f"{level:.0%} real rejected" for level in LEVELS], rows)


if __name__ == "__main__":
    main()
