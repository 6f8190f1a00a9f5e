"""`synthtrials llm try`: one Trial from the configured model, no retrieval."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from synthtrials.scripts.cli.common import (
    ApiKeyEnvOpt,
    BackendOpt,
    BaseUrlOpt,
    ModelOpt,
    ModelPathOpt,
    StructuredOpt,
    err_console,
    llm_config,
    one_line_errors,
)
from synthtrials.tools.errors import ConfigError

llm_app = typer.Typer(help="Check the configured LLM.", no_args_is_help=True)


@llm_app.command("try")
@one_line_errors
def llm_try(
    intervention: Annotated[str, typer.Option(help="The drug the trial must test.")],
    label: Annotated[int, typer.Option(help="1: a trial that succeeds, 0: one that fails.")] = 1,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    model_path: ModelPathOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    temperature: Annotated[Optional[float], typer.Option(help="Sampling temperature (default 0.7).")] = None,
    structured: StructuredOpt = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed (default 0).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Answer tokens (default 900).")] = None,
) -> None:
    """Ask the configured model for one Trial (no retrieval) and print it as JSON."""
    import uuid

    from synthtrials.agents.prompting import prompt_version
    from synthtrials.agents.writer import write_draft
    from synthtrials.tools.llm.client import LLMClient
    from synthtrials.tools.records.provenance import SyntheticProvenance
    from synthtrials.tools.records.writer_format import DraftSpec
    from synthtrials.tools.seeds import SEED_SCHEME_VERSION, llm_seed

    if label not in (0, 1):
        raise ConfigError(f"--label must be 0 or 1, got {label}")
    config = llm_config(backend, model, model_path, base_url, api_key_env, structured, temperature=temperature,
                        max_tokens=max_tokens)
    run_seed = seed or 0
    spec = DraftSpec()  # the full registry record: no store, no grounding data to follow
    with err_console.status(f"asking {config.model_label()} ({config.backend}) for a trial of {intervention}..."):
        client = LLMClient(config)
        _, result = write_draft(client, spec, intervention, label, examples=[], reasons=[], feedback=[],
                                seed=llm_seed(run_seed, "try", 0))
    # no store, no examples: nothing real grounded it (an empty list says so to the leakage guard)
    provenance = SyntheticProvenance(examples=[], backend=config.backend, model=config.model_label(),
                                     templates={"writer": prompt_version("writer")}, seed=run_seed,
                                     seed_scheme=SEED_SCHEME_VERSION, attempts=result.attempts)
    trial = spec.to_trial(result.value, f"SYN-{uuid.uuid4().hex[:12]}", label=label, provenance=provenance.dump())
    print(trial.model_dump_json(indent=2, exclude_none=True))
    usage = client.usage
    err_console.print(f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens in "
                      f"{usage.seconds:.1f} s ({result.attempts} attempt(s))")
