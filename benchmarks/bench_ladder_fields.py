"""Where a synthetic set's outcome signal sits: the utility ladder (evals/ladder.py, the same controls and seeds as
`evaluate`) trained on each rung rendered with every field, without the eligibility criteria, and with the criteria
alone; plus the synthetic trials with their criteria replaced by those of their `plan_only` control (a real grounding
trial of the same drug, any label) or their `echo` control (the same drug and label). TF-IDF, scored on the real test
set, like for like (the real training data's field set).

    python benchmarks/bench_ladder_fields.py --run runs/v6_rev3_s0 [--run ...] [--seeds 40 41 42]

Reading it: if the synthetic rows without criteria match the controls' and the rows with the writer's criteria fall
below them, the structured fields (the plan's drug, conditions, phase) carry the signal and the written criteria
dilute it; if real criteria put back on the synthetic trials restore the controls' level, the criteria are the gap."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import TOP, print_table
from sklearn.metrics import roc_auc_score

from synthtrials.evals.classifiers import TfidfClassifier
from synthtrials.evals.data import labels_of, load_labelled, load_synthetic
from synthtrials.evals.ladder import controls
from synthtrials.tools.records.fields import field_set
from synthtrials.tools.records.trial import Trial, render_for_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, action="append", required=True)
    parser.add_argument("--real-train", type=Path, default=TOP / "phase_I_train.csv")
    parser.add_argument("--real-test", type=Path, default=TOP / "phase_I_test.csv")
    parser.add_argument("--seeds", type=int, nargs="+", default=[40, 41, 42])
    args = parser.parse_args()
    train, test = load_labelled(args.real_train), load_labelled(args.real_test)
    fields = field_set(train)
    views = {"every field": sorted(fields), "no criteria": sorted(f for f in fields if f != "eligibility"),
             "criteria only": ["eligibility"]}
    test_labels = np.array(labels_of(test))
    test_texts = {name: [render_for_classifier(t, view) for t in test] for name, view in views.items()}

    def tstr(trials: list[Trial], view: str) -> float:
        model = TfidfClassifier().fit([render_for_classifier(t, views[view]) for t in trials], labels_of(trials))
        return float(roc_auc_score(test_labels, model.predict_proba(test_texts[view])[:, 1]))

    rows = []
    for run in args.run:
        synthetic = load_synthetic(run)
        scores: dict[tuple[str, str], list[float]] = {}
        for seed in args.seeds:
            sets = controls(synthetic, train, seed).sets
            sets["synthetic + plan_only's criteria"] = [t.model_copy(update={"eligibility": p.eligibility})
                                                        for t, p in zip(sets["synthetic"], sets["plan_only"])]
            sets["synthetic + echo's criteria"] = [t.model_copy(update={"eligibility": e.eligibility})
                                                   for t, e in zip(sets["synthetic"], sets["echo"])]
            for rung, trials in sets.items():
                for view in views if rung in ("synthetic", "plan_only", "echo", "shuffled") else ["every field"]:
                    scores.setdefault((rung, view), []).append(tstr(trials, view))
        n = len(controls(synthetic, train, args.seeds[0]).sets["synthetic"])
        for rung in ("shuffled", "plan_only", "echo", "synthetic", "synthetic + plan_only's criteria",
                     "synthetic + echo's criteria"):
            rows.append([str(run), n, rung, *(f"{np.mean(scores[(rung, v)]):.3f}" if (rung, v) in scores else "-"
                                              for v in views)])
    print_table("TSTR (TF-IDF, ROC-AUC, mean over seeds) of each rung by the fields it is rendered with",
                ["run", "trials per rung", "rung", *views], rows)


if __name__ == "__main__":
    main()
