"""The run's report: one self-contained HTML page (tables, and matplotlib plots inlined as PNG) and a
Markdown summary with the same sections, both rendered from the same blocks.

Written for people: counts with thousands separators, rates as percentages, metrics with three
decimals, confidence intervals as "+0.012 [−0.010, +0.034]", and every plot titled, labelled and
described in its alt text.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel
from synthtrials.evals.leakage import LeakageReport
from synthtrials.evals.metrics import METRICS
from synthtrials.evals.results import (
    LADDER_CONTROLS,
    BootstrapDifference,
    EvaluationMetrics,
    FidelitySummary,
    JudgeSummary,
    LadderMetrics,
    LowResourcePoint,
    MetricSummary,
    RatioPoint,
    ScoreSummary,
    Spread,
)
from synthtrials.tools.atomic import write_json_atomic, write_text_atomic
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.run_folder import (
    FIDELITY_FILE,
    JUDGE_DIR,
    METRICS_FILE,
    GenerationSummary,
    read_summary,
)
from synthtrials.tools.records.trial import Trial

Model = TypeVar("Model", bound=BaseModel)
JUDGE_SUMMARY_FILE = "judge_summary.json"
JUDGE_ROWS_FILE = "judge.jsonl"
NO_VALUE = "–"
MINUS = "−"
METRIC_NAMES = {"accuracy": "accuracy", "precision": "precision", "recall": "recall", "f1": "F1",
                "roc_auc": "ROC-AUC", "pr_auc": "PR-AUC"}
SET_NAMES = {"no_fine_tuning": "no fine-tuning (frozen encoder)", "hybrid": "hybrid (real + synthetic)"}
SWEEP_GROUPS = {"real_model_on_synthetic": "real-trained model on the synthetic trials",
                "synthetic_model_on_real_test": "synthetic-trained model on the real test set",
                "real": "real", "hybrid": "hybrid (real + synthetic)"}
SWEEP_INTROS = {
    "generalisation": "Generalisation to unseen interventions: trained on the trials of half the interventions, "
                      "tested on the test trials of the other half.",
    "fidelity": "Label fidelity: a real-trained classifier scores the synthetic trials against their intended "
                "labels, and a synthetic-trained one scores the real test set.",
}
STYLE = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1040px;margin:2em auto;padding:0 1em;"
    "color:#222;line-height:1.45}h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}"
    "table{border-collapse:collapse;margin:.8em 0;font-size:13px}th,td{border:1px solid #d0d0d0;padding:4px 8px;"
    "text-align:left;vertical-align:top}th{background:#f1f3f5}td{font-variant-numeric:tabular-nums}"
    "tbody tr:nth-child(even){background:#fafafa}.warning{background:#fff4e5;border-left:4px solid #e8590c;"
    "padding:.5em .8em}figure{margin:1.2em 0}img{max-width:100%;height:auto}"
    "figcaption{font-size:12px;color:#555;max-width:800px}"
)


# -- formatting ---------------------------------------------------------------------------------

def absent(x: float | None) -> bool:
    return x is None or math.isnan(x)


def count(n: int) -> str:
    return f"{n:,}"


def amount(x: float | None) -> str:
    """A quantity: a whole number with thousands separators, else one decimal."""
    if x is None or absent(x):
        return NO_VALUE
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def decimal(x: float | None, places: int = 3) -> str:
    return NO_VALUE if x is None or absent(x) else f"{x:.{places}f}".replace("-", MINUS)


def signed(x: float) -> str:
    return NO_VALUE if absent(x) else f"{x:+.3f}".replace("-", MINUS)


def percent(x: float | None) -> str:
    if x is None or absent(x):
        return NO_VALUE
    return f"{x:.0%}" if x == 0 or abs(x) >= 0.01 else f"{x:.1%}"


def mean_std(summary: MetricSummary) -> str:
    if len(summary.per_seed) < 2:
        return decimal(summary.mean)
    return f"{decimal(summary.mean)} ± {decimal(summary.std)}"


def interval(b: BootstrapDifference) -> str:
    return f"{signed(b.difference)} [{signed(b.ci_low)}, {signed(b.ci_high)}]"


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def words(names: Iterable[str]) -> str:
    return ", ".join(name.replace("_", " ") for name in names)


def dotted(parts: Iterable[str]) -> str:
    return " · ".join(parts)


def plain_model(name: str) -> str:
    """`bundled:all-MiniLM-L6-v2` -> `all-MiniLM-L6-v2 (bundled)`; a path -> its last part."""
    if name.startswith("bundled:"):
        return f"{name.removeprefix('bundled:')} (bundled)"
    return Path(name).name if name.startswith(("/", ".", "~")) else name


def set_name(name: str) -> str:
    return SET_NAMES.get(name, name.replace("_", " "))


def sizes_line(sizes: dict[str, int]) -> str:
    """`real 1,044 · synthetic 300 · hybrid 1,344 · test 627 trials` (the frozen encoder reads the real set)."""
    return dotted(f"{name} {count(n)}" for name, n in sizes.items() if name != "no_fine_tuning") + " trials"


def classifier_name(result: EvaluationMetrics) -> str:
    if result.classifier == "tfidf":
        return "TF-IDF + logistic regression"
    return f"fine-tuned {plain_model(result.model)}" if result.model else "fine-tuned transformer (default encoder)"


def seeds_text(seeds: Sequence[int]) -> str:
    """`mean ± std over seeds 40, 41, 42`, or `seed 40`."""
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"mean ± std over seeds {', '.join(map(str, seeds))}"


# -- blocks: each renders to HTML and to Markdown -----------------------------------------------

@dataclass(frozen=True)
class Text:
    """A paragraph; a warning stands out."""

    text: str
    warning: bool = False

    def html(self) -> str:
        if self.warning:
            return f'<p class="warning">⚠ {html.escape(self.text)}</p>'
        return f"<p>{html.escape(self.text)}</p>"

    def markdown(self) -> str:
        return f"> ⚠ **{self.text}**" if self.warning else self.text


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def markdown(self) -> str:
        lines = [self.header, ["---"] * len(self.header), *self.rows]
        return "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in lines)


@dataclass(frozen=True)
class Figure:
    """A plot as PNG; its alt text says what it shows, and is its caption."""

    png: bytes
    alt: str

    def html(self) -> str:
        alt = html.escape(self.alt, quote=True)
        data = base64.b64encode(self.png).decode()
        return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"><figcaption>{alt}</figcaption></figure>'

    def markdown(self) -> str:
        return f"*Figure: {self.alt}*"


Block = Text | Table | Figure


@dataclass(frozen=True)
class Section:
    title: str
    blocks: list[Block]


def render_html(title: str, intro: str, sections: list[Section]) -> str:
    body = "".join(f"<h2>{html.escape(s.title)}</h2>" + "".join(b.html() for b in s.blocks) for s in sections)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>"
            f"{body}</body></html>")


def render_markdown(title: str, intro: str, sections: list[Section]) -> str:
    parts = [f"# {title}", intro]
    for section in sections:
        parts += [f"## {section.title}", *(b.markdown() for b in section.blocks)]
    return "\n\n".join(parts) + "\n"


# -- plots --------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(fig, alt: str) -> Figure:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return Figure(buffer.getvalue(), alt)


def metric_bars(result: EvaluationMetrics) -> Figure:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(result.training_sets)
    x = np.arange(len(METRICS))
    for i, (name, values) in enumerate(result.training_sets.items()):
        summaries = [values.metric(m) for m in METRICS]
        errors = [s.std for s in summaries] if len(result.seeds) > 1 else None
        ax.bar(x + i * width, [s.mean for s in summaries], width, yerr=errors, capsize=3, label=set_name(name))
    ax.set_xticks(x + width * (len(result.training_sets) - 1) / 2, [METRIC_NAMES[m] for m in METRICS])
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("test-set metric")
    ax.set_ylabel("score (0 to 1, higher is better)")
    ax.set_title(f"{classifier_name(result)}: {seeds_text(result.seeds)}")
    ax.legend(title="training set", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    aucs = "; ".join(f"{set_name(n)} {decimal(v.roc_auc.mean)}" for n, v in result.training_sets.items())
    return figure(fig, f"Bar chart of the six test-set metrics of {classifier_name(result)} per training set "
                       f"({seeds_text(result.seeds)}). ROC-AUC: {aucs}.")


def ratio_plot(points: list[RatioPoint], seeds: Sequence[int]) -> Figure:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ratios = [p.ratio for p in points]
    for metric in ("roc_auc", "pr_auc"):
        ax.errorbar(ratios, [p.metric(metric).mean for p in points], yerr=[p.metric(metric).std for p in points],
                    marker="o", capsize=3, label=METRIC_NAMES[metric])
    ax.set_xlabel("synthetic trials added per real training trial")
    ax.set_ylabel("test score (0 to 1)")
    ax.set_title("Ratio sweep: real training set plus synthetic trials")
    ax.legend(title="metric", fontsize=8)
    first, last = points[0], points[-1]
    return figure(fig, f"Line chart of test ROC-AUC and PR-AUC ({seeds_text(seeds)}) as synthetic trials are "
                       f"added to the real training set, from {amount(first.ratio)} to {amount(last.ratio)} per real "
                       f"trial; ROC-AUC goes from {decimal(first.roc_auc.mean)} to {decimal(last.roc_auc.mean)}.")


def low_resource_plot(points: list[LowResourcePoint]) -> Figure:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    lines = [((False, False, None), "real only", "-"), ((True, False, None), "real + synthetic", "-"),
             ((False, True, None), "real duplicated to the hybrid's size", "-"),
             *(((False, False, control), f"real + {control} control", ":") for control in LADDER_CONTROLS)]
    for key, label, style in lines:
        chosen = [p for p in points if (p.with_synthetic, p.real_duplicated, p.control) == key]
        if not chosen:
            continue
        ax.errorbar([100 * p.real_fraction for p in chosen], [p.roc_auc.mean for p in chosen],
                    yerr=[p.roc_auc.std for p in chosen], marker="o", capsize=3, label=label, linestyle=style)
    ax.set_xlabel("share of the real training trials used (%)")
    ax.set_ylabel("test ROC-AUC (0 to 1)")
    ax.set_title("Low-resource sweep: fewer real trials")
    ax.legend(title="training set", fontsize=7)
    smallest = min(p.real_fraction for p in points)
    at_smallest = {(p.with_synthetic, p.real_duplicated, p.control): p.roc_auc.mean for p in points
                   if p.real_fraction == smallest}
    dup = at_smallest.get((False, True, None))
    dup_text = "" if dup is None else f", real duplicated to the hybrid's size {decimal(dup)}"
    control_text = "".join(f", real plus the {control} control {decimal(at_smallest[(False, False, control)])}"
                           for control in LADDER_CONTROLS if (False, False, control) in at_smallest)
    return figure(fig, f"Line chart of test ROC-AUC against the share of real training trials used, real only "
                       f"against real plus synthetic; with {percent(smallest)} of the real trials: real only "
                       f"{decimal(at_smallest.get((False, False, None)))}, with synthetic "
                       f"{decimal(at_smallest.get((True, False, None)))}{dup_text}{control_text}.")


RUNG_NAMES = {"shuffled": "shuffled labels", "plan_only": "plan only", "echo": "echo", "synthetic": "synthetic (writer)"}
LADDER_READING = ("How to read the ladder: each rung is a training set of the same size. Shuffled: the synthetic "
                  "trials with their labels permuted (no outcome signal). Plan only: per synthetic trial, a real "
                  "grounding trial of the same drug, any outcome, given the synthetic trial's label (what the "
                  "sampling plan alone carries). Echo: a real grounding trial of the same drug and label (a writer "
                  "that restates its grounding data perfectly). A writer above echo adds knowledge; between plan "
                  "only and echo it echoes its grounding; at shuffled its trials carry no signal.")


def ladder_plot(ladder: LadderMetrics, result: EvaluationMetrics) -> Figure:
    from synthtrials.evals.ladder import RUNGS

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    x = np.arange(len(RUNGS))
    arms = [ladder.arms[r] for r in RUNGS]
    tstr = [a.tstr.roc_auc.mean for a in arms]
    hybrid = [a.hybrid.roc_auc.mean for a in arms]
    real = result.training_sets["real"].roc_auc.mean
    tstr_err = [a.tstr.roc_auc.std for a in arms] if len(result.seeds) > 1 else None
    boots = [a.bootstrap().get("roc_auc") for a in arms]
    hybrid_err = None
    if all(boots):
        hybrid_err = [[h - (real + b.ci_low) for h, b in zip(hybrid, boots)],  # type: ignore[union-attr]
                      [(real + b.ci_high) - h for h, b in zip(hybrid, boots)]]  # type: ignore[union-attr]
    ax.bar(x - 0.2, tstr, 0.4, yerr=tstr_err, capsize=3, label="trained on the rung alone (TSTR)")
    ax.bar(x + 0.2, hybrid, 0.4, yerr=hybrid_err, capsize=3, label="real + the rung (95% CI)")
    ax.axhline(real, color="black", linestyle="--", linewidth=1, label=f"real only ({decimal(real)})")
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xticks(x, [RUNG_NAMES[r] for r in RUNGS])
    low = min(tstr + hybrid + [real, 0.5])
    ax.set_ylim(max(0.0, low - 0.1), min(1.0, max(tstr + hybrid + [real]) + 0.08))
    ax.set_xlabel(f"training set ({count(ladder.n)} trials per rung)")
    ax.set_ylabel("test ROC-AUC (0 to 1)")
    ax.set_title(f"Utility ladder: {classifier_name(result)}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    values = "; ".join(f"{RUNG_NAMES[r]} {decimal(v)}" for r, v in zip(RUNGS, tstr))
    return figure(fig, f"Bar chart of the utility ladder: test ROC-AUC trained on each rung of {count(ladder.n)} "
                       f"trials alone and on the real trials plus it, against the real-only score (dashed line, "
                       f"{decimal(real)}). Trained alone: {values}.")


def ladder_verdict(ladder: LadderMetrics) -> str | None:
    """Where the writer stands, read off the TSTR intervals (files split)."""
    above_plan = ladder.place_of("plan_only").get("roc_auc")
    above_echo = ladder.place_of("echo").get("roc_auc")
    if above_plan is None or above_echo is None:
        return None
    if above_echo.ci_low > 0:
        return "above echo: the writer adds knowledge beyond its grounding data"
    if above_plan.ci_low > 0 and above_echo.ci_high >= 0:
        return "above plan only and level with echo: the writer restates its grounding data"
    if above_plan.ci_low > 0:
        return "between plan only and echo: the writer echoes part of its grounding data"
    if above_plan.ci_high < 0:
        return "below plan only: the writer's texts lose signal the plan alone carries"
    return "level with plan only: the writer adds nothing beyond the drug and label it was asked for"


def ladder_blocks(result: EvaluationMetrics) -> list[Block]:
    ladder = result.ladder
    if ladder is None:
        return []
    if ladder.skipped:
        return [Text(f"Utility ladder not computed: {ladder.skipped}.", warning=True)]
    from synthtrials.evals.ladder import RUNGS

    blocks: list[Block] = [Text(f"Utility ladder: {count(ladder.n)} of {count(ladder.n_synthetic)} synthetic trials "
                                f"against three controls of the same size drawn from the {count(ladder.pool)} real "
                                "training trials (the grounding split). " + LADDER_READING)]
    blocks += [Text(w, warning=True) for w in ladder.warnings]
    rows = []
    for name in RUNGS:
        arm = ladder.arms[name]
        boot = arm.bootstrap().get("roc_auc")
        rows.append([RUNG_NAMES[name], count(arm.n), mean_std(arm.tstr.roc_auc), mean_std(arm.tstr.pr_auc),
                     mean_std(arm.hybrid.roc_auc), interval(boot) if boot else "per seed in metrics.json"])
    blocks.append(Table(["rung", "trials", "ROC-AUC trained alone", "PR-AUC trained alone", "ROC-AUC real + rung",
                         "real + rung − real ROC-AUC [95% CI]"], rows))
    places = [(c, ladder.place_of(c).get("roc_auc")) for c in ("plan_only", "echo")]
    if all(b for _, b in places):
        text = "; ".join(f"synthetic − {RUNG_NAMES[c]} {interval(b)}" for c, b in places)  # type: ignore[arg-type]
        blocks.append(Text(f"The writer's place, ROC-AUC trained alone, paired bootstrap over the test trials: {text}: "
                           f"{ladder_verdict(ladder)}."))
    blocks.append(ladder_plot(ladder, result))
    return blocks


def real_arm_blocks(result: EvaluationMetrics) -> list[Block]:
    arm = result.real_arm
    if arm is None:
        return []
    missing = f"; {count(arm.not_in_file)} listed trials are not in the training file" if arm.not_in_file else ""
    return [Text(f"Like for like: the synthetic run grounded on a sample of {percent(arm.ground_sample)} of its "
                 f"grounding split, so the real arm, the hybrid's real part and the ladder's controls use exactly "
                 f"those trials: {count(arm.trials)} of the {count(arm.of)} real training trials ({arm.source}"
                 f"{missing}).")]


def dcr_plot(fidelity: FidelitySummary) -> Figure:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    bins = np.histogram_bin_edges(fidelity.dcr_synthetic + (fidelity.dcr_holdout or []), bins=20)
    ax.hist(fidelity.dcr_synthetic, bins=bins, alpha=0.6, density=True, label="synthetic trials")
    holdout = ""
    if fidelity.dcr_holdout:
        ax.hist(fidelity.dcr_holdout, bins=bins, alpha=0.6, density=True, label="real holdout trials")
        holdout = f" against real holdout trials (median {decimal(fidelity.dcr_summary.holdout_median)})"
    ax.set_xlabel("cosine distance to the closest real trial (0 = same text)")
    ax.set_ylabel("density")
    ax.set_title("Privacy: distance to the closest real record")
    ax.legend(fontsize=8)
    return figure(fig, f"Histogram of each synthetic trial's cosine distance to its closest real trial (median "
                       f"{decimal(fidelity.dcr_summary.synthetic_median)}){holdout}; synthetic trials much closer "
                       "than the holdout ones would point to copying.")


def projection_plot(real_v: np.ndarray, syn_v: np.ndarray) -> Figure:
    from sklearn.decomposition import PCA

    plt = _pyplot()
    points = PCA(n_components=2, random_state=0).fit_transform(np.vstack([real_v, syn_v]))
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.scatter(points[: len(real_v), 0], points[: len(real_v), 1], s=6, alpha=0.4, label="real")
    ax.scatter(points[len(real_v):, 0], points[len(real_v):, 1], s=12, alpha=0.9, label="synthetic")
    ax.set_xlabel("principal component 1 (embedding units)")
    ax.set_ylabel("principal component 2 (embedding units)")
    ax.set_title("Sentence embeddings: first two principal components")
    ax.legend(fontsize=8)
    return figure(fig, f"Scatter plot of {count(len(real_v))} real and {count(len(syn_v))} synthetic trials on the "
                       "first two principal components of their sentence embeddings; overlapping clouds mean "
                       "similar content.")


def judge_plot(rows: list[dict[str, Any]], judge: JudgeSummary) -> Figure:
    plt = _pyplot()
    criteria = judge.criteria
    fig, axes = plt.subplots(1, len(criteria), figsize=(2.6 * len(criteria), 2.8), sharey=True, squeeze=False)
    for ax, criterion in zip(axes[0], criteria):
        for offset, source in ((-0.2, "synthetic"), (0.2, "real")):
            values = [r[criterion] for r in rows if r["source"] == source and criterion in r]
            if values:
                shares = [values.count(score) / len(values) for score in range(1, 6)]
                ax.bar(np.arange(1, 6) + offset, shares, 0.4, label=source)
        ax.set_title(criterion.replace("_", " "), fontsize=9)
        ax.set_xticks(range(1, 6))
        ax.set_ylim(0, 1)
        ax.set_xlabel("score (1 = poor, 5 = good)", fontsize=8)
    axes[0][0].set_ylabel("share of scored trials")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        axes[0][-1].legend(handles, labels, title="trials", loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    fig.suptitle(f"LLM judge ({plain_model(judge.model)}): scores per criterion", y=1.04)
    means = "; ".join(f"{c.replace('_', ' ')} {decimal(judge.synthetic.mean(c), 2)} against "
                      f"{decimal(judge.real.mean(c), 2)}" for c in criteria)
    return figure(fig, f"Bar charts of the judge's 1 to 5 scores per criterion, synthetic trials against real "
                       f"calibration trials. Mean synthetic against real: {means}.")


# -- sections -----------------------------------------------------------------------------------

def generation_section(s: GenerationSummary) -> Section:
    rows = [["accepted trials", f"{count(s.accepted)} of {count(s.requested)} requested"],
            ["drafts written", count(s.draws)], ["acceptance rate", percent(s.acceptance_rate)],
            ["drafts rejected", count(s.rejected)], ["revisions asked by the critic", count(s.revisions)],
            ["writer calls", count(s.writer_calls)], ["valid writer outputs", percent(s.writer_valid_share)],
            ["errors", count(s.errors)], ["tokens per accepted trial", amount(round(s.tokens_per_accepted))],
            ["accepted trials per minute", decimal(s.accepted_per_minute, 1)], ["time", duration(s.seconds)],
            ["model", f"{plain_model(s.model)} ({s.backend} backend)"]]
    if s.writer_model and s.writer_model != s.model:
        rows.append(["writer model", plain_model(s.writer_model)])
    blocks: list[Block] = [Table(["generation", "value"], rows)]
    if not s.complete:
        budget = ", stopped by its time budget" if s.stopped_by_time_budget else ""
        blocks.insert(0, Text(f"Incomplete run: {count(s.accepted)} of {count(s.requested)} trials{budget}.",
                              warning=True))
    if s.seconds_per_draw_by_node:
        steps = dotted(f"{node} {amount(round(v, 1))} s" for node, v in s.seconds_per_draw_by_node.items())
        blocks.append(Text(f"Time per draft by step: {steps}."))
    reasons = sorted(set(s.rejections_by_reason) | set(s.revisions_by_reason),
                     key=lambda r: (-s.rejections_by_reason.get(r, 0), -s.revisions_by_reason.get(r, 0), r))
    if reasons:
        blocks.append(Table(["check", "drafts rejected", "revisions asked"],
                            [[r.replace("_", " "), count(s.rejections_by_reason.get(r, 0)),
                              count(s.revisions_by_reason.get(r, 0))] for r in reasons]))
    else:
        blocks.append(Text("No draft was rejected or revised."))
    return Section("Generation", blocks)


def leakage_blocks(leak: LeakageReport | None) -> list[Block]:
    if leak is None:
        return [Text("Leakage guard: no synthetic training set, nothing to check.")]
    grounding = ("their provenance and the run's grounding.json" if leak.run_grounding
                 else "their provenance (no grounding.json found)")
    if leak.held_out_sets:
        text = (f"Leakage guard: {count(leak.checked)} synthetic trials checked through {grounding}; none was "
                f"written from, checked against or taught by a trial of the {' or the '.join(leak.held_out_sets)}.")
    else:
        text = (f"Leakage guard: {count(leak.checked)} synthetic trials checked through {grounding}; those grounded "
                "on a seed's validation or test trials are left out of that seed's training sets.")
    return [Text(text), *(Text(w, warning=True) for w in leak.warnings)]


def collapsed_blocks(result: EvaluationMetrics) -> list[Block]:
    collapsed = [set_name(n) for n, v in result.training_sets.items() if v.collapsed]
    if not collapsed:
        return []
    return [Text(f"Collapsed: trained on {' and '.join(collapsed)}, the classifier predicted one class for every "
                 "test trial on some seed; its accuracy, precision, recall and F1 say nothing there.", warning=True)]


def metrics_table(result: EvaluationMetrics) -> Table:
    rows = [[set_name(name), count(result.sizes.get(name, 0)), *(mean_std(v.metric(m)) for m in METRICS),
             " / ".join(decimal(t) for t in v.threshold.per_seed), "⚠ YES: one class" if v.collapsed else "no"]
            for name, v in result.training_sets.items()]
    return Table(["training set", "trials", *(METRIC_NAMES[m] for m in METRICS), "threshold per seed", "collapsed"],
                 rows)


def bootstrap_blocks(result: EvaluationMetrics) -> list[Block]:
    header = ["hybrid − real [95% CI]", "resamples with no gain", "resamples"]

    def cells(b: BootstrapDifference) -> list[str]:
        return [interval(b), percent(b.p_not_positive), count(b.n_boot)]

    if result.split == "paper":
        rows = [[seed, METRIC_NAMES[m], *cells(b)] for seed, per_metric in result.bootstrap_per_seed().items()
                for m, b in per_metric.items()]
        table = Table(["seed", "metric", *header], rows)
    else:
        rows = [[METRIC_NAMES[m], *cells(b)] for m, b in result.bootstrap().items()]
        table = Table(["metric", *header], rows)
    if not rows:
        return []
    return [Text("Hybrid minus real, paired bootstrap over the test trials: an interval above zero means the "
                 "synthetic trials helped."), table]


def sweep_blocks(result: EvaluationMetrics) -> list[Block]:
    blocks: list[Block] = []
    if ratio := result.ratio_sweep():
        blocks.append(ratio_plot(ratio, result.seeds))
    if low := result.low_resource_sweep():
        blocks.append(low_resource_plot(low))
    for name, intro in SWEEP_INTROS.items():
        groups = result.grouped_sweep(name)
        if groups:
            rows = [[SWEEP_GROUPS.get(g, g.replace("_", " ")), mean_std(v.roc_auc), mean_std(v.pr_auc), mean_std(v.f1)]
                    for g, v in groups.items()]
            blocks += [Text(intro), Table(["trained / scored", "ROC-AUC", "PR-AUC", "F1"], rows)]
    return blocks


def evaluation_section(source: str, result: EvaluationMetrics) -> Section:
    split = ("the given training and test files" if result.split == "files"
             else "the paper's stratified 60/20/20 split of the real pool, redrawn per seed")
    blocks: list[Block] = [
        Text(f"From {source}. Sizes: {sizes_line(result.sizes)}."),
        Text(f"Split: {split}. Test-set metrics, {seeds_text(result.seeds)}; the decision threshold is chosen on "
             "the validation set where there is one, else 0.5."),
    ]
    if result.field_set:
        blocks.append(Text(f"The classifiers read: {words(result.field_set)}."))
    blocks += real_arm_blocks(result) + leakage_blocks(result.leakage) + collapsed_blocks(result)
    if result.synthetic_dropped_warning:
        blocks.append(Text(result.synthetic_dropped_warning, warning=True))
    if result.synthetic_dropped_per_seed:
        dropped = dotted(f"seed {s}: {count(n)}" for s, n in result.synthetic_dropped_per_seed.items())
        blocks.append(Text(f"Synthetic trials left out per seed (grounded on its held-out trials): {dropped}."))
    blocks += [metrics_table(result), *bootstrap_blocks(result), metric_bars(result), *ladder_blocks(result),
               *sweep_blocks(result)]
    return Section(f"Outcome prediction: {classifier_name(result)}", blocks)


def spread_text(spread: Spread) -> str:
    """A count's median [10th–90th percentile], in whole numbers."""
    if spread.median is None or spread.p10 is None or spread.p90 is None:
        return NO_VALUE
    return f"{spread.median:,.0f} [{spread.p10:,.0f}–{spread.p90:,.0f}]"


