"""Every tunable of a generation run, with its default in one place.

Settled once per run (`graphs.resolve.settle_generation`) and handed to every node in the run's
runtime context (`graphs.context.RunContext`), so a script can change k, the number of reasons,
revisions, temperatures or thresholds per invocation without rebuilding the graph.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field
from synthtrials.tools.knowledge.checks import CriticThresholds
from synthtrials.tools.llm.client import LLMConfig
from synthtrials.tools.llm.config import backend_of
from synthtrials.tools.records.splits import Split
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.store.protocol import (
    TrialFilter,
    grounding_filter,
)
from synthtrials.tools.records.writer_format import DraftSpec


class GenerationConfig(BaseModel):
    ground_on: list[Split] | None = Field(
        None, description="the splits generation may read (retriever, neighbours, vocabulary, critic knowledge); "
                          "None: train when the store has a train split, else pool (settled when a run starts)")
    ground_sample: float | None = Field(
        None, gt=0, le=1, description="ground on a seeded, label-stratified fraction of the grounding splits (plan, "
                                      "examples, evidence, the critic's knowledge and calibration): an honest "
                                      "low-resource run; `evaluate` then trains its real arm on the same trials")
    ground_sample_ids: list[str] | None = Field(None, description="the sampled grounding trials (settled)")
    draft: DraftSpec | None = Field(
        None, description="the fields and bounds the writer writes; None: measured on the grounding trials")
    writer_adapter: str | None = Field(
        None, description="folder of a writer adapted to the grounding trials (`synthtrials adapt`); the reasoner "
                          "and critic keep the base model")
    writer_adapter_sha256: str | None = Field(None, description="the adapter's hash (part of the run fingerprint)")
    k: int = Field(3, ge=1, le=10, description="real examples per draw (the paper: 3)")
    neighbours: Literal["off", "fallback", "add"] = Field(
        "fallback", description="semantic neighbours with the same label: only when fewer than k examples, or always added")
    n_neighbours: int = Field(2, ge=0, le=10)
    example_chars: int = Field(900, ge=200, description="each example's rendering is trimmed to this many characters")
    writer_prompt_tokens: int | None = Field(
        None, ge=128, le=4096, description="an adapted writer's prompt budget in tokens (drug, outcome, two examples, "
                                           "reasons, feedback; the examples are trimmed to fit it); None: the budget "
                                           "the adapter was trained with (adapter.json, 256 by default). The "
                                           "one-epoch adapter trained at 256 wrote as short criteria at 512, with the "
                                           "same TSTR, 14% slower (benchmarks/RESULTS.md, \"The anchor was shown to "
                                           "the writer\")")
    n_reasons: int = Field(5, ge=1, le=10, description="reasons per draw (the paper: 5)")
    reasoner: Literal["auto", "llm", "evidence", "none"] = Field(
        "auto", description="who writes the reasons: the LLM (validated), templates from the registry evidence, "
                            "nobody (ablation); auto measures the model's reason validity once per store and model")
    max_revisions: int = Field(
        3, ge=0, le=5, description="critic -> writer loops before a draft is rejected. 3: with the embedded writer (held "
                                   "interventions, calibration version 6) acceptance 91.2% against 87.7% with 2 (means "
                                   "over three seeds), at 16.7 against 16.9 accepted a minute, and the trials accepted after "
                                   "a revision carry as much outcome signal as first drafts (benchmarks/RESULTS.md, "
                                   "\"Three revisions\")")
    writer_temperature: float = Field(0.7, ge=0, le=2)
    reasoner_temperature: float = Field(0.3, ge=0, le=2)
    critic_temperature: float = Field(0.0, ge=0, le=2)
    llm_critic: Literal["off", "advisory", "enforce"] | None = Field(
        None, description="the LLM domain-consistency judgement: ignored, recorded, or able to send drafts back; "
                          "None: off for models whose judgement was measured no better than chance "
                          "(benchmarks/bench_critic.py), else enforce")
    constrain_vocabulary: Literal["auto", "on", "off"] = Field(
        "auto", description="restrict the writer's conditions and phase to those of the intervention's real trials, "
                            "and enrollment to 1-999, in the output schema (auto: on for llama.cpp's grammar)")
    writer_grammar: Literal["auto", "always", "on_failure"] = Field(
        "auto", description="the writer's JSON-schema grammar: always, or only when a freely decoded answer does not "
                            "parse or fit the schema (on_failure); auto: always (measured: 27 of 29 free answers of a "
                            "writer adapted on 60 trials needed the grammar, benchmarks/RESULTS.md)")
    writer_sampling: Literal["penalty", "dry"] = Field(
        "penalty", description="how an adapted writer's sampler keeps it from looping: `penalty` penalises every "
                               "token repeated within the last 64 (1.1), which also falls on the quotes and commas "
                               "between criteria and closes the lists early (median 5 criteria); `dry` penalises "
                               "repeated sequences only (llama.cpp's DRY, llamacpp-server): median 13.5 criteria, "
                               "but acceptance 58.5% against 84.4% and 6.3 accepted/min against 18.3 "
                               "(benchmarks/RESULTS.md, shape)")
    writer_criteria: Literal["free", "anchor"] = Field(
        "free", description="how many eligibility criteria the writer writes: as many as it likes (`free`; an adapted "
                            "writer under the repetition penalty stops at a median of 4-5, real trials have 18), or "
                            "exactly as many inclusion and exclusion criteria as the target's anchor (`anchor`, "
                            "anchored plans: the grammar asks for them, within the draft's bounds); the answer budget "
                            "must hold them (`adapt --answer-tokens auto`). Measured with the embedded writer: 16 "
                            "criteria per trial (real 18), but acceptance 74.5% against 89.4% and TSTR 0.517 "
                            "(benchmarks/RESULTS.md, the anchor's number of criteria)")
    writer_conditions: Literal["auto", "free", "anchor"] = Field(
        "auto", description="the draft's conditions and phase: exactly the target's anchor's, through the grammar, "
                            "before the writer writes the rest (`anchor`, anchored plans), or as the writer chooses "
                            "them (`free`: an adapted writer's prompt names only the drug, the outcome and the "
                            "examples, and it kept its anchor's conditions in 63-70% of trials); `auto` (default): "
                            "`anchor` under an anchored plan, else `free`. Measured with the embedded writer over "
                            "three seeds: acceptance 86.8% against 86.5% (means), TSTR 0.597 / 0.548 / 0.580 "
                            "against 0.592 / 0.531 / 0.547 (benchmarks/RESULTS.md, the anchor's conditions). A prompted "
                            "writer is told them in its prompt either way")
    writer_interventions: Literal["auto", "free", "anchor"] = Field(
        "auto", description="the draft's interventions: exactly the target's anchor's, its drug first, through the "
                            "grammar (`anchor`, anchored plans), or the drug and whatever the writer adds (`free`: "
                            "the adapted writer added drugs that no trial of the store names to 208 of 300 accepted "
                            "trials; held, none); `auto` (default): `anchor` under an anchored plan, else `free` "
                            "(benchmarks/RESULTS.md, the anchor's interventions)")
    label_fit: bool = Field(False, description="the critic also asks a TF-IDF classifier of the grounding trials "
                                                "whether a draft fits its label (tools/knowledge/label_fit.py; off: "
                                                "measured in benchmarks/RESULTS.md)")
    thresholds: CriticThresholds = Field(default_factory=CriticThresholds)
    seed: int = 0
    llm: LLMConfig = Field(default_factory=LLMConfig)

    def unsettled(self) -> list[str]:
        """The data-dependent fields still at their "settle me" value (empty once settled)."""
        missing = [name for name in ("ground_on", "draft", "llm_critic") if getattr(self, name) is None]
        if not self.thresholds.calibrated:
            missing.append("thresholds")
        if self.reasoner == "auto":
            missing.append("reasoner")
        if self.ground_sample is not None and self.ground_sample_ids is None:
            missing.append("ground_sample_ids")
        return missing

    def grounding(self) -> TrialFilter:
        """The real trials of the grounding splits (settled: see `graphs.resolve`)."""
        if self.ground_on is None:
            raise ValueError("ground_on is not settled: resolve the configuration against the store first")
        return grounding_filter(self.ground_on, self.ground_sample_ids)

    def writer_grammar_mode(self) -> Literal["always", "on_failure"]:
        if self.writer_grammar == "auto":
            return "always"
        return self.writer_grammar

    def writer_dry(self) -> bool:
        """Whether the adapted writer samples with DRY (and without the token repetition penalty)."""
        if self.writer_sampling == "dry" and not backend_of(self.llm).dry_sampler:
            raise ConfigError(f"writer_sampling dry needs the llamacpp-server backend (llama.cpp's DRY sampler), "
                              f"not {self.llm.backend}; use penalty")
        return self.writer_sampling == "dry"

    def vocabulary_constrained(self) -> bool:
        if self.constrain_vocabulary == "auto":
            return backend_of(self.llm).grammar
        return self.constrain_vocabulary == "on"

    #: LLM settings that change where and how calls travel, not what a run produces
    TRANSPORT_FIELDS: ClassVar[tuple[str, ...]] = ("cache_path", "base_url", "api_key_env", "timeout_s", "max_retries", "requests_per_second",
                        "max_concurrency", "n_threads", "price_prompt_per_m", "price_completion_per_m",
                        "server_port", "server_log_dir")

    def pins_conditions(self, anchored: bool) -> bool:
        """Whether the writer's schema holds a draft to its target's anchor's conditions and phase (`anchored`:
        the target has an anchor)."""
        return anchored and self.writer_conditions != "free"

    def pins_interventions(self, anchored: bool) -> bool:
        """Whether the writer's schema holds a draft to its target's anchor's interventions (`anchored`: the target
        has an anchor)."""
        return anchored and self.writer_interventions != "free"

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a run folder to be resumed: everything that shapes the trials."""
        data = self.model_dump(mode="json")
        for name in self.TRANSPORT_FIELDS:
            data["llm"].pop(name, None)
        return data
