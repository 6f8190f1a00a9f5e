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
  to any real condition;
- coherence (`tools.knowledge.coherence`): the criteria as a whole fit the conditions and read like the
  criteria of real trials of the nearest conditions, the conditions like those of real trials with
  the nearest criteria, each inclusion criterion fits the conditions (the worst decides), and
  several conditions fit each other, each measured against the average grounding trial; and each
  inclusion criterion fits the conditions by a model learnt from the grounding trials' own criteria
  against other diseases' criteria (`tools.knowledge.criterion_fit`, `coherence_criterion_fit`; the
  worst decides);
- where the store was calibrated with `--cross-encoder`, a cross-encoder's reading of the conditions and the
  criteria together (`tools.knowledge.cross_encoder`, `coherence_cross_encoder`).

Every score is higher-is-better and computed leave-one-trial-out when asked to (`exclude`): a
trial's own sections never count as its neighbours, which is how the calibration scores real
trials and how `synthtrials check` scores a trial the store holds. A spoiled copy the calibration
makes leaves out two trials, its own and the one it took a section from (`Excluded`).

Speed: a trial's sections are looked up among the grounding sections' vectors (never embedded
again); the sections no real trial has are embedded in one call to the encoder per trial, or per
batch of trials with `embed_with_sections` (which also embeds the caller's own texts, e.g. the
renderings the critic searches neighbours with, in that same call). Each similarity matrix of a
trial (its sections against one kind of real section) is one matrix product, computed once and
shared by the scores that read it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from synthtrials.tools.knowledge.coherence import CoherenceModel, Excluded, excluded_ids, unit_centroid
from synthtrials.tools.knowledge.criterion_fit import CriterionFit
from synthtrials.tools.knowledge.criterion_language import CriterionLanguage
from synthtrials.tools.knowledge.cross_encoder import CROSS_ENCODER, CrossEncoderCoherence
from synthtrials.tools.records.eligibility import trial_drugs
from synthtrials.tools.records.normalize import normalize_condition
from synthtrials.tools.records.trial import Trial

SECTION_KINDS = ("criterion", "condition", "intervention", "outcome", "title", "summary")
#: kinds scored by typicality (interventions have their own check, `intervention_fit`)
TYPICALITY_KINDS = ("criterion", "condition", "outcome", "title", "summary")
CONDITION_NEIGHBOURS = 30  # real trials of the nearest conditions, whose criteria a trial's should resemble
MIN_CRITERIA_FOR_MEAN = 3
#: the (section kind, real section kind) similarities the scores read (`_TrialSections.sims`)
_SIMILARITY_PAIRS = (*((kind, kind) for kind in TYPICALITY_KINDS), ("intervention", "condition"),
                     ("intervention", "intervention"))
#: trials whose similarities `DomainKnowledge.scores_of` computes in one product per pair of kinds
SCORED_TOGETHER = 32
#: texts no grounding trial has, kept with their vectors (a revised draft keeps most of its sections)
RECENT_TEXTS = 20_000
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


@dataclass
class SectionIndex:
    """The distinct real texts of one kind of section, their vectors and the trials that have them."""

    texts: list[str]
    matrix: np.ndarray
    owners: list[frozenset[str]]
    position: dict[str, int] = field(default_factory=dict)
    held_by: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.position = {text: i for i, text in enumerate(self.texts)}
        held: dict[str, list[int]] = defaultdict(list)
        for i, owners in enumerate(self.owners):
            for owner in owners:
                held[owner].append(i)
        self.held_by = dict(held)

    def only_in(self, exclude: Excluded) -> list[int]:
        """The texts that no trial but those `exclude` names has."""
        ids = excluded_ids(exclude)
        left_out = frozenset(ids)
        return sorted({i for trial_id in ids for i in self.held_by.get(trial_id, ()) if self.owners[i] <= left_out})

    def __len__(self) -> int:
        return len(self.texts)

    def similarities(self, vectors: np.ndarray, exclude: Excluded = None) -> np.ndarray:
        """Cosine similarities (rows: `vectors`, columns: texts), texts only `exclude` has masked out."""
        sims = vectors @ self.matrix.T if len(self) else np.zeros((len(vectors), 0), dtype=np.float32)
        return self.masked(sims, exclude)

    def masked(self, sims: np.ndarray, exclude: Excluded) -> np.ndarray:
        """`sims` (columns: texts) with the texts only `exclude` has set to -1, in place."""
        columns = self.only_in(exclude)
        if columns:
            sims[:, columns] = -1.0
        return sims


