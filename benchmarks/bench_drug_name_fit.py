"""A score of whether a trial's conditions fit its drug's *name*, measured as a critic check and not kept
(issue 20: swapped conditions over criteria that name no condition, where phase II drugs are unknown).

Drug names are built from stems that name a class and so a disease area ("-tinib": cancers, "-vir":
viral infections, "-gliptin": diabetes; biologics often name their disease, "hepatitis B vaccine"). A
drug the grounding split has never seen still spells out where its trials are. The score
(`DrugNameConditions`, here in the bench only): each grounding trial's drug names as character
n-grams (TF-IDF, 3-5 letters inside words) and the unit centroid of its conditions' vectors; a
trial's expected conditions are the similarity-weighted mean condition centroid of the 15 grounding
trials whose drug names are spelt most like its own, among the trials of other drugs (never one of its
own first drug, so a known drug is judged as an unknown one is); the score is the cosine between the
trial's conditions and the expected ones, both relative to the average grounding trial.

Printed:
1. the score alone, as ROC-AUC between real trials and the same trials with an unrelated trial's
   conditions: the calibration's spoiled phase_I_train copies (donor and own drug left out) and
   bench_critic's phase II swaps (the same seeded 150);
2. the store's calibration with the score added to the others (`allocate_budget`, everything read
   from phase_I_train): its weight in the joint score, what the checks then catch of the spoiled
   grounding trials, and bench_critic's phase II kinds judged by it, against the same allocation without the
   score (what `store calibrate` computes on these scores: the shipped calibration).
   Phase II trials tune nothing here: the bench only counts.
3. the same with the joint score's weights fitted on scores read as if the trial's drug were new to
   the store (every grounding trial of its first drug left out, and those whose criteria are nearly
   the same as its own, cosine of the criteria centroids above 0.9: a sponsor's series), so that the
   coherence scores weaken as on a phase II trial; the thresholds are read as shipped.

    python benchmarks/bench_drug_name_fit.py --store demo_out/store

Run with SYNTHTRIALS_EMBEDDING_PRECISION=float32 to compare with RESULTS.md.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_critic import doc_sentences, phase2_positives, spoil  # noqa: E402
from bench_swap_detectability import criteria_of, names_conditions  # noqa: E402
from common import phase2_arguments, print_table  # noqa: E402
from synthtrials.tools.knowledge.coherence import Excluded, excluded_ids, unit_centroid  # noqa: E402
from synthtrials.tools.knowledge.domain import DomainKnowledge, SectionScore  # noqa: E402
from synthtrials.tools.records.eligibility import trial_drugs  # noqa: E402

NEIGHBOURS = 15  # grounding trials of other drugs whose names are spelt most like the trial's
SCORE = "drug_name_fit"


class DrugNameConditions:
    """The grounding trials' drug names (character n-grams) and unit condition centroids, aligned."""

    def __init__(self, ids: Sequence[str], drugs: Sequence[Sequence[str]], conditions: np.ndarray) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.position = {trial_id: i for i, trial_id in enumerate(ids)}
        self.first = np.asarray([names[0] for names in drugs], dtype=object)
        self.average = conditions.mean(axis=0)
        self.relative = conditions - self.average
        self.vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)
        self.names = self.vectorizer.fit_transform([" ".join(names) for names in drugs])

    def fit(self, drugs: Sequence[str], conditions: np.ndarray, exclude: Excluded = None) -> tuple[float, int] | None:
        """The cosine of the conditions' unit centroid and the expected conditions (both relative to the
        average trial), and the row of the condition that fits least; None where nothing applies."""
        centroid = unit_centroid(conditions)
        if not drugs or centroid is None:
            return None
        similarity = (self.vectorizer.transform([" ".join(drugs)]) @ self.names.T).toarray()[0]
        similarity[[self.position[t] for t in excluded_ids(exclude) if t in self.position]] = 0.0
        similarity[self.first == drugs[0]] = 0.0
        nearest = np.argsort(-similarity)[:NEIGHBOURS]
        weights = similarity[nearest]
        if weights.sum() <= 0:
            return None
        expected = weights @ self.relative[nearest]
        relative = np.vstack([centroid, conditions]) - self.average
        norms = np.linalg.norm(relative, axis=1)
        if norms[0] <= 1e-9 or np.linalg.norm(expected) <= 1e-9:
            return None
        cosines = relative @ (expected / np.linalg.norm(expected)) / np.maximum(norms, 1e-9)
        return float(cosines[0]), int(np.argmin(cosines[1:]))


