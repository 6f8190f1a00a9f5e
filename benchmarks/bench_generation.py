"""The generation graph on the embedded default, time-boxed, on phase_I_train.

Draws planned targets one after another (as `synthtrials generate` does with llama.cpp) for
--minutes (or until --n accepted) and reports acceptance, rejections and revisions by reason,
writer validity, tokens per accepted trial and accepted trials per minute. Also compares prompt
tokens per draw with the seed paper's prompts (three JSON-dumped registry records each).

    python benchmarks/bench_generation.py --n 50 --minutes 12
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import TOP, XML_FILE, print_table  # noqa: E402

from synthtrials.graphs.config import GenerationConfig  # noqa: E402
from synthtrials.graphs.generation import build_graph  # noqa: E402
from synthtrials.graphs.plan import SamplingPlan  # noqa: E402
from synthtrials.graphs.resources import Resources  # noqa: E402
from synthtrials.graphs.state import GenerationState  # noqa: E402
from synthtrials.tools.ingest import ingest  # noqa: E402
from synthtrials.tools.llm import LLMClient  # noqa: E402
from synthtrials.tools.store import eligible, open_store  # noqa: E402


def xml_to_dict(node: ET.Element):
    children = list(node)
    if not children:
        return (node.text or "").strip()
    out: dict = {}
    for child in children:
        out.setdefault(child.tag, []).append(xml_to_dict(child))
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "store")
        ingest(store, [TOP / "phase_I_train.csv"])
        config = GenerationConfig()
        llm = LLMClient(config.llm)
        graph = build_graph(Resources(store=store, llm=llm))
        plan = SamplingPlan.create("bench", 0, eligible(store, k=3))
        states: list[GenerationState] = []
        start = time.perf_counter()
        index = 0
        while time.perf_counter() - start < args.minutes * 60 and sum(s.verdict == "accept" for s in states) < args.n:
            values = graph.invoke(GenerationState(target=plan.target(index)),
                                  {"configurable": {"generation": config.model_dump(mode="json"), "run_id": "bench"}})
            states.append(GenerationState.model_validate(values))
            index += 1
        minutes = (time.perf_counter() - start) / 60
        accepted = [s for s in states if s.verdict == "accept"]
        rejections = Counter(c for s in states if s.verdict == "reject" for c in (s.reject_reason or "").split(","))
        revisions = Counter(c for s in states for cr in s.critiques if cr.verdict == "revise" for c in cr.failed_checks)
        writes = [step for s in states for step in s.log if step.node == "write"]
        valid = sum("error" not in step.wrote for step in writes)
        usage = llm.usage
        print_table(f"Generation graph, embedded default ({config.llm.model_label()}), phase_I_train, "
                    f"{minutes:.1f} min time box", ["metric", "value"], [
                        ["draws", len(states)],
                        ["accepted", len(accepted)],
                        ["acceptance rate", f"{len(accepted) / max(1, len(states)):.1%}"],
                        ["accepted per minute", len(accepted) / minutes],
                        ["writer outputs valid Trial", f"{valid}/{len(writes)} = {valid / max(1, len(writes)):.1%}"],
                        ["revisions", sum(revisions.values())],
                        ["tokens per accepted trial", usage.total_tokens / max(1, len(accepted))],
                        ["tokens per draw", usage.total_tokens / max(1, len(states))],
                        ["seconds per draw", minutes * 60 / max(1, len(states))],
                    ])
        print("\nrejections by reason:", json.dumps(dict(rejections.most_common())))
        print("revisions by reason:", json.dumps(dict(revisions.most_common())))
        # prompt size against the seed paper's prompts (three JSON-dumped registry records each)
        ours = [step for s in states for step in s.log if step.node == "write" and step.prompt]
        ours_tokens = sum(llm.count_tokens(step.prompt) for step in ours) / max(1, len(ours))
        record = json.dumps(xml_to_dict(ET.parse(XML_FILE).getroot()))
        paper_tokens = 3 * llm.count_tokens(record) + 150
        print_table("Writer prompt tokens per draw", ["prompt", "tokens"], [
            ["ours (3 compact renderings + reasons + instructions)", ours_tokens],
            ["seed paper (3 JSON-dumped XML records like NCT00000378 + instructions)", paper_tokens],
            ["ratio ours / paper", f"{ours_tokens / paper_tokens:.2f}"],
        ])
        if accepted:
            print("\nan accepted trial:\n```json\n" + accepted[0].draft.model_dump_json(
                indent=1, exclude_none=True, exclude={"provenance"}) + "\n```")


if __name__ == "__main__":
    main()