class SectionVectors:
    """Vectors of section texts: the grounding sections' (embedded once, cached with the store) and
    those of the texts met since (drafts' sections), kept in a bounded cache. Thread-safe."""

    def __init__(self, texts: list[str], matrix: np.ndarray, encode: EmbedFn, recent: int = RECENT_TEXTS) -> None:
        self.matrix = matrix
        self.row = {text: i for i, text in enumerate(texts)}
        self.encode = encode
        self.limit = recent
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def _found(self, texts: Iterable[str]) -> tuple[dict[str, np.ndarray], list[str]]:
        """The vectors known of the distinct texts not in the grounding sections, and those missing."""
        found: dict[str, np.ndarray] = {}
        missing: list[str] = []
        with self._lock:
            for text in dict.fromkeys(texts):
                if text in self.row:
                    continue
                vector = self._recent.get(text)
                if vector is None:
                    missing.append(text)
                else:
                    found[text] = vector
        return found, missing

    def _remember(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        with self._lock:
            for text, vector in zip(texts, vectors):
                self._recent[text] = vector
                self._recent.move_to_end(text)
            while len(self._recent) > self.limit:
                self._recent.popitem(last=False)

    def embed_with(self, texts: Iterable[str], extra: Sequence[str] = ()) -> np.ndarray:
        """Embed, in one call to the encoder, the `texts` not known yet (kept) and the `extra` texts
        (returned, not kept)."""
        _, missing = self._found(texts)
        extra = list(extra)
        if not missing and not extra:
            return np.zeros((0, self.matrix.shape[1]), dtype=np.float32)
        vectors = np.asarray(self.encode(missing + extra), dtype=np.float32)
        self._remember(missing, vectors[:len(missing)])
        return vectors[len(missing):]

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim): the texts' vectors, those not known yet embedded in one call."""
        found, missing = self._found(texts)
        if missing:
            vectors = np.asarray(self.encode(missing), dtype=np.float32)
            self._remember(missing, vectors)
            found.update(zip(missing, vectors))
        if not texts:
            return np.zeros((0, self.matrix.shape[1]), dtype=np.float32)
        return np.stack([self.matrix[self.row[t]] if t in self.row else found[t] for t in texts])


@dataclass
class SectionScore:
    """A trial's score on one check and the section that gave it (None: not applicable)."""

    score: float | None
    section: str | None = None
    kind: str | None = None
    by: str | None = None  # a joint score's: the score that pulls it down most (`tools.knowledge.joint`)


def _named(scores: dict[str, SectionScore], cross: dict[str, SectionScore]) -> dict[str, SectionScore]:
    """`scores` with the cross-encoder's (`cross`), which reads the criteria as a whole: the criterion it names for
    a writer is the one furthest from the conditions by the embeddings (`coherence_eligibility`'s)."""
    if CROSS_ENCODER in cross and scores.get("coherence_eligibility"):
        cross = {CROSS_ENCODER: SectionScore(cross[CROSS_ENCODER].score, scores["coherence_eligibility"].section,
                                             "criterion")}
    return scores | cross


