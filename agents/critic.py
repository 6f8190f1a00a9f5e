"""The critic agent: the deterministic checks, the calibrated domain checks and, optionally, an LLM
judgement of domain consistency.

`critique_trial` is the one critique: the graph's critique node calls it on every draft, and
`synthtrials check` on any trial. Verdict in the graph: accept (no problem), revise (problems,
revisions remain: back to the writer with feedback that names the failing section and shows what
real trials write there) or reject (problems, no revision left; kept with its reasons).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field
from synthtrials.agents.prompting import OUTCOME_PHRASES, render_messages
from synthtrials.graphs.context import RunContext
from synthtrials.graphs.resources import Resources, SyntheticIndex
from synthtrials.graphs.state import Critique, GenerationState, StepTimer
from synthtrials.tools.knowledge.checks import (
    CriticThresholds,
    Problem,
    check_copying,
    check_domain,
    check_intervention,
    check_leakage,
    check_plausibility,
    check_privacy,
    with_joint,
)
from synthtrials.tools.knowledge.domain import DomainKnowledge, trial_sections
from synthtrials.tools.llm.client import LLMClient, StructuredOutputError
from synthtrials.tools.progress import ProgressFn
from synthtrials.tools.records.trial import (
    Sentence,
    Trial,
    render_for_classifier,
    render_for_embedding,
)
from synthtrials.tools.seeds import llm_seed
from synthtrials.tools.store.protocol import (
    TrialFilter,
    TrialStore,
)

LLMCriticMode = Literal["off", "advisory", "enforce"]
CHECK_BATCH = 32  # trials whose renderings and new sections `check_trials` embeds in one call


class CriticJudgement(BaseModel):
    consistent: bool
    problems: Annotated[list[Sentence], Field(max_length=4)] = Field(default_factory=list)


@dataclass
class CritiqueResult:
    problems: list[Problem]
    scores: dict[str, float | None]
    neighbours: list[str] = field(default_factory=list)  # real trials the trial was compared with
    vector: np.ndarray | None = None  # the embedding of the trial's rendering (neighbour search)

    @property
    def failed_checks(self) -> list[str]:
        return sorted({p.check for p in self.problems})


def beyond_plan(trial: Trial) -> Trial:
    """`trial` without the fields an anchored plan fixes from its anchor (interventions, conditions, phase): what a
    draft's closeness to its anchor is read from."""
    return trial.model_copy(update={"interventions": [], "conditions": [], "phase": None})


def copy_rendering(trial: Trial, anchored: bool) -> str:
    """The text a draft's closeness to other trials is embedded from: for an anchored target, what the writer wrote
    beyond the fields the plan gave it (`beyond_plan`), so that drafts sharing an anchor's head are not near copies
    of it or near duplicates of each other for that alone."""
    return render_for_embedding(beyond_plan(trial) if anchored else trial)


def index_accepted(resources: Resources, draft: Trial, anchored: bool) -> None:
    """Add an accepted draft to the run's synthetic index as the near-duplicate check compares with it
    (`copy_rendering`): at acceptance, and for the accepted drafts of earlier sessions when a run resumes."""
    resources.synthetic.add(draft.nct_id, resources.embeddings.embed_array([copy_rendering(draft, anchored)])[0])


