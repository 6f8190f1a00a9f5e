"""Build the generation graph and invoke it for one target (intervention, label).

    python -m synthtrials.scripts.invoke_graph --store STORE --intervention sorafenib --label 1
    python -m synthtrials.scripts.invoke_graph --store STORE --intervention sorafenib --label 0 \\
        --backend openai --model gpt-4o-mini            # OPENAI_API_KEY in the environment
"""

from __future__ import annotations

import argparse
import json

from synthtrials.graphs.config import GenerationConfig
from synthtrials.graphs.context import RunContext
from synthtrials.graphs.generation import build_graph
from synthtrials.graphs.resolve import settle_generation
from synthtrials.graphs.resources import Resources
from synthtrials.graphs.state import GenerationState, Target
from synthtrials.tools.llm.client import LLMClient, LLMConfig
from synthtrials.tools.store.trial_store import open_store


def graph_from_arguments(doc: str):
    """Parse the example scripts' arguments; return the compiled graph, the input state and the run's
    context (its configuration settled against the store once, here)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--intervention", required=True)
    parser.add_argument("--label", type=int, choices=(0, 1), default=1)
    parser.add_argument("--backend", default="llamacpp")
    parser.add_argument("--model")
    parser.add_argument("--base-url")
    parser.add_argument("--revisions", type=int, default=GenerationConfig.model_fields["max_revisions"].default)
    args = parser.parse_args()
    config = GenerationConfig(max_revisions=args.revisions,
                              llm=LLMConfig(backend=args.backend, model=args.model, base_url=args.base_url))
    store = open_store(args.store, create=False)
    llm = LLMClient(config.llm)
    graph = build_graph(Resources(store=store, llm=llm))
    initial = GenerationState(target=Target(index=0, intervention=args.intervention, label=args.label))
    context = RunContext(generation=settle_generation(config, store, llm=lambda: llm), run_id="script")
    return graph, initial, context


def main() -> None:
    graph, initial, context = graph_from_arguments(__doc__)
    state = graph.invoke(initial, context=context)
    final = GenerationState.model_validate(state)
    print(json.dumps({"verdict": final.verdict, "reasons": final.reject_reasons,
                      "trial": final.draft.model_dump(mode="json", exclude_none=True) if final.draft else None},
                     indent=2))


if __name__ == "__main__":
    main()
