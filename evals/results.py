"""Typed results of the evaluation stages, written as JSON (metrics.json, judge_summary.json,
fidelity.json) and read back by attribute, never by string key."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from synthtrials.evals.decontamination import DecontaminationReport
from synthtrials.evals.leakage import LeakageReport


class MetricSummary(BaseModel):
    mean: float
    std: float
    per_seed: list[float]


class SeedValues(BaseModel):
    per_seed: list[float]


class MetricSummaries(BaseModel):
    """Every metric of `evals.metrics.METRICS` over seeds."""

    accuracy: MetricSummary
    precision: MetricSummary
    recall: MetricSummary
    f1: MetricSummary
    roc_auc: MetricSummary
    pr_auc: MetricSummary

    def metric(self, name: str) -> MetricSummary:
        return getattr(self, name)


class TrainingSetMetrics(MetricSummaries):
    """One training set's metrics over seeds, its decision thresholds and whether it collapsed."""

    threshold: SeedValues
    collapsed: bool = Field(description="on some seed, every test trial was predicted in one class")


class BootstrapDifference(BaseModel):
    difference: float
    ci_low: float
    ci_high: float
    n_boot: int
    p_not_positive: float


BOOTSTRAP_METRICS = ("roc_auc", "pr_auc")


class SweepMetrics(BaseModel):
    roc_auc: MetricSummary
    pr_auc: MetricSummary
    f1: MetricSummary
    train_size: int

    def metric(self, name: str) -> MetricSummary:
        return getattr(self, name)


class RatioPoint(SweepMetrics):
    """The ratio sweep: real training trials plus `ratio` times as many synthetic ones."""

    ratio: float
    synthetic_used: int


class LowResourcePoint(SweepMetrics):
    """The low-resource sweep: a share of the real training trials, with or without the synthetic ones."""

    real_fraction: float
    with_synthetic: bool
    real_duplicated: bool = Field(False, description="the share of real trials duplicated to the hybrid's size "
                                                     "(fractions below 1)")
    control: str | None = Field(None, description="fractions below 1, with the ladder on: the share of real trials "
                                "plus this ladder control (shuffled, plan_only or echo; evals.ladder) instead of the "
                                "synthetic set, drawn from the writer's grounding trials: what the hybrid must beat "
                                "to add more than its plan, or to add more than restating its grounding")


class RealArm(BaseModel):
    """The real training trials of the evaluation when the synthetic run grounded on a sample of its
    grounding split (`generate --ground-sample F`, recorded in its grounding.json): the "real" arm, the
    hybrid's real part and the ladder's controls' pool are exactly that sample (like for like)."""

    ground_sample: float
    ground_sample_seed: int | None = None
    trials: int = Field(description="real training trials used: those of the file whose ids grounding.json lists")
    of: int = Field(description="real training trials in the given file")
    listed: int = Field(description="trial ids grounding.json lists")
    not_in_file: int = Field(0, description="listed ids the training file does not hold")
    source: str = Field(description="the grounding.json read")


class LadderArm(BaseModel):
    """One rung of the utility ladder: trained on it alone (TSTR, on the real test set) and on real + it."""

    n: int
    tstr: MetricSummaries
    hybrid: MetricSummaries
    hybrid_minus_real: dict[str, Any] = Field(
        description="files split: metric -> BootstrapDifference; paper split: seed -> metric -> BootstrapDifference")

    def bootstrap(self) -> dict[str, BootstrapDifference]:
        return {k: BootstrapDifference.model_validate(v) for k, v in self.hybrid_minus_real.items()
                if k in BOOTSTRAP_METRICS}


#: the ladder's rungs, lowest first: `synthetic` is placed among the three controls
LADDER_CONTROLS = ("shuffled", "plan_only", "echo")


class LadderMetrics(BaseModel):
    """The utility ladder (evals.ladder): the synthetic set against three controls of the same N drawn from
    the grounding split (the real training trials), per classifier and seed of the evaluation."""

    skipped: str | None = Field(None, description="one line: why the ladder was not computed")
    n_synthetic: int = 0
    n: int = Field(0, description="synthetic trials on the ladder (each control has as many)")
    no_grounding_drug: int = Field(0, description="synthetic trials whose first drug has no grounding trial: "
                                                  "left out of the ladder")
    no_grounding_label: int = Field(0, description="synthetic trials whose drug has grounding trials, none of "
                                                   "their label (no echo): left out of the ladder")
    left_out_example: str | None = None
    pool: int = Field(0, description="real grounding trials the controls are drawn from")
    arms: dict[str, LadderArm] = Field(default_factory=dict, description="synthetic, shuffled, plan_only, echo")
    place: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="TSTR synthetic - plan_only and synthetic - echo: metric -> "
                                          "BootstrapDifference (paper split: seed -> metric -> ...)")
    warnings: list[str] = Field(default_factory=list)

    def place_of(self, control: str) -> dict[str, BootstrapDifference]:
        """TSTR synthetic - `control` per metric (files split)."""
        boot = self.place.get(f"synthetic_minus_{control}", {})
        return {k: BootstrapDifference.model_validate(v) for k, v in boot.items() if k in BOOTSTRAP_METRICS}