def critique_trial(trial: Trial, *, store: TrialStore, knowledge: DomainKnowledge, thresholds: CriticThresholds,
                   fields: Collection[str], grounding: TrialFilter, target: str | None = None,
                   examples: Sequence[Trial] = (), synthetic: SyntheticIndex | None = None,
                   exclude: str | None = None, vector: np.ndarray | None = None,
                   anchor: Trial | None = None) -> CritiqueResult:
    """Every deterministic and calibrated check of `trial` as a candidate synthetic trial.

    `target`: the drug it must test (None: not checked); `examples`: real trials it was written
    from (copy checks); `anchor`: the grounding trial an anchored target was modelled on (copy and near-copy
    checks, though the writer never saw it, on the fields the plan does not fix: `beyond_plan`); `exclude`: a real
    trial's own id, so that it is scored leave-one-out;
    `vector`: the embedding of its rendering (`render_for_embedding`) where the caller has it
    (`check_trials` embeds many trials' renderings and sections at once). Without it, the
    rendering and every section no grounding trial has are embedded in one call.
    """
    th = thresholds
    if vector is None:
        vector = knowledge.embed_with_sections([trial], [render_for_embedding(trial)])[0]
    problems = check_intervention(trial, target) if target else []
    problems += check_plausibility(trial, fields, th.min_title_words)
    problems += check_leakage(trial)
    problems += check_privacy(trial)
    domain = with_joint(knowledge.scores(trial, exclude=exclude), th.joint)
    problems += check_domain(domain, th.calibrated)
    nearby = grounding.narrowed(exclude_ids=grounding.exclude_ids | {exclude}) if exclude else grounding
    neighbours = store.search_by_vector(vector, k=th.real_neighbours, flt=nearby)
    reals = list(examples) + [h.trial for h in neighbours]
    if anchor is None:
        copy_problems, overlap = check_copying(trial, reals, th.ngram, th.max_ngram_overlap)
        similar = [(h.score, h.trial.nct_id) for h in neighbours]
    else:
        # the anchored plan gives the draft its anchor's drug, conditions, phase (and interventions), so its head is
        # the anchor's and that of every real trial with the same head (the anchor is a grounding trial, found among
        # the neighbours): closeness to real trials is read from what the writer wrote beyond those fields, for the
        # n-gram overlap and the embedding alike (the embedding's 64 tokens start with the head)
        own = beyond_plan(trial)
        reals = list({t.nct_id: t for t in [anchor, *reals]}.values())  # the anchor is often a neighbour too
        copy_problems, overlap = check_copying(own, [beyond_plan(t) for t in reals], th.ngram, th.max_ngram_overlap)
        compared = [anchor] + [h.trial for h in neighbours if h.trial.nct_id != anchor.nct_id]
        rows = store.embeddings.embed_array([copy_rendering(t, True) for t in [trial, *compared]])
        similar = [(float(rows[0] @ row), t.nct_id) for row, t in zip(rows[1:], compared)]
    problems += copy_problems
    real_similarity, closest = max(similar, default=(0.0, ""))
    if real_similarity > th.max_real_similarity:
        problems.append(Problem("near_copy", f"too close to real trial {closest} "
                                             f"(similarity {real_similarity:.3f}); write a different trial"))
    synthetic_similarity = 0.0
    if synthetic is not None:
        # the index holds the accepted drafts' `copy_rendering`s, anchored or not as this draft is
        other, synthetic_similarity = synthetic.most_similar(vector if anchor is None else rows[0], exclude=trial.nct_id)
        if synthetic_similarity > th.max_synthetic_similarity:
            problems.append(Problem("near_duplicate", f"too close to synthetic trial {other} "
                                                      f"(similarity {synthetic_similarity:.3f}); vary it"))
    scores: dict[str, float | None] = {name: None if s.score is None else round(s.score, 4) for name, s in domain.items()}
    scores |= {"ngram_overlap": round(overlap, 4), "real_similarity": round(real_similarity, 4),
               "synthetic_similarity": round(synthetic_similarity, 4)}
    return CritiqueResult(problems, scores, [h.trial.nct_id for h in neighbours], vector)


