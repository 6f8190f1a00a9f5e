"""One inclusion criterion against the trial's conditions, on the frozen sentence embeddings (issue 20, stop 51):
the cheap alternative to stop 50's per-criterion cross-encoder (bench_criterion_cross_encoder), measured the same
way. Each phase_I_train trial's conditions (the unit centroid of one vector per condition, as the critic's coherence
model holds them) and each of its inclusion criteria are embedded once with the bundled
all-MiniLM-L6-v2; a small scorer on (conditions vector, criterion vector) is trained on the trials outside
`fold_assignment`'s fold 0: a trial's own inclusion criteria (1) against inclusion criteria of unrelated trials that
name their own conditions (`off_topic_criteria`, 0). A trial's score is its worst inclusion criterion's logit.
Thresholds at 1 / 2.5 / 5% of the held-out fold's real trials; rates on spoiled copies of the held-out fold's
trials (donors from the same fold), then on bench_critic's phase II kinds at those thresholds.

    python benchmarks/bench_criterion_fit.py [--scorers cosine,bilinear,mlp] [--negatives 4] [--seed 0]

Scorers: cosine (no training: the two vectors' cosine), bilinear (c' W k + a cos + b, L2 on W, 300 steps of Adam),
lbfgs (the same model fitted to convergence by L-BFGS: the shipped `criterion_fit.BilinearCriterionFit`), mlp (one hidden
layer on [c * k, |c - k|, cos]); two lexical scorers on the words themselves (stop 52): vocabulary (no training
beyond counts: a criterion's worst condition word by its lift given the trial's condition words, `--alpha`) and
pairs (a logistic model on hashed (condition word, criterion word) pairs, `--c`). Naming a lexical scorer with
others adds their unions (each score at the same quantile of the held-out real trials). Trains in seconds;
embedding the criteria takes a minute or two on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub
sys.path.insert(0, str(Path(__file__).parent))
from bench_critic import doc_sentences, spoil  # noqa: E402
from common import TOP, held_out_spoils, print_table  # noqa: E402
from synthtrials.tools.knowledge.calibration import off_topic_criteria  # noqa: E402
from synthtrials.tools.knowledge.coherence import unit_centroid  # noqa: E402
from synthtrials.tools.knowledge.criterion_fit import ITERATIONS, BilinearCriterionFit  # noqa: E402
from synthtrials.tools.knowledge.cross_encoder import conditions_text, fold_assignment, has_pair  # noqa: E402
from synthtrials.tools.readers import read_trials  # noqa: E402
from synthtrials.tools.store.embeddings import TransformerEmbeddings  # noqa: E402


def inclusion(trial) -> list[str]:
    """The inclusion criteria as the critic's sections hold them (`trial_sections`' cleaned text)."""
    return [" ".join(c.split()) for c in trial.eligibility.inclusion if c.strip()] if trial.eligibility else []


def conditions(trial) -> list[str]:
    return [" ".join(c.split()) for c in trial.conditions if c.strip()]


class Scorer:
    """A logit for (conditions vector, criterion vector) rows; `fit` on labelled rows."""

    def __init__(self, kind: str, seed: int, l2: float = 1e-4, epochs: int = 300, iterations: int = ITERATIONS) -> None:
        self.kind, self.seed, self.l2, self.epochs, self.iterations = kind, seed, l2, epochs, iterations

    def _features(self, c, k):
        import torch

        cos = (c * k).sum(-1, keepdim=True)
        return torch.cat([c * k, (c - k).abs(), cos], -1)

    def fit(self, c: np.ndarray, k: np.ndarray, y: np.ndarray) -> Scorer:
        import torch

        torch.manual_seed(self.seed)
        if self.kind == "cosine":
            return self
        if self.kind == "lbfgs":  # the shipped model (tools.knowledge.criterion_fit)
            self.model = BilinearCriterionFit(self.l2, self.iterations).fit(c, k, y)
            self.loss_ = self.model.loss_
            return self
        c, k, y = torch.tensor(c), torch.tensor(k), torch.tensor(y, dtype=torch.float32)
        d = c.shape[1]
        if self.kind == "bilinear":
            self.w = torch.zeros(d, d, requires_grad=True)
            self.ab = torch.tensor([10.0, -3.0], requires_grad=True)
            params, decay = [self.w, self.ab], [self.w]
        else:
            self.net = torch.nn.Sequential(torch.nn.Linear(2 * d + 1, 128), torch.nn.ReLU(), torch.nn.Linear(128, 1))
            params, decay = list(self.net.parameters()), [self.net[0].weight]
        optimiser = torch.optim.Adam(params, lr=1e-2 if self.kind == "bilinear" else 3e-3)
        weight = torch.where(y > 0, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
        for _ in range(self.epochs):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(self._logits(c, k), y, weight=weight)
            loss = loss + self.l2 * sum((p ** 2).sum() for p in decay)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        self.loss_ = float(loss.detach())
        return self

    def _logits(self, c, k):
        if self.kind == "bilinear":
            return ((c @ self.w) * k).sum(-1) + self.ab[0] * (c * k).sum(-1) + self.ab[1]
        return self.net(self._features(c, k)).squeeze(-1)

    def decision_function(self, c: np.ndarray, k: np.ndarray) -> np.ndarray:
        import torch

        if self.kind == "cosine":
            return (c * k).sum(-1)
        if self.kind == "lbfgs":
            return self.model.decision_function(c, k)
        with torch.no_grad():
            return self._logits(torch.tensor(c), torch.tensor(k)).numpy()


class VocabularyScorer:
    """A lexical score of one inclusion criterion against the trial's conditions, learnt from which words of the
    grounding trials' conditions co-occur with which words of their inclusion criteria: for each word of the criterion
    that is a condition word of the grounding split (in the conditions of `min_trials` trials or more) and not one of
    the trial's own condition words, the best lift over the trial's condition words of P(word in the inclusion
    criteria | condition word), smoothed by `alpha` pseudo-trials at the base rate; the criterion's score is its worst
    word's log lift (0 where it has none, and where no condition word of the trial is known)."""

    def __init__(self, alpha: float = 2.0, min_trials: int = 2) -> None:
        self.alpha, self.min_trials = alpha, min_trials

    def fit(self, trials) -> VocabularyScorer:
        from collections import Counter

        from synthtrials.tools.knowledge.coherence import _words

        cond = [_words(conditions(t)) for t in trials]
        crit = [_words(inclusion(t)) for t in trials]
        n_v = Counter(v for c in cond for v in c)
        self.vocabulary = {v for v, n in n_v.items() if n >= self.min_trials}
        self.n_v = n_v
        self.m_w = Counter(w for k in crit for w in k & self.vocabulary)
        self.n_vw = Counter((v, w) for c, k in zip(cond, crit) for v in c for w in k & self.vocabulary)
        self.n = len(trials)
        return self

    def criterion_scores(self, trial) -> list[float]:
        from synthtrials.tools.knowledge.coherence import _words

        own = _words(conditions(trial))
        known = [v for v in own if self.n_v[v]]
        out = []
        for criterion in inclusion(trial):
            worst = 0.0
            for w in (_words([criterion]) & self.vocabulary) - own:
                p = (self.m_w[w] + 1) / (self.n + 2)
                lift = max((np.log((self.n_vw[v, w] + self.alpha * p) / (self.n_v[v] + self.alpha) / p)
                            for v in known), default=0.0)
                worst = min(worst, lift)
            out.append(worst)
        return out