class EvaluationMetrics(BaseModel):
    """metrics.json."""

    classifier: str
    model: str | None = None
    split: str
    seeds: list[int]
    sizes: dict[str, int]
    field_set: list[str] = Field(default_factory=list, description="the fields every classifier read (like for like)")
    training_sets: dict[str, TrainingSetMetrics]
    leakage: LeakageReport | None = None
    decontamination: DecontaminationReport | None = Field(
        None, description="the synthetic trials' text against the held-out trials (evals.decontamination)")
    synthetic_dropped_per_seed: dict[str, int] | None = None
    synthetic_dropped_warning: str | None = None
    bootstrap_hybrid_minus_real: dict[str, Any] | None = Field(
        None, description="files split: metric -> BootstrapDifference; paper split: seed -> metric -> BootstrapDifference")
    sweeps: dict[str, Any] | None = None
    real_arm: RealArm | None = Field(None, description="the real training trials were the synthetic run's "
                                                       "grounding sample (grounding.json ground_sample)")
    ladder: LadderMetrics | None = None

    def bootstrap(self) -> dict[str, BootstrapDifference]:
        """hybrid - real per metric (files split)."""
        boot = self.bootstrap_hybrid_minus_real or {}
        return {k: BootstrapDifference.model_validate(v) for k, v in boot.items() if k in BOOTSTRAP_METRICS}

    def bootstrap_per_seed(self) -> dict[str, dict[str, BootstrapDifference]]:
        """hybrid - real per seed, then per metric (paper split)."""
        boot = self.bootstrap_hybrid_minus_real or {}
        return {seed: {k: BootstrapDifference.model_validate(v) for k, v in per_metric.items()}
                for seed, per_metric in boot.items() if seed not in BOOTSTRAP_METRICS}

    def ratio_sweep(self) -> list[RatioPoint]:
        return [RatioPoint.model_validate(row) for row in (self.sweeps or {}).get("ratio", [])]

    def low_resource_sweep(self) -> list[LowResourcePoint]:
        return [LowResourcePoint.model_validate(row) for row in (self.sweeps or {}).get("low_resource", [])]

    def grouped_sweep(self, name: str) -> dict[str, MetricSummaries]:
        """The generalisation or label-fidelity sweep: its groups' metrics over seeds."""
        groups = (self.sweeps or {}).get(name, {})
        return {group: MetricSummaries.model_validate(values) for group, values in groups.items()}


class ScoreSummary(BaseModel):
    """A rubric criterion's scores (1-5) over the scored trials; None where none was scored."""

    mean: float | None
    std: float | None


class JudgeSide(BaseModel):
    n: int
    scored: int
    realism: ScoreSummary
    domain_consistency: ScoreSummary
    label_consistency: ScoreSummary
    coherence: ScoreSummary

    def score(self, criterion: str) -> ScoreSummary:
        return getattr(self, criterion)

    def mean(self, criterion: str) -> float | None:
        return self.score(criterion).mean


class JudgeSummary(BaseModel):
    """judge_summary.json."""

    model: str
    backend: str
    rubric: str
    criteria: list[str]
    synthetic: JudgeSide
    real: JudgeSide
    trust: str = Field(description="how far this judge's scores can be trusted (its measured meta-evaluation)")


class Spread(BaseModel):
    median: float | None
    p10: float | None
    p90: float | None


class FieldDistributions(BaseModel):
    """Per data set: the share of each phase, and the spread of enrollment, criteria items and words."""

    phase: dict[str, float]
    enrollment: Spread
    criteria_items: Spread
    words: Spread


class ShapeTest(BaseModel):
    """One size measure, real against synthetic: medians and the two-sample Kolmogorov-Smirnov test."""

    real_median: float | None
    synthetic_median: float | None
    median_ratio: float | None = Field(None, description="synthetic median / real median")
    ks_statistic: float | None
    ks_pvalue: float | None


class ShapeComparison(BaseModel):
    """Shape parity: are synthetic trials the size of real ones (like for like: the same field set)?"""

    criteria_per_trial: ShapeTest
    words_per_trial: ShapeTest
    words_per_criterion: ShapeTest


class FieldComparison(BaseModel):
    real: FieldDistributions
    synthetic: FieldDistributions


class EmbeddingCoverage(BaseModel):
    """Improved precision / recall on sentence embeddings."""

    precision: float
    recall: float


class Diversity(BaseModel):
    distinct_1: float
    distinct_2: float
    mean_pairwise_similarity: float


class DiversityComparison(BaseModel):
    synthetic: Diversity
    real: Diversity


class DcrSummary(BaseModel):
    """Distance to the closest real record: synthetic trials against real holdout trials."""

    synthetic_median: float
    synthetic_p05: float
    holdout_median: float | None
    holdout_p05: float | None


class CopiedShare(BaseModel):
    mean: float
    max: float


class FidelitySummary(BaseModel):
    """`fidelity_report`; fidelity.json holds it without the per-trial distances (`to_json`)."""

    n_real: int
    n_synthetic: int
    field_set: list[str]
    discriminator_auc: float
    discriminator_auc_real_halves: float
    embedding: EmbeddingCoverage
    fields: FieldComparison
    diversity: DiversityComparison
    dcr_synthetic: list[float] = Field(default_factory=list, description="per synthetic trial: cosine distance to "
                                                                         "the closest real trial")
    dcr_holdout: list[float] | None = Field(None, description="the same for each real holdout trial")
    dcr_summary: DcrSummary
    copied_8gram_share: CopiedShare | None = Field(None, description="8-grams copied from the trial's examples")
    shape: ShapeComparison | None = Field(None, description="criteria and words per trial, words per criterion")

    def to_json(self) -> dict[str, Any]:
        """What fidelity.json holds: everything but the per-trial distances."""
        return self.model_dump(mode="json", exclude={"dcr_synthetic", "dcr_holdout"})
