"""Prompt templates: Jinja2 files in agents/prompts, one system and one user template per agent.

Each template starts with ``{#- prompt: NAME, version N -#}``; the version is recorded in every
synthetic trial's provenance, so a change of wording is visible in the data it produced.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"

#: how every prompt names a target label: a trial that ... (present), trials that ... (past), and the verb
OUTCOME_PHRASES = {
    1: "succeeds (it completes and meets its primary endpoint)",
    0: "fails (it is terminated or withdrawn early, or misses its primary endpoint)",
}
OUTCOME_PAST = {1: "succeeded", 0: "failed (terminated, withdrawn or missed the primary endpoint)"}
OUTCOME_VERBS = {1: "succeed", 0: "fail"}
_HEADER = re.compile(r"\{#-?\s*prompt:\s*(\w+),\s*version\s*(\d+)\s*-?#\}")


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(str(PROMPTS_DIR)), undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False, autoescape=False)


@lru_cache(maxsize=None)
def prompt_version(name: str) -> str:
    """``writer-v1``: the version both templates of a prompt declare."""
    versions = set()
    for part in ("system", "user"):
        match = _HEADER.search((PROMPTS_DIR / f"{name}.{part}.j2").read_text())
        if not match or match.group(1) != name:
            raise ValueError(f"{name}.{part}.j2: missing '{{#- prompt: {name}, version N -#}}' header")
        versions.add(match.group(2))
    if len(versions) != 1:
        raise ValueError(f"{name}: system and user templates declare different versions {sorted(versions)}")
    return f"{name}-v{versions.pop()}"


def render_messages(name: str, **variables: object) -> list[BaseMessage]:
    """The system and user messages of prompt `name` with `variables` filled in."""
    env = _environment()
    system = env.get_template(f"{name}.system.j2").render(**variables).strip()
    user = env.get_template(f"{name}.user.j2").render(**variables).strip()
    user = re.sub(r"\n{3,}", "\n\n", user)
    return [SystemMessage(content=system), HumanMessage(content=user)]
