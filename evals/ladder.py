"""The utility ladder: where a synthetic set stands between "no signal" and "restates its grounding data".

For a synthetic set of N trials, three controls of the same N, drawn from the grounding split alone
(the real training trials of the evaluation; never its validation or test trials), seeded per
evaluation seed (`tools.seeds` stream ``ladder``):

- ``shuffled``: the synthetic set with its labels permuted (text without outcome signal);
- ``plan_only``: per synthetic trial, a random grounding trial of the same first drug
  (`tools.records.eligibility.first_drug`), whatever its label, given the synthetic trial's label
  (what the sampling plan alone carries);
- ``echo``: per synthetic trial, a random grounding trial of the same drug and label (what a writer
  that restates its grounding data perfectly carries).

Synthetic trials whose drug has no grounding trial (or none of their label) cannot have an ``echo``;
they are counted and left out of the ladder, the synthetic rung included, so every rung has the same
N. Each rung is scored trained on it alone (TSTR) and on real + it (hybrid - real, paired bootstrap);
the writer's place is TSTR synthetic - plan_only and synthetic - echo, paired on the same test set.

Reading it: above ``echo`` the writer adds knowledge beyond its grounding; between ``plan_only``
and ``echo`` it echoes its grounding; at ``shuffled`` its trials carry no outcome signal.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from synthtrials.evals.data import labels_of
from synthtrials.evals.metrics import aggregate, binary_metrics, paired_bootstrap
from synthtrials.evals.results import (
    LADDER_CONTROLS,
    LadderArm,
    LadderMetrics,
    MetricSummaries,
)
from synthtrials.tools.records.eligibility import first_drug
from synthtrials.tools.records.trial import Trial
from synthtrials.tools.seeds import stream

#: the rungs scored, in the order the report draws them (lowest expected first)
RUNGS = (*LADDER_CONTROLS, "synthetic")


@dataclass
class Controls:
    """The ladder's training sets for one seed: the kept synthetic trials and the three controls."""

    sets: dict[str, list[Trial]]
    n_synthetic: int
    no_grounding_drug: int = 0
    no_grounding_label: int = 0
    left_out_example: str | None = None
    pool: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.sets["synthetic"])


def controls(synthetic: Sequence[Trial], grounding: Sequence[Trial], seed: int) -> Controls:
    """The ladder's sets for `synthetic`, drawn from `grounding` (real labelled trials) with evaluation seed `seed`."""
    by_drug: dict[str, list[Trial]] = defaultdict(list)
    by_drug_label: dict[tuple[str, int], list[Trial]] = defaultdict(list)
    for t in grounding:
        drug = first_drug(t)
        if drug is None or t.label is None:
            continue
        by_drug[drug].append(t)
        by_drug_label[(drug, int(t.label))].append(t)
    kept: list[Trial] = []
    no_drug: list[Trial] = []
    no_label: list[Trial] = []
    for t in synthetic:
        drug = first_drug(t)
        if drug is None or drug not in by_drug:
            no_drug.append(t)
        elif (drug, int(t.label)) not in by_drug_label:  # type: ignore[arg-type]
            no_label.append(t)
        else:
            kept.append(t)
    labels = labels_of(kept)
    permuted = list(labels)
    stream(seed, "ladder", "shuffled").shuffle(permuted)
    plan_rng, echo_rng = stream(seed, "ladder", "plan_only"), stream(seed, "ladder", "echo")
    sets = {
        "synthetic": kept,
        "shuffled": [t.model_copy(update={"label": y}) for t, y in zip(kept, permuted)],
        "plan_only": [plan_rng.choice(by_drug[first_drug(t)]).model_copy(update={"label": t.label})  # type: ignore[index]
                      for t in kept],
        "echo": [echo_rng.choice(by_drug_label[(first_drug(t), int(t.label))]) for t in kept],  # type: ignore[arg-type]
    }
    left = no_drug + no_label
    result = Controls(sets=sets, n_synthetic=len(synthetic), no_grounding_drug=len(no_drug),
                      no_grounding_label=len(no_label), left_out_example=left[0].nct_id if left else None,
                      pool=len(grounding))
    if no_drug:
        result.warnings.append(f"{len(no_drug)} of {len(synthetic)} synthetic trials have a first drug with no "
                               f"grounding trial (e.g. {no_drug[0].nct_id}): left out of the ladder")
    if no_label:
        result.warnings.append(f"{len(no_label)} of {len(synthetic)} synthetic trials have a drug with no grounding "
                               f"trial of their label, so no echo (e.g. {no_label[0].nct_id}): left out of the ladder")
    return result


def duplicated(trials: Sequence[Trial], size: int, rng: random.Random) -> list[Trial]:
    """`trials` duplicated up to `size` (all of them, then a seeded permutation of them, cycled): real data
    grown to a hybrid set's size with nothing new in it."""
    out = list(trials)
    order = list(trials)
    rng.shuffle(order)
    i = 0
    while len(out) < size and order:
        out.append(order[i % len(order)])
        i += 1
    return out


