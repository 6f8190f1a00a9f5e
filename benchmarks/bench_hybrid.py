"""The central experiment: do synthetic trials improve outcome prediction on TOP phase I?

Real, synthetic and hybrid (real + synthetic) training sets; TF-IDF + logistic regression over 3
seeds and the fine-tuned MiniLM over 1 seed (by default); at 100% of the real training data and in
the low-resource regime (10%, 25%, 50% of it, stratified by label, the same seeds), where
label-conditioned augmentation is known to help most (Kumar et al. 2020; Anaby-Tavor et al. 2020).
Test: phase_I_test; validation (thresholds, early stopping): phase_I_valid. The paired bootstrap
over the test trials gives the 95% CI of hybrid - real (ROC-AUC, PR-AUC). The leakage guard of
`evaluate` runs first: a synthetic set grounded on a validation or test trial is refused.

Below a fraction of the real data, "real duplicated" is that fraction grown to the hybrid set's size
by repeating its trials (more rows, nothing new): what the hybrid must beat to add anything. A run
grounded on all of train and scored with part of it is labelled as such; a run made with
`generate --ground-sample F` (grounding.json) is scored like for like: every real arm is exactly its
grounding sample. The utility ladder (evals.ladder: shuffled, plan_only, echo controls of the synthetic
set's size from the grounding trials) is a second table: TF-IDF always, MiniLM with --minilm-ladder. A third
table reads the low-resource rows against the same controls: each share of real trials plus shuffled,
plan_only and echo instead of the synthetic set (three more fits per share and seed).

The table goes to benchmarks/RESULTS.md (its "Central experiment" section is replaced), whatever
the sign of the differences.

    python benchmarks/bench_hybrid.py --synthetic RUN_DIR [--data ../shared/data/top] [--minilm-seeds 40]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, TOP
from synthtrials.evals.data import labels_of
from synthtrials.evals.experiment import EvalOptions, Evaluation
from synthtrials.evals.ladder import RUNGS, controls, duplicated
from synthtrials.evals.metrics import binary_metrics, paired_bootstrap
from synthtrials.evals.results import LADDER_CONTROLS, LadderMetrics
from synthtrials.tools.records.eligibility import first_drug
from synthtrials.tools.seeds import stream

FRACTIONS = (0.1, 0.25, 0.5, 1.0)
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
START, END = "<!-- bench_hybrid:start -->", "<!-- bench_hybrid:end -->"


def ci(b: dict) -> str:
    return f"{b['difference']:+.3f} [{b['ci_low']:+.3f}, {b['ci_high']:+.3f}]"


def grid(evaluation: Evaluation, classifier: str, seeds: list[int], fractions: tuple[float, ...], say,
         with_controls: bool = False) -> tuple[list[list[str]], list[list[str]]]:
    """The hybrid table's rows and, with `with_controls`, the low-resource ladder's rows: below 100%, the same
    share of real trials plus each ladder control (drawn from all of train, which the writer grounded on)."""
    split = evaluation.split(seeds[0])
    synthetic = evaluation.synthetic
    y = np.asarray(labels_of(split.test))
    ladder_sets = {seed: controls(synthetic, split.train, seed) for seed in seeds} if with_controls else {}
    rows, low_rows = [], []
    synthetic_only = []
    for seed in seeds:
        say(f"{classifier} seed {seed}: synthetic only ({len(synthetic)})")
        synthetic_only.append(binary_metrics(y, *evaluation.fit_predict(classifier, synthetic, split.valid,
                                                                         split.test, seed)))
    arm = evaluation.real_arm
    if arm is not None:  # like for like: the classifier's real trials are the writer's grounding sample
        fractions = (1.0,)
    for fraction in fractions:
        real_p, hybrid_p, real_m, hybrid_m, dup_m = [], [], [], [], []
        control_p: dict[str, list[np.ndarray]] = {name: [] for name in LADDER_CONTROLS}
        control_m: dict[str, list[dict]] = {name: [] for name in LADDER_CONTROLS}
        with_rungs = fraction < 1 and arm is None and bool(ladder_sets)
        for seed in seeds:
            train = split.train
            if fraction < 1:
                train, _ = train_test_split(train, train_size=fraction, stratify=labels_of(train), random_state=seed)
            say(f"{classifier} seed {seed}: {fraction:.0%} real ({len(train)}), then + synthetic")
            real = evaluation.fit_predict(classifier, train, split.valid, split.test, seed)
            hybrid = evaluation.fit_predict(classifier, train + synthetic, split.valid, split.test, seed)
            real_p.append(real.proba)
            hybrid_p.append(hybrid.proba)
            real_m.append(binary_metrics(y, *real))
            hybrid_m.append(binary_metrics(y, *hybrid))
            if fraction < 1 or arm is not None:  # part of train: what the hybrid must beat
                grown = duplicated(train, len(train) + len(synthetic), stream(seed, "ladder", "duplicate", fraction))
                say(f"{classifier} seed {seed}: {fraction:.0%} real duplicated to {len(grown)}")
                dup_m.append(binary_metrics(y, *evaluation.fit_predict(classifier, grown, split.valid, split.test,
                                                                          seed)))
            for name in LADDER_CONTROLS if with_rungs else ():
                rung = ladder_sets[seed].sets[name]
                say(f"{classifier} seed {seed}: {fraction:.0%} real + {name} ({len(rung)})")
                made = evaluation.fit_predict(classifier, train + rung, split.valid, split.test, seed)
                control_p[name].append(made.proba)
                control_m[name].append(binary_metrics(y, *made))
        if with_rungs:
            for name in LADDER_CONTROLS:
                low_rows.append([classifier, f"{fraction:.0%}", name, f"{len(ladder_sets[seeds[0]].sets[name])}",
                                 f"{np.mean([m['roc_auc'] for m in control_m[name]]):.3f}",
                                 ci(paired_bootstrap(y, real_p, control_p[name], n_boot=1000)['roc_auc']),
                                 ci(paired_bootstrap(y, control_p[name], hybrid_p, n_boot=1000)['roc_auc'])])
        boot = paired_bootstrap(y, real_p, hybrid_p, n_boot=1000)

        def mean(values, metric):
            return f"{np.mean([v[metric] for v in values]):.3f}"

        if arm is not None:
            what = (f"{arm.ground_sample:.0%} grounding sample ({len(train)} of {arm.of}): writer and classifier "
                    "on the same trials")
        elif fraction < 1:
            what = f"classifier on {fraction:.0%} of train ({len(train)}); writer grounded on all of train"
        else:
            what = f"100% ({len(train)}): writer and classifier on all of train"
        rows.append([classifier, f"{len(seeds)}", what, mean(real_m, "roc_auc"),
                     mean(dup_m, "roc_auc") if dup_m else "", mean(hybrid_m, "roc_auc"),
                     ci(boot['roc_auc']), mean(real_m, "pr_auc"), mean(hybrid_m, "pr_auc"), ci(boot['pr_auc']),
                     mean(synthetic_only, "roc_auc") if fraction == 1 else ""])
    return rows, low_rows


def ladder_rows(classifier: str, ladder: LadderMetrics) -> list[list[str]]:
    """The ladder table's rows for one classifier (files split: one bootstrap over the seeds)."""
    if ladder.skipped:
        return [[classifier, f"skipped: {ladder.skipped}", "", "", "", "", ""]]
    rows = []
    for name in RUNGS:
        arm = ladder.arms[name]
        place = ladder.place.get(f"synthetic_minus_{name}")
        rows.append([classifier, name, f"{arm.n}", f"{arm.tstr.roc_auc.mean:.3f}",
                     f"{arm.hybrid.roc_auc.mean:.3f}", ci(arm.hybrid_minus_real["roc_auc"]),
                     ci(place["roc_auc"]) if place else ""])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--synthetic", required=True, help="a run folder (or JSONL of synthetic trials)")
    parser.add_argument("--data", default=str(TOP))
    parser.add_argument("--tfidf-seeds", type=int, nargs="+", default=[40, 41, 42])
    parser.add_argument("--minilm-seeds", type=int, nargs="+", default=[40])
    parser.add_argument("--minilm-fractions", type=float, nargs="+", default=[1.0],
                        help="fractions of the real training data for MiniLM (each costs two fine-tunings per seed)")
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--minilm-ladder", action="store_true",
                        help="the utility ladder for MiniLM too (8 more fine-tunings per seed)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    data = Path(args.data)
    start = time.perf_counter()

    def say(message: str) -> None:
        print(f"  [{time.perf_counter() - start:6.0f} s] {message}", file=sys.stderr, flush=True)

    common = dict(real_train=str(data / "phase_I_train.csv"), real_valid=str(data / "phase_I_valid.csv"),
                  real_test=str(data / "phase_I_test.csv"), synthetic=args.synthetic, out=ROOT / "benchmarks" / "out")
    tfidf = Evaluation(EvalOptions(**common, classifier="tfidf", seeds=args.tfidf_seeds))
    say("tfidf: utility ladder")
    tfidf.progress = say
    tfidf_ladder = tfidf.ladder()
    ladder = ladder_rows("tfidf", tfidf_ladder)
    rows, low_rows = grid(tfidf, "tfidf", args.tfidf_seeds, FRACTIONS, say, with_controls=not tfidf_ladder.skipped)
    if not args.skip_minilm:
        minilm = Evaluation(EvalOptions(**common, classifier="transformer", epochs=1, seeds=args.minilm_seeds))
        more, more_low = grid(minilm, "transformer", args.minilm_seeds, tuple(args.minilm_fractions), say,
                              with_controls=args.minilm_ladder and not tfidf_ladder.skipped)
        rows += more
        low_rows += more_low
        if args.minilm_ladder:
            minilm.progress = say
            ladder += ladder_rows("transformer", minilm.ladder())
    evaluation = tfidf
    header = ["classifier", "seeds", "real training data", "ROC-AUC real", "ROC-AUC real duplicated to hybrid size",
              "ROC-AUC hybrid", "hybrid - real ROC-AUC [95% CI]", "PR-AUC real", "PR-AUC hybrid",
              "hybrid - real PR-AUC [95% CI]", "ROC-AUC synthetic only"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    ladder_header = ["classifier", "rung", "trials", "ROC-AUC trained alone (TSTR)", "ROC-AUC real + rung",
                     "real + rung - real ROC-AUC [95% CI]", "TSTR synthetic - rung ROC-AUC [95% CI]"]
    ladder_lines = ["| " + " | ".join(ladder_header) + " |", "|" + "|".join("---" for _ in ladder_header) + "|"]
    ladder_lines += ["| " + " | ".join(row) + " |" for row in ladder]
    low_header = ["classifier", "real training data", "control added", "control trials", "ROC-AUC real + control",
                  "real + control - real ROC-AUC [95% CI]", "hybrid - (real + control) ROC-AUC [95% CI]"]
    low_lines = ["| " + " | ".join(low_header) + " |", "|" + "|".join("---" for _ in low_header) + "|"]
    low_lines += ["| " + " | ".join(row) + " |" for row in low_rows]
    low_table = ["", "The ladder below 100%: the same share of real trials plus each control instead of the synthetic "
                 "set (the controls drawn from all of train, which the writer grounded on; the hybrid's row above is "
                 "the synthetic rung). A low-resource lift that does not clear plan_only is the plan's; one that "
                 "clears echo adds more than restating the grounding data.", "", *low_lines] if low_rows else []
    arm = evaluation.real_arm
    grounding = (f"The run grounded on a {arm.ground_sample:.0%} sample of phase_I_train (grounding.json: {arm.trials} "
                 f"of {arm.of} trials): every real arm and the ladder's controls use exactly those trials (like for "
                 "like)." if arm is not None else
                 "The synthetic trials were grounded on all of phase_I_train, so the low-resource rows (classifier on "
                 "part of train, writer grounded on all of it) ask whether they carry the rest of train's signal to a "
                 "classifier that sees only part of it, beside the same real trials duplicated to the hybrid's size; "
                 "the 100% row is the like-for-like comparison.")
    leakage = evaluation.leakage
    test_drugs = {first_drug(t) for t in evaluation.test}
    covered = test_drugs & {first_drug(t) for t in evaluation.synthetic}
    table = "\n".join([
        f"`python benchmarks/bench_hybrid.py {' '.join(sys.argv[1:])}` ({time.perf_counter() - start:.0f} s): "
        f"{len(evaluation.synthetic)} synthetic trials ({sum(t.label == 1 for t in evaluation.synthetic)} labelled "
        f"success), leakage guard passed ({leakage.checked if leakage else 0} checked against phase_I_test and "
        f"phase_I_valid), field set {', '.join(evaluation.fields)}; test phase_I_test (627 trials of "
        f"{len(test_drugs)} first-listed drugs, {len(covered)} of which the synthetic set covers). {grounding}",
        "", *lines, "",
        "Utility ladder (evals.ladder): controls of the synthetic set's size drawn from the grounding trials. Above "
        "echo the writer adds knowledge; between plan_only and echo it echoes its grounding; at shuffled, no signal.",
        "", *ladder_lines, *low_table])
    print(table)
    if not args.no_write:
        section = f"{START}\n{table}\n{END}"
        text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: section, text, flags=re.DOTALL) \
            if START in text else text.rstrip() + "\n\n## Central experiment: hybrid vs real\n\n" + section + "\n"
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
