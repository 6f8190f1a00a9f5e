"""Does a criterion read like an eligibility criterion: the learnt score `typicality_criterion_language` against the
nearest-real-criterion similarity (`typicality_criterion`'s idea), on sentences from outside medicine of three
genres, before either is calibrated (issue 20: "one fluent nonsense criterion among real ones").

Protocol (phase_I_train only, as the store's grounding split): `CriterionLanguage.train` deals the grounding
trials and the calibration's foreign sentences (the Python language reference) into 5 folds. Fold 0's model was fitted
on the other folds' criteria and sentences; fold 0's real trials set the thresholds (1 / 2.5 / 5% of them rejected by
their worst criterion), and copies of them with one sentence inserted among their inclusion criteria measure:
- `reference`: a held-out sentence of the Python language reference (fold 0's, never seen by the model);
- `docstrings`: a sentence of the standard library's docstrings (bench_critic's `one_bad_criterion` source);
- `licence`: a sentence of a software licence under /usr/share/common-licenses (legal prose: no genre it was fitted
  on).
The similarity baseline scores each criterion by its closest criterion of the other folds' trials. Then bench_critic's
phase II trials (seed 0, 150, tune nothing): real trials rejected and `one_bad_criterion` caught by the mean of the
fold models, at the 1 / 2.5 / 5% quantile of the grounding trials' out-of-fold scores (the score alone, not the
critic: the calibration decides how much of the budget it gets).

    SYNTHTRIALS_EMBEDDING_PRECISION=float32 python benchmarks/bench_criterion_language.py --store STORE
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
import bench_critic  # noqa: E402
from common import print_table  # noqa: E402
from synthtrials.tools.knowledge.criterion_language import (  # noqa: E402
    CriterionLanguage,
    criterion_texts,
    foreign_sentences,
)
from synthtrials.tools.store.protocol import default_grounding_splits, grounding_filter  # noqa: E402
from synthtrials.tools.store.trial_store import open_store  # noqa: E402

LICENCES = ("GPL-3", "Apache-2.0", "MPL-2.0", "GFDL-1.3", "LGPL-2.1", "Artistic")
QUANTILES = (0.01, 0.025, 0.05)


def licence_sentences(folder: Path = Path("/usr/share/common-licenses")) -> list[str]:
    """Sentences of 6-22 words of plain letters ending with a full stop, as the other sources are cut."""
    out = set()
    for name in LICENCES:
        if (folder / name).is_file():
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join((folder / name).read_text(errors="ignore").split())):
                if 6 <= len(sentence.split()) <= 22 and re.fullmatch(r"[A-Za-z ,;'()-]+\.", sentence):
                    out.add(sentence)
    return sorted(out)


def caught(real: np.ndarray, spoiled: np.ndarray) -> str:
    return " / ".join(f"{np.mean(spoiled < np.quantile(real, q)):.1%}" for q in QUANTILES)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    store = open_store(args.store, create=False)
    splits = default_grounding_splits(store)
    trials = [t for t in store.filter(grounding_filter(splits)) if criterion_texts(t)]
    genres = {"reference": None, "docstrings": bench_critic.doc_sentences(), "licence": licence_sentences()}
    texts = sorted({c for t in trials for c in criterion_texts(t)} | set(foreign_sentences())
                   | {s for pool in genres.values() if pool for s in pool})
    vectors = store.embeddings.embed_array(texts)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    vector_of = dict(zip(texts, vectors))

    def embed(batch: list[str]) -> np.ndarray:
        missing = [t for t in batch if t not in vector_of]
        if missing:
            new = store.embeddings.embed_array(missing)
            vector_of.update(zip(missing, new / np.linalg.norm(new, axis=1, keepdims=True)))
        return np.stack([vector_of[t] for t in batch])

    language = CriterionLanguage.train(trials, embed)
    held = [t for t in trials if language.fold_of[t.nct_id] == 0]
    genres["reference"] = language.held_out_sentences(held[0].nct_id)
    seen = embed(sorted({c for t in trials if language.fold_of[t.nct_id] != 0 for c in criterion_texts(t)}))

    def learnt(criteria: list[str]) -> float:
        return float(language.criteria_logits(embed(criteria), held[0].nct_id).min())  # fold 0's model

    def nearest(criteria: list[str]) -> float:
        return float((embed(criteria) @ seen.T).max(axis=1).min())

    rng = random.Random(args.seed)
    inserted = {genre: [rng.choice(pool) for _ in held] for genre, pool in genres.items()}

    def with_sentence(trial, sentence: str) -> list[str]:
        inclusion = [" ".join(c.split()) for c in trial.eligibility.inclusion if c.strip()]
        exclusion = criterion_texts(trial)[len(inclusion):]
        inclusion.insert(rng.randint(0, len(inclusion)), sentence)
        return inclusion + exclusion

    rows = []
    for name, score in (("learnt (typicality_criterion_language)", learnt), ("closest real criterion", nearest)):
        real = np.array([score(criterion_texts(t)) for t in held])
        spoiled = {g: np.array([score(with_sentence(t, s)) for t, s in zip(held, inserted[g])]) for g in genres}
        aucs = [roc_auc_score(np.r_[np.ones(len(real)), np.zeros(len(held))], np.r_[real, spoiled[g]]) for g in genres]
        rows.append([name, *(f"{caught(real, spoiled[g])} ({a:.3f})" for g, a in zip(genres, aucs))])
    print_table(f"One sentence from outside medicine among a held-out trial's criteria: caught at 1 / 2.5 / 5% of the "
                f"held-out real trials rejected (ROC-AUC); fold 0 of {len(trials)} phase I grounding trials, "
                f"{len(held)} held out", ["score", *(f"{g} ({len(p)} sentences)" for g, p in genres.items())], rows)

    out_of_fold = np.array([float(language.criteria_logits(embed(criterion_texts(t)), t.nct_id).min()) for t in trials])
    positives, why_stopped = bench_critic.phase2_positives(store, 150, args.seed)
    kinds = bench_critic.spoil(positives, args.seed, why_stopped, genres["docstrings"], store.embeddings.embed_array)

    def mean_model(trial) -> float:
        criteria = criterion_texts(trial)
        return float(language.criteria_logits(embed(criteria)).min()) if criteria else np.inf

    real2 = np.array([mean_model(t) for t in positives])
    bad2 = np.array([mean_model(t) for t in kinds["one_bad_criterion"]])
    fragments = np.array([mean_model(t) for t in kinds["fragments"]])
    rows = [[f"{q:.1%}", f"{np.mean(real2 < np.quantile(out_of_fold, q)):.1%}",
             f"{np.mean(bad2 < np.quantile(out_of_fold, q)):.1%}",
             f"{np.mean(fragments < np.quantile(out_of_fold, q)):.1%}"] for q in QUANTILES]
    print_table(f"Phase II (150 trials, seed {args.seed}), the score alone at a quantile of the grounding trials' "
                f"out-of-fold scores ({time.perf_counter() - start:.0f} s)",
                ["grounding trials rejected", "II real rejected", "II one_bad_criterion caught", "II fragments caught"],
                rows)


if __name__ == "__main__":
    main()
