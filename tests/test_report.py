"""The report reads like a report: numbers formatted for people, every plot labelled and described,
the Markdown in step with the HTML, and the run's results read through their typed models.

The run folder is built by hand: stand-in synthetic trials (real toy_valid trials relabelled as
synthetic records), a summary.json, a quick TF-IDF evaluation and a judge summary.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from support import TOP, head_csv
from synthtrials.evals.experiment import EvalOptions, run_evaluation
from synthtrials.evals.report import (
    Table,
    Text,
    create_report,
    evaluation_section,
    interval,
    percent,
    read_model,
    sizes_line,
)
from synthtrials.evals.results import (
    BootstrapDifference,
    EvaluationMetrics,
    FidelitySummary,
    JudgeSide,
    JudgeSummary,
    ScoreSummary,
)
from synthtrials.tools.readers import read_trials
from synthtrials.tools.run_folder import GenerationSummary, read_summary, write_summary

CRITERIA = ("realism", "domain_consistency", "label_consistency", "coherence")
RAW_REPRS = ("{'", "': ", "['")
LONG_FLOAT = re.compile(r"\d\.\d{5,}")


def stand_ins() -> list:
    """Real toy_valid trials that are no phase I test or validation trial (decontamination refuses those)."""
    held = {t.nct_id for t in read_trials([TOP / "phase_I_test.csv"]) + read_trials([TOP / "phase_I_valid.csv"])}
    return [t for t in read_trials([TOP / "toy_valid.csv"]) if t.nct_id not in held]


def write_stand_in_trials(run: Path, n: int = 30) -> None:
    rows = [t.model_copy(update={"nct_id": f"SYN-{i:08x}", "source": "synthetic", "overall_status": None,
                                 "why_stopped": None, "provenance": {"examples": []}}).model_dump_json()
            for i, t in enumerate(stand_ins()[:n])]
    (run / "trials.jsonl").write_text("\n".join(rows) + "\n")


def write_generation_summary(run: Path) -> None:
    write_summary(run, GenerationSummary(
        requested=30, accepted=30, draws=1502, rejected=1472, acceptance_rate=0.0199734,
        rejections_by_reason={"label_consistency": 1000, "duplicate": 472}, revisions=12,
        revisions_by_reason={"label_consistency": 12}, writer_calls=1514, writer_valid_share=0.98765432,
        errors=0, tokens={"total_tokens": 1234567}, tokens_per_accepted=41152.2333333, accepted_per_minute=0.4567891,
        seconds=3941.23456, seconds_per_draw_by_node={"writer": 2.345678, "critic": 0.5}, backend="llamacpp",
        model="SmolLM2-360M-Instruct-Q8_0.gguf", complete=True))


def write_judge(run: Path, synthetic_ids: list[str]) -> None:
    side = {c: ScoreSummary(mean=3.456789, std=0.812345) for c in CRITERIA}
    summary = JudgeSummary(model="smollm2", backend="llamacpp", rubric="judge-v1", criteria=list(CRITERIA),
                           synthetic=JudgeSide(n=3, scored=3, **side), real=JudgeSide(n=2, scored=2, **side),
                           trust="not measured: run benchmarks/bench_critic.py with this model")
    judge = run / "judge"
    judge.mkdir()
    (judge / "judge_summary.json").write_text(summary.model_dump_json())
    rows = [{"source": "synthetic", "nct_id": i, **{c: 2 + k % 3 for c in CRITERIA}} for k, i in enumerate(synthetic_ids)]
    rows += [{"source": "real", "nct_id": f"NCT{k}", **{c: 4 for c in CRITERIA}} for k in range(2)]
    (judge / "judge.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data")
    run = tmp_path_factory.mktemp("run")
    write_stand_in_trials(run)
    write_generation_summary(run)
    run_evaluation(EvalOptions(real_train=str(TOP / "phase_I_train.csv"),
                               real_test=str(head_csv(TOP / "phase_I_test.csv", data / "test.csv", 120)),
                               synthetic=str(run), seeds=[40], n_boot=100, sweeps=["ratio"], out=run / "eval_tfidf"))
    write_judge(run, [f"SYN-{i:08x}" for i in range(3)])
    create_report(run, real=head_csv(TOP / "phase_I_valid.csv", data / "real.csv", 80), max_real=200)
    return run


class Page(HTMLParser):
    """The text a reader sees (outside <style>), the section titles and the images' alt texts."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.text: list[str] = []
        self.titles: list[str] = []
        self.alts: list[str | None] = []
        self._tags: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.alts.append(dict(attrs).get("alt"))
        else:
            self._tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag != "img":
            self._tags.pop()

    def handle_data(self, data: str) -> None:
        if self._tags and self._tags[-1] == "style":
            return
        self.text.append(data)
        if self._tags and self._tags[-1] == "h2":
            self.titles.append(data)


