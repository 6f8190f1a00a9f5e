"""Choose the offline default by measurement: the bundled GGUF models on the same 20 writer prompts.

Each prompt is built as the graph builds it: an eligible drug and label from
../shared/data/top/phase_I_train.csv, 3 real example trials of that drug and label (rendered
compactly), no reasons. Both models write through llama.cpp with the same grammar-constrained
schema. Prints a table and two outputs per model (for benchmarks/RESULTS.md).

    python benchmarks/bench_llm_models.py [--models smollm2 gemma3-270m] [--prompts 20]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import TOP, print_table  # noqa: E402
from synthtrials.agents.writer import write_draft  # noqa: E402
from synthtrials.tools.records.writer_format import DraftSpec  # noqa: E402
from synthtrials.tools.records.eligibility import EligibleIntervention, eligible_trials  # noqa: E402
from synthtrials.tools.llm.client import LLMClient, LLMConfig, LLMError  # noqa: E402
from synthtrials.tools.records.normalize import normalize_intervention  # noqa: E402
from synthtrials.tools.readers import read_trials  # noqa: E402
from synthtrials.tools.records.trial import Trial, render_for_classifier  # noqa: E402


def build_prompts(n: int, seed: int = 0) -> list[tuple[str, int, list[str]]]:
    trials = read_trials([TOP / "phase_I_train.csv"])
    by_key: dict[tuple[str, int], list[Trial]] = {}
    for t in trials:
        by_key.setdefault((normalize_intervention(t.interventions[0].name), t.label), []).append(t)
    eligible: list[EligibleIntervention] = eligible_trials(trials, 3)
    rng = random.Random(seed)
    prompts = []
    for i in range(n):
        drug = eligible[i % len(eligible)].intervention
        label = i % 2
        examples = rng.sample(by_key[(drug, label)], 3)
        prompts.append((drug, label, [render_for_classifier(t)[:900] for t in examples]))
    return prompts


def run_model(model: str, prompts, max_tokens: int) -> tuple[list, list]:
    client = LLMClient(LLMConfig(model_path=model, max_tokens=max_tokens, seed=1))
    rows = []
    samples = []
    for i, (drug, label, examples) in enumerate(prompts):
        start = time.perf_counter()
        before = client.usage.completion_tokens
        try:
            _, result = write_draft(client, DraftSpec(), drug, label, examples, [], [], seed=i)
            draft = result.value
            names = normalize_intervention(draft.interventions[0].name) == drug
            mentions = drug in (draft.brief_title + " " + draft.brief_summary).lower()
            rows.append((True, names, mentions, result.attempts, time.perf_counter() - start,
                         client.usage.completion_tokens - before))
            if len(samples) < 2:
                samples.append((drug, label, draft.model_dump_json(indent=1, exclude_none=True)))
        except LLMError as exc:
            rows.append((False, False, False, 2, time.perf_counter() - start, client.usage.completion_tokens - before))
            print(f"  {model} prompt {i}: {exc}", file=sys.stderr)
    usage = client.usage
    return rows, samples, usage


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["smollm2", "gemma3-270m"])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=900)
    args = parser.parse_args()
    prompts = build_prompts(args.prompts)
    table = []
    all_samples = {}
    for model in args.models:
        rows, samples, usage = run_model(model, prompts, args.max_tokens)
        n = len(rows)
        seconds = sum(r[4] for r in rows)
        table.append([model, n, f"{sum(r[0] for r in rows) / n:.0%}", f"{sum(r[1] for r in rows) / n:.0%}",
                      f"{sum(r[2] for r in rows) / n:.0%}", f"{sum(r[3] for r in rows) / n:.2f}",
                      usage.completion_tokens / max(usage.seconds, 1e-9), seconds / n,
                      usage.prompt_tokens // n, usage.completion_tokens // n])
        all_samples[model] = samples
    print_table(f"Offline writer models, {args.prompts} writer prompts from phase_I_train (3 real examples each)",
                ["model", "prompts", "valid Trial", "names the drug (pinned)", "drug in title/summary",
                 "attempts/prompt", "tokens/s (decode+prefill)", "s/trial", "prompt tok", "completion tok"], table)
    for model, samples in all_samples.items():
        for drug, label, text in samples:
            print(f"\n#### {model}: {drug}, label {label}\n\n```json\n{text}\n```")


if __name__ == "__main__":
    main()