class _TrialSections:
    """One trial's sections by kind, their vectors (one lookup) and their similarities to each kind
    of real section (one matrix product each, computed when first read)."""

    def __init__(self, knowledge: DomainKnowledge, trial: Trial, exclude: Excluded) -> None:
        self.knowledge = knowledge
        self.exclude = exclude
        self.texts: dict[str, list[str]] = defaultdict(list)
        for kind, text in trial_sections(trial):
            self.texts[kind].append(text)
        #: the first `inclusion` criteria are inclusion criteria (`trial_sections` lists them first)
        self.inclusion = sum(1 for c in trial.eligibility.inclusion if c.strip()) if trial.eligibility else 0
        ordered = [text for kind in self.texts for text in self.texts[kind]]
        vectors = knowledge.vectors(ordered)
        self.vectors: dict[str, np.ndarray] = {}
        start = 0
        for kind, texts in self.texts.items():
            self.vectors[kind] = vectors[start:start + len(texts)]
            start += len(texts)
        self._sims: dict[tuple[str, str, bool], np.ndarray] = {}

    def sims(self, kind: str, against: str, masked: bool = True) -> np.ndarray:
        """Similarities of the trial's `kind` sections (rows) to the real `against` sections
        (columns); `masked`: the sections only the excluded trial has set to -1."""
        key = (kind, against, masked)
        if key not in self._sims:
            index = self.knowledge.index[against]
            if not masked:
                self._sims[key] = index.similarities(self.vectors[kind])
            else:  # a copy only where some text is masked
                sims, columns = self.sims(kind, against, masked=False), index.only_in(self.exclude)
                if columns:
                    sims = sims.copy()
                    sims[:, columns] = -1.0
                self._sims[key] = sims
        return self._sims[key]