class WithDrugNames(DomainKnowledge):
    """The store's domain knowledge with `drug_name_fit` among its scores."""

    def __init__(self, trials, embed, encode=None) -> None:
        super().__init__(trials, embed, encode)
        matrix = self.index["condition"].matrix
        named = [(t.nct_id, trial_drugs(t), unit_centroid(matrix[self.condition_rows[t.nct_id]])) for t in self.trials]
        named = [(t, drugs, c) for t, drugs, c in named if drugs and c is not None]
        self.drug_names = DrugNameConditions([t for t, _, _ in named], [d for _, d, _ in named],
                                             np.stack([c for _, _, c in named]))

    def _scores(self, trial, s) -> dict[str, SectionScore]:
        out = super()._scores(trial, s)
        conditions = s.texts.get("condition")
        fit = self.drug_names.fit(trial_drugs(trial), s.vectors["condition"], s.exclude) if conditions else None
        out[SCORE] = SectionScore(None) if fit is None else SectionScore(fit[0], conditions[fit[1]], "condition")
        return out


def fitted_as_if_new(knowledge: WithDrugNames, real, spoiled, spoiled_of):
    """`allocate_budget` with the joint score's weights fitted on scores read with the trial's drug and its
    near-copies left out (item 3 of the docstring); its values and thresholds on the usual scores."""
    from synthtrials.tools.knowledge import calibration
    from synthtrials.tools.knowledge.calibration import score_matrix, spoiled_with_donors
    from synthtrials.tools.records.eligibility import first_drug

    same_drug: dict[str, list[str]] = {}
    for trial in knowledge.trials:
        same_drug.setdefault(first_drug(trial) or "", []).append(trial.nct_id)
    model = knowledge.coherence
    near = model.criteria @ model.criteria.T > 0.9
    family = {trial_id: [model.ids[j] for j in np.flatnonzero(near[i])] for i, trial_id in enumerate(model.ids)}
    by_id = {t.nct_id: t for t in knowledge.trials}

    def as_new(trial_id: str, donor: Excluded = None) -> tuple[str, ...]:
        drug = first_drug(by_id[trial_id])
        return tuple(dict.fromkeys([trial_id, *excluded_ids(donor), *(same_drug[drug] if drug else []),
                                    *family.get(trial_id, [])]))

    new_real = score_matrix(knowledge, excludes=[as_new(t.nct_id) for t in knowledge.trials])
    pairs = spoiled_with_donors(knowledge)
    new_spoiled = {kind: score_matrix(knowledge, trials=[t for t, _ in p], excludes=[as_new(t.nct_id, e) for t, e in p])
                   for kind, p in pairs.items()}

    shipped_form = calibration.cross_fitted_joint
    calibration.cross_fitted_joint = partial(shipped_form, fitted_on=(new_real, new_spoiled))
    try:
        return calibration.allocate_budget(real, spoiled, spoiled_of)
    finally:
        calibration.cross_fitted_joint = shipped_form


def auc(real: np.ndarray, spoiled: np.ndarray) -> str:
    from sklearn.metrics import roc_auc_score

    real, spoiled = real[np.isfinite(real)], spoiled[np.isfinite(spoiled)]
    return f"{roc_auc_score(np.r_[np.ones(len(real)), np.zeros(len(spoiled))], np.r_[real, spoiled]):.3f}"


