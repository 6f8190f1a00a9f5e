"""One self-contained HTML page (tables + matplotlib plots inlined as PNG) and a Markdown summary."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from synthtrials.evals.metrics import METRICS
from synthtrials.tools.atomic import write_text_atomic


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def metric_bars(metrics: dict[str, Any]) -> str:
    plt = _plt()
    sets = list(metrics["training_sets"])
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / max(1, len(sets))
    for i, name in enumerate(sets):
        means = [metrics["training_sets"][name][m]["mean"] for m in METRICS]
        stds = [metrics["training_sets"][name][m]["std"] for m in METRICS]
        ax.bar(np.arange(len(METRICS)) + i * width, means, width, yerr=stds, capsize=3, label=name)
    ax.set_xticks(np.arange(len(METRICS)) + width * (len(sets) - 1) / 2, METRICS)
    ax.set_ylim(0, 1)
    ax.set_title(f"{metrics['classifier']}: mean ± std over seeds {metrics['seeds']}")
    ax.legend(fontsize=8)
    return _png(fig)


def sweep_curves(sweeps: dict[str, Any]) -> str:
    plt = _plt()
    parts = []
    if "ratio" in sweeps:
        fig, ax = plt.subplots(figsize=(5, 3))
        rows = sweeps["ratio"]
        for metric in ("roc_auc", "pr_auc"):
            ax.errorbar([r["ratio"] for r in rows], [r[metric]["mean"] for r in rows],
                        yerr=[r[metric]["std"] for r in rows], marker="o", label=metric, capsize=3)
        ax.set_xlabel("synthetic : real")
        ax.set_title("ratio sweep")
        ax.legend()
        parts.append(_png(fig))
    if "low_resource" in sweeps:
        fig, ax = plt.subplots(figsize=(5, 3))
        rows = sweeps["low_resource"]
        for flag in (False, True):
            sel = [r for r in rows if r["with_synthetic"] == flag]
            ax.errorbar([r["real_fraction"] for r in sel], [r["roc_auc"]["mean"] for r in sel],
                        yerr=[r["roc_auc"]["std"] for r in sel], marker="o", capsize=3,
                        label="real + synthetic" if flag else "real only")
        ax.set_xlabel("share of real training data")
        ax.set_ylabel("ROC-AUC")
        ax.set_title("low-resource")
        ax.legend()
        parts.append(_png(fig))
    return "".join(parts)


def dcr_histogram(fidelity: dict[str, Any]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(fidelity["dcr_synthetic"], bins=20, alpha=0.6, label="synthetic -> real", density=True)
    if fidelity.get("dcr_holdout"):
        ax.hist(fidelity["dcr_holdout"], bins=20, alpha=0.6, label="real holdout -> real", density=True)
    ax.set_xlabel("cosine distance to the closest real record")
    ax.legend()
    return _png(fig)


def projection(real_v: np.ndarray, syn_v: np.ndarray) -> str:
    from sklearn.decomposition import PCA

    plt = _plt()
    points = PCA(n_components=2, random_state=0).fit_transform(np.vstack([real_v, syn_v]))
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(points[: len(real_v), 0], points[: len(real_v), 1], s=6, alpha=0.4, label="real")
    ax.scatter(points[len(real_v):, 0], points[len(real_v):, 1], s=12, alpha=0.9, label="synthetic")
    ax.set_title("PCA of embeddings")
    ax.legend()
    return _png(fig)


def judge_plot(rows: list[dict[str, Any]], criteria: list[str]) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, len(criteria), figsize=(3 * len(criteria), 2.6), sharey=True)
    for ax, criterion in zip(np.atleast_1d(axes), criteria):
        for source in ("real", "synthetic"):
            values = [r[criterion] for r in rows if r["source"] == source and criterion in r]
            if values:
                ax.hist(values, bins=np.arange(0.5, 6), alpha=0.6, label=source, density=True)
        ax.set_title(criterion, fontsize=9)
    first = np.atleast_1d(axes)[0]
    if first.get_legend_handles_labels()[0]:
        first.legend(fontsize=7)
    return _png(fig)


def _table(header: list[str], rows: list[list[Any]]) -> tuple[str, str]:
    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    html_rows = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    table = f"<table><tr>{''.join(f'<th>{html.escape(h)}</th>' for h in header)}</tr>{html_rows}</table>"
    md = "| " + " | ".join(header) + " |\n|" + "|".join("---" for _ in header) + "|\n" + "".join(
        "| " + " | ".join(fmt(c) for c in r) + " |\n" for r in rows)
    return table, md


def build_report(run_dir: Path, summary: dict | None, metrics: list[dict], fidelity: dict | None,
                 judge_rows: list[dict] | None, judge_summary: dict | None,
                 embeddings: tuple[np.ndarray, np.ndarray] | None) -> tuple[str, str]:
    sections_html: list[str] = []
    sections_md: list[str] = [f"# synthtrials report: {run_dir.name}\n"]

    def add(title: str, body_html: str, body_md: str = "") -> None:
        sections_html.append(f"<h2>{html.escape(title)}</h2>{body_html}")
        sections_md.append(f"## {title}\n\n{body_md}\n")

    if summary:
        rows = [[k, summary[k] if not isinstance(summary[k], dict) else json.dumps(summary[k])]
                for k in ("accepted", "draws", "acceptance_rate", "revisions", "writer_valid_share",
                          "tokens_per_accepted", "accepted_per_minute", "rejections_by_reason", "model") if k in summary]
        t, m = _table(["generation", "value"], rows)
        add("Generation", t, m)
    for result in metrics:
        rows = [[name] + [f"{v[m]['mean']:.3f} ± {v[m]['std']:.3f}" for m in METRICS]
                + [" / ".join(f"{x:.3f}" for x in v["threshold"]["per_seed"]) if "threshold" in v else "-",
                   {True: "YES: predicts one class", False: "no"}.get(v.get("collapsed"), "-")]
                for name, v in result["training_sets"].items()]
        t, m = _table(["training set", *METRICS, "threshold (per seed)", "collapsed"], rows)
        extra_html = extra_md = ""
        boot = result.get("bootstrap_hybrid_minus_real")
        if boot and "roc_auc" in boot:
            brow = [[k, v["difference"], f"[{v['ci_low']:.3f}, {v['ci_high']:.3f}]"] for k, v in boot.items()]
            bt, bm = _table(["hybrid - real", "difference", "95% CI (paired bootstrap)"], brow)
            extra_html, extra_md = bt, bm
        add(f"Outcome prediction: {result['classifier']} (sizes {result['sizes']})",
            t + extra_html + metric_bars(result) + (sweep_curves(result["sweeps"]) if result.get("sweeps") else ""),
            m + "\n" + extra_md)
    if fidelity:
        rows = [["discriminator ROC-AUC, real vs synthetic (0.5 = indistinguishable)", fidelity["discriminator_auc"]],
                ["discriminator ROC-AUC, two halves of the real data (chance level)",
                 fidelity.get("discriminator_auc_real_halves", float("nan"))],
                ["fields compared (like for like)", ", ".join(fidelity.get("field_set", []))],
                ["embedding precision", fidelity["embedding"]["precision"]],
                ["embedding recall", fidelity["embedding"]["recall"]],
                ["distinct-2 synthetic / real", f"{fidelity['diversity']['synthetic']['distinct_2']:.3f} / "
                                                f"{fidelity['diversity']['real']['distinct_2']:.3f}"],
                ["mean pairwise similarity synthetic / real",
                 f"{fidelity['diversity']['synthetic']['mean_pairwise_similarity']:.3f} / "
                 f"{fidelity['diversity']['real']['mean_pairwise_similarity']:.3f}"],
                ["DCR median synthetic / holdout", f"{fidelity['dcr_summary']['synthetic_median']:.3f} / "
                                                   f"{fidelity['dcr_summary']['holdout_median']}"]]
        if "copied_8gram_share" in fidelity:
            rows.append(["8-grams copied from examples (mean / max)",
                         f"{fidelity['copied_8gram_share']['mean']:.3f} / {fidelity['copied_8gram_share']['max']:.3f}"])
        t, m = _table(["fidelity, diversity, privacy", "value"], rows)
        plots = dcr_histogram(fidelity) + (projection(*embeddings) if embeddings else "")
        add("Fidelity, diversity, privacy", t + plots, m)
    if judge_summary:
        rows = [[c] + [judge_summary[s][c]["mean"] for s in ("synthetic", "real")] for c in judge_summary["criteria"]]
        t, m = _table(["LLM judge (1-5)", "synthetic", "real (calibration)"], rows)
        add(f"LLM judge ({judge_summary['model']}, {judge_summary['rubric']})",
            t + (judge_plot(judge_rows or [], judge_summary["criteria"]) if judge_rows else ""), m)
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>synthtrials report</title><style>"
            "body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}img{max-width:100%}</style></head><body>"
            f"<h1>synthtrials report: {html.escape(run_dir.name)}</h1>" + "".join(sections_html) + "</body></html>")
    return page, "\n".join(sections_md)


def write_report(run_dir: Path, out_html: Path, out_md: Path, **parts: Any) -> None:
    page, markdown = build_report(run_dir, **parts)
    write_text_atomic(out_html, page)
    write_text_atomic(out_md, markdown)


def create_report(run_dir: Path, real: Path | None = None, max_real: int = 1500) -> Path:
    """Gather a run's outputs (summary, eval metrics, judge), compute fidelity against real trials,
    and write run_dir/report.html and report.md. Returns the HTML path."""
    import random

    from synthtrials.evals.data import load_synthetic, real_reference
    from synthtrials.evals.fidelity import fidelity_report
    from synthtrials.tools.atomic import write_json_atomic
    from synthtrials.tools.embeddings import get_embeddings
    from synthtrials.tools.errors import ConfigError
    from synthtrials.tools.trial import render_for_embedding

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: not a folder")
    synthetic = load_synthetic(run_dir)
    summary_file = run_dir / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
    metrics = [json.loads(p.read_text()) for p in sorted(run_dir.glob("**/metrics.json"))]
    judge_dir = run_dir / "judge"
    judge_summary = json.loads((judge_dir / "judge_summary.json").read_text()) \
        if (judge_dir / "judge_summary.json").exists() else None
    judge_rows = [json.loads(line) for line in (judge_dir / "judge.jsonl").read_text().splitlines() if line.strip()] \
        if (judge_dir / "judge.jsonl").exists() else None
    fidelity = embeddings = None
    reference = real_reference(run_dir, real)
    if len(reference) >= 4:
        random.Random(0).shuffle(reference)
        reference = reference[:max_real]
        half = len(reference) // 2
        fidelity = fidelity_report(reference[:half], synthetic, holdout=reference[half:],
                                   examples={t.nct_id: t for t in reference})
        write_json_atomic(run_dir / "fidelity.json",
                          {k: v for k, v in fidelity.items() if not k.startswith("dcr_") or k == "dcr_summary"})
        encoder = get_embeddings()
        embeddings = (encoder.embed_array([render_for_embedding(t) for t in reference[:half]]),
                      encoder.embed_array([render_for_embedding(t) for t in synthetic]))
    write_report(run_dir, run_dir / "report.html", run_dir / "report.md", summary=summary, metrics=metrics,
                 fidelity=fidelity, judge_rows=judge_rows, judge_summary=judge_summary, embeddings=embeddings)
    return run_dir / "report.html"
