"""The reasoning agent's ablation, as the seed paper did (its notebook: full .685 vs no-reasoning
.686 ROC-AUC): the same adapted writer, plan, seeds and critic, with reasons written by the LLM
(validated, re-asked once, invalid ones dropped), templated from the registry evidence, or none.

For each: how many of the LLM's reasons were valid (the embedded model's validity rate), the
writer's acceptance by the critic, accepted trials per minute, and the real-vs-synthetic
discriminator AUC of the accepted trials (like-for-like rendering).

    python benchmarks/bench_reasoner.py --adapter benchmarks/out/adapter_phase1 [--draws 60]
    python benchmarks/bench_reasoner.py --revalidate   # after a validator change: the LLM arm's kept reasons again
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, fixed_draws, print_table  # noqa: E402

from synthtrials.evals.fidelity import discriminator_auc, real_halves_auc  # noqa: E402
from synthtrials.graphs.config import GenerationConfig  # noqa: E402
from synthtrials.graphs.runner import RunOptions  # noqa: E402
from synthtrials.graphs.trace import list_trials, trial_trace  # noqa: E402
from synthtrials.scripts.demo import load_synthetic_or_empty  # noqa: E402
from synthtrials.tools.llm.adapter_folder import adapter_sha256  # noqa: E402
from synthtrials.tools.records.fields import field_set  # noqa: E402
from synthtrials.tools.store.protocol import grounding_filter
from synthtrials.tools.store.trial_store import open_store


def reason_validity(out: Path) -> tuple[int, int, int]:
    """(reasons asked of the LLM, valid ones, draws that fell back to the evidence)."""
    asked = valid = fallbacks = 0
    for trace in list_trials(out):
        for step in trial_trace(out, trace.plan_index).steps:
            if step.node == "reason":
                asked += step.wrote.get("asked", 0)
                valid += step.wrote.get("valid", 0)
                fallbacks += step.wrote.get("source") == "evidence-fallback"
    return asked, valid, fallbacks


def revalidate(out: Path, store_path: str) -> None:
    """Run the LLM reasons the validator of `out`'s run passed through today's validator (after a
    validator change, without re-generating): how many it still passes, why the others fail."""
    from collections import Counter

    from synthtrials.agents.reasoner import reason_problems
    from synthtrials.graphs.resources import Resources
    from synthtrials.tools.knowledge.calibration import load_or_calibrate
    from synthtrials.tools.knowledge.evidence import drug_evidence

    store = open_store(store_path, create=False)
    knowledge = Resources(store=store, llm=None).knowledge(["train"])  # type: ignore[arg-type]
    threshold = load_or_calibrate(store, ["train"], knowledge).thresholds["typicality_criterion"]
    passed, why, kept = 0, Counter(), []
    for trace in list_trials(out):
        for step in trial_trace(out, trace.plan_index).steps:
            if step.node == "reason" and step.wrote.get("source") == "llm":
                evidence = drug_evidence(store.filter(grounding_filter(["train"]).narrowed(intervention=trace.intervention)),
                                         trace.intervention, trace.label)
                verdicts = reason_problems(step.wrote["reasons"], evidence, knowledge, store.embeddings.embed_array,
                                           threshold)
                passed += len(verdicts)
                kept += [(trace.intervention, r) for r, v in zip(step.wrote["reasons"], verdicts) if v is None]
                why.update(v.split("' ", 1)[1] for v in verdicts if v)
    print_table(f"Reasons the run's validator passed ({out.name}), through today's validator: {len(kept)} of {passed} kept",
                ["verdict", "reasons"], [[k, n] for k, n in why.most_common()] + [["kept", len(kept)]])
    for drug, reason in kept:
        print(f"- {drug}: {reason[:200]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", default=str(OUT / "phase1_store"))
    parser.add_argument("--adapter", default=str(OUT / "adapter_phase1"))
    parser.add_argument("--draws", type=int, default=60)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--revalidate", action="store_true",
                        help="no generation: pass the LLM arm's kept reasons through today's validator")
    args = parser.parse_args()
    if args.revalidate:
        revalidate(OUT / "bench_reasoner_llm", args.store)
        return
    store = open_store(args.store, create=False)
    real = store.filter(grounding_filter(["train"]))
    fields = field_set(real)
    sha = adapter_sha256(args.adapter)
    rows = []
    for mode in ("llm", "evidence", "none"):
        out = OUT / f"bench_reasoner_{mode}"
        shutil.rmtree(out, ignore_errors=True)
        generation = GenerationConfig(k=2, seed=args.seed, reasoner=mode, writer_adapter=args.adapter,
                                      writer_adapter_sha256=sha)
        start = time.perf_counter()
        summary = fixed_draws(RunOptions(store=args.store, out=out, n=args.draws, generation=generation,
                                         plan_min_trials=1, max_draws_factor=1))
        minutes = (time.perf_counter() - start) / 60
        accepted = load_synthetic_or_empty(out)
        auc = discriminator_auc(real, accepted, fields=fields) if len(accepted) >= 5 else float("nan")
        asked, valid, fallbacks = reason_validity(out)
        rows.append([mode, summary.draws, f"{valid}/{asked} = {valid / asked:.0%}" if asked else "-",
                     fallbacks if mode == "llm" else "-", f"{summary.acceptance_rate:.0%}",
                     f"{summary.accepted / minutes:.2f}", f"{auc:.3f}",
                     f"{summary.seconds_per_draw_by_node.get('reason', 0):.2f}"])
    print_table(f"Reasoner ablation: adapted writer, {args.draws} draws each, seed {args.seed}, same plan and critic "
                f"(discriminator chance level, two halves of the real data: {real_halves_auc(real, fields=fields):.3f})",
                ["reasons from", "draws", "LLM reasons valid", "draws left with none (evidence used)",
                 "critic acceptance", "accepted / min", "discriminator AUC", "s / draw in the reasoner"], rows)


if __name__ == "__main__":
    main()
