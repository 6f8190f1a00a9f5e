"""Does synthetic data help trial-outcome prediction? Real / synthetic / hybrid training sets over
seeds, a paired bootstrap for hybrid - real, and the sweeps (ratio, low-resource, generalisation,
label fidelity). Writes `metrics.json`.
"""

from __future__ import annotations

import hashlib
import random
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import AliasChoices, BaseModel, Field
from sklearn.model_selection import train_test_split
from synthtrials.evals.classifiers import (
    DEFAULT_ENCODER,
    EncoderFeatureCache,
    TfidfClassifier,
    check_labels,
    make_classifier,
    resolve_encoder,
)
from synthtrials.evals.data import labels_of, load_labelled, load_synthetic
from synthtrials.evals.decontamination import DecontaminationReport, decontaminate
from synthtrials.evals.ladder import SeedRun, both_labels, controls, duplicated, run_ladder
from synthtrials.evals.leakage import (
    LeakageReport,
    drop_grounded_on,
    named_grounding,
    guard,
)
from synthtrials.evals.metrics import aggregate, binary_metrics, paired_bootstrap
from synthtrials.evals.results import (
    LADDER_CONTROLS,
    EvaluationMetrics,
    LadderMetrics,
    RealArm,
    TrainingSetMetrics,
)
from synthtrials.tools.atomic import write_json_atomic
from synthtrials.tools.records.eligibility import eligible_trials, first_drug
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.records.fields import field_set
from synthtrials.tools.progress import SayFn, StageProgressFn
from synthtrials.tools.run_folder import GROUNDING_FILE, METRICS_FILE, read_run_grounding, run_dir_of
from synthtrials.tools.records.trial import Trial, render_for_classifier
from synthtrials.tools.seeds import stream

#: a sweep is one `Evaluation.sweep_<name>` method returning its JSON-able result (metrics.json "sweeps")
SWEEP_PREFIX = "sweep_"

RATIOS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
FRACTIONS = (0.1, 0.25, 0.5, 1.0)


class EvalOptions(BaseModel):
    real_train: str | None = None
    real_test: str | None = None
    real_valid: str | None = None
    real_pool: list[str] = Field(default_factory=list, description="split 'paper': the real files to split")
    labels: str | None = None
    synthetic: str | None = None
    classifier: Literal["tfidf", "transformer"] = "tfidf"
    model: str | None = None
    max_length: int = Field(128, description="transformer: tokens per trial; 128 is the shortest whose ROC-AUC stays "
                            "within 0.01 of 256 on TOP phase I (benchmarks/RESULTS.md, bench_evals.py)")
    frozen_layers: int | None = Field(5, description="transformer: freeze the embeddings and the lower N layers "
                                      "(their outputs computed once per text); None fine-tunes every layer")
    epochs: int = 3
    learning_rate: float = 5e-5
    batch_size: int = 8
    seeds: list[int] = Field(default_factory=lambda: [40, 41, 42])
    split_mode: Literal["files", "paper"] = Field("files", validation_alias=AliasChoices("split_mode", "split"))
    provenance_check: bool = Field(True, description="refuse synthetic trials without provenance")
    drop_contaminated: bool = Field(False, description="drop synthetic trials that reproduce a held-out trial "
                                    "(evals.decontamination) instead of refusing the set")
    sweeps: list[str] = Field(default_factory=list)
    ladder: bool | None = Field(None, description="the utility ladder (evals.ladder) with a synthetic set: None = on "
                                "for tfidf (seconds), off for transformer (8 more fine-tunings per seed): --ladder")
    n_boot: int = 1000
    out: Path


class SplitTrials(BaseModel):
    """The real trials of one evaluation split (`tools.records.splits.Split` names a store split)."""

    train: list[Trial]
    valid: list[Trial] | None
    test: list[Trial]


class Prediction(NamedTuple):
    """Test-set probabilities of the positive class and the decision threshold (chosen on the
    validation set where there is one): `binary_metrics(y, *prediction)`."""

    proba: np.ndarray
    threshold: float


def paper_split(pool: list[Trial], seed: int, k: int = 3) -> SplitTrials:
    """The paper's split: real trials of the eligible interventions, stratified 60/20/20 per seed."""
    eligible = {e.intervention for e in eligible_trials(pool, k)}
    kept = [t for t in pool if first_drug(t) in eligible]
    if len(kept) < 10:
        raise ConfigError(f"only {len(kept)} real trials of eligible interventions: too few to split")
    labels = labels_of(kept)
    train, rest = train_test_split(kept, test_size=0.4, stratify=labels, random_state=seed)
    valid, test = train_test_split(rest, test_size=0.5, stratify=labels_of(rest), random_state=seed)
    return SplitTrials(train=train, valid=valid, test=test)