class PredictionLike(Protocol):
    proba: np.ndarray
    threshold: float


@dataclass
class SeedRun:
    """One evaluation seed: its split's training (grounding), validation and test trials, and its synthetic set."""

    seed: int
    train: list[Trial]
    valid: list[Trial] | None
    test: list[Trial]
    synthetic: list[Trial]
    real: PredictionLike | None = None  # the real-only prediction, when already made
    #: the predictions trained on all of `synthetic` alone and on train + it, when already made (reused for the
    #: synthetic rung when no synthetic trial is left out of the ladder)
    synthetic_alone: PredictionLike | None = None
    synthetic_hybrid: PredictionLike | None = None


FitPredict = Callable[[list[Trial], list[Trial] | None, list[Trial], int], PredictionLike]


def both_labels(trials: list[Trial]) -> bool:
    counts = np.bincount(np.asarray(labels_of(trials), dtype=int), minlength=2) if trials else np.zeros(2)
    return bool(counts.min() >= 2)


def _bootstrap(tests: list[np.ndarray], a: list[np.ndarray], b: list[np.ndarray], paired_test: bool,
               seeds: Sequence[int], n_boot: int) -> dict[str, Any]:
    """b - a: one bootstrap over seeds on a shared test set, else one per seed (paper split)."""
    if paired_test:
        return paired_bootstrap(tests[0], a, b, n_boot=n_boot)
    return {str(s): paired_bootstrap(y, [x], [z], n_boot=n_boot) for s, y, x, z in zip(seeds, tests, a, b)}


def run_ladder(runs: Sequence[SeedRun], fit_predict: FitPredict, *, shared_test: bool, n_boot: int = 1000,
               progress: Callable[[str], None] = lambda m: None) -> LadderMetrics:
    """Score every rung for every seed of `runs` with `fit_predict(train, valid, test, seed)`."""
    seeds = [r.seed for r in runs]
    tests = [np.asarray(labels_of(r.test)) for r in runs]
    per_seed = [controls(r.synthetic, r.train, r.seed) for r in runs]
    first = per_seed[0]
    result = LadderMetrics(n_synthetic=first.n_synthetic, n=first.n, no_grounding_drug=first.no_grounding_drug,
                           no_grounding_label=first.no_grounding_label, left_out_example=first.left_out_example,
                           pool=first.pool, warnings=list(first.warnings))
    for name in RUNGS:
        short = [s for s, c in zip(seeds, per_seed) if not both_labels(c.sets[name])]
        if short:
            result.skipped = (f"the {name.replace('_', ' ')} rung has fewer than 2 trials of a label on seed "
                              f"{short[0]} ({first.n} of {first.n_synthetic} synthetic trials have a drug and "
                              "label of the grounding split): no ladder")
            return result
    real: list[np.ndarray] = []
    for r in runs:
        if r.real is None:
            progress(f"ladder seed {r.seed}: real ({len(r.train)})")
            r.real = fit_predict(r.train, r.valid, r.test, r.seed)
        real.append(r.real.proba)
    tstr: dict[str, list[np.ndarray]] = {}
    for name in RUNGS:
        tstr_metrics, hybrid_metrics, hybrid = [], [], []
        for r, c, y in zip(runs, per_seed, tests):
            rung = c.sets[name]
            if name == "synthetic" and len(rung) == len(r.synthetic) and r.synthetic_alone and r.synthetic_hybrid:
                alone, both = r.synthetic_alone, r.synthetic_hybrid  # the evaluation's own synthetic and hybrid sets
            else:
                progress(f"ladder seed {r.seed}: {name} ({len(rung)}), then real + {name}")
                alone = fit_predict(rung, r.valid, r.test, r.seed)
                both = fit_predict(r.train + rung, r.valid, r.test, r.seed)
            tstr.setdefault(name, []).append(alone.proba)
            hybrid.append(both.proba)
            tstr_metrics.append(binary_metrics(y, alone.proba, alone.threshold))
            hybrid_metrics.append(binary_metrics(y, both.proba, both.threshold))
        result.arms[name] = LadderArm(
            n=len(per_seed[0].sets[name]), tstr=MetricSummaries.model_validate(aggregate(tstr_metrics)),
            hybrid=MetricSummaries.model_validate(aggregate(hybrid_metrics)),
            hybrid_minus_real=_bootstrap(tests, real, hybrid, shared_test, seeds, n_boot))
    for control in ("plan_only", "echo"):
        result.place[f"synthetic_minus_{control}"] = _bootstrap(tests, tstr[control], tstr["synthetic"], shared_test,
                                                                seeds, n_boot)
    return result