def main() -> None:
    args = phase2_arguments(__doc__)

    from synthtrials.agents.critic import check_trials
    from synthtrials.tools.knowledge.calibration import _rejected, allocate_budget, calibration_scores
    from synthtrials.tools.knowledge.checks import CriticThresholds
    from synthtrials.tools.knowledge.joint import JOINT
    from synthtrials.tools.records.writer_format import DraftSpec
    from synthtrials.tools.store.protocol import default_grounding_splits, grounding_filter
    from synthtrials.tools.store.trial_store import open_store

    started = time.time()
    store = open_store(args.store, create=False)
    splits = default_grounding_splits(store)
    grounding = store.filter(grounding_filter(splits))
    knowledge = WithDrugNames(grounding, lambda texts: store.section_vectors(texts),
                              encode=lambda texts: store.embeddings.embed_array(texts))
    real, spoiled, spoiled_of = calibration_scores(knowledge)
    without = allocate_budget({n: v for n, v in real.items() if n != SCORE},
                              {k: {n: v for n, v in s.items() if n != SCORE} for k, s in spoiled.items()}, spoiled_of)
    added = allocate_budget(real, spoiled, spoiled_of)
    as_new = fitted_as_if_new(knowledge, real, spoiled, spoiled_of)

    positives, why_stopped = phase2_positives(store, args.n, args.seed)
    kinds = spoil(positives, args.seed, why_stopped, doc_sentences(), store.embeddings.embed_array)
    knowledge.embed_with_sections([t for trials in [positives, *kinds.values()] for t in trials])
    phase2 = {kind: [knowledge.scores(t) for t in trials]
              for kind, trials in [("real", positives), ("unrelated_conditions", kinds["unrelated_conditions"])]}
    named = np.array([names_conditions(criteria_of(p), p.conditions) for p in positives])

    def column(kind: str, name: str, mask: np.ndarray | None = None) -> np.ndarray:
        values = np.array([np.nan if (v := s.get(name)) is None or v.score is None else v.score for s in phase2[kind]])
        return values if mask is None else values[mask]

    def best(pairs: list[tuple[np.ndarray, np.ndarray, str]]) -> str:
        scored = [(r, s, name) for r, s, name in pairs if np.isfinite(r).any() and np.isfinite(s).any()]
        value, name = max((auc(r, s), name) for r, s, name in scored)
        return f"{value} ({name})"

    shipped_names = [n for n in real if n != SCORE and np.isfinite(real[n]).any()]
    print_table(f"python benchmarks/bench_drug_name_fit.py --store {args.store}: each score alone (ROC-AUC, real "
                "trials against the same trials with an unrelated trial's conditions)",
                ["trials", "drug_name_fit", "the best shipped score"],
                [["phase_I_train (grounding), own drug and donor left out",
                  auc(real[SCORE], spoiled["unrelated_conditions"][SCORE]),
                  best([(real[n], spoiled["unrelated_conditions"][n], n) for n in shipped_names])],
                 ["phase II (bench_critic)", auc(column("real", SCORE), column("unrelated_conditions", SCORE)),
                  best([(column("real", n), column("unrelated_conditions", n), n) for n in shipped_names])],
                 [f"phase II, criteria that name no condition ({(~named).sum()})",
                  auc(column("real", SCORE, ~named), column("unrelated_conditions", SCORE, ~named)),
                  best([(column("real", n, ~named), column("unrelated_conditions", n, ~named), n)
                        for n in shipped_names])]])

    budgets = (without, added, as_new)
    rows = [["weight in the joint score (standardised)", "-",
             *(f"{dict(zip(b.joint.names, b.joint.weights))[SCORE]:+.3f}" for b in budgets[1:])],
            ["the scores one by one spend", *(f"{b.score_share:.0%}" for b in budgets)],
            ["real grounding trials rejected, cross-fitted", *(f"{b.cross_fitted_rejection:.1%}" for b in budgets)]]
    for kind in spoiled:
        rows.append([f"spoiled grounding {kind} caught", *(f"{_rejected(b.spoiled[kind], b.thresholds).mean():.1%}"
                                                           for b in budgets)])
    spec = DraftSpec.from_trials(grounding)
    judged = [CriticThresholds(calibrated=b.thresholds, calibration="bench", joint=b.joint) for b in budgets]
    for kind, trials in [("real", positives), *kinds.items()]:
        if kind in ("fluent_nonsense", "outcome_statement", "personal_data", "nct_id"):
            continue
        row = [f"phase II {kind} {'kept' if kind == 'real' else 'caught'}"]
        for thresholds in judged:
            verdicts = check_trials(trials, store=store, splits=splits, knowledge=knowledge, thresholds=thresholds,
                                    fields=spec.fields)
            rejected = np.array([v.verdict == "reject" for v in verdicts])
            cell = f"{(1 - rejected.mean()) if kind == 'real' else rejected.mean():.1%}"
            if kind == "unrelated_conditions":
                cell += f" (criteria that name no condition: {rejected[~named].mean():.1%} of {(~named).sum()})"
            row.append(cell)
        rows.append(row)
    assert JOINT in added.thresholds
    print_table(f"the calibration with the score added (the whole bench: {time.time() - started:.0f} s)",
                ["", "without it (as shipped)", "with drug_name_fit", "with it, the joint score fitted as if each drug "
                 "were new"], rows)


if __name__ == "__main__":
    main()