def phases_text(shares: dict[str, float]) -> str:
    return dotted(f"{phase} {percent(share)}" for phase, share in sorted(shares.items(), key=lambda kv: -kv[1]))


def fidelity_section(f: FidelitySummary, embeddings: tuple[np.ndarray, np.ndarray]) -> Section:
    dcr = f.dcr_summary
    holdout = NO_VALUE if dcr.holdout_median is None else f"{decimal(dcr.holdout_median)} ({decimal(dcr.holdout_p05)})"
    real_column = "; real column: "
    rows = [
        [f"discriminator ROC-AUC against real trials (0.5 = indistinguishable){real_column}two real halves",
         decimal(f.discriminator_auc), decimal(f.discriminator_auc_real_halves)],
        ["embedding precision: synthetic trials within reach of real ones", decimal(f.embedding.precision), NO_VALUE],
        ["embedding recall: real trials within reach of synthetic ones", decimal(f.embedding.recall), NO_VALUE],
        ["distinct-1: distinct words / words", decimal(f.diversity.synthetic.distinct_1),
         decimal(f.diversity.real.distinct_1)],
        ["distinct-2: distinct word pairs / word pairs", decimal(f.diversity.synthetic.distinct_2),
         decimal(f.diversity.real.distinct_2)],
        ["mean pairwise cosine similarity (lower = more diverse)",
         decimal(f.diversity.synthetic.mean_pairwise_similarity), decimal(f.diversity.real.mean_pairwise_similarity)],
        [f"distance to the closest real trial: median (5th percentile){real_column}holdout trials",
         f"{decimal(dcr.synthetic_median)} ({decimal(dcr.synthetic_p05)})", holdout],
    ]
    if f.copied_8gram_share:
        rows.append(["8-grams copied from the trial's own examples: mean (max)",
                     f"{percent(f.copied_8gram_share.mean)} ({percent(f.copied_8gram_share.max)})", NO_VALUE])
    syn, real = f.fields.synthetic, f.fields.real
    fields = [["phase", phases_text(syn.phase), phases_text(real.phase)],
              ["enrollment", spread_text(syn.enrollment), spread_text(real.enrollment)],
              ["eligibility criteria items", spread_text(syn.criteria_items), spread_text(real.criteria_items)],
              ["words in the classifier's rendering", spread_text(syn.words), spread_text(real.words)]]
    return Section("Fidelity, diversity, privacy", [
        Text(f"{count(f.n_synthetic)} synthetic trials against {count(f.n_real)} real ones, both rendered with the "
             f"same fields: {words(f.field_set)}."),
        Table(["measure", "synthetic", "real (reference)"], rows),
        Text("Fields: shares per phase; medians with the 10th–90th percentile range in brackets."),
        Table(["field", "synthetic", "real"], fields),
        *shape_blocks(f),
        dcr_plot(f), projection_plot(*embeddings)])


