"""Domain knowledge from the real store, for the critic: no hand-written lists.

Built from the real trials of the grounding splits only, from their sections (each eligibility
criterion, condition, intervention name and, where the data has them, outcome measure, title and
summary) embedded once and cached with the store:

- typicality: how close each section of a trial is to the closest real section of the same kind
  (a trial scores its worst section; for criteria also their mean, which catches a whole list of
  fluent but atypical criteria that no single worst section would);
- condition fit: how close the trial's conditions are to the conditions of the store's trials of
  its drugs (measured: widening this to the drugs that share those trials' conditions admitted
  nearly every condition, e.g. diabetes for lenalidomide, so the direct trials are used);
- eligibility fit: whether the criteria describe the trial's conditions: each criterion should be
  about as close to the criteria of the real trials of the nearest conditions as to any real
  criterion (criteria of another disease are close only to that disease's trials);
- intervention fit: an intervention should be close to a real intervention, and closer to it than
  to any real condition.

Every score is higher-is-better and computed leave-one-trial-out when asked to (`exclude`): a
trial's own sections never count as its neighbours, which is how the calibration scores real
trials and how `synthtrials check` scores a trial the store holds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from synthtrials.tools.eligibility import DRUG_TYPES
from synthtrials.tools.normalize import normalize_condition, normalize_intervention
from synthtrials.tools.trial import Trial

SECTION_KINDS = ("criterion", "condition", "intervention", "outcome", "title", "summary")
#: kinds scored by typicality (interventions have their own check, `intervention_fit`)
TYPICALITY_KINDS = ("criterion", "condition", "outcome", "title", "summary")
CONDITION_NEIGHBOURS = 30  # real trials of the nearest conditions, whose criteria a trial's should resemble
MIN_CRITERIA_FOR_MEAN = 3
EmbedFn = Callable[[list[str]], np.ndarray]


def _clean(text: str) -> str:
    return " ".join(text.split())


def trial_sections(trial: Trial) -> list[tuple[str, str]]:
    """(kind, text) for every section of a trial, in reading order."""
    out: list[tuple[str, str]] = []
    if trial.eligibility:
        out += [("criterion", _clean(c)) for c in trial.eligibility.inclusion + trial.eligibility.exclusion if c.strip()]
    out += [("condition", _clean(c)) for c in trial.conditions if c.strip()]
    out += [("intervention", _clean(i.name)) for i in trial.interventions if i.name.strip()]
    out += [("outcome", _clean(o.measure)) for o in trial.primary_outcomes + trial.secondary_outcomes if o.measure.strip()]
    for kind, text in (("title", trial.brief_title or trial.official_title), ("summary", trial.brief_summary)):
        if text and text.strip():
            out.append((kind, _clean(text)))
    return out


def trial_drugs(trial: Trial) -> list[str]:
    return [normalize_intervention(i.name) for i in trial.interventions if i.type.value in DRUG_TYPES and i.name.strip()]


@dataclass
class SectionIndex:
    """The distinct real texts of one kind of section, their vectors and the trials that have them."""

    texts: list[str]
    matrix: np.ndarray
    owners: list[frozenset[str]]
    position: dict[str, int] = field(default_factory=dict)
    only_in: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.position = {text: i for i, text in enumerate(self.texts)}
        only: dict[str, list[int]] = defaultdict(list)
        for i, owners in enumerate(self.owners):
            if len(owners) == 1:
                only[next(iter(owners))].append(i)
        self.only_in = dict(only)

    def __len__(self) -> int:
        return len(self.texts)

    def similarities(self, vectors: np.ndarray, exclude: str | None = None) -> np.ndarray:
        """Cosine similarities (rows: `vectors`, columns: texts), texts only `exclude` has masked out."""
        sims = vectors @ self.matrix.T if len(self) else np.zeros((len(vectors), 0), dtype=np.float32)
        if exclude is not None and exclude in self.only_in:
            sims[:, self.only_in[exclude]] = -1.0
        return sims


@dataclass
class SectionScore:
    """A trial's score on one check and the section that gave it (None: not applicable)."""

    score: float | None
    section: str | None = None
    kind: str | None = None


