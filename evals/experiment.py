"""Does synthetic data help trial-outcome prediction? Real / synthetic / hybrid training sets over
seeds, a paired bootstrap for hybrid - real, and the sweeps (ratio, low-resource, generalisation,
label fidelity). Writes `metrics.json`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from sklearn.model_selection import train_test_split

from synthtrials.evals.classifiers import check_labels, make_classifier, resolve_encoder
from synthtrials.evals.data import labels_of, load_labelled, load_synthetic
from synthtrials.evals.metrics import aggregate, binary_metrics, paired_bootstrap
from synthtrials.tools.atomic import write_json_atomic
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.normalize import normalize_intervention
from synthtrials.tools.trial import Trial

SWEEPS = ("ratio", "low_resource", "generalisation", "fidelity")
RATIOS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
FRACTIONS = (0.1, 0.25, 0.5, 1.0)
Progress = Callable[[str], None]


class EvalOptions(BaseModel):
    real_train: str | None = None
    real_test: str | None = None
    real_valid: str | None = None
    real_pool: list[str] = Field(default_factory=list, description="split 'paper': the real files to split")
    labels: str | None = None
    synthetic: str | None = None
    classifier: Literal["tfidf", "transformer"] = "tfidf"
    model: str | None = None
    max_length: int = 256
    epochs: int = 3
    learning_rate: float = 5e-5
    batch_size: int = 8
    seeds: list[int] = Field(default_factory=lambda: [40, 41, 42])
    split: Literal["files", "paper"] = "files"
    sweeps: list[str] = Field(default_factory=list)
    n_boot: int = 1000
    out: Path


class Split(BaseModel):
    train: list[Trial]
    valid: list[Trial] | None
    test: list[Trial]


def first_drug(trial: Trial) -> str:
    return normalize_intervention(trial.interventions[0].name) if trial.interventions else ""


def paper_split(pool: list[Trial], seed: int, k: int = 3) -> Split:
    """The paper's split: real trials of the eligible interventions, stratified 60/20/20 per seed."""
    counts: dict[str, list[int]] = {}
    for t in pool:
        counts.setdefault(first_drug(t), [0, 0])[int(t.label)] += 1  # type: ignore[arg-type]
    eligible = {d for d, (f, s) in counts.items() if d and f >= k and s >= k}
    kept = [t for t in pool if first_drug(t) in eligible]
    if len(kept) < 10:
        raise ConfigError(f"only {len(kept)} real trials of eligible interventions: too few to split")
    labels = labels_of(kept)
    train, rest = train_test_split(kept, test_size=0.4, stratify=labels, random_state=seed)
    valid, test = train_test_split(rest, test_size=0.5, stratify=labels_of(rest), random_state=seed)
    return Split(train=train, valid=valid, test=test)