def feedback(problems: Sequence[Problem], knowledge: DomainKnowledge, trial: Trial,
             anchor: str | None = None) -> list[str]:
    """The problems as a writer can act on them: a failing section comes with what real trials of
    the same conditions write there, never the target's `anchor` (the writer is never shown it)."""
    kind_of = {"typicality": None, "eligibility_fit": "criterion", "condition_fit": "condition",
               "intervention_fit": "intervention", "coherence": None}
    out = []
    for problem in problems:
        message = problem.message
        if problem.section is not None and problem.check in kind_of:
            kind = kind_of[problem.check] or next((k for k, text in trial_sections(trial) if text == problem.section),
                                                  "criterion")
            real = knowledge.real_examples(kind, trial.conditions, exclude=anchor)
            if real:
                message += "; real trials of these conditions write, e.g.: " + " | ".join(f"'{r[:120]}'" for r in real)
        out.append(message)
    return out


def llm_judgement(llm: LLMClient, trial: Trial, intervention: str, label: int, *, seed: int,
                  temperature: float) -> tuple[list[str], str, str | None, int]:
    """The LLM critic's problems with a trial ([] when consistent or unreadable), prompt, answer, tokens."""
    messages = render_messages("critic", intervention=intervention, outcome_phrase=OUTCOME_PHRASES[label],
                               draft=render_for_classifier(trial))
    prompt = "\n\n".join(str(m.content) for m in messages)
    try:
        result = llm.structured(messages, CriticJudgement, seed=seed, temperature=temperature)
    except StructuredOutputError as exc:  # an unreadable judgement does not count against the draft
        return [], prompt, exc.raw, exc.usage.total_tokens if exc.usage else 0
    judgement = result.value
    problems = [] if judgement.consistent else (
        judgement.problems or ["the drug, condition, phase and eligibility do not fit together"])
    return problems, prompt, result.raw, result.usage.total_tokens


def make_critique_node(resources: Resources):
    def critique(state: GenerationState, runtime: Runtime[RunContext]) -> dict:
        cfg = runtime.context.generation
        assert cfg.draft is not None and cfg.ground_on is not None  # settled
        timer = StepTimer("critique")
        draft = state.draft
        llm_problems: list[str] = []
        prompt = answer = None
        tokens = 0
        neighbours: list[str] = []
        scores: dict[str, float | None] = {}
        if draft is None:
            problems = [Problem("schema", f"the answer was not a valid trial ({state.draft_error})")]
        else:
            knowledge = resources.knowledge(cfg.ground_on, cfg.ground_sample_ids)
            result = critique_trial(draft, store=resources.store, knowledge=knowledge, thresholds=cfg.thresholds,
                                    fields=cfg.draft.fields, grounding=cfg.grounding(), target=state.target.intervention,
                                    examples=resources.store.get_many(state.examples), synthetic=resources.synthetic,
                                    anchor=resources.store.get(state.target.anchor) if state.target.anchor else None)
            problems, scores, neighbours = result.problems, result.scores, result.neighbours
            if cfg.label_fit:
                fit = resources.label_fit(cfg.grounding(), cfg.draft.fields)
                probability = float(fit.label_probability([draft], [state.target.label])[0])
                scores["label_fit"] = round(probability, 4)
                if probability < fit.threshold_:
                    problems.append(Problem("label_fit", f"a classifier of the real trials finds its outcome unlikely "
                                                         f"({probability:.2f} < {fit.threshold_:.2f}): write a trial "
                                                         f"that fits the outcome"))
            if not problems and cfg.llm_critic != "off":
                llm_problems, prompt, answer, tokens = llm_judgement(
                    resources.llm, draft, state.target.intervention, state.target.label,
                    seed=llm_seed(cfg.seed, "critic", state.target.index, state.revision),
                    temperature=cfg.critic_temperature)
                if cfg.llm_critic == "enforce":
                    problems += [Problem("domain", p) for p in llm_problems]
        if not problems:
            verdict = "accept"
        elif state.revision < cfg.max_revisions:
            verdict = "revise"
        else:
            verdict = "reject"
        messages = feedback(problems, resources.knowledge(cfg.ground_on, cfg.ground_sample_ids), draft,
                            state.target.anchor) if draft and verdict == "revise" \
            else [p.message for p in problems]
        metrics = {k: v for k, v in scores.items() if v is not None}
        record = Critique(round=state.revision, verdict=verdict, problems=messages,
                          failed_checks=sorted({p.check for p in problems}), llm_problems=llm_problems, metrics=metrics,
                          neighbours=neighbours)
        return {
            "critiques": [record],
            "revision": state.revision + (1 if verdict == "revise" else 0),
            "log": timer.log(read={"draft": draft.nct_id if draft else None, "round": state.revision},
                             wrote={"verdict": verdict, "failed_checks": record.failed_checks, "problems": record.problems,
                                    "metrics": metrics}, prompt=prompt, answer=answer, tokens=tokens),
        }

    return critique


