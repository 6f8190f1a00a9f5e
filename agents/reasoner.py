"""The reasoning agent: R reasons why trials of the intervention succeed or fail, from the examples.

Asked with sample index 0, so a draw with the same examples reuses its reasons from the LLM cache.
"""

from __future__ import annotations

import time
from typing import Annotated

from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, Field

from synthtrials.agents.prompting import render_messages
from synthtrials.graphs.config import GenerationConfig
from synthtrials.graphs.resources import Resources
from synthtrials.graphs.state import GenerationState, StepLog
from synthtrials.tools.llm import StructuredOutputError
from synthtrials.tools.trial import Sentence

OUTCOME = {1: ("succeeded", "succeed"), 0: ("failed (terminated, withdrawn or missed the primary endpoint)", "fail")}


class Reasons(BaseModel):
    reasons: Annotated[list[Sentence], Field(min_length=1, max_length=10)]


def reasons_schema(n: int) -> dict:
    schema = Reasons.model_json_schema()
    schema["properties"]["reasons"].update(minItems=n, maxItems=n)
    return schema


def make_reason_node(resources: Resources):
    def reason(state: GenerationState, config: RunnableConfig) -> dict:
        cfg = GenerationConfig.from_runnable_config(config)
        start = time.perf_counter()
        target = state.target
        phrase, verb = OUTCOME[target.label]
        messages = render_messages("reasoner", intervention=target.intervention, outcome_phrase=phrase,
                                   outcome_verb=verb, examples=state.example_texts, n_reasons=cfg.n_reasons)
        prompt = "\n\n".join(str(m.content) for m in messages)
        try:
            result = resources.llm.structured(messages, Reasons, sample_index=0, temperature=cfg.reasoner_temperature,
                                              json_schema=reasons_schema(cfg.n_reasons))
        except StructuredOutputError as exc:  # the writer can still work without reasons
            return {"reasons": [], "log": [StepLog(node="reason", seconds=time.perf_counter() - start, prompt=prompt,
                                                   answer=exc.raw, wrote={"error": str(exc)},
                                                   tokens=exc.usage.total_tokens if exc.usage else 0)]}
        reasons = result.value.reasons[: cfg.n_reasons]
        return {"reasons": reasons, "log": [StepLog(
            node="reason", seconds=time.perf_counter() - start, read={"examples": state.examples},
            wrote={"reasons": reasons}, prompt=prompt, answer=result.raw, tokens=result.usage.total_tokens)]}

    return reason
