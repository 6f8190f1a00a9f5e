"""Stream the generation graph for one target: print each node's update as it happens.

    python -m synthtrials.scripts.stream_graph --store STORE --intervention sorafenib --label 0
"""

from __future__ import annotations

from synthtrials.scripts.invoke_graph import graph_from_arguments


def main() -> None:
    graph, initial, context = graph_from_arguments(__doc__)
    for update in graph.stream(initial, context=context, stream_mode="updates"):
        for node, values in update.items():
            step = values["log"][-1] if values.get("log") else None
            print(f"[{node}] {step.seconds:.1f}s wrote {step.wrote}" if step else f"[{node}]", flush=True)


if __name__ == "__main__":
    main()