class WordPairScorer:
    """A logistic model on hashed (condition word, criterion word) pairs and criterion words alone (words of 5
    letters or more), trained on the same own and off-topic criteria as the vector scorers."""

    def __init__(self, seed: int, c: float = 1.0) -> None:
        self.seed, self.c = seed, c

    def _features(self, rows):
        from sklearn.feature_extraction import FeatureHasher

        from synthtrials.tools.knowledge.coherence import _words

        def tokens(trial, criterion):
            own, words = _words(conditions(trial)), _words([criterion])
            return [f"{v}|{w}" for v in own for w in words] + [f"w:{w}" for w in words] + \
                   [f"in:{w}" for w in words & own]

        return FeatureHasher(2 ** 20, input_type="string", alternate_sign=False).transform(
            tokens(t, c) for t, c in rows)

    def fit(self, rows, y) -> WordPairScorer:
        from sklearn.linear_model import LogisticRegression

        self.model = LogisticRegression(C=self.c, class_weight="balanced", max_iter=2000, random_state=self.seed)
        self.model.fit(self._features(rows), y)
        return self

    def decision_function(self, rows) -> np.ndarray:
        return self.model.decision_function(self._features(rows))


def worst_per_trial(n: int, owners: list[int], values) -> np.ndarray:
    """Each of `n` trials' lowest criterion score (`values[i]` belongs to trial `owners[i]`); inf where it has none."""
    out = np.full(n, np.inf)
    np.minimum.at(out, np.asarray(owners, dtype=int), np.asarray(values, dtype=float))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scorers", default="cosine,bilinear,mlp")
    parser.add_argument("--negatives", type=int, default=4, help="unrelated donors a training trial draws off-topic criteria from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--l2", type=float, default=1e-4, help="the penalty on W (bilinear) or the hidden layer (mlp)")
    parser.add_argument("--epochs", type=int, default=300, help="full-batch Adam steps")
    parser.add_argument("--iterations", type=int, default=ITERATIONS, help="L-BFGS's iterations (lbfgs)")
    parser.add_argument("--context", choices=["conditions", "conditions+criteria"], default="conditions",
                        help="what a criterion is read against: the conditions' centroid, or also the centroid of the "
                             "trial's inclusion criteria (the criterion among them)")
    parser.add_argument("--alpha", type=float, default=2.0, help="the vocabulary scorer's smoothing, in trials")
    parser.add_argument("--c", type=float, default=1.0, help="the word-pair scorer's inverse L2 penalty")
    parser.add_argument("--cache", default=None, help="an .npz of the embedded texts, read if present, else written")
    args = parser.parse_args()
    import torch
    from sklearn.metrics import roc_auc_score

    torch.set_num_threads(2)
    start = time.perf_counter()
    trials = [t for t in read_trials([TOP / "phase_I_train.csv"]) if has_pair(t)]
    held = {t.nct_id for f in ("phase_I_train.csv", "phase_I_valid.csv", "phase_I_test.csv") for t in read_trials([TOP / f])}
    phase2 = [t for t in read_trials([TOP / "phase_II_valid.csv"]) if t.nct_id not in held]
    why_stopped = sorted({t.why_stopped for t in phase2 if t.why_stopped and t.label == 0})
    positives = [t.model_copy(update={"overall_status": None, "why_stopped": None})
                 for t in random.Random(0).sample(phase2, 150)]  # bench_critic's phase2_positives, seed 0
    emb = TransformerEmbeddings(max_length=128)
    condition_vectors = np.asarray(emb.embed_documents([conditions_text(t) for t in trials]), dtype=np.float32)
    sim = condition_vectors @ condition_vectors.T
    fold_of = fold_assignment([t.nct_id for t in trials])
    train = [i for i, t in enumerate(trials) if fold_of[t.nct_id] != 0]
    test = [i for i, t in enumerate(trials) if fold_of[t.nct_id] == 0]
    rng = random.Random(args.seed)

    def unrelated(i, pool):
        c = [j for j in pool if j != i and sim[i, j] < 0.35]
        return rng.choice(c) if c else None

    spoiled = held_out_spoils(trials, test, unrelated)
    phase2_kinds = {"real": positives, **spoil(positives, 0, why_stopped, doc_sentences(),
                                               lambda texts: np.asarray(emb.embed_documents(texts)))}
    every = [t for t in trials] + [t for ts in spoiled.values() for t in ts] + [t for ts in phase2_kinds.values() for t in ts]
    texts = sorted({c for t in every for c in inclusion(t) + conditions(t)})
    if args.cache and Path(args.cache).is_file():
        saved = np.load(args.cache, allow_pickle=False)
        vector_of = dict(zip(saved["texts"].tolist(), saved["vectors"]))
        missing = [t for t in texts if t not in vector_of]
        vector_of |= dict(zip(missing, np.asarray(emb.embed_documents(missing), dtype=np.float32))) if missing else {}
    else:
        vector_of = dict(zip(texts, np.asarray(emb.embed_documents(texts), dtype=np.float32)))
        if args.cache:
            np.savez(args.cache, texts=np.asarray(texts), vectors=np.stack([vector_of[t] for t in texts]))
    centroid = {}
    for t in every:  # the conditions as the critic's coherence model holds them: the unit centroid of their vectors
        key = tuple(conditions(t))
        if key not in centroid:
            centroid[key] = unit_centroid(np.stack([vector_of[c] for c in key])) if key else None
    print(f"embedded {len(texts)} texts ({time.perf_counter() - start:.0f} s)", flush=True)

    def context(trial):
        c = centroid[tuple(conditions(trial))]
        if args.context == "conditions" or c is None:
            return c
        return np.r_[c, unit_centroid(np.stack([vector_of[x] for x in inclusion(trial)]))]

    rows_c, rows_k, ys, rows_text = [], [], [], []
    for i in train:
        ci = context(trials[i])
        for c in inclusion(trials[i]):
            rows_c.append(ci), rows_k.append(vector_of[c]), ys.append(1.0), rows_text.append((trials[i], c))
        for _ in range(args.negatives):
            j = unrelated(i, train)
            off = off_topic_criteria(trials[i], trials[j]) if j is not None else []
            if off:
                choice = rng.choice(off)
                rows_c.append(ci), rows_k.append(vector_of[choice]), ys.append(0.0), rows_text.append((trials[i], choice))
    c_train, k_train, y_train = np.stack(rows_c), np.stack(rows_k), np.asarray(ys, dtype=np.float32)
    print(f"{len(y_train)} training pairs, {int(y_train.sum())} own", flush=True)

    table = []
    kinds = args.scorers.split(",")
    for lexical in ("vocabulary", "pairs"):
        if lexical in kinds:
            kinds += [f"{lexical}+{k}" for k in kinds if k not in ("vocabulary", "pairs") and "+" not in k]
    scores_of: dict[str, dict[str, np.ndarray]] = {}
    for kind in kinds:
        t0 = time.perf_counter()
        if "+" in kind:  # the union of two scores at the same quantile of the held-out real trials: the lower of the
            # two scores' ranks among those trials
            def rank(scores, real):
                return np.searchsorted(np.sort(real), scores, side="left") / len(real)

            a, b = (scores_of[k] for k in kind.split("+"))
            scores_of[kind] = {key: np.minimum(rank(a[key], a["real"]), rank(b[key], b["real"])) for key in a}
        else:
            if kind == "pairs":
                pair_scorer = WordPairScorer(args.seed, args.c).fit(rows_text, y_train)

                def trial_scores(ts):
                    rows = [(k, t, c) for k, t in enumerate(ts) for c in inclusion(t)]
                    values = pair_scorer.decision_function([(t, c) for _, t, c in rows]) if rows else []
                    return worst_per_trial(len(ts), [k for k, _, _ in rows], values)
            elif kind == "vocabulary":
                vocabulary = VocabularyScorer(args.alpha).fit([trials[i] for i in train])

                def trial_scores(ts):
                    return np.asarray([min(vocabulary.criterion_scores(t), default=np.inf) for t in ts])
            else:
                scorer = Scorer(kind, args.seed, args.l2, args.epochs, args.iterations).fit(c_train, k_train, y_train)

                def trial_scores(ts):
                    pairs = [(k, context(t), vector_of[c]) for k, t in enumerate(ts)
                             if centroid[tuple(conditions(t))] is not None for c in inclusion(t)]
                    values = scorer.decision_function(np.stack([p[1] for p in pairs]),
                                                      np.stack([p[2] for p in pairs])) if pairs else []
                    return worst_per_trial(len(ts), [k for k, _, _ in pairs], values)

            scores_of[kind] = {"real": trial_scores([trials[i] for i in test]),
                               **{k: trial_scores(ts) for k, ts in spoiled.items()},
                               **{f"II {k}": trial_scores(ts) for k, ts in phase2_kinds.items()}}
        scores = scores_of[kind]
        real = scores["real"]
        thresholds = [np.quantile(real, q) for q in (0.01, 0.025, 0.05)]
        row = [kind]
        for key in spoiled:
            s = scores[key]
            auc = roc_auc_score(np.r_[np.ones(len(real)), np.zeros(len(s))], np.r_[real, s])
            row.append(" / ".join(f"{100 * np.mean(s < t):.1f}" for t in thresholds) + f" ({auc:.3f})")
        row.append(f"{100 - 100 * np.mean(scores['II real'] < thresholds[2]):.1f}")
        for kind2 in ("off_topic_criterion", "one_bad_criterion", "unrelated_conditions", "unrelated_eligibility"):
            row.append(f"{100 * np.mean(scores[f'II {kind2}'] < thresholds[2]):.1f}")
        row.append(f"{time.perf_counter() - t0:.0f}")
        table.append(row)
    print_table(f"held-out fold 0 of phase_I_train ({len(test)} real trials): caught at 1 / 2.5 / 5% of them rejected "
                "(ROC-AUC); phase II (bench_critic's 150 trials, seed 0) at the held-out 5% threshold",
                ["scorer", "off-topic criterion", "foreign sentence", "swapped conditions", "II real kept %",
                 "II off-topic %", "II one bad %", "II swap cond %", "II swap elig %", "fit s"], table)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
