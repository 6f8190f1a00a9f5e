"""The generation graph, wired in one place and compiled once:

    retrieve -> reason -> write -> critique --revise--> write
                                      \\--accept/reject--> finalize -> END

A retrieval that finds no example goes straight to finalize (rejected). One graph thread per
synthetic trial; with a checkpointer every step is saved, so an interrupted thread continues
from its last completed step and any thread can be replayed step by step.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.graph import END, START, StateGraph
from synthtrials.agents.critic import index_accepted, make_critique_node
from synthtrials.agents.prompting import prompt_version
from synthtrials.agents.reasoner import make_reason_node
from synthtrials.agents.retriever import make_retrieve_node
from synthtrials.agents.writer import make_write_node
from synthtrials.graphs.context import RunContext
from synthtrials.graphs.resources import Resources
from synthtrials.graphs.state import GenerationState, StepTimer
from synthtrials.tools.knowledge.checks import outcome_word_counts
from synthtrials.tools.records.provenance import AdapterRef, CriticRecord, SyntheticProvenance
from synthtrials.tools.seeds import SEED_SCHEME_VERSION


def make_finalize_node(resources: Resources):
    def finalize(state: GenerationState, runtime: Runtime[RunContext]) -> dict:
        cfg = runtime.context.generation
        timer = StepTimer("finalize")
        last = state.critiques[-1] if state.critiques else None
        writer_template = "writer_adapted" if cfg.writer_adapter else "writer"
        accepted = last is not None and last.verdict == "accept" and state.draft is not None
        if accepted:
            reasons: list[str] = []
        elif not state.examples:
            reasons = ["no_examples"]
        else:
            reasons = (last.failed_checks if last is not None else []) or ["rejected"]
        provenance = SyntheticProvenance(
            run_id=runtime.context.run_id, plan_index=state.target.index, target=state.target.model_dump(),
            anchor=state.target.anchor,
            ground_on=cfg.ground_on, examples=state.examples, neighbours=state.neighbours,
            critic_neighbours=sorted({i for c in state.critiques for i in c.neighbours}),
            reasons=state.reasons, reasons_source=state.reasons_source,
            critiques=[CriticRecord.model_validate(c.model_dump()) for c in state.critiques],
            revisions=sum(1 for c in state.critiques if c.verdict == "revise"), reject_reasons=reasons,
            backend=cfg.llm.backend, model=cfg.llm.model_label(),
            templates={"reasoner": prompt_version("reasoner"), "writer": prompt_version(writer_template),
                       "critic": prompt_version("critic")},
            writer_adapter=AdapterRef(path=cfg.writer_adapter, sha256=cfg.writer_adapter_sha256)
            if cfg.writer_adapter else None,
            calibration=cfg.thresholds.calibration, seed=cfg.seed, seed_scheme=SEED_SCHEME_VERSION,
            tokens=sum(step.tokens for step in state.log))
        if accepted:
            assert state.draft is not None
            provenance.outcome_words = dict(outcome_word_counts(state.draft))
            trial = state.draft.model_copy(update={"provenance": provenance.dump()})
            index_accepted(resources, trial, anchored=bool(state.target.anchor))
            update = {"draft": trial, "verdict": "accept", "provenance": trial.provenance}
        else:
            update = {"verdict": "reject", "reject_reasons": reasons, "provenance": provenance.dump()}
        update["log"] = timer.log(wrote={"verdict": update["verdict"], "reasons": reasons})
        return update

    return finalize


def route_after_retrieve(state: GenerationState) -> str:
    """A draw without any example cannot be grounded: straight to finalize (rejected)."""
    return "reason" if state.examples else "finalize"


def route_after_critique(state: GenerationState) -> str:
    """Back to the writer while the critic asks for a revision, else finalize."""
    return "write" if state.critiques and state.critiques[-1].verdict == "revise" else "finalize"


def build_graph(resources: Resources, checkpointer: Any = None):
    """The compiled StateGraph for `resources` (store, LLM, synthetic index); invoke it with
    `context=RunContext(settled configuration, run id)`."""
    graph = StateGraph(GenerationState, context_schema=RunContext)
    graph.add_node("retrieve", make_retrieve_node(resources))
    graph.add_node("reason", make_reason_node(resources))
    graph.add_node("write", make_write_node(resources))
    graph.add_node("critique", make_critique_node(resources))
    graph.add_node("finalize", make_finalize_node(resources))
    graph.add_edge(START, "retrieve")
    graph.add_conditional_edges("retrieve", route_after_retrieve, {"reason": "reason", "finalize": "finalize"})
    graph.add_edge("reason", "write")
    graph.add_edge("write", "critique")
    graph.add_conditional_edges("critique", route_after_critique, {"write": "write", "finalize": "finalize"})
    graph.add_edge("finalize", END)
    return graph.compile(checkpointer=checkpointer)