class CheckVerdict(BaseModel):
    """One line of `synthtrials check`'s verdicts.jsonl."""

    id: str
    verdict: Literal["accept", "reject"]
    failed_checks: list[str]
    problems: list[str]
    scores: dict[str, float | None]
    llm_problems: list[str] = Field(default_factory=list)


def _check_one(candidate: Trial, number: int, vector: np.ndarray, *, store: TrialStore, knowledge: DomainKnowledge,
               thresholds: CriticThresholds, fields: Collection[str], grounding: TrialFilter, held: set[str],
               llm: LLMClient | None, llm_mode: LLMCriticMode) -> CheckVerdict:
    target = candidate.interventions[0].name if candidate.interventions else None
    result = critique_trial(candidate, store=store, knowledge=knowledge, thresholds=thresholds, fields=fields,
                            grounding=grounding, target=target,
                            exclude=candidate.nct_id if candidate.nct_id in held else None, vector=vector)
    if not candidate.interventions:
        result.problems.append(Problem("intervention", "the trial lists no intervention"))
    llm_problems: list[str] = []
    if llm is not None and llm_mode != "off" and target:
        llm_problems = llm_judgement(llm, candidate, target, int(candidate.label or 0), seed=llm_seed(0, "critic", number),
                                     temperature=0.0)[0]
        if llm_mode == "enforce":
            result.problems += [Problem("domain", p) for p in llm_problems]
    return CheckVerdict(id=candidate.nct_id, verdict="reject" if result.problems else "accept",
                        failed_checks=result.failed_checks, problems=[p.message for p in result.problems],
                        scores=result.scores, llm_problems=llm_problems)


def check_trials(trials: Sequence[Trial], *, store: TrialStore, splits: list[str], knowledge: DomainKnowledge,
                 thresholds: CriticThresholds, fields: Collection[str], llm: LLMClient | None = None,
                 llm_mode: LLMCriticMode = "off", progress: ProgressFn | None = None) -> list[CheckVerdict]:
    """Critique any trials as candidate synthetic trials (status and why-stopped dropped first, as no
    draft has them). A trial the store holds is scored leave-one-out. The LLM critic joins when
    `llm_mode` is not off (enforce: its problems count). The trials' renderings and new sections
    are embedded `CHECK_BATCH` trials at a time, in one call to the encoder each."""
    from synthtrials.tools.store.protocol import grounding_filter

    grounding = grounding_filter(splits)
    held = set(store.filter_ids(grounding))
    verdicts = []
    for start in range(0, len(trials), CHECK_BATCH):
        batch = [t.model_copy(update={"overall_status": None, "why_stopped": None})
                 for t in trials[start:start + CHECK_BATCH]]
        vectors = knowledge.embed_with_sections(batch, [render_for_embedding(t) for t in batch])
        for number, (candidate, vector) in enumerate(zip(batch, vectors), start + 1):
            verdicts.append(_check_one(candidate, number, vector, store=store, knowledge=knowledge, thresholds=thresholds,
                                       fields=fields, grounding=grounding, held=held, llm=llm, llm_mode=llm_mode))
            if progress:
                progress(number, len(trials))
    return verdicts
