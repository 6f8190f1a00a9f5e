"""Stream the generation graph for one target: print each node's update as it happens.

    python -m synthtrials.scripts.stream_graph --store STORE --intervention sorafenib --label 0
"""

from __future__ import annotations

import argparse

from synthtrials.graphs.config import GenerationConfig
from synthtrials.graphs.generation import build_graph
from synthtrials.graphs.resources import Resources
from synthtrials.graphs.state import GenerationState, Target
from synthtrials.tools.llm import LLMClient, LLMConfig
from synthtrials.tools.store import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--intervention", required=True)
    parser.add_argument("--label", type=int, choices=(0, 1), default=1)
    parser.add_argument("--backend", default="llamacpp")
    parser.add_argument("--model")
    parser.add_argument("--base-url")
    args = parser.parse_args()

    config = GenerationConfig(llm=LLMConfig(backend=args.backend, model=args.model, base_url=args.base_url))
    graph = build_graph(Resources(store=open_store(args.store, create=False), llm=LLMClient(config.llm)))
    target = GenerationState(target=Target(index=0, intervention=args.intervention, label=args.label))
    run_config = {"configurable": {"generation": config.model_dump(mode="json"), "run_id": "script"}}
    for update in graph.stream(target, run_config, stream_mode="updates"):
        for node, values in update.items():
            step = values["log"][-1] if values.get("log") else None
            print(f"[{node}] {step.seconds:.1f}s wrote {step.wrote}" if step else f"[{node}]", flush=True)


if __name__ == "__main__":
    main()