class Evaluation:
    def __init__(self, options: EvalOptions, progress: SayFn | None = None,
                 step_progress: StageProgressFn | None = None) -> None:
        self.o = options
        self.progress = progress or (lambda message: None)
        self.step_progress = step_progress
        self._validate()

    def _validate(self) -> None:
        o = self.o
        if o.split_mode == "files":
            if not o.real_train or not o.real_test:
                raise ConfigError("give --real-train and --real-test (or --split paper --real-pool FILES)")
            self.train = load_labelled(o.real_train, o.labels)
            self.test = load_labelled(o.real_test, o.labels)
            self.valid = load_labelled(o.real_valid, o.labels) if o.real_valid else None
            check_labels(labels_of(self.train), f"real training set {o.real_train}")
            check_labels(labels_of(self.test), f"test set {o.real_test}")
            if self.valid:
                check_labels(labels_of(self.valid), f"validation set {o.real_valid}")
            self.real_arm = self._ground_sample()
        else:
            if not o.real_pool:
                raise ConfigError("--split paper needs --real-pool FILE (repeatable)")
            self.pool = [t for path in o.real_pool for t in load_labelled(path, o.labels)]
            seen: dict[str, Trial] = {}
            for t in self.pool:
                seen.setdefault(t.nct_id, t)
            self.pool = list(seen.values())
            paper_split(self.pool, o.seeds[0])
            self.real_arm = None
            if o.synthetic and (run := read_run_grounding(o.synthetic)) is not None and run.ground_sample is not None:
                raise ConfigError(f"{o.synthetic}: the run grounded on a sample of its grounding split "
                                  f"(ground_sample {run.ground_sample}); evaluate it with --split-mode files and "
                                  "the real training file it was sampled from")
        self.synthetic = load_synthetic(o.synthetic) if o.synthetic else []
        if self.synthetic:
            check_labels(labels_of(self.synthetic), f"synthetic set {o.synthetic}")
        self.leakage = self._guard()
        #: like for like: every classifier reads the fields most real training trials have
        self.fields = field_set(self.train if o.split_mode == "files" else self.pool)
        self.decontamination = self._decontaminate()
        unknown = [s for s in o.sweeps if s not in self.names_of_sweeps()]
        if unknown:
            raise ConfigError(f"unknown sweep(s) {', '.join(unknown)} (choose from {', '.join(self.names_of_sweeps())})")
        if o.sweeps and not self.synthetic:
            raise ConfigError("the sweeps need --synthetic")
        if not o.seeds:
            raise ConfigError("give at least one --seeds value")
        if o.classifier == "transformer":
            resolve_encoder(o.model or "bundled:all-MiniLM-L6-v2")
        self.ladder_skipped = self._ladder_check()

    def _ground_sample(self) -> RealArm | None:
        """With a synthetic run grounded on a sample (grounding.json `ground_sample`): the real training trials
        become exactly that sample (like for like), read before the leakage guard and the field set."""
        o = self.o
        run = read_run_grounding(o.synthetic) if o.synthetic else None
        if run is None or run.ground_sample is None:
            return None
        listed = set(run.trial_ids)
        kept = [t for t in self.train if t.nct_id in listed]
        source = str(run_dir_of(o.synthetic) / GROUNDING_FILE)  # type: ignore[arg-type]
        if not kept:
            raise ConfigError(f"{source}: none of the {len(listed)} grounding-sample trials is in --real-train "
                              f"{o.real_train}; give the real training file the run was grounded on")
        check_labels(labels_of(kept), f"grounding sample of {o.real_train} ({source})")
        arm = RealArm(ground_sample=run.ground_sample, ground_sample_seed=run.ground_sample_seed, trials=len(kept),
                      of=len(self.train), listed=len(listed), not_in_file=len(listed - {t.nct_id for t in kept}),
                      source=source)
        self.train = kept
        return arm

    def ladder_on(self) -> bool:
        """Whether `run` scores the utility ladder: asked (--ladder), else on for tfidf with a synthetic set."""
        o = self.o
        return bool(self.synthetic) and (o.ladder if o.ladder is not None else o.classifier == "tfidf")

    def _ladder_check(self) -> str | None:
        """Refuse (one line) a ladder asked for on synthetic trials without provenance; the reason it is skipped
        when it would have run by default."""
        o = self.o
        if o.ladder and not self.synthetic:
            raise ConfigError("--ladder needs --synthetic (a synthetic set to place on the ladder)")
        if not self.ladder_on() or self.leakage is None or not self.leakage.without_provenance:
            return None
        reason = (f"{o.synthetic}: {self.leakage.without_provenance} synthetic trials have no provenance, so what they "
                  "were grounded on is unknown and the ladder's controls (drawn from the grounding split) compare "
                  "nothing like for like")
        if o.ladder:
            raise ConfigError(f"{reason}; regenerate them with synthtrials, or leave out --ladder")
        return f"{reason} (--no-provenance-check): no ladder"

    def _guard(self) -> LeakageReport | None:
        """Refuse synthetic trials grounded on the test or validation trials (files mode)."""
        o = self.o
        if not self.synthetic:
            return None
        if o.split_mode == "paper":  # held-out trials differ per seed: dropped per seed in `synthetic_for`
            self.grounding = named_grounding(self.synthetic, read_run_grounding(o.synthetic))  # type: ignore[arg-type]
            return guard(self.synthetic, str(o.synthetic), {}, provenance_check=o.provenance_check)
        held_out = {f"test set {o.real_test}": {t.nct_id for t in self.test}}
        if self.valid:
            held_out[f"validation set {o.real_valid}"] = {t.nct_id for t in self.valid}
        return guard(self.synthetic, str(o.synthetic), held_out, provenance_check=o.provenance_check)

    def _decontaminate(self) -> DecontaminationReport | None:
        """Refuse (or with --drop-contaminated drop) synthetic trials whose text reproduces a test or validation
        trial, by thresholds calibrated on the real training trials against the same held-out trials.

        Paper mode: the held-out trials are every seed's validation and test trials, the calibration's training
        trials the pool's other trials."""
        o = self.o
        if not self.synthetic:
            return None
        from synthtrials.tools.store.embeddings import DEFAULT_EMBEDDING_MODEL, get_embeddings

        if o.split_mode == "files":
            train = self.train
            held_out = {f"test set {o.real_test}": self.test}
            if self.valid:
                held_out[f"validation set {o.real_valid}"] = self.valid
        else:
            splits = {seed: paper_split(self.pool, seed) for seed in o.seeds}
            held_out = {f"held-out trials of seed {seed}'s split": split.test + (split.valid or [])
                        for seed, split in splits.items()}
            held_ids = {t.nct_id for trials in held_out.values() for t in trials}
            train = [t for t in self.pool if t.nct_id not in held_ids]
        encoder = get_embeddings(DEFAULT_EMBEDDING_MODEL)
        self.progress("decontamination: the synthetic trials against the held-out trials")
        kept, report = decontaminate(self.synthetic, train, held_out, self.fields, encoder.embed_array,
                                     DEFAULT_EMBEDDING_MODEL, source=str(o.synthetic), drop=o.drop_contaminated)
        if report.dropped:
            self.synthetic = kept
            if o.split_mode == "paper":
                self.grounding = named_grounding(self.synthetic, read_run_grounding(o.synthetic))  # type: ignore[arg-type]
        return report

    def split(self, seed: int) -> SplitTrials:
        if self.o.split_mode == "paper":
            return paper_split(self.pool, seed)
        return SplitTrials(train=self.train, valid=self.valid, test=self.test)

    def synthetic_for(self, split: SplitTrials) -> tuple[list[Trial], int]:
        """The synthetic trials usable with `split`, and how many were dropped for it.

        Files mode: all (the guard refused any leak). Paper mode: those whose grounding avoids this
        seed's validation and test trials.
        """
        if self.o.split_mode == "files" or not self.synthetic:
            return self.synthetic, 0
        held_out = {t.nct_id for t in split.test + (split.valid or [])}
        return drop_grounded_on(self.synthetic, self.grounding, held_out)

    def texts(self, trials: list[Trial]) -> list[str]:
        """The like-for-like rendering of `trials` (the field set of the real training data), each trial object
        rendered once (seeds, training sets and the ladder's controls share them)."""
        cache = self.__dict__.setdefault("_texts", {})
        out = []
        for t in trials:
            hit = cache.get(id(t))
            if hit is None or hit[0] is not t:
                hit = cache[id(t)] = (t, render_for_classifier(t, self.fields))  # holding t keeps its id unique
            out.append(hit[1])
        return out

    @cached_property
    def features(self) -> EncoderFeatureCache:
        """The frozen encoder's outputs per text, shared by every transformer classifier of this evaluation."""
        return EncoderFeatureCache(self.o.model or DEFAULT_ENCODER, self.o.max_length, self.o.frozen_layers)

    def fit_predict(self, kind: str, train: list[Trial], valid: list[Trial] | None, test: list[Trial],
                    seed: int) -> Prediction:
        """A classifier of `kind` fitted on `train` (threshold chosen on `valid`), its test probabilities.
        TF-IDF's fit does not depend on the seed (`TfidfClassifier.SEED_FREE`): the seeds of a fixed
        split, the ladder's real arm and a sweep's repeated sets get the one fit of their data."""
        if kind == "tfidf" and TfidfClassifier.SEED_FREE:
            key = self._data_key(train, valid, test)
            memo: dict[str, Prediction] = self.__dict__.setdefault("_seed_free_predictions", {})
            if key not in memo:
                memo[key] = self._fit_predict(kind, train, valid, test, seed)
            return memo[key]
        return self._fit_predict(kind, train, valid, test, seed)

    def _data_key(self, train: list[Trial], valid: list[Trial] | None, test: list[Trial]) -> str:
        digest = hashlib.sha256()
        for part, trials in (("train", train), ("valid", valid or []), ("test", test)):
            digest.update(part.encode())
            for text, label in zip(self.texts(trials), labels_of(trials)):
                digest.update(f"\x1e{label}\x1f{text}".encode())
        return digest.hexdigest()

    def _fit_predict(self, kind: str, train: list[Trial], valid: list[Trial] | None, test: list[Trial],
                     seed: int) -> Prediction:
        params: dict[str, Any] = {}
        if kind == "transformer":
            params = dict(max_length=self.o.max_length, epochs=self.o.epochs, learning_rate=self.o.learning_rate,
                          batch_size=self.o.batch_size, frozen_layers=self.o.frozen_layers, features=self.features)
        elif kind == "frozen":
            params = dict(max_length=self.o.max_length, features=self.features)
        model = make_classifier(kind, self.o.model, seed=seed, progress=self.step_progress, **params)
        model.fit(self.texts(train), labels_of(train), self.texts(valid) if valid else None,
                  labels_of(valid) if valid else None)
        return Prediction(model.predict_proba(self.texts(test))[:, 1], model.threshold_)

    def training_sets(self, split: SplitTrials) -> dict[str, list[Trial]]:
        sets: dict[str, list[Trial]] = {"real": split.train}
        synthetic, _ = self.synthetic_for(split)
        if synthetic and len({t.label for t in synthetic}) == 2:
            sets["synthetic"] = synthetic
            sets["hybrid"] = split.train + synthetic
        return sets

    def run(self) -> EvaluationMetrics:
        o = self.o
        per_seed: dict[str, list[dict[str, float]]] = {}
        probas: dict[str, list[np.ndarray]] = {}
        thresholds: dict[str, list[float]] = {}
        collapsed: dict[str, bool] = {}  # on some seed, every test trial predicted in one class
        tests: list[np.ndarray] = []
        sizes: dict[str, int] = {}
        dropped: dict[str, int] = {}
        for seed in o.seeds:
            split = self.split(seed)
            y_test = np.asarray(labels_of(split.test))
            tests.append(y_test)
            dropped[str(seed)] = self.synthetic_for(split)[1]
            runs = dict(self.training_sets(split))
            if o.classifier == "transformer":
                runs = {"no_fine_tuning": split.train, **runs}
            for name, train in runs.items():
                self.progress(f"seed {seed}: training on {name} ({len(train)} trials)")
                kind = "frozen" if name == "no_fine_tuning" else o.classifier
                prediction = self.fit_predict(kind, train, split.valid, split.test, seed)
                per_seed.setdefault(name, []).append(binary_metrics(y_test, *prediction))
                probas.setdefault(name, []).append(prediction.proba)
                thresholds.setdefault(name, []).append(prediction.threshold)
                one_class = len(np.unique(prediction.proba >= prediction.threshold)) == 1
                collapsed[name] = collapsed.get(name, False) or one_class
                sizes[name] = len(train)
            sizes["test"] = len(split.test)
        result = EvaluationMetrics(
            classifier=o.classifier, model=o.model if o.classifier == "transformer" else None, split=o.split_mode,
            seeds=o.seeds, sizes=sizes, field_set=list(self.fields), leakage=self.leakage,
            training_sets={name: TrainingSetMetrics(**aggregate(values), threshold={"per_seed": thresholds[name]},
                                                    collapsed=collapsed[name]) for name, values in per_seed.items()})
        if o.split_mode == "paper" and self.synthetic:
            result.synthetic_dropped_per_seed = dropped
            survived = 1 - max(dropped.values()) / len(self.synthetic)
            if survived < 0.5:
                result.synthetic_dropped_warning = (
                    f"only {survived:.0%} of the synthetic trials survive some seed's split (a trial grounded on k "
                    f"examples survives a 60/20/20 split with probability about 0.6^k): use --split-mode files")
        if "hybrid" in probas and len(probas["hybrid"]) == len(probas["real"]):
            if o.split_mode == "files":
                result.bootstrap_hybrid_minus_real = paired_bootstrap(tests[0], probas["real"], probas["hybrid"],
                                                                      n_boot=o.n_boot)
            else:  # different test sets per seed: bootstrap each seed's pair, report per seed
                result.bootstrap_hybrid_minus_real = {
                    str(seed): paired_bootstrap(y, [a], [b], n_boot=o.n_boot)
                    for seed, y, a, b in zip(o.seeds, tests, probas["real"], probas["hybrid"])}
        result.real_arm = self.real_arm
        result.decontamination = self.decontamination
        if self.ladder_skipped:
            result.ladder = LadderMetrics(skipped=self.ladder_skipped, n_synthetic=len(self.synthetic))
        elif self.ladder_on():
            made = {name: [Prediction(p, t) for p, t in zip(probas[name], thresholds[name])]
                    for name in ("real", "synthetic", "hybrid") if name in probas}
            result.ladder = self.ladder(made)
        sweeps: dict[str, Any] = {}
        for sweep in o.sweeps:
            self.progress(f"sweep: {sweep}")
            sweeps[sweep] = getattr(self, SWEEP_PREFIX + sweep)()
        result.sweeps = sweeps or None
        o.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(o.out / METRICS_FILE, result.model_dump(mode="json", exclude_none=True))
        return result

    def ladder(self, made: dict[str, list[Prediction]] | None = None) -> LadderMetrics:
        """The utility ladder over this evaluation's seeds; `made`: the predictions per seed of its training sets
        (real, synthetic, hybrid) already made, reused."""
        made = made or {}
        runs = []
        for i, seed in enumerate(self.o.seeds):
            split = self.split(seed)
            given = {name: predictions[i] for name, predictions in made.items() if len(predictions) > i}
            runs.append(SeedRun(seed=seed, train=split.train, valid=split.valid, test=split.test,
                                synthetic=self.synthetic_for(split)[0], real=given.get("real"),
                                synthetic_alone=given.get("synthetic"), synthetic_hybrid=given.get("hybrid")))
        self.progress("utility ladder")
        return run_ladder(runs, lambda train, valid, test, seed: self.fit_predict(self.o.classifier, train, valid,
                                                                                  test, seed),
                          shared_test=self.o.split_mode == "files", n_boot=self.o.n_boot, progress=self.progress)

    # -- sweeps --------------------------------------------------------------------------------
    def _mean_metrics(self, runs: list[tuple[list[Trial], list[Trial] | None, list[Trial], int]]) -> dict[str, Any]:
        values = []
        for train, valid, test, seed in runs:
            values.append(binary_metrics(np.asarray(labels_of(test)), *self.fit_predict(self.o.classifier, train, valid, test, seed)))
        agg = aggregate(values)
        return {"roc_auc": agg["roc_auc"], "pr_auc": agg["pr_auc"], "f1": agg["f1"], "train_size": len(runs[0][0])}

    @classmethod
    def names_of_sweeps(cls) -> list[str]:
        """The sweeps `--sweeps` accepts: one per `sweep_<name>` method, in definition order."""
        return [name.removeprefix(SWEEP_PREFIX) for name, member in vars(cls).items()
                if name.startswith(SWEEP_PREFIX) and callable(member)]

    def sweep_ratio(self) -> list[dict[str, Any]]:
        out = []
        for ratio in RATIOS:
            runs = []
            for seed in self.o.seeds:
                split = self.split(seed)
                synthetic = self.synthetic_for(split)[0]
                want = int(round(ratio * len(split.train)))
                sample = random.Random(seed).sample(synthetic, min(want, len(synthetic)))
                runs.append((split.train + sample, split.valid, split.test, seed))
            out.append({"ratio": ratio, "synthetic_used": len(runs[0][0]) - len(self.split(self.o.seeds[0]).train),
                        **self._mean_metrics(runs)})
        return out

    def sweep_low_resource(self) -> list[dict[str, Any]]:
        """A share of the real training trials alone, with the synthetic set, and (below 1) duplicated to the
        hybrid's size (more rows, nothing new: what the hybrid must beat to add anything). With the ladder on,
        below 1 also the share plus each ladder control (evals.ladder.controls, drawn from the whole grounding
        split the writer saw): whether the synthetic trials add more at low resource than their plan
        (`plan_only`) or than restating their grounding (`echo`)."""
        with_controls = self.ladder_on() and not self.ladder_skipped
        ladder_sets = {seed: controls(self.synthetic_for(self.split(seed))[0], self.split(seed).train, seed)
                       for seed in self.o.seeds} if with_controls else {}
        if any(not all(both_labels(c.sets[name]) for name in LADDER_CONTROLS) for c in ladder_sets.values()):
            ladder_sets = {}  # the ladder itself is skipped (too few trials of a label): so are its controls here
        out = []
        for fraction in FRACTIONS:
            arms: tuple[str, ...] = ("real", "hybrid", "real_duplicated") if fraction < 1.0 else ("real", "hybrid")
            if fraction < 1.0 and ladder_sets:
                arms += LADDER_CONTROLS
            for arm in arms:
                runs = []
                for seed in self.o.seeds:
                    split = self.split(seed)
                    train = split.train
                    if fraction < 1.0:
                        train, _ = train_test_split(train, train_size=fraction, stratify=labels_of(train), random_state=seed)
                    synthetic = self.synthetic_for(split)[0]
                    if arm == "hybrid":
                        train = train + synthetic
                    elif arm == "real_duplicated":
                        train = duplicated(train, len(train) + len(synthetic), stream(seed, "ladder", "duplicate", fraction))
                    elif arm in LADDER_CONTROLS:
                        train = train + ladder_sets[seed].sets[arm]
                    runs.append((train, split.valid, split.test, seed))
                row = {"real_fraction": fraction, "with_synthetic": arm == "hybrid", **self._mean_metrics(runs)}
                if arm == "real_duplicated":
                    row["real_duplicated"] = True
                elif arm in LADDER_CONTROLS:
                    row["control"] = arm
                out.append(row)
        return out

    def sweep_generalisation(self) -> dict[str, Any]:
        """Train on the training trials of half the interventions, test on the held-out trials of the other half."""
        results: dict[str, list[dict[str, float]]] = {"real": [], "hybrid": []}
        for seed in self.o.seeds:
            split = self.split(seed)
            drugs = sorted({first_drug(t) or "" for t in split.train + split.test})
            seen = set(random.Random(seed).sample(drugs, len(drugs) // 2))
            train = [t for t in split.train if (first_drug(t) or "") in seen]
            test = [t for t in split.test if (first_drug(t) or "") not in seen]
            synthetic = [t for t in self.synthetic_for(split)[0] if (first_drug(t) or "") in seen]
            y = np.asarray(labels_of(test))
            results["real"].append(binary_metrics(y, *self.fit_predict(self.o.classifier, train, None, test, seed)))
            results["hybrid"].append(binary_metrics(y, *self.fit_predict(self.o.classifier, train + synthetic, None, test, seed)))
        return {name: aggregate(values) for name, values in results.items()}

    def sweep_fidelity(self) -> dict[str, Any]:
        """A real-trained classifier scores the synthetic trials against their intended labels, and the reverse."""
        out: dict[str, list[dict[str, float]]] = {"real_model_on_synthetic": [], "synthetic_model_on_real_test": []}
        for seed in self.o.seeds:
            split = self.split(seed)
            synthetic = self.synthetic_for(split)[0]
            y_syn = np.asarray(labels_of(synthetic))
            out["real_model_on_synthetic"].append(
                binary_metrics(y_syn, *self.fit_predict(self.o.classifier, split.train, split.valid, synthetic, seed)))
            y_test = np.asarray(labels_of(split.test))
            out["synthetic_model_on_real_test"].append(
                binary_metrics(y_test, *self.fit_predict(self.o.classifier, synthetic, None, split.test, seed)))
        return {name: aggregate(values) for name, values in out.items()}


def run_evaluation(options: EvalOptions, progress: SayFn | None = None,
                   step_progress: StageProgressFn | None = None) -> EvaluationMetrics:
    return Evaluation(options, progress, step_progress).run()