class Evaluation:
    def __init__(self, options: EvalOptions, progress: Progress | None = None,
                 step_progress: Callable[[str, int, int], None] | None = None) -> None:
        self.o = options
        self.progress = progress or (lambda message: None)
        self.step_progress = step_progress
        self._validate()

    def _validate(self) -> None:
        o = self.o
        if o.split == "files":
            if not o.real_train or not o.real_test:
                raise ConfigError("give --real-train and --real-test (or --split paper --real-pool FILES)")
            self.train = load_labelled(o.real_train, o.labels)
            self.test = load_labelled(o.real_test, o.labels)
            self.valid = load_labelled(o.real_valid, o.labels) if o.real_valid else None
            check_labels(labels_of(self.train), f"real training set {o.real_train}")
            check_labels(labels_of(self.test), f"test set {o.real_test}")
            if self.valid:
                check_labels(labels_of(self.valid), f"validation set {o.real_valid}")
        else:
            if not o.real_pool:
                raise ConfigError("--split paper needs --real-pool FILE (repeatable)")
            self.pool = [t for path in o.real_pool for t in load_labelled(path, o.labels)]
            seen: dict[str, Trial] = {}
            for t in self.pool:
                seen.setdefault(t.nct_id, t)
            self.pool = list(seen.values())
            paper_split(self.pool, o.seeds[0])
        self.synthetic = load_synthetic(o.synthetic) if o.synthetic else []
        if self.synthetic:
            check_labels(labels_of(self.synthetic), f"synthetic set {o.synthetic}")
        unknown = [s for s in o.sweeps if s not in SWEEPS]
        if unknown:
            raise ConfigError(f"unknown sweep(s) {', '.join(unknown)} (choose from {', '.join(SWEEPS)})")
        if o.sweeps and not self.synthetic:
            raise ConfigError("the sweeps need --synthetic")
        if not o.seeds:
            raise ConfigError("give at least one --seeds value")
        if o.classifier == "transformer":
            resolve_encoder(o.model or "bundled:all-MiniLM-L6-v2")

    def split(self, seed: int) -> Split:
        if self.o.split == "paper":
            return paper_split(self.pool, seed)
        return Split(train=self.train, valid=self.valid, test=self.test)

    def fit_predict(self, kind: str, train: list[Trial], valid: list[Trial] | None, test: list[Trial],
                    seed: int) -> np.ndarray:
        params: dict[str, Any] = {}
        if kind == "transformer":
            params = dict(max_length=self.o.max_length, epochs=self.o.epochs, learning_rate=self.o.learning_rate,
                          batch_size=self.o.batch_size)
        elif kind == "frozen":
            params = dict(max_length=self.o.max_length)
        model = make_classifier(kind, self.o.model, seed=seed, progress=self.step_progress, **params)
        model.fit(train, labels_of(train), valid, labels_of(valid) if valid else None)
        return model.predict_proba(test)[:, 1]

    def training_sets(self, split: Split) -> dict[str, list[Trial]]:
        sets: dict[str, list[Trial]] = {"real": split.train}
        if self.synthetic:
            sets["synthetic"] = self.synthetic
            sets["hybrid"] = split.train + self.synthetic
        return sets

    def run(self) -> dict[str, Any]:
        o = self.o
        per_seed: dict[str, list[dict[str, float]]] = {}
        probas: dict[str, list[np.ndarray]] = {}
        tests: list[np.ndarray] = []
        sizes: dict[str, int] = {}
        for seed in o.seeds:
            split = self.split(seed)
            y_test = np.asarray(labels_of(split.test))
            tests.append(y_test)
            runs = dict(self.training_sets(split))
            if o.classifier == "transformer":
                runs = {"no_fine_tuning": split.train, **runs}
            for name, train in runs.items():
                self.progress(f"seed {seed}: training on {name} ({len(train)} trials)")
                kind = "frozen" if name == "no_fine_tuning" else o.classifier
                proba = self.fit_predict(kind, train, split.valid, split.test, seed)
                per_seed.setdefault(name, []).append(binary_metrics(y_test, proba))
                probas.setdefault(name, []).append(proba)
                sizes[name] = len(train)
            sizes["test"] = len(split.test)
        result: dict[str, Any] = {
            "classifier": o.classifier, "model": o.model if o.classifier == "transformer" else None,
            "split": o.split, "seeds": o.seeds, "sizes": sizes,
            "training_sets": {name: aggregate(values) for name, values in per_seed.items()},
        }
        if "hybrid" in probas:
            if o.split == "files":
                result["bootstrap_hybrid_minus_real"] = paired_bootstrap(tests[0], probas["real"], probas["hybrid"],
                                                                         n_boot=o.n_boot)
            else:  # different test sets per seed: bootstrap each seed's pair, report per seed
                result["bootstrap_hybrid_minus_real"] = {
                    str(seed): paired_bootstrap(y, [a], [b], n_boot=o.n_boot)
                    for seed, y, a, b in zip(o.seeds, tests, probas["real"], probas["hybrid"])}
        sweeps: dict[str, Any] = {}
        for sweep in o.sweeps:
            self.progress(f"sweep: {sweep}")
            sweeps[sweep] = getattr(self, f"sweep_{sweep}")()
        if sweeps:
            result["sweeps"] = sweeps
        o.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(o.out / "metrics.json", result)
        return result

    # -- sweeps --------------------------------------------------------------------------------
    def _mean_metrics(self, runs: list[tuple[list[Trial], list[Trial] | None, list[Trial], int]]) -> dict[str, Any]:
        values = []
        for train, valid, test, seed in runs:
            values.append(binary_metrics(np.asarray(labels_of(test)), self.fit_predict(self.o.classifier, train, valid, test, seed)))
        agg = aggregate(values)
        return {"roc_auc": agg["roc_auc"], "pr_auc": agg["pr_auc"], "f1": agg["f1"], "train_size": len(runs[0][0])}

    def sweep_ratio(self) -> list[dict[str, Any]]:
        out = []
        for ratio in RATIOS:
            runs = []
            for seed in self.o.seeds:
                split = self.split(seed)
                want = int(round(ratio * len(split.train)))
                sample = random.Random(seed).sample(self.synthetic, min(want, len(self.synthetic)))
                runs.append((split.train + sample, split.valid, split.test, seed))
            out.append({"ratio": ratio, "synthetic_used": len(runs[0][0]) - len(self.split(self.o.seeds[0]).train),
                        **self._mean_metrics(runs)})
        return out

    def sweep_low_resource(self) -> list[dict[str, Any]]:
        out = []
        for fraction in FRACTIONS:
            for with_synthetic in (False, True):
                runs = []
                for seed in self.o.seeds:
                    split = self.split(seed)
                    train = split.train
                    if fraction < 1.0:
                        train, _ = train_test_split(train, train_size=fraction, stratify=labels_of(train), random_state=seed)
                    runs.append((train + (self.synthetic if with_synthetic else []), split.valid, split.test, seed))
                out.append({"real_fraction": fraction, "with_synthetic": with_synthetic, **self._mean_metrics(runs)})
        return out

    def sweep_generalisation(self) -> dict[str, Any]:
        """Train on the trials of half the interventions, test on the real trials of the other half."""
        real = self.pool if self.o.split == "paper" else self.train + self.test + (self.valid or [])
        drugs = sorted({first_drug(t) for t in real})
        results: dict[str, list[dict[str, float]]] = {"real": [], "hybrid": []}
        for seed in self.o.seeds:
            rng = random.Random(seed)
            seen = set(rng.sample(drugs, len(drugs) // 2))
            train = [t for t in real if first_drug(t) in seen]
            test = [t for t in real if first_drug(t) not in seen]
            synthetic = [t for t in self.synthetic if first_drug(t) in seen]
            y = np.asarray(labels_of(test))
            results["real"].append(binary_metrics(y, self.fit_predict(self.o.classifier, train, None, test, seed)))
            results["hybrid"].append(binary_metrics(y, self.fit_predict(self.o.classifier, train + synthetic, None, test, seed)))
        return {name: aggregate(values) for name, values in results.items()}

    def sweep_fidelity(self) -> dict[str, Any]:
        """A real-trained classifier scores the synthetic trials against their intended labels, and the reverse."""
        out: dict[str, list[dict[str, float]]] = {"real_model_on_synthetic": [], "synthetic_model_on_real_test": []}
        for seed in self.o.seeds:
            split = self.split(seed)
            y_syn = np.asarray(labels_of(self.synthetic))
            out["real_model_on_synthetic"].append(
                binary_metrics(y_syn, self.fit_predict(self.o.classifier, split.train, split.valid, self.synthetic, seed)))
            y_test = np.asarray(labels_of(split.test))
            out["synthetic_model_on_real_test"].append(
                binary_metrics(y_test, self.fit_predict(self.o.classifier, self.synthetic, None, split.test, seed)))
        return {name: aggregate(values) for name, values in out.items()}


def run_evaluation(options: EvalOptions, progress: Progress | None = None,
                   step_progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    return Evaluation(options, progress, step_progress).run()
