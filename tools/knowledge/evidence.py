"""Evidence for the reasoning agent: the facts of a drug's grounding trials that bear on outcome.

Computed from the store's real trials of the grounding splits only: how the drug's successful and
failed trials differ in phase, conditions and frequent criteria (and enrollment where the data
has it), and, for failed trials, what their registry entries say about why they stopped. The
`evidence_reasons` turn the facts into design considerations, never outcome statements, so a
writer guided by them has nothing like "slow accrual" to echo into a draft.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
from synthtrials.tools.knowledge.domain import trial_sections
from synthtrials.tools.records.trial import Trial

#: why-stopped themes (matched in the registry's own words) and the design consideration each implies
STOP_THEMES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("recruitment", re.compile(r"accru|enrol|recruit|participants? (?:were|was) not", re.I),
     "recruitment feasibility: how many patients meet the eligibility criteria and how many sites enrol them"),
    ("efficacy", re.compile(r"efficac|futil|response|activity|benefit|endpoint", re.I),
     "the strength of the efficacy rationale behind the dose, the population and the primary endpoint"),
    ("safety", re.compile(r"safety|toxic|adverse|side effect|tolerab|death", re.I),
     "safety monitoring, dose selection and exclusion of patients at risk of toxicity"),
    ("sponsor", re.compile(r"sponsor|fund|business|company|strateg|decision|drug supply", re.I),
     "sponsor commitment, funding and drug supply over the trial's duration"),
)
#: how reasons name the target label's trials and the others': no outcome words for a writer to echo
THIS, OTHER = "with this outcome", "with the other outcome"


class DrugEvidence(BaseModel):
    """What the grounding trials of one drug say, for one target label."""

    drug: str
    label: int
    trials: dict[str, int] = Field(description="grounding trials of the drug by label ('1', '0')")
    phases: dict[str, dict[str, int]] = Field(default_factory=dict, description="label -> phase -> trials")
    conditions: dict[str, list[str]] = Field(default_factory=dict, description="label -> most frequent conditions")
    criteria: dict[str, list[str]] = Field(default_factory=dict, description="label -> criteria frequent in it, rare in the other")
    enrollment: dict[str, float] = Field(default_factory=dict, description="label -> median enrollment, where known")
    stop_themes: dict[str, int] = Field(default_factory=dict, description="why-stopped themes of failed trials")
    why_stopped: list[str] = Field(default_factory=list, description="why-stopped texts of the failed trials (as registered)")


def _key(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9<>=%]+", " ", text.lower()).split())


def drug_evidence(trials: Sequence[Trial], drug: str, label: int, exclude: str | None = None) -> DrugEvidence:
    """The evidence of `trials` (the grounding trials of `drug`, either label), `exclude` left out."""
    by_label: dict[int, list[Trial]] = {0: [], 1: []}
    for trial in trials:
        if trial.nct_id != exclude and trial.label in (0, 1):
            by_label[int(trial.label)].append(trial)
    evidence = DrugEvidence(drug=drug, label=label, trials={str(k): len(v) for k, v in by_label.items()})
    criteria_share: dict[int, Counter] = {}
    for lab, group in by_label.items():
        if not group:
            continue
        evidence.phases[str(lab)] = dict(Counter(t.phase.value for t in group if t.phase).most_common())
        evidence.conditions[str(lab)] = [c for c, _ in Counter(c.lower() for t in group for c in t.conditions).most_common(3)]
        counts: Counter = Counter()
        originals: dict[str, str] = {}
        for trial in group:
            for key, text in {_key(text): text for kind, text in trial_sections(trial) if kind == "criterion"}.items():
                counts[key] += 1
                originals.setdefault(key, text)
        criteria_share[lab] = Counter({k: n / len(group) for k, n in counts.items()})
        evidence.criteria[str(lab)] = [originals[k] for k, _ in counts.most_common(40)]
        enrolled = [t.enrollment for t in group if t.enrollment]
        if enrolled:
            evidence.enrollment[str(lab)] = float(np.median(enrolled))
    for lab in (0, 1):  # criteria frequent in this label's trials and rarer in the other's
        if lab in criteria_share:
            other = criteria_share.get(1 - lab, Counter())
            ranked = sorted(criteria_share[lab].items(), key=lambda kv: -(kv[1] - other.get(kv[0], 0.0)))
            keep = {k for k, share in ranked[:3] if share - other.get(k, 0.0) > 0 and share >= 0.34}
            evidence.criteria[str(lab)] = [t for t in evidence.criteria[str(lab)] if _key(t) in keep][:3]
    stops = [t.why_stopped for t in by_label[0] if t.why_stopped]
    evidence.why_stopped = stops[:5]
    evidence.stop_themes = dict(Counter(name for text in stops for name, pattern, _ in STOP_THEMES
                                        if pattern.search(text)).most_common())
    return evidence


def evidence_reasons(evidence: DrugEvidence, n: int = 3) -> list[str]:
    """Up to `n` design considerations, templated from the evidence (the offline reasoner)."""
    lab, other = str(evidence.label), str(1 - evidence.label)
    drug = evidence.drug
    reasons: list[str] = []
    phases = evidence.phases.get(lab)
    if phases:
        top, count = next(iter(phases.items()))
        total = sum(phases.values())
        contrast = ""
        if evidence.phases.get(other):
            other_top = next(iter(evidence.phases[other]))
            if other_top != top:
                contrast = f", while those {OTHER} are mostly {other_top}"
        reasons.append(f"Design it as a {top} study: {count} of {total} registry trials of {drug} {THIS} are "
                       f"{top}{contrast}.")
    if evidence.conditions.get(lab):
        reasons.append(f"Choose a population like the trials of {drug} {THIS}, which study "
                       f"{', '.join(evidence.conditions[lab][:2])}.")
    if evidence.label == 0 and evidence.stop_themes:
        theme = next(iter(evidence.stop_themes))
        consideration = next(text for name, _, text in STOP_THEMES if name == theme)
        reasons.append(f"Weigh {consideration}, a recurring issue in the registry entries of {drug} trials.")
    if evidence.criteria.get(lab):
        reasons.append(f"Use eligibility typical of the trials of {drug} {THIS}, such as "
                       f"'{evidence.criteria[lab][0][:100]}'.")
    if evidence.enrollment.get(lab):
        reasons.append(f"Plan enrollment near {evidence.enrollment[lab]:.0f} participants, the median of the "
                       f"trials of {drug} {THIS}.")
    return reasons[:n]


def evidence_facts(evidence: DrugEvidence) -> list[str]:
    """The evidence as plain facts for an LLM reasoner's prompt (why-stopped texts included)."""
    facts = [f"{n} grounding trials of {evidence.drug} with label {lab} ({'success' if lab == '1' else 'failure'})"
             for lab, n in evidence.trials.items()]
    for lab, phases in evidence.phases.items():
        facts.append(f"phases of the label-{lab} trials: " + ", ".join(f"{p} ({n})" for p, n in phases.items()))
    for lab, conditions in evidence.conditions.items():
        facts.append(f"conditions of the label-{lab} trials: " + ", ".join(conditions))
    for lab, criteria in evidence.criteria.items():
        if criteria:
            facts.append(f"criteria frequent only in the label-{lab} trials: " + "; ".join(c[:100] for c in criteria))
    for lab, median in evidence.enrollment.items():
        facts.append(f"median enrollment of the label-{lab} trials: {median:.0f}")
    if evidence.why_stopped:
        facts.append("why failed trials stopped, as registered: " + "; ".join(w[:80] for w in evidence.why_stopped))
    return facts


