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
layer on [c * k, |c - k|, cos]). Trains in seconds; embedding the criteria takes a minute or two on 2 cores.
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

    rows_c, rows_k, ys = [], [], []
    for i in train:
        ci = context(trials[i])
        for c in inclusion(trials[i]):
            rows_c.append(ci), rows_k.append(vector_of[c]), ys.append(1.0)
        for _ in range(args.negatives):
            j = unrelated(i, train)
            off = off_topic_criteria(trials[i], trials[j]) if j is not None else []
            if off:
                rows_c.append(ci), rows_k.append(vector_of[rng.choice(off)]), ys.append(0.0)
    c_train, k_train, y_train = np.stack(rows_c), np.stack(rows_k), np.asarray(ys, dtype=np.float32)
    print(f"{len(y_train)} training pairs, {int(y_train.sum())} own", flush=True)

    table = []
    for kind in args.scorers.split(","):
        t0 = time.perf_counter()
        scorer = Scorer(kind, args.seed, args.l2, args.epochs, args.iterations).fit(c_train, k_train, y_train)

        def trial_scores(ts):
            pairs = [(k, context(t), vector_of[c]) for k, t in enumerate(ts)
                     if centroid[tuple(conditions(t))] is not None for c in inclusion(t)]
            out = np.full(len(ts), np.inf)
            if pairs:
                s = scorer.decision_function(np.stack([p[1] for p in pairs]), np.stack([p[2] for p in pairs]))
                for (k, _, _), v in zip(pairs, s):
                    out[k] = min(out[k], v)
            return out

        real = trial_scores([trials[i] for i in test])
        thresholds = [np.quantile(real, q) for q in (0.01, 0.025, 0.05)]
        row = [kind]
        for ts in spoiled.values():
            s = trial_scores(ts)
            auc = roc_auc_score(np.r_[np.ones(len(real)), np.zeros(len(s))], np.r_[real, s])
            row.append(" / ".join(f"{100 * np.mean(s < t):.1f}" for t in thresholds) + f" ({auc:.3f})")
        p2 = {kind2: trial_scores(ts) for kind2, ts in phase2_kinds.items()}
        row.append(f"{100 - 100 * np.mean(p2['real'] < thresholds[2]):.1f}")
        for kind2 in ("off_topic_criterion", "one_bad_criterion", "unrelated_conditions", "unrelated_eligibility"):
            row.append(f"{100 * np.mean(p2[kind2] < thresholds[2]):.1f}")
        row.append(f"{time.perf_counter() - t0:.0f}")
        table.append(row)
    print_table(f"held-out fold 0 of phase_I_train ({len(test)} real trials): caught at 1 / 2.5 / 5% of them rejected "
                "(ROC-AUC); phase II (bench_critic's 150 trials, seed 0) at the held-out 5% threshold",
                ["scorer", "off-topic criterion", "foreign sentence", "swapped conditions", "II real kept %",
                 "II off-topic %", "II one bad %", "II swap cond %", "II swap elig %", "fit s"], table)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