def shape_blocks(f: FidelitySummary) -> list[Block]:
    """Shape parity: are the synthetic trials the size of real ones (two-sample Kolmogorov-Smirnov test)?"""
    if f.shape is None:
        return []
    rows = [[name, decimal(test.synthetic_median), decimal(test.real_median), decimal(test.median_ratio),
             decimal(test.ks_statistic), decimal(test.ks_pvalue, 4)]
            for name, test in (("criteria per trial", f.shape.criteria_per_trial),
                               ("words per trial", f.shape.words_per_trial),
                               ("words per criterion", f.shape.words_per_criterion))]
    return [Text("Shape: medians, their ratio (synthetic / real; 1 = the same size) and the two-sample "
                 "Kolmogorov-Smirnov test (a small p: the sizes are distributed differently)."),
            Table(["size", "synthetic median", "real median", "ratio", "KS statistic", "KS p"], rows)]


def score_text(score: ScoreSummary) -> str:
    return f"{decimal(score.mean, 2)} ± {decimal(score.std, 2)}" if score.mean is not None else NO_VALUE


def judge_section(judge: JudgeSummary, rows: list[dict[str, Any]]) -> Section:
    blocks: list[Block] = [
        Text(f"Rubric {judge.rubric}, {judge.backend} backend. Scored: synthetic {count(judge.synthetic.scored)} of "
             f"{count(judge.synthetic.n)} trials, real calibration {count(judge.real.scored)} of "
             f"{count(judge.real.n)}."),
        Text(f"Trust: {judge.trust}.", warning=judge.trust.startswith("not measured")),
        Table(["criterion (1 to 5)", "synthetic: mean ± std", "real calibration: mean ± std"],
              [[c.replace("_", " "), score_text(judge.synthetic.score(c)), score_text(judge.real.score(c))]
               for c in judge.criteria]),
    ]
    if any("error" not in r for r in rows):
        blocks.append(judge_plot(rows, judge))
    return Section(f"LLM judge: {plain_model(judge.model)}", blocks)


