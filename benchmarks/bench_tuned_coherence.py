"""The issue's suggested coherence scorer, with the encoder itself fine-tuned: does it catch what the
calibrated critic misses? Measured on the grounding split alone (issue 20).

all-MiniLM-L6-v2 (the store's encoder) is fine-tuned contrastively on pairs (a trial's conditions,
one of its inclusion criteria) of the grounding trials: InfoNCE both ways, in-batch negatives from
other trials (pairs of trials with the same condition list masked), `--rounds` passes that each take
one random inclusion criterion per trial, learning rate `--lr`, temperature `--temperature`. Out of
fold: the grounding trials with conditions and inclusion criteria are split into `--folds` folds, at
random (`random`) or by k-means clusters of their conditions' centroid (`clusters`: conditions the
model never saw, as phase II's are to phase I train), one model per fold, and each fold's real
trials and their spoiled copies (`spoiled_grounding_trials`, as the calibration makes them) are
scored by the model that did not see them. Two scores per trial, each a margin over the average
training trial's conditions (as `tools/knowledge/coherence.py` reads its cosines):
- `worst`: the inclusion criterion least close to the trial's conditions (one bad criterion);
- `mean`: the mean over all criteria (swapped conditions or eligibility).
The same scores with the encoder frozen are printed beside them. Per spoiled kind: the AUC against
real trials, the share caught at the score's 2% real quantile, the share of those that the shipped
calibration's checks miss; then its allocation (`allocate_budget`) with the score added.

    python benchmarks/bench_tuned_coherence.py --store demo_out/store [--folds-by random,clusters]

Run with SYNTHTRIALS_EMBEDDING_PRECISION=float32 to compare with RESULTS.md. About 15 minutes per
fold scheme on 2 cores (5 fine-tunings of 2 minutes each, and the scoring).
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

QUANTILE = 0.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--folds-by", default="random,clusters")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--temperature", type=float, default=0.05)
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F
    from sklearn.cluster import KMeans
    from sklearn.metrics import roc_auc_score
    from synthtrials.tools.knowledge.calibration import (
        allocate_scores as allocate_budget,  # calibration versions 5-6's allocation
        _rejected,
        build_knowledge,
        calibration_scores,
        spoiled_grounding_trials,
    )
    from synthtrials.tools.store.embeddings import bundled_minilm_path
    from synthtrials.tools.store.protocol import default_grounding_splits
    from synthtrials.tools.store.trial_store import open_store
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    store = open_store(args.store, create=False)
    knowledge = build_knowledge(store, default_grounding_splits(store))
    spoiled_trials = spoiled_grounding_trials(knowledge)
    real_gate, spoiled_gate, spoiled_of = calibration_scores(knowledge)  # the same copies, in the same order
    _, thresholds, rate_gate, _ = allocate_budget(real_gate, spoiled_gate, spoiled_of)
    missed = {kind: ~_rejected(values, thresholds) for kind, values in spoiled_gate.items()}
    kinds = list(spoiled_trials)
    usable = [t for t in knowledge.trials if t.conditions and t.eligibility and t.eligibility.inclusion]
    position = {t.nct_id: i for i, t in enumerate(usable)}
    path = str(bundled_minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(path)

    def conditions_text(trial) -> str:
        return "; ".join(trial.conditions) or "none"

    def pooled(model, texts: list[str], max_length: int):
        batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    caches: dict[int, dict[str, np.ndarray]] = {}

    def encode(model, texts: list[str], max_length: int) -> np.ndarray:
        cache = caches.setdefault(id(model), {})
        todo = sorted({t for t in texts if t not in cache}, key=len)
        with torch.no_grad():
            for i in range(0, len(todo), 128):
                cache.update(zip(todo[i:i + 128], pooled(model, todo[i:i + 128], max_length).numpy()))
        return np.stack([cache[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)

    def fine_tuned(trials: list) -> object:
        model = AutoModel.from_pretrained(path)
        model.train()
        optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr)
        rng = random.Random(0)
        started, steps, loss = time.perf_counter(), 0, None
        for _ in range(args.rounds):
            order = trials[:]
            rng.shuffle(order)
            for i in range(0, len(order) - args.batch + 1, args.batch):
                batch = order[i:i + args.batch]
                conditions = [conditions_text(t) for t in batch]
                logits = (pooled(model, conditions, 32)
                          @ pooled(model, [rng.choice(t.eligibility.inclusion) for t in batch], 48).T) / args.temperature
                same = torch.tensor([[a == b for b in conditions] for a in conditions]) & ~torch.eye(len(batch), dtype=torch.bool)
                logits = logits.masked_fill(same, -1e4)
                target = torch.arange(len(batch))
                loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                steps += 1
        print(f"    fine-tuned {steps} steps in {time.perf_counter() - started:.0f} s, last loss {loss.item():.3f}", flush=True)
        model.eval()
        return model

    def fold_scores(model, reference: list, judged: list) -> tuple[np.ndarray, np.ndarray]:
        average = encode(model, [conditions_text(t) for t in reference], 32).mean(axis=0)
        texts, owner, inclusion = [], [], []
        for i, trial in enumerate(judged):
            eligibility = trial.eligibility
            for text, is_inclusion in ([(c, True) for c in eligibility.inclusion] + [(c, False) for c in eligibility.exclusion]
                                       if eligibility else []):
                texts.append(text)
                owner.append(i)
                inclusion.append(is_inclusion)
        criteria = encode(model, texts, 48)
        conditions = encode(model, [conditions_text(t) for t in judged], 32)
        owner_, inclusion_ = np.asarray(owner, dtype=int), np.asarray(inclusion, dtype=bool)
        margin = np.einsum("ij,ij->i", criteria, conditions[owner_]) - criteria @ average if texts else np.zeros(0)
        worst, mean = np.full(len(judged), np.nan), np.full(len(judged), np.nan)
        for i in range(len(judged)):
            mine = owner_ == i
            if (mine & inclusion_).any():
                worst[i] = margin[mine & inclusion_].min()
            if mine.any():
                mean[i] = margin[mine].mean()
        return worst, mean

    frozen = AutoModel.from_pretrained(path).eval()
    print(f"command: python benchmarks/bench_tuned_coherence.py --store {args.store} --folds-by {args.folds_by}")
    print(f"{len(knowledge.trials)} grounding trials, {len(usable)} with conditions and inclusion criteria; the shipped calibration rejects "
          f"{rate_gate:.1%} of real trials and catches " + ", ".join(f"{k} {1 - missed[k].mean():.1%}" for k in kinds))
    for scheme in args.folds_by.split(","):
        if scheme == "random":
            fold = np.random.default_rng(0).integers(args.folds, size=len(usable))
        else:
            fold = KMeans(args.folds, n_init=4, random_state=0).fit_predict(
                encode(frozen, [conditions_text(t) for t in usable], 32))
        groups = {"real": knowledge.trials, **spoiled_trials}
        scores = {(encoder, name): {g: np.full(len(trials), np.nan) for g, trials in groups.items()}
                  for encoder in ("frozen", "fine-tuned") for name in ("worst", "mean")}
        started = time.perf_counter()
        for f in range(args.folds):
            training = [t for t in usable if fold[position[t.nct_id]] != f]
            print(f"  {scheme} fold {f + 1}/{args.folds}: {len(training)} training trials", flush=True)
            tuned = fine_tuned(training)
            for encoder, model in (("frozen", frozen), ("fine-tuned", tuned)):
                for g, trials in groups.items():
                    rows = [i for i, t in enumerate(trials) if t.nct_id in position and fold[position[t.nct_id]] == f]
                    worst, mean = fold_scores(model, training, [trials[i] for i in rows])
                    scores[(encoder, "worst")][g][rows] = worst
                    scores[(encoder, "mean")][g][rows] = mean
            caches.pop(id(tuned), None)
        print(f"\n### folds by {scheme} ({time.perf_counter() - started:.0f} s)\n")
        print("| encoder | score | " + " | ".join(kinds) + " |")
        print("|---|---|" + "---|" * len(kinds))
        allocations = []
        for (encoder, name), values in scores.items():
            real = values["real"][np.isfinite(values["real"])]
            limit = np.quantile(real, QUANTILE)
            cells = []
            for kind in kinds:
                theirs = values[kind]
                finite = np.isfinite(theirs)
                auc = roc_auc_score(np.r_[np.ones(len(real)), np.zeros(finite.sum())], np.r_[real, theirs[finite]])
                caught = np.nan_to_num(theirs, nan=np.inf) < limit
                cells.append(f"AUC {auc:.2f}, {caught[finite].mean():.0%} at {QUANTILE:.0%}, "
                             f"{(caught & missed[kind]).mean():.0%} beyond the gate")
            print(f"| {encoder} | {name} | " + " | ".join(cells) + " |")
            column = f"{encoder}_{name}"
            with_real = real_gate | {column: values["real"]}
            with_spoiled = {kind: v | {column: values[kind]} for kind, v in spoiled_gate.items()}
            quantiles, limits, rate, _ = allocate_budget(with_real, with_spoiled, spoiled_of)
            allocations.append(f"| the gate + {encoder} {name} | {rate:.1%} | "
                               + " | ".join(f"{_rejected(with_spoiled[k], limits).mean():.1%}" for k in kinds)
                               + f" | {quantiles[column]:.4f} |")
        print(f"\n| allocation | real | {' | '.join(kinds)} | the score's quantile |")
        print("|---|---|" + "---|" * len(kinds) + "---|")
        print(f"| the gate (calibration version 6) | {rate_gate:.1%} | " + " | ".join(f"{1 - missed[k].mean():.1%}" for k in kinds) + " | - |")
        print("\n".join(allocations), flush=True)


if __name__ == "__main__":
    main()