class DomainKnowledge:
    """What the real grounding trials say about drugs, conditions and how sections read.

    `embed`: the grounding sections' vectors (the store's cached section vectors); `encode`: the
    encoder for texts no grounding trial has (the store's encoder; default `embed`); `criterion_fit`: the
    `coherence_criterion_fit` models of these trials where they were fitted before (else they are fitted here);
    `criterion_language`: the `typicality_criterion_language` models, likewise.
    """

    def __init__(self, trials: Sequence[Trial], embed: EmbedFn, encode: EmbedFn | None = None,
                 criterion_fit: CriterionFit | None = None, criterion_language: CriterionLanguage | None = None) -> None:
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
        self.vectors = SectionVectors(distinct, vectors, encode or embed)
        row = self.vectors.row
        self.index: dict[str, SectionIndex] = {}
        for kind in SECTION_KINDS:
            kind_texts = list(texts[kind])
            matrix = vectors[[row[t] for t in kind_texts]] if kind_texts else np.zeros((0, vectors.shape[1]), np.float32)
            self.index[kind] = SectionIndex(kind_texts, matrix, [frozenset(texts[kind][t]) for t in kind_texts])
        conditions = self.index["condition"]
        self.condition_rows = {t: sorted({conditions.position[c] for c in cs}) for t, cs in self.trial_conditions.items()}
        criterion_rows: dict[str, list[int]] = defaultdict(list)
        for row_number, owners in enumerate(self.index["criterion"].owners):
            for trial_id in owners:
                criterion_rows[trial_id].append(row_number)
        self.criterion_rows = dict(criterion_rows)
        self._criterion_arrays = {t: np.asarray(rows, dtype=np.intp) for t, rows in self.criterion_rows.items()}
        # the trials that have conditions, in the order of `condition_rows`, and their condition rows
        # padded with a row past the last condition (its closeness is -inf): one gather finds each
        # trial's closest condition
        self._candidates = [t for t, rows in self.condition_rows.items() if rows]
        self._candidate_position = {t: i for i, t in enumerate(self._candidates)}
        width = max((len(self.condition_rows[t]) for t in self._candidates), default=0)
        self._candidate_rows = np.full((len(self._candidates), width), len(conditions), dtype=np.intp)
        for i, t in enumerate(self._candidates):
            self._candidate_rows[i, :len(self.condition_rows[t])] = self.condition_rows[t]
        self._texts_of: dict[str, dict[str, list[str]]] = {}
        criterion_matrix = self.index["criterion"].matrix
        #: the cross-encoder's fold models (`tools.knowledge.cross_encoder`), where the store's calibration has them
        self.cross_encoder: CrossEncoderCoherence | None = None
        condition_centroids = {t.nct_id: unit_centroid(conditions.matrix[self.condition_rows[t.nct_id]])
                               for t in self.trials}
        self.coherence = CoherenceModel.from_profiles([
            (t.nct_id, condition_centroids[t.nct_id],
             unit_centroid(criterion_matrix[self.criterion_rows.get(t.nct_id, [])])) for t in self.trials])
        #: per inclusion criterion, its fit with the conditions: the models given (fitted on these same trials, e.g.
        #: saved with the store), else fitted here; None: too few grounding trials to learn it
        self.criterion_fit = criterion_fit or CriterionFit.train(self.trials, condition_centroids, self.vectors)
        #: per criterion, whether it reads like an eligibility criterion at all: likewise given or fitted here
        self.criterion_language = criterion_language or CriterionLanguage.train(self.trials, self.vectors)

    @property
    def kinds(self) -> list[str]:
        """The section kinds the grounding data has, among those typicality scores."""
        return [kind for kind in TYPICALITY_KINDS if len(self.index[kind])]

    def embed_with_sections(self, trials: Sequence[Trial], texts: Sequence[str] = ()) -> np.ndarray:
        """Embed, in one call to the encoder, every section of `trials` no grounding trial has (kept
        for their scores) and `texts` (their vectors returned)."""
        return self.vectors.embed_with((text for trial in trials for _, text in trial_sections(trial)), texts)

    def _sections(self, trial: Trial, exclude: Excluded) -> _TrialSections:
        return _TrialSections(self, trial, exclude)

    # -- the scores ------------------------------------------------------------------------------
    def typicality(self, trial: Trial, exclude: Excluded = None) -> dict[str, SectionScore]:
        """Per section kind the grounding data has: the trial's worst section and its similarity to
        the closest real section of that kind."""
        return self._typicality(self._sections(trial, exclude))

    def _typicality(self, s: _TrialSections) -> dict[str, SectionScore]:
        out: dict[str, SectionScore] = {}
        for kind in self.kinds:
            texts = s.texts.get(kind)
            if not texts:
                out[kind] = SectionScore(None)
                continue
            best = s.sims(kind, kind).max(axis=1)
            worst = int(np.argmin(best))
            out[kind] = SectionScore(float(best[worst]), texts[worst], kind)
            if kind == "criterion":
                mean = float(best.mean()) if len(best) >= MIN_CRITERIA_FOR_MEAN else None
                out["criterion_mean"] = SectionScore(mean, texts[worst] if mean is not None else None, kind)
        return out

    def known_conditions(self, trial: Trial, exclude: Excluded = None) -> list[int]:
        """Condition rows of the real trials of the trial's drugs (`exclude`'s own trial left out)."""
        trials = {t for drug in trial_drugs(trial) for t in self.drug_trials.get(drug, ())} - set(excluded_ids(exclude))
        return sorted({row for t in trials for row in self.condition_rows[t]})

    def condition_fit(self, trial: Trial, exclude: Excluded = None) -> SectionScore:
        """The trial's worst condition: its similarity to the closest condition its drugs are known for."""
        return self._condition_fit(trial, self._sections(trial, exclude))

    def _condition_fit(self, trial: Trial, s: _TrialSections) -> SectionScore:
        conditions = s.texts.get("condition")
        known = self.known_conditions(trial, s.exclude)
        if not conditions or not known:
            return SectionScore(None)
        best = s.sims("condition", "condition", masked=False)[:, known].max(axis=1)
        worst = int(np.argmin(best))
        return SectionScore(float(best[worst]), conditions[worst], "condition")

    def nearest_trials(self, to_conditions: np.ndarray, exclude: Excluded = None) -> list[str]:
        """The `CONDITION_NEIGHBOURS` real trials (`exclude` left out) whose closest condition is the
        closest to a trial's conditions (`to_conditions`: per real condition, its best similarity)."""
        if not len(self._candidates):
            return []
        padded = np.concatenate([to_conditions, np.full(1, -np.inf, dtype=to_conditions.dtype)])
        closeness = padded[self._candidate_rows].max(axis=1)
        candidates = self._candidates
        positions = sorted({self._candidate_position[t] for t in excluded_ids(exclude) if t in self._candidate_position})
        if positions:
            closeness = np.delete(closeness, positions)
            left_out = set(positions)
            candidates = [t for i, t in enumerate(candidates) if i not in left_out]
        return [candidates[i] for i in np.argsort(-closeness)[:CONDITION_NEIGHBOURS]]

    def eligibility_fit(self, trial: Trial, exclude: Excluded = None) -> SectionScore:
        """Whether the criteria describe the trial's conditions: the mean, over criteria, of their
        similarity to the criteria of the real trials of the nearest conditions minus their
        similarity to any real criterion (0: as close as anywhere; a criterion of another disease
        falls far below). The section reported is the criterion that falls furthest."""
        return self._eligibility_fit(self._sections(trial, exclude))

    def _eligibility_fit(self, s: _TrialSections) -> SectionScore:
        criteria = s.texts.get("criterion")
        if not criteria or not s.texts.get("condition") or not len(self.index["criterion"]):
            return SectionScore(None)
        to_conditions = s.sims("condition", "condition", masked=False).max(axis=0)
        nearest = self.nearest_trials(to_conditions, s.exclude)
        arrays = [self._criterion_arrays[t] for t in nearest if t in self._criterion_arrays]
        if not arrays:
            return SectionScore(None)
        rows = np.unique(np.concatenate(arrays))
        sims = s.sims("criterion", "criterion")
        gap = sims[:, rows].max(axis=1) - sims.max(axis=1)
        worst = int(np.argmin(gap))
        return SectionScore(float(gap.mean()), criteria[worst], "criterion")

    def intervention_fit(self, trial: Trial, exclude: Excluded = None) -> tuple[SectionScore, SectionScore]:
        """(closeness to a real intervention, margin over the closest real condition), worst intervention each."""
        return self._intervention_fit(self._sections(trial, exclude))

    def _intervention_fit(self, s: _TrialSections) -> tuple[SectionScore, SectionScore]:
        names = s.texts.get("intervention")
        if not names or not len(self.index["intervention"]):
            return SectionScore(None), SectionScore(None)
        to_interventions = s.sims("intervention", "intervention").max(axis=1)
        to_conditions = s.sims("intervention", "condition").max(axis=1)
        margin = to_interventions - to_conditions
        a, b = int(np.argmin(to_interventions)), int(np.argmin(margin))
        return (SectionScore(float(to_interventions[a]), names[a], "intervention"),
                SectionScore(float(margin[b]), names[b], "intervention"))

    def scores(self, trial: Trial, exclude: Excluded = None) -> dict[str, SectionScore]:
        """Every calibrated score of a trial, by name (`tools.knowledge.checks.check_of` maps each to its check)."""
        return _named(self._scores(trial, self._sections(trial, exclude)), self._cross_encoder([trial], [exclude])[0])

    def scores_of(self, trials: Sequence[Trial], excludes: Sequence[Excluded],
                  chunk: int = SCORED_TOGETHER) -> Iterator[dict[str, SectionScore]]:
        """`scores(trial, exclude)` of each trial, in order. The similarities of `chunk` trials' sections
        to each kind of real section are one matrix product (`_SIMILARITY_PAIRS`), not one per trial:
        the calibration scores every grounding trial and its spoiled variants (4,820 on phase I
        train), and small products spent half its time."""
        for start in range(0, len(trials), chunk):
            batch = list(zip(trials[start:start + chunk], excludes[start:start + chunk]))
            sections = [self._sections(trial, exclude) for trial, exclude in batch]
            for kind, against in _SIMILARITY_PAIRS:
                index = self.index[against]
                if not len(index):
                    continue
                blocks = [s.vectors[kind] for s in sections if kind in s.vectors]
                if not blocks:
                    continue
                sims = index.similarities(np.concatenate(blocks))
                row = 0
                for s in sections:
                    if kind in s.vectors:
                        rows = len(s.vectors[kind])
                        s._sims[(kind, against, False)] = sims[row:row + rows]
                        row += rows
            cross = self._cross_encoder([trial for trial, _ in batch], [exclude for _, exclude in batch])
            for (trial, _), s, more in zip(batch, sections, cross):
                yield _named(self._scores(trial, s), more)

    def _cross_encoder(self, trials: Sequence[Trial], excludes: Sequence[Excluded]) -> list[dict[str, SectionScore]]:
        """`coherence_cross_encoder` of each trial where the knowledge has the cross-encoder, else nothing."""
        if self.cross_encoder is None:
            return [{} for _ in trials]
        return [{CROSS_ENCODER: SectionScore(value, None, "criterion")}
                for value in self.cross_encoder.scores(trials, excludes)]

    def _scores(self, trial: Trial, s: _TrialSections) -> dict[str, SectionScore]:
        out = {f"typicality_{kind}": score for kind, score in self._typicality(s).items()}
        if "criterion" in self.kinds:  # a list of two criteria is no registry entry's
            out["criteria_count"] = SectionScore(float(len(s.texts.get("criterion", []))) if trial.eligibility and (
                trial.eligibility.inclusion or trial.eligibility.exclusion) else None, None, "criterion")
        out["typicality_criterion_language"] = self._criterion_language(s)
        out["condition_fit"] = self._condition_fit(trial, s)
        out["eligibility_fit"] = self._eligibility_fit(s)
        out["intervention_fit"], out["intervention_margin"] = self._intervention_fit(s)
        out |= self._coherence(s)
        return out

    def _criterion_language(self, s: _TrialSections) -> SectionScore:
        """The worst criterion's logit of reading like an eligibility criterion (`tools.knowledge.criterion_language`)."""
        texts = s.texts.get("criterion")
        if self.criterion_language is None or not texts:
            return SectionScore(None)
        logits = self.criterion_language.criteria_logits(s.vectors["criterion"], s.exclude)
        worst = int(np.argmin(logits))
        return SectionScore(float(logits[worst]), texts[worst], "criterion")

    def _coherence(self, s: _TrialSections) -> dict[str, SectionScore]:
        """The coherence scores (`tools.knowledge.coherence`); the section each names is its worst."""
        empty = np.zeros((0, self.index["condition"].matrix.shape[1]), dtype=np.float32)
        conditions, criteria = s.vectors.get("condition", empty), s.vectors.get("criterion", empty)
        condition_texts, criterion_texts = s.texts.get("condition", []), s.texts.get("criterion", [])
        out = {name: SectionScore(None) for name in ("coherence_eligibility", "coherence_typical_criteria",
                                                      "coherence_typical_conditions", "coherence_criterion",
                                                      "coherence_conditions")}
        whole = self.coherence.eligibility(conditions, criteria, s.exclude)
        each = self.coherence.criteria_fit(conditions, criteria, s.exclude)
        if whole is not None and each is not None:
            out["coherence_eligibility"] = SectionScore(whole, criterion_texts[int(np.argmin(each))], "criterion")
        typical = self.coherence.typical_criteria(conditions, criteria, s.exclude)
        if typical is not None:
            out["coherence_typical_criteria"] = SectionScore(typical[0], criterion_texts[int(np.argmin(typical[1]))],
                                                             "criterion")
        typical = self.coherence.typical_conditions(conditions, criteria, s.exclude)
        if typical is not None:
            out["coherence_typical_conditions"] = SectionScore(typical[0], condition_texts[int(np.argmin(typical[1]))],
                                                               "condition")
        if each is not None and s.inclusion:
            worst = int(np.argmin(each[:s.inclusion]))
            out["coherence_criterion"] = SectionScore(float(each[worst]), criterion_texts[worst], "criterion")
        centroid = unit_centroid(conditions)
        out["coherence_criterion_fit"] = SectionScore(None)
        if self.criterion_fit is not None and centroid is not None and s.inclusion:
            learnt = self.criterion_fit.criteria_logits(centroid, criteria[:s.inclusion], s.exclude)
            worst = int(np.argmin(learnt))
            out["coherence_criterion_fit"] = SectionScore(float(learnt[worst]), criterion_texts[worst], "criterion")
        together = self.coherence.conditions_fit(conditions, s.exclude)
        if together is not None:
            worst = int(np.argmin(together))
            out["coherence_conditions"] = SectionScore(float(together[worst]), condition_texts[worst], "condition")
        return out

    def real_examples(self, kind: str, near: Iterable[str], n: int = 2, exclude: str | None = None) -> list[str]:
        """`n` real sections of `kind` from the real trials whose conditions are closest to `near`
        (what the real data looks like there: feedback for a writer); never from trial `exclude` (an anchored
        target's anchor, which the writer is never shown)."""
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
        closest = np.argsort(-(self.vectors(near) @ conditions.matrix.T).max(axis=0))
        out: list[str] = []
        for row in closest[:20]:
            for trial_id in sorted(conditions.owners[row] - {exclude}):
                for text in self._texts_of[kind].get(trial_id, []):
                    if text not in out:
                        out.append(text)
                    if len(out) >= n:
                        return out
        return out