# -- the run folder -----------------------------------------------------------------------------

def read_model(model: type[Model], file: Path) -> Model:
    try:
        return model.model_validate_json(file.read_text())
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{file}: unreadable ({' '.join(str(exc).split())[:160]})") from None


def evaluation_sections(run_dir: Path) -> list[Section]:
    return [evaluation_section(str(file.relative_to(run_dir)), read_model(EvaluationMetrics, file))
            for file in sorted(run_dir.glob(f"**/{METRICS_FILE}"))]


def judge_sections(judge_dir: Path) -> list[Section]:
    if not (judge_dir / JUDGE_SUMMARY_FILE).exists():
        return []
    rows_file = judge_dir / JUDGE_ROWS_FILE
    rows = [json.loads(line) for line in rows_file.read_text().splitlines() if line.strip()] \
        if rows_file.exists() else []
    return [judge_section(read_model(JudgeSummary, judge_dir / JUDGE_SUMMARY_FILE), rows)]


def fidelity_sections(run_dir: Path, synthetic: list[Trial], real: Path | None, max_real: int) -> list[Section]:
    """Fidelity against up to `max_real` real trials (half compared, half held out); writes fidelity.json."""
    from synthtrials.evals.data import real_reference
    from synthtrials.evals.fidelity import fidelity_report
    from synthtrials.tools.store.embeddings import get_embeddings
    from synthtrials.tools.records.trial import render_for_embedding

    reference = real_reference(run_dir, real)
    if len(reference) < 4:
        return [Section("Fidelity, diversity, privacy",
                        [Text("No real trials to compare with: give the report real trials (--real FILE).", warning=True)])]
    random.Random(0).shuffle(reference)
    reference = reference[:max_real]
    half = len(reference) // 2
    fidelity = fidelity_report(reference[:half], synthetic, holdout=reference[half:],
                               examples={t.nct_id: t for t in reference})
    write_json_atomic(run_dir / FIDELITY_FILE, fidelity.to_json())
    encoder = get_embeddings()
    embeddings = (encoder.embed_array([render_for_embedding(t) for t in reference[:half]]),
                  encoder.embed_array([render_for_embedding(t) for t in synthetic]))
    return [fidelity_section(fidelity, embeddings)]


def create_report(run_dir: Path, real: Path | None = None, max_real: int = 1500) -> Path:
    """Gather a run's outputs (summary, eval metrics, judge), compute fidelity against real trials,
    and write run_dir/report.html and report.md. Returns the HTML path."""
    from synthtrials.evals.data import load_synthetic

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: not a folder")
    synthetic = load_synthetic(run_dir, both_labels=False)  # a run can accept trials of one label only
    summary = read_summary(run_dir)
    sections = ([generation_section(summary)] if summary else []) + evaluation_sections(run_dir) \
        + fidelity_sections(run_dir, synthetic, real, max_real) + judge_sections(run_dir / JUDGE_DIR)
    title = f"synthtrials report: {run_dir.name}"
    intro = f"{count(len(synthetic))} synthetic trials in the run folder {run_dir.name}."
    write_text_atomic(run_dir / "report.html", render_html(title, intro, sections))
    write_text_atomic(run_dir / "report.md", render_markdown(title, intro, sections))
    return run_dir / "report.html"
