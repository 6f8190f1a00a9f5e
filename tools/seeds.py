"""Every random stream of a run, derived from the one run seed by a named key.

A stream is `(run seed, stream name, parts...)`: the plan's target i, the examples of one draw,
an LLM sample of one node at one revision, an adaptation's shuffle or epoch. Two streams never
share a key, so changing how one is drawn never shifts another, and any draw can be reproduced
from the run seed and its key alone.

    >>> stream(7, "plan", 3).random() == stream(7, "plan", 3).random()
    True
"""

from __future__ import annotations

import hashlib
import random
from typing import Literal

#: bumped whenever a stream's key or use changes (part of a run's fingerprint: a resumed run keeps its draws)
SEED_SCHEME_VERSION = 2

#: the named streams; a new one is one more name here
Stream = Literal[
    "plan",          # the sampling plan's target i
    "pair",          # the contrastive plan's label order in pair i
    "examples",      # the real examples of one draw (the retriever; the adaptation's training prompts)
    "adapt",         # the adaptation's choice and order of grounding trials
    "epoch",         # the adaptation's batches in one epoch
    "llm",           # one LLM sample: a node at a draw and revision
    "judge",         # the real trials the LLM judge scores beside the synthetic ones
    "ladder",        # the evaluation's utility-ladder controls (evals.ladder), per evaluation seed
    "ground_sample", # a `--ground-sample` of the grounding trials, per label
]

#: the LLM nodes, each its own sample stream
LLMNode = Literal["reasoner", "writer", "critic", "judge", "try"]


def key(seed: int, name: Stream, *parts: object) -> str:
    """The stream's key: what a `random.Random` is seeded with (stable across Python processes)."""
    return ":".join(str(p) for p in (seed, name, *parts))


def stream(seed: int, name: Stream, *parts: object) -> random.Random:
    """A generator of the named stream."""
    return random.Random(key(seed, name, *parts))


def llm_seed(seed: int, node: LLMNode, index: int, revision: int = 0) -> int:
    """The sampling seed of one LLM call: node `node` for draw `index` at `revision` (31 bits, as
    llama.cpp and the OpenAI API take)."""
    digest = hashlib.sha256(key(seed, "llm", node, index, revision).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