_WORD = re.compile(r"[A-Za-z]{3,}")
#: what a reason must never say: an outcome (the leakage checks would reject a draft that echoes it)
OUTCOME_PATTERN = re.compile(r"\b(?:terminat|withdrawn|slow accrual|low accrual|lack of efficacy|failed|succeeded|"
                             r"stopped early|futility)", re.IGNORECASE)


#: outcome claims an LLM makes about a trial ("was successful", "stopped due to ..."), beyond OUTCOME_PATTERN
_OUTCOME_CLAIM = re.compile(r"\b(?:was|were|is|are) (?:successful|a success|a failure|unsuccessful)\b|"
                            r"\b(?:stopped|ended|halted) (?:due|because|for|after)\b|\bresults are\b", re.IGNORECASE)
#: a plain token: a word (hyphens, apostrophes) or a short number, surrounded by punctuation at most
_PLAIN_TOKEN = re.compile(r"^\W*(?:[A-Za-z][A-Za-z'\-]*|[<>=≤≥]?\d{1,4}(?:[.,\-]\d{1,4})?%?)\W*$")
#: words that name no factor of a particular drug's trials: English stop words (scikit-learn's list)
#: and the words every trial registry entry uses
_GENERIC = ENGLISH_STOP_WORDS | frozenset({
    "trial", "trials", "study", "studies", "patient", "patients", "participant", "participants", "phase",
    "phases", "design", "designs", "drug", "drugs", "treatment", "treatments", "therapy", "therapies", "data",
    "result", "results", "outcome", "outcomes", "registry", "entry", "entries", "second", "current", "include",
    "includes", "including", "available", "years", "year", "time", "times", "like", "clinical", "prior",
    "history", "known", "subjects", "subject", "criteria", "criterion",
})


def evidence_anchors(evidence: DrugEvidence) -> frozenset[str]:
    """The words a reason may name to be about these trials: the drug's, its conditions' and its
    distinctive criteria's (lower case, 4+ letters, generic words left out)."""
    texts = [evidence.drug, *(c for cs in evidence.conditions.values() for c in cs),
             *(c for cs in evidence.criteria.values() for c in cs)]
    return frozenset(w.lower() for t in texts for w in _WORD.findall(t) if len(w) >= 4) - _GENERIC


#: the version of `reason_problem`'s rules: a reason validity saved under another one is measured again
REASON_VALIDATOR_VERSION = 2


def reason_problem(reason: str, similarity: float, threshold: float,
                   anchors: frozenset[str] | None = None) -> str | None:
    """Why a reason is not usable (None: usable). `similarity`: to the closest real criterion or
    evidence sentence; `threshold`: the calibrated criterion typicality; `anchors`: where given,
    the reason must name one of these words (`evidence_anchors`: the drug, a condition, a criterion)."""
    tokens = reason.split()
    words = [w.lower() for w in _WORD.findall(reason)]
    if len(words) < 4 or sum(bool(_PLAIN_TOKEN.match(t)) for t in tokens) < 0.7 * len(tokens):
        return f"'{reason[:60]}' is not a sentence"
    if len(words) >= 8 and len(set(words)) < 0.5 * len(words):
        return f"'{reason[:60]}' repeats itself"
    if OUTCOME_PATTERN.search(reason) or _OUTCOME_CLAIM.search(reason):
        return f"'{reason[:60]}' states an outcome; phrase it as a design consideration"
    if anchors is not None and not set(words) & anchors:
        return f"'{reason[:60]}' names neither the drug nor a condition or criterion of its trials"
    if similarity < threshold:
        return f"'{reason[:60]}' names no design, population, drug or context factor of these trials"
    return None
