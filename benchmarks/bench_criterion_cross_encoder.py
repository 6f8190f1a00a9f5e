"""A per-criterion cross-encoder, measured before it is built (issue 20, stop 50): all-MiniLM-L6-v2 fine-tuned on
(conditions, ONE criterion) pairs of the phase_I_train trials outside `fold_assignment`'s fold 0; a trial's score is
its worst criterion's logit. Thresholds at 1 / 2.5 / 5% of the held-out fold's real trials; rates on spoiled copies
of the held-out fold's trials (donors from the same fold), then on bench_critic's phase II kinds at those thresholds.

    python benchmarks/bench_criterion_cross_encoder.py --store STORE [--negatives off|swap+off] [--criteria all|inclusion]
                                                        [--epochs 2] [--max-tokens 64] [--per-trial 3] [--model SAVED.pt]

--negatives off: an inclusion criterion of an unrelated trial about its own conditions (`off_topic_criteria`) under
the trial's conditions; swap+off: also the trial's own criterion under an unrelated trial's conditions.
--criteria: which criteria a trial is scored (and trained) on. --model: score with saved weights (no training).
8-11 minutes on 2 cores. (Ported from the session probe that gave the RESULTS table; the same steps and seeds.)
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
from bench_critic import doc_sentences, phase2_positives, spoil  # noqa: E402
from common import OUT, TOP, held_out_spoils, train_pair_epoch  # noqa: E402
from synthtrials.tools.knowledge.calibration import off_topic_criteria  # noqa: E402
from synthtrials.tools.knowledge.cross_encoder import conditions_text, fold_assignment, has_pair  # noqa: E402
from synthtrials.tools.readers import read_trials  # noqa: E402
from synthtrials.tools.store.embeddings import TransformerEmbeddings, bundled_minilm_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", default=str(OUT / "phase1_store"), help="bench_critic's phase II trials leave out its trials")
    parser.add_argument("--negatives", choices=["off", "swap+off"], default="off")
    parser.add_argument("--criteria", choices=["all", "inclusion"], default="inclusion")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--per-trial", type=int, default=3)
    parser.add_argument("--model", default=None, help="saved weights to score with (no training)")
    parser.add_argument("--save", default=None, help="where to save the trained weights")
    args = parser.parse_args()
    import torch
    from sklearn.metrics import roc_auc_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(2)
    torch.manual_seed(0)
    trials = [t for t in read_trials([TOP / "phase_I_train.csv"]) if has_pair(t)]

    def crits(t):
        e = t.eligibility
        return [c for c in (e.inclusion if args.criteria == "inclusion" else e.inclusion + e.exclusion) if c.strip()]

    emb = TransformerEmbeddings(max_length=128)
    vectors = np.asarray(emb.embed_documents([conditions_text(t) for t in trials]))
    sim = vectors @ vectors.T
    fold_of = fold_assignment([t.nct_id for t in trials])
    train = [i for i, t in enumerate(trials) if fold_of[t.nct_id] != 0]
    test = [i for i, t in enumerate(trials) if fold_of[t.nct_id] == 0]
    rng = random.Random(0)

    def unrelated(i, pool):
        c = [j for j in pool if j != i and sim[i, j] < 0.35]
        return rng.choice(c) if c else None

    tok = AutoTokenizer.from_pretrained(bundled_minilm_path())
    model = AutoModelForSequenceClassification.from_pretrained(bundled_minilm_path(), num_labels=1)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.01)

    def batches(pairs, size=32):
        for k in range(0, len(pairs), size):
            chunk = pairs[k:k + size]
            enc = tok([a for a, _, _ in chunk], [b for _, b, _ in chunk], truncation="longest_first",
                      max_length=args.max_tokens, padding=True, return_tensors="pt")
            yield enc, torch.tensor([y for _, _, y in chunk], dtype=torch.float)

    start = time.perf_counter()
    for epoch in range(0 if args.model else args.epochs):
        pairs = []
        for i in train:
            own = crits(trials[i])
            if not own:
                continue
            ci = conditions_text(trials[i])
            for c in rng.sample(own, min(args.per_trial, len(own))):
                pairs.append((ci, c, 1.0))
                if args.negatives == "swap+off":
                    j = unrelated(i, train)
                    if j is not None:
                        pairs.append((conditions_text(trials[j]), c, 0.0))
            for _ in range(args.per_trial):
                j = unrelated(i, train)
                if j is None:
                    continue
                off = off_topic_criteria(trials[i], trials[j])
                if off:
                    pairs.append((ci, rng.choice(off), 0.0))
        rng.shuffle(pairs)
        loss = train_pair_epoch(model, optimiser, batches(pairs, 16))
        print(f"epoch {epoch}: {len(pairs)} pairs, loss {loss:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    if args.model:
        model.load_state_dict(torch.load(args.model))
    elif args.save:
        torch.save(model.state_dict(), args.save)
    model.eval()

    def trial_scores(ts):
        flat, owner = [], []
        for k, t in enumerate(ts):
            for c in crits(t) if t.eligibility else []:
                flat.append((conditions_text(t), c, 0.0))
                owner.append(k)
        with torch.no_grad():
            s = (np.concatenate([model(**enc).logits.squeeze(-1).numpy() for enc, _ in batches(flat, 64)])
                 if flat else np.zeros(0))
        out = np.full(len(ts), np.inf)
        for k, v in zip(owner, s):
            out[k] = min(out[k], v)
        return out

    spoiled = held_out_spoils(trials, test, unrelated)
    real = trial_scores([trials[i] for i in test])
    thresholds = [np.quantile(real, q) for q in (0.01, 0.025, 0.05)]
    print(f"held-out fold 0: {len(test)} real trials; caught at 1 / 2.5 / 5% of them rejected")
    for kind, ts in spoiled.items():
        s = trial_scores(ts)
        auc = roc_auc_score(np.r_[np.ones(len(real)), np.zeros(len(s))], np.r_[real, s])
        print(f"  {kind}: ROC-AUC {auc:.3f}; " + " / ".join(f"{100 * np.mean(s < t):.1f}%" for t in thresholds))

    from synthtrials.tools.store.trial_store import open_store

    store = open_store(args.store, create=False)
    positives, why_stopped = phase2_positives(store, 150, 0)
    kinds = {"real": positives, **spoil(positives, 0, why_stopped, doc_sentences(), store.embeddings.embed_array)}
    print("phase II (bench_critic's trials and kinds, seed 0), at the held-out fold's thresholds")
    for kind, ts in kinds.items():
        s = trial_scores(ts)
        rates = [100 * np.mean(s < t) for t in thresholds]
        print(f"  {kind}: " + ("kept " + " / ".join(f"{100 - r:.1f}%" for r in rates) if kind == "real"
                               else "caught " + " / ".join(f"{r:.1f}%" for r in rates)))
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
