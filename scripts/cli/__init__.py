"""The `synthtrials` command line: thin wrappers over the functions scripts and tests call.

One module per command group; this one builds the root app from them:

- common.py      one-line errors, the progress bar, consoles, --store and the LLM option types, llm_config
- data.py        ingest, import-synthetic, fetch; `data download`
- store.py       `store stats`, `store calibrate`, `store eligible`, `store search`
- llm.py         `llm try`
- generation.py  generate, adapt, check, trace
- evaluation.py  evaluate, judge, report
- demo.py        demo (the pipeline itself is synthtrials.scripts.demo)

`synthtrials` (pyproject.toml) and `python -m synthtrials.scripts.cli` both run `main()`.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer
from synthtrials.scripts.cli import data, demo, evaluation, generation, llm, store

app = typer.Typer(help="Synthetic labelled clinical trials from a LangGraph team of agents.",
                  pretty_exceptions_enable=False, no_args_is_help=True, add_completion=False)
# top-level commands, in the order `synthtrials --help` lists them
app.add_typer(data.app)
app.add_typer(generation.app)
app.add_typer(evaluation.app)
app.add_typer(demo.app)
# command groups
app.add_typer(store.store_app, name="store")
app.add_typer(llm.llm_app, name="llm")
app.add_typer(data.data_app, name="data")


def main() -> None:
    from synthtrials.scripts.cli_args import expand_multi_value

    app(args=expand_multi_value(sys.argv[1:]), prog_name="synthtrials")