@pytest.fixture(scope="module")
def page(run) -> Page:
    return Page((run / "report.html").read_text())


def test_numbers_read_as_numbers(run, page):
    text = " ".join(page.text + [a or "" for a in page.alts])
    markdown = (run / "report.md").read_text()
    for shown in (text, markdown):
        assert not [r for r in RAW_REPRS if r in shown], "a Python dict or list repr in the report"
        assert not LONG_FLOAT.findall(shown), "a float with more than 4 decimals in the report"
        assert "Sizes: real 1,044 · synthetic 30 · hybrid 1,074 · test 120 trials." in shown
        assert "1,502" in shown and "2%" in shown and "1 h 05 min" in shown  # drafts, acceptance rate, time
        assert "The classifiers read: interventions, conditions, phase, eligibility." in shown
        assert "Leakage guard: 30 synthetic trials checked" in shown
        assert re.search(r"[+−]\d\.\d{3} \[[+−]\d\.\d{3}, [+−]\d\.\d{3}\]", shown)  # the bootstrap's interval
    assert "| label consistency | 1,000 | 12 |" in markdown  # rejections by reason: a table


def test_every_plot_is_described(page):
    assert len(page.alts) == 5  # metrics, ratio sweep, distances, embeddings, judge
    for alt in page.alts:
        assert alt and len(alt) > 60 and "plot" != alt.lower()
        assert re.match(r"(Bar charts?|Line chart|Histogram|Scatter plot)", alt)


def test_markdown_has_the_sections_of_the_page(run, page):
    markdown = (run / "report.md").read_text()
    assert page.titles == re.findall(r"^## (.+)$", markdown, flags=re.MULTILINE)
    assert page.titles == ["Generation", "Outcome prediction: TF-IDF + logistic regression",
                           "Fidelity, diversity, privacy", "LLM judge: smollm2"]
    assert markdown.count("*Figure: ") == len(page.alts)


def test_results_are_typed_files(run):
    assert read_summary(run).draws == 1502
    metrics = read_model(EvaluationMetrics, run / "eval_tfidf" / "metrics.json")
    assert metrics.model is None and set(metrics.training_sets) == {"real", "synthetic", "hybrid"}
    saved = json.loads((run / "fidelity.json").read_text())
    assert "dcr_synthetic" not in saved and "dcr_holdout" not in saved
    fidelity = FidelitySummary.model_validate(saved)
    assert fidelity.n_real == 40 and fidelity.n_synthetic == 30 and 0 <= fidelity.discriminator_auc <= 1
    assert fidelity.diversity.synthetic.distinct_2 > 0 and fidelity.dcr_summary.holdout_median is not None


def test_a_collapsed_classifier_is_flagged(run):
    metrics = read_model(EvaluationMetrics, run / "eval_tfidf" / "metrics.json")
    metrics.training_sets["synthetic"].collapsed = True
    blocks = evaluation_section("eval_tfidf/metrics.json", metrics).blocks
    warnings = [b.text for b in blocks if isinstance(b, Text) and b.warning]
    assert any(w.startswith("Collapsed: trained on synthetic") for w in warnings)
    table = next(b for b in blocks if isinstance(b, Table) and b.header[0] == "training set")
    assert [row[-1] for row in table.rows] == ["no", "⚠ YES: one class", "no"]


def test_formatting_helpers():
    assert sizes_line({"no_fine_tuning": 1044, "real": 1044, "synthetic": 300, "hybrid": 1344, "test": 627}) \
        == "real 1,044 · synthetic 300 · hybrid 1,344 · test 627 trials"
    assert interval(BootstrapDifference(difference=0.0123, ci_low=-0.0101, ci_high=0.0339, n_boot=100,
                                        p_not_positive=0.2)) == "+0.012 [−0.010, +0.034]"
    assert [percent(x) for x in (0.54, 0.004, 0.0, float("nan"))] == ["54%", "0.4%", "0%", "–"]


def test_a_run_that_accepted_one_label_only_still_gets_its_report(tmp_path):
    """A short run (the demo's budget) can accept trials of one label only: no training set, but the
    report still describes them (the demo stopped on this)."""
    run = tmp_path / "run"
    run.mkdir()
    write_stand_in_trials(run, n=6)
    lines = [json.loads(line) | {"label": 1} for line in (run / "trials.jsonl").read_text().splitlines()]
    (run / "trials.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    html = create_report(run, real=head_csv(TOP / "phase_I_valid.csv", tmp_path / "real.csv", 40), max_real=40)
    assert "6 synthetic trials" in html.read_text() and (run / "report.md").is_file()
