"""Deterministic checks of candidate synthetic trials: intervention, plausibility, leakage,
privacy, copying, and the domain checks calibrated on real trials (typicality, condition fit,
eligibility fit, intervention fit). Each check is a pure function returning `Problem`s (a check
name and a message a writer can act on). Every threshold lives in `CriticThresholds`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

import phonenumbers
from pydantic import BaseModel, Field
from synthtrials.tools.knowledge.cross_encoder import CROSS_ENCODER
from synthtrials.tools.knowledge.domain import SectionScore
from synthtrials.tools.knowledge.joint import JOINT, JointScore
from synthtrials.tools.records.normalize import normalize_intervention
from synthtrials.tools.records.trial import (
    NCT_ID_ANYWHERE,
    SCRUBBED_WORDS,
    Phase,
    Trial,
    render_for_classifier,
    scrub_status_words,
)


@dataclass(frozen=True)
class Problem:
    check: str
    message: str
    section: str | None = None  # the failing section's text, when one section is at fault


#: calibrated score -> the check it belongs to (see `tools.knowledge.domain.DomainKnowledge.scores`)
SCORE_CHECKS = {"condition_fit": "condition_fit", "eligibility_fit": "eligibility_fit", "criteria_count": "content",
                "intervention_fit": "intervention_fit", "intervention_margin": "intervention_fit",
                "coherence_eligibility": "coherence", "coherence_criterion": "coherence", "coherence_criterion_fit": "coherence",
                "coherence_typical_criteria": "coherence", "coherence_typical_conditions": "coherence",
                "coherence_conditions": "coherence", CROSS_ENCODER: "coherence", JOINT: "coherence"}


def check_of(score_name: str) -> str:
    return "typicality" if score_name.startswith("typicality_") else SCORE_CHECKS[score_name]


class CriticThresholds(BaseModel):
    """Every threshold of the critic's checks, in one place.

    The domain checks' thresholds (`calibrated`) are quantiles of the same scores on real
    grounding trials (`tools.knowledge.calibration`); `calibration` names the store calibration they come
    from. The rest are documented constants of the copy checks.
    """

    calibrated: dict[str, float] = Field(default_factory=dict, description="score name -> lowest acceptable score")
    calibration: str | None = Field(None, description="key of the store calibration the thresholds come from")
    joint: JointScore | None = Field(None, description="the calibration's joint score over the others (its threshold: "
                                                       "`calibrated['coherence_joint']`)")
    ngram: int = Field(8, description="word n-gram length for copy detection")
    max_ngram_overlap: float = Field(0.35, description="share of the draft's n-grams found in one real trial")
    max_real_similarity: float = Field(0.97, description="cosine similarity to the closest real trial")
    max_synthetic_similarity: float = Field(0.98, description="cosine similarity to an accepted synthetic trial")
    real_neighbours: int = Field(5, description="closest real trials checked beyond the examples")
    min_title_words: int = 3


_WHAT = {"criterion": "eligibility criterion", "condition": "condition", "intervention": "intervention",
         "outcome": "outcome measure", "title": "title", "summary": "summary"}


#: what each score says about a trial, for the joint score's message (the score that pulls it down most)
_SCORE_MEANS = {
    "typicality_criterion": "a criterion unlike real criteria", "typicality_criterion_mean": "criteria unlike real ones",
    "typicality_criterion_language": "a criterion that does not read like an eligibility criterion",
    "typicality_condition": "a condition unlike real conditions", "criteria_count": "few criteria",
    "condition_fit": "conditions this drug's real trials do not study",
    "eligibility_fit": "criteria of another disease than the conditions",
    "intervention_fit": "an intervention unlike real ones", "intervention_margin": "an intervention that reads like a condition",
    "coherence_eligibility": "criteria that describe other conditions",
    "coherence_typical_criteria": "criteria unlike those of real trials of these conditions",
    "coherence_typical_conditions": "conditions unlike those of real trials with such criteria",
    "coherence_criterion": "an inclusion criterion about another disease",
    "coherence_criterion_fit": "an inclusion criterion of another disease than the conditions",
    "coherence_conditions": "a condition that does not go with the others",
    CROSS_ENCODER: "criteria and conditions that, read together, do not belong to one trial",
}


def with_joint(scores: dict[str, SectionScore], joint: JointScore | None) -> dict[str, SectionScore]:
    """`scores` with the joint score over them (`tools.knowledge.joint`) where the calibration has one."""
    return scores if joint is None else scores | {JOINT: joint.score(scores)}


def check_domain(scores: dict[str, SectionScore], thresholds: dict[str, float]) -> list[Problem]:
    """The calibrated domain checks: a score below its threshold fails its check."""
    problems = []
    for name, score in scores.items():
        limit = thresholds.get(name)
        if limit is None or score.score is None or score.score >= limit:
            continue
        what = _WHAT.get(score.kind or "", "section")
        quoted = f"'{(score.section or '')[:90]}'"
        message = {
            "condition_fit": f"the condition {quoted} does not fit this drug: real trials of it study other conditions",
            "eligibility_fit": f"the {what} {quoted} describes another disease than the trial's conditions",
            "intervention_fit": f"{quoted} is not an intervention like those of real trials (a drug name is expected)",
            "intervention_margin": f"{quoted} reads like a condition, not an intervention",
            "criteria_count": f"give as many eligibility criteria as real trials do ({score.score:.0f} is too few)",
            "typicality_criterion_mean": "the eligibility criteria as a whole read unlike real criteria "
                                         f"(the furthest: {quoted})",
            "typicality_criterion_language": f"the criterion {quoted} does not read like an eligibility criterion: write "
                                             "only criteria a patient is screened by, with no other text among them",
            "coherence_criterion": f"the inclusion criterion {quoted} does not fit the trial's conditions: it is about "
                                   "another disease or population",
            "coherence_criterion_fit": f"the inclusion criterion {quoted} belongs to trials of another disease than "
                                       "the trial's conditions: write criteria for the trial's own conditions",
            "coherence_eligibility": "the eligibility criteria as a whole describe other conditions than the trial's "
                                     f"(the furthest: {quoted})",
            "coherence_conditions": f"the condition {quoted} does not fit with the trial's other conditions",
            "coherence_typical_criteria": "the eligibility criteria are unlike those of real trials of these conditions "
                                          f"(the furthest: {quoted})",
            "coherence_typical_conditions": "the conditions are unlike those of real trials with such criteria "
                                            f"(the furthest: {quoted})",
            CROSS_ENCODER: "the eligibility criteria, read together with the conditions, do not read like the "
                           "criteria of a trial of these conditions: write criteria for the trial's own conditions",
            JOINT: "the trial's parts fit together less well than real trials' do (most of all: "
                   f"{_SCORE_MEANS.get(score.by or '', 'its sections')}{', ' + quoted if score.section else ''})",
        }.get(name, f"the {what} {quoted} reads like no real {what}")
        problems.append(Problem(check_of(name), f"{message} (score {score.score:.2f} < {limit:.2f})", score.section))
    return problems


# --- label leakage ---------------------------------------------------------------------------

#: whole words counted as possible outcome signals (reported per run and per trial)
OUTCOME_WORDS = SCRUBBED_WORDS + ("failed", "failure", "success", "completed")
_OUTCOME_WORD = re.compile(r"\b(" + "|".join(OUTCOME_WORDS) + r")\b", re.IGNORECASE)
#: sentences that state an outcome outright (leakage in meaning, not just in words); a study, its
#: enrolment or accrual must be what was stopped: real criteria write "since the agents were suspended" and
#: "whose immunosuppression is being stopped early"
_OUTCOME_STATEMENT = re.compile(
    r"\b(?:(?:study|trial|enrol{1,2}ment|recruitment|accrual)\s+(?:(?:was|were|has been|had been|is being)\s+"
    r"(?:terminated|stopped|halted|withdrawn|discontinued|suspended|closed)(?:\s+early)?|(?:stopped|terminated)\s+early)"
    r"|(?:stopped|terminated|halted)\s+early\s+(?:for|due to|because of)\s+(?:futility|efficacy|benefit)"
    r"|(?:met|achieved|missed|failed to meet|did not meet)\s+(?:its|the)\s+primary"
    r"|(?:low|slow|poor)\s+(?:accrual|enrollment|enrolment)|lack of (?:efficacy|funding)|sponsor decision"
    r"|rationale for (?:failure|success)|the (?:trial|study) (?:succeeded|failed))\b",
    re.IGNORECASE,
)


def _text_fields(trial: Trial) -> list[str]:
    fields = [trial.brief_title or "", trial.official_title or "", trial.brief_summary or "",
              trial.detailed_description or ""]
    fields += trial.conditions + [i.name for i in trial.interventions] + [i.description or "" for i in trial.interventions]
    if trial.eligibility:
        fields += trial.eligibility.inclusion + trial.eligibility.exclusion
    fields += [o.measure for o in trial.primary_outcomes + trial.secondary_outcomes]
    return [f for f in fields if f]


def outcome_word_counts(trial: Trial) -> Counter:
    counts: Counter = Counter()
    for text in _text_fields(trial):
        for match in _OUTCOME_WORD.finditer(text):
            counts[match.group(1).lower()] += 1
    return counts


def scrub_trial(trial: Trial) -> Trial:
    """Drop status and why-stopped, remove whole status words from every free-text field."""
    data = trial.model_dump()
    data["overall_status"] = None
    data["why_stopped"] = None
    for key in ("brief_title", "official_title", "brief_summary", "detailed_description"):
        data[key] = scrub_status_words(data[key])
    if data.get("eligibility"):
        for key in ("inclusion", "exclusion"):
            data["eligibility"][key] = [s for s in (scrub_status_words(x) for x in data["eligibility"][key]) if s]
    for item in data["interventions"]:
        item["description"] = scrub_status_words(item["description"])
    for key in ("primary_outcomes", "secondary_outcomes"):
        for item in data[key]:
            item["measure"] = scrub_status_words(item["measure"]) or item["measure"]
    return Trial.model_validate(data)


def check_leakage(trial: Trial) -> list[Problem]:
    problems = []
    if trial.overall_status or trial.why_stopped:
        problems.append(Problem("leakage", "remove the status and why-stopped"))
    for text in _text_fields(trial):
        match = _OUTCOME_STATEMENT.search(text)
        if match:
            problems.append(Problem("leakage", f"the text states the outcome ('{match.group(0)}'); describe only the plan"))
            break
    return problems


# --- privacy ---------------------------------------------------------------------------------

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
_URL = re.compile(r"https?://|www\.|\.(?:com|org|net|gov|html?|png|jpe?g)\b", re.IGNORECASE)
_PERSON = re.compile(r"\b(?:Dr|Prof|Mr|Mrs|Ms)\.?\s+[A-Z][a-z]+|\b[A-Z][a-z]+\s+[A-Z][a-z]+,\s*(?:MD|M\.D\.|PhD|RN)\b")
#: tags ("<b>", "</p>", "<br/>", '<a href="...">') and template braces; not comparisons: "</= 2.0", and "<LLN" or "<age 19"
#: with a ">" later in the criterion ("(<age 19), the elderly (>age 65)"), which a tag's attributes made into one
_MARKUP = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s+[a-zA-Z-]+\s*=\s*(?:\"[^\"\n]*\"|'[^'\n]*'))*\s*/?>"
                     r"|\{\{|\}\}|\[\[|\]\]")


#: a North American number in its usual shape, valid or not: the placeholders a writer makes up
#: ("555-123-4567", "(555) 123-4567") are no valid numbers, and are as much a phone number in a trial
_NANP_SHAPED = re.compile(r"(?<![\w-])\(?\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}(?![\w-])")
#: "00" before a country code, the international prefix of most countries outside North America ("0044 20 ...")
_INTERNATIONAL_PREFIX = re.compile(r"(?<![\w+-])00(?=\s?[1-9])")
#: a number written with its country code, valid or not ("+44 20 7946 0083" is in a range kept for drama, which
#: libphonenumber reads as no valid number): "+" or "00", a country code, then groups of digits (8 to 15 digits in all;
#: after "00" apart by spaces only: "nnc 0070-0002-0453" is a drug's code)
_INTERNATIONAL_SHAPED = re.compile(r"(?<![\w+-])(?:\+[1-9]\d{0,2}(?:[\s.-]?\d{2,4}){2,5}|00[1-9]\d{0,2}(?:\s?\d{2,4}){2,5})"
                                   r"(?![\w-])")


def phone_numbers(text: str) -> list[str]:
    """The phone numbers in `text`: those libphonenumber reads as valid, of any country written with its code
    ("+44 20 7946 0958", "0044 20 7946 0958") or North American without it ("(617) 555-1234"), and any text in the
    shape of a North American number ("555-123-4567": a made-up number is still one).

    A pattern for runs of ten or more digits, used before, fired on 11 of TOP's 2,578 trials (15 with the toy files)
    and every time on something else: a drug code with its dose ("pf-00734200 30 mg qd", "bms-663068 1200 mg"), a
    national drug code ("ndc 0378-4141-01"), a count ("1.5 x 1000000000/L"). None of those is a valid number or has a
    phone number's shape, except a code whose digits and dose happen to make a valid one ("jnj-30979754 15 mg/m2"):
    digits that go on from a word or a hyphen are part of it. A national number of another country written without
    its country code ("020 7946 0958") has no region to be read in and is not found. One written with its country code
    is found valid or not, by its shape ("0044 20 7946 0083": missed by bench_critic until stop 54).
    """
    international = _INTERNATIONAL_PREFIX.sub("+", text)
    found = {match.raw_string for match in
             phonenumbers.PhoneNumberMatcher(international, "US", leniency=phonenumbers.Leniency.VALID)
             if match.start == 0 or not re.match(r"[\w-]", international[match.start - 1])}  # "jnj-30979754 15 mg"
    shaped = {match.group(0) for match in _INTERNATIONAL_SHAPED.finditer(text)
              if 8 <= sum(c.isdigit() for c in match.group(0)) <= 15}
    return sorted(found | shaped | {match.group(0) for match in _NANP_SHAPED.finditer(text)})


def check_privacy(trial: Trial) -> list[Problem]:
    problems = []
    text = "\n".join(_text_fields(trial))
    if NCT_ID_ANYWHERE.search(text) or NCT_ID_ANYWHERE.search(trial.nct_id if trial.source == "synthetic" else ""):
        problems.append(Problem("privacy", "remove NCT identifiers"))
    for find, what in ((_EMAIL.search, "e-mail addresses"), (phone_numbers, "phone numbers"),
                       (_URL.search, "web addresses and file names"), (_PERSON.search, "personal names")):
        if find(text):
            problems.append(Problem("privacy", f"remove {what}"))
    return problems


# --- validity, intervention, plausibility ------------------------------------------------------

#: plausible enrollment per phase (inclusive), generous on purpose: only nonsense is caught
ENROLLMENT_RANGES: dict[Phase, tuple[int, int]] = {
    Phase.EARLY_PHASE_1: (1, 500),
    Phase.PHASE_1: (1, 1500),
    Phase.PHASE_1_2: (4, 2000),
    Phase.PHASE_2: (6, 5000),
    Phase.PHASE_2_3: (20, 20000),
    Phase.PHASE_3: (20, 100000),
    Phase.PHASE_4: (10, 100000),
    Phase.NOT_APPLICABLE: (1, 100000),
}
_WORD = re.compile(r"[A-Za-z]{3,}")
#: a trial phase written as a condition ("Phase 1", "phase I/II"); a disease's own phase is a condition
#: ("accelerated phase chronic myelogenous leukemia", "blastic phase": 5 phase_I_train trials, 3 of phase_I_test)
_TRIAL_PHASE = re.compile(r"\bphases?\s*(?:[0-4]|iv|i{1,3}|one|two|three|four)[ab]?"
                          r"(?:\s*[/-]\s*(?:[0-4]|iv|i{1,3})[ab]?)?\b", re.IGNORECASE)


def _words(text: str) -> int:
    return len(_WORD.findall(text))


def check_intervention(trial: Trial, intervention: str) -> list[Problem]:
    wanted = normalize_intervention(intervention)
    names = [normalize_intervention(i.name) for i in trial.interventions]
    if wanted not in names and not any(wanted in n.split(" / ") or n.startswith(wanted + " ") for n in names):
        return [Problem("intervention", f"the trial must test {intervention} (listed among its interventions)")]
    return []


def check_plausibility(trial: Trial, fields: Collection[str], min_title_words: int = 3) -> list[Problem]:
    """Phase, enrollment, conditions and the presence of what the writer's field set asks for.

    Only fields of `fields` (the grounding data's field set) are required: a trial grounded on
    TOP has no title or summary to check. Terse criteria ("ECOG 0-1", "Pregnancy") are fine:
    whether a criterion reads like a real one is the typicality check's job, not a word count.
    """
    problems = []
    if trial.phase is None or trial.phase == Phase.NOT_APPLICABLE:
        problems.append(Problem("phase", "a drug trial needs a phase (early phase 1 to phase 4)"))
    elif trial.enrollment is not None:
        low, high = ENROLLMENT_RANGES[trial.phase]
        if not low <= trial.enrollment <= high:
            problems.append(Problem("enrollment", f"enrollment {trial.enrollment} is implausible for {trial.phase.value} "
                                                  f"(expected {low}-{high})"))
    if "title" in fields and _words(trial.brief_title or "") < min_title_words:
        problems.append(Problem("content", "write a descriptive title"))
    bad_conditions = [c for c in trial.conditions if _words(c) == 0 or _TRIAL_PHASE.search(c)]
    if not trial.conditions or bad_conditions:
        problems.append(Problem("content", f"conditions must be disease names (not {bad_conditions[:2]})"))
    if "eligibility" in fields:
        elig = trial.eligibility
        if not elig or not (elig.inclusion or elig.exclusion or elig.raw):
            problems.append(Problem("content", "give inclusion and exclusion criteria"))
        elif repeated_criteria(elig.inclusion, elig.exclusion):
            problems.append(Problem("content", "the criteria repeat themselves: write each criterion once, and "
                                               "exclusion criteria that differ from the inclusion criteria"))
    if "summary" in fields and _words(trial.brief_summary or "") < 8:
        problems.append(Problem("content", "write a brief summary of the trial's purpose and design"))
    if any(_MARKUP.search(t) for t in _text_fields(trial)):
        problems.append(Problem("content", "remove markup and placeholders"))
    return problems


def repeated_criteria(inclusion: list[str], exclusion: list[str]) -> bool:
    """At least half of the exclusion criteria restate an inclusion criterion (the same words, up to
    a fifth of them: "regimen" / "regimens"), or fewer than 70% of 4+ criteria are distinct (a
    looping writer). On phase_I_train, 4 of 1,044 real trials trip it (0.4%, as many as with exact
    restatements only); of the 300 trials the adapted writer got accepted before the near-restatement
    rule, 11 (3.7%)."""
    def norm(text: str) -> str:
        return " ".join(re.findall(r"[a-z0-9]+", text.lower()))

    inc = [n for n in map(norm, inclusion) if n]
    exc = [n for n in map(norm, exclusion) if n]
    inc_words = [frozenset(n.split()) for n in inc]
    restated = sum(any(len(words & other) >= 0.8 * len(words | other) for other in inc_words)
                   for words in (frozenset(n.split()) for n in exc))
    if inc and exc and restated >= 0.5 * len(exc):
        return True
    every = inc + exc
    return len(every) >= 4 and len(set(every)) < 0.7 * len(every)


# --- copying ---------------------------------------------------------------------------------

def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def ngram_overlap(draft_text: str, source_text: str, n: int) -> float:
    """Share of the draft's word n-grams that also occur in the source (0 = none copied)."""
    draft = ngrams(draft_text, n)
    if not draft:
        return 0.0
    return len(draft & ngrams(source_text, n)) / len(draft)


def check_copying(trial: Trial, sources: list[Trial], n: int, max_overlap: float) -> tuple[list[Problem], float]:
    text = render_for_classifier(trial)
    worst = 0.0
    worst_id = ""
    for source in sources:
        overlap = ngram_overlap(text, render_for_classifier(source), n)
        if overlap > worst:
            worst, worst_id = overlap, source.nct_id
    if worst > max_overlap:
        return [Problem("near_copy", f"{worst:.0%} of the text repeats a real trial ({worst_id}); write it anew")], worst
    return [], worst