class DomainKnowledge:
    """What the real grounding trials say about drugs, conditions and how sections read."""

    def __init__(self, trials: Sequence[Trial], embed: EmbedFn) -> None:
        self.embed = embed
        self.trials = list(trials)
        texts: dict[str, dict[str, set[str]]] = {kind: defaultdict(set) for kind in SECTION_KINDS}
        self.trial_conditions: dict[str, list[str]] = {}
        self.drug_trials: dict[str, set[str]] = defaultdict(set)
        self.condition_trials: dict[str, set[str]] = defaultdict(set)
        self.trial_drugs: dict[str, set[str]] = {}
        for trial in trials:
            for kind, text in trial_sections(trial):
                texts[kind][text].add(trial.nct_id)
            self.trial_conditions[trial.nct_id] = [_clean(c) for c in trial.conditions if c.strip()]
            self.trial_drugs[trial.nct_id] = set(trial_drugs(trial))
            for drug in self.trial_drugs[trial.nct_id]:
                self.drug_trials[drug].add(trial.nct_id)
            for condition in trial.conditions:
                self.condition_trials[normalize_condition(condition)].add(trial.nct_id)
        distinct = [text for kind in SECTION_KINDS for text in texts[kind]]
        vectors = embed(distinct) if distinct else np.zeros((0, 1), dtype=np.float32)
        row = {text: i for i, text in enumerate(distinct)}
        self.index: dict[str, SectionIndex] = {}
        for kind in SECTION_KINDS:
            kind_texts = list(texts[kind])
            matrix = vectors[[row[t] for t in kind_texts]] if kind_texts else np.zeros((0, vectors.shape[1]), np.float32)
            self.index[kind] = SectionIndex(kind_texts, matrix, [frozenset(texts[kind][t]) for t in kind_texts])
        conditions = self.index["condition"]
        self.condition_rows = {t: sorted({conditions.position[c] for c in cs}) for t, cs in self.trial_conditions.items()}
        criterion_rows: dict[str, list[int]] = defaultdict(list)
        for row, owners in enumerate(self.index["criterion"].owners):
            for trial_id in owners:
                criterion_rows[trial_id].append(row)
        self.criterion_rows = dict(criterion_rows)
        self._texts_of: dict[str, dict[str, list[str]]] = {}

    @property
    def kinds(self) -> list[str]:
        """The section kinds the grounding data has, among those typicality scores."""
        return [kind for kind in TYPICALITY_KINDS if len(self.index[kind])]

    def _vectors(self, kind: str, texts: list[str]) -> np.ndarray:
        index = self.index[kind]
        known = [index.position.get(t) for t in texts]
        if all(i is not None for i in known):
            return index.matrix[known]
        return self.embed(texts)

    # -- the scores ------------------------------------------------------------------------------
    def typicality(self, trial: Trial, exclude: str | None = None) -> dict[str, SectionScore]:
        """Per section kind the grounding data has: the trial's worst section and its similarity to
        the closest real section of that kind."""
        by_kind: dict[str, list[str]] = defaultdict(list)
        for kind, text in trial_sections(trial):
            by_kind[kind].append(text)
        out: dict[str, SectionScore] = {}
        for kind in self.kinds:
            texts = by_kind.get(kind)
            if not texts:
                out[kind] = SectionScore(None)
                continue
            best = self.index[kind].similarities(self._vectors(kind, texts), exclude).max(axis=1)
            worst = int(np.argmin(best))
            out[kind] = SectionScore(float(best[worst]), texts[worst], kind)
            if kind == "criterion":
                mean = float(best.mean()) if len(best) >= MIN_CRITERIA_FOR_MEAN else None
                out["criterion_mean"] = SectionScore(mean, texts[worst] if mean is not None else None, kind)
        return out

    def known_conditions(self, trial: Trial, exclude: str | None = None) -> list[int]:
        """Condition rows of the real trials of the trial's drugs (`exclude`'s own trial left out)."""
        trials = {t for drug in trial_drugs(trial) for t in self.drug_trials.get(drug, ())} - {exclude}
        return sorted({row for t in trials for row in self.condition_rows[t]})

    def condition_fit(self, trial: Trial, exclude: str | None = None) -> SectionScore:
        """The trial's worst condition: its similarity to the closest condition its drugs are known for."""
        conditions = [_clean(c) for c in trial.conditions if c.strip()]
        known = self.known_conditions(trial, exclude)
        if not conditions or not known:
            return SectionScore(None)
        vectors = self._vectors("condition", conditions)
        best = (vectors @ self.index["condition"].matrix[known].T).max(axis=1)
        worst = int(np.argmin(best))
        return SectionScore(float(best[worst]), conditions[worst], "condition")

    def eligibility_fit(self, trial: Trial, exclude: str | None = None) -> SectionScore:
        """Whether the criteria describe the trial's conditions: the mean, over criteria, of their
        similarity to the criteria of the real trials of the nearest conditions minus their
        similarity to any real criterion (0: as close as anywhere; a criterion of another disease
        falls far below). The section reported is the criterion that falls furthest."""
        criteria = [text for kind, text in trial_sections(trial) if kind == "criterion"]
        conditions = [_clean(c) for c in trial.conditions if c.strip()]
        if not criteria or not conditions or not len(self.index["criterion"]):
            return SectionScore(None)
        to_conditions = (self._vectors("condition", conditions) @ self.index["condition"].matrix.T).max(axis=0)
        candidates = [t for t in self.condition_rows if t != exclude and self.condition_rows[t]]
        closeness = np.asarray([to_conditions[self.condition_rows[t]].max() for t in candidates])
        nearest = [candidates[i] for i in np.argsort(-closeness)[:CONDITION_NEIGHBOURS]]
        rows = sorted({row for t in nearest for row in self.criterion_rows.get(t, ())})
        if not rows:
            return SectionScore(None)
        sims = self.index["criterion"].similarities(self._vectors("criterion", criteria), exclude)
        gap = sims[:, rows].max(axis=1) - sims.max(axis=1)
        worst = int(np.argmin(gap))
        return SectionScore(float(gap.mean()), criteria[worst], "criterion")

    def intervention_fit(self, trial: Trial, exclude: str | None = None) -> tuple[SectionScore, SectionScore]:
        """(closeness to a real intervention, margin over the closest real condition), worst intervention each."""
        names = [_clean(i.name) for i in trial.interventions if i.name.strip()]
        if not names or not len(self.index["intervention"]):
            return SectionScore(None), SectionScore(None)
        vectors = self._vectors("intervention", names)
        to_interventions = self.index["intervention"].similarities(vectors, exclude).max(axis=1)
        to_conditions = self.index["condition"].similarities(vectors, exclude).max(axis=1)
        margin = to_interventions - to_conditions
        a, b = int(np.argmin(to_interventions)), int(np.argmin(margin))
        return (SectionScore(float(to_interventions[a]), names[a], "intervention"),
                SectionScore(float(margin[b]), names[b], "intervention"))

    def scores(self, trial: Trial, exclude: str | None = None) -> dict[str, SectionScore]:
        """Every calibrated score of a trial, by name (see `CALIBRATED_SCORES`)."""
        out = {f"typicality_{kind}": score for kind, score in self.typicality(trial, exclude).items()}
        if "criterion" in self.kinds:  # a list of two criteria is no registry entry's
            criteria = [text for kind, text in trial_sections(trial) if kind == "criterion"]
            out["criteria_count"] = SectionScore(float(len(criteria)) if trial.eligibility and (
                trial.eligibility.inclusion or trial.eligibility.exclusion) else None, None, "criterion")
        out["condition_fit"] = self.condition_fit(trial, exclude)
        out["eligibility_fit"] = self.eligibility_fit(trial, exclude)
        out["intervention_fit"], out["intervention_margin"] = self.intervention_fit(trial, exclude)
        return out

    def real_examples(self, kind: str, near: Iterable[str], n: int = 2) -> list[str]:
        """`n` real sections of `kind` from the real trials whose conditions are closest to `near`
        (what the real data looks like there: feedback for a writer)."""
        near = [c for c in near if c.strip()]
        index = self.index[kind]
        if not near or not len(index):
            return index.texts[:n]
        if kind not in self._texts_of:
            texts_of: dict[str, list[str]] = defaultdict(list)
            for text, owners in zip(index.texts, index.owners):
                for trial_id in owners:
                    texts_of[trial_id].append(text)
            self._texts_of[kind] = dict(texts_of)
        conditions = self.index["condition"]
        closest = np.argsort(-(self._vectors("condition", near) @ conditions.matrix.T).max(axis=0))
        out: list[str] = []
        for row in closest[:20]:
            for trial_id in sorted(conditions.owners[row]):
                for text in self._texts_of[kind].get(trial_id, []):
                    if text not in out:
                        out.append(text)
                    if len(out) >= n:
                        return out
        return out
