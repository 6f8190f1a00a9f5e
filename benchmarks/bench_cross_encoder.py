"""Would a cross-encoder on (conditions, criteria) catch the swaps the critic misses? (issue 20; measured at stop 48,
built at stop 49 as `store calibrate --cross-encoder`: tools/knowledge/cross_encoder.py, measured there by bench_critic)

The critic's coherence scores compare sentence embeddings (MiniLM, one vector per condition and per
criterion). A cross-encoder reads the conditions and the criteria together, token against token. This
bench fine-tunes the bundled all-MiniLM-L6-v2 as one (a linear head on its first token; binary
cross-entropy), from the grounding split alone: 4 folds of 5 train it, each trial's own conditions against
its criteria (1), and the conditions of an unrelated trial (condition vectors < 0.35, the calibration's
definition) and of any other trial (0), fresh negatives each epoch. The held-out fold sets the thresholds
(quantiles of its real trials' scores) and measures the grounding swaps caught: its trials with the
conditions of an unrelated held-out trial. The plain cosine of the two MiniLM embeddings is scored beside it.

Then bench_critic's phase II trials (the same seeded 150 positives, their swapped conditions and
eligibility, one nonsense criterion and one off-topic criterion among theirs; phase II tunes nothing):
real rejected and spoiled trials caught by the cross-encoder alone, and by the critic with it (either
rejects), the critic alone in brackets.

    python benchmarks/bench_cross_encoder.py --store STORE [--fold 0] [--epochs 3]

Cost on the 2-core CPU: about 7 minutes an epoch (2,500 pairs of 256 tokens), 23 minutes in all.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_critic import doc_sentences, phase2_positives, spoil  # noqa: E402
from common import critic_rejects, print_table, train_pair_epoch  # noqa: E402
from synthtrials.tools.knowledge.cross_encoder import conditions_text, criteria_text  # noqa: E402

QUANTILES = (0.01, 0.025, 0.05)
UNRELATED_BELOW = 0.35
MAX_TOKENS = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--n", type=int, default=150, help="phase II positives, as bench_critic")
    parser.add_argument("--seed", type=int, default=0, help="bench_critic's seed (and the negatives' draws)")
    parser.add_argument("--fold", type=int, default=0, choices=range(5), help="the held-out grounding fold (of 5)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS,
                        help="tokens per pair (the shipped cross-encoder: 128, with 2 epochs)")
    args = parser.parse_args()

    import torch
    from sklearn.metrics import roc_auc_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging
    from synthtrials.tools.knowledge.calibration import build_knowledge
    from synthtrials.tools.store.embeddings import bundled_minilm_path
    from synthtrials.tools.store.protocol import default_grounding_splits, grounding_filter
    from synthtrials.tools.store.trial_store import open_store

    hf_logging.set_verbosity_error()
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    store = open_store(args.store, create=False)
    splits = default_grounding_splits(store)
    grounding = [t for t in store.filter(grounding_filter(splits))
                 if t.conditions and t.eligibility and (t.eligibility.inclusion or t.eligibility.exclusion)]
    embed = store.embeddings.embed_array
    conditions = np.asarray(embed([conditions_text(t) for t in grounding]))
    criteria = np.asarray(embed([criteria_text(t) for t in grounding]))
    similar = conditions @ conditions.T
    order = list(range(len(grounding)))
    random.Random(7).shuffle(order)
    held = sorted(order[args.fold::5])
    train = [i for i in order if i not in set(held)]
    rng = random.Random(f"cross-encoder {args.seed}")

    def unrelated(i: int, pool: list[int]) -> int | None:
        candidates = [j for j in pool if j != i and similar[i, j] < UNRELATED_BELOW]
        return rng.choice(candidates) if candidates else None

    path = bundled_minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.01)

    def batches(pairs: list[tuple[str, str, float]], size: int):
        for k in range(0, len(pairs), size):
            chunk = pairs[k:k + size]
            encoded = tokenizer([a for a, _, _ in chunk], [b for _, b, _ in chunk], truncation="longest_first",
                                max_length=args.max_tokens, padding=True, return_tensors="pt")
            yield encoded, torch.tensor([y for _, _, y in chunk], dtype=torch.float)

    for epoch in range(args.epochs):
        pairs = []
        for i in train:
            pairs.append((conditions_text(grounding[i]), criteria_text(grounding[i]), 1.0))
            for j in (unrelated(i, train), rng.choice(train)):
                if j is not None and j != i:
                    pairs.append((conditions_text(grounding[j]), criteria_text(grounding[i]), 0.0))
        rng.shuffle(pairs)
        loss = train_pair_epoch(model, optimiser, batches(pairs, 16))
        print(f"  [{time.perf_counter() - start:5.0f} s] epoch {epoch}: {len(pairs)} pairs, loss {loss:.4f}",
              file=sys.stderr, flush=True)
    model.eval()

    def score(pairs: list[tuple[str, str]]) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([model(**encoded).logits.squeeze(-1).numpy()
                                   for encoded, _ in batches([(a, b, 0.0) for a, b in pairs], 32)])

    real_pairs, swap_pairs, cos_real, cos_swap = [], [], [], []
    for i in held:
        real_pairs.append((conditions_text(grounding[i]), criteria_text(grounding[i])))
        cos_real.append(float(conditions[i] @ criteria[i]))
        j = unrelated(i, held)
        if j is not None:
            swap_pairs.append((conditions_text(grounding[j]), criteria_text(grounding[i])))
            cos_swap.append(float(conditions[j] @ criteria[i]))
    real, swapped = score(real_pairs), score(swap_pairs)
    y = np.r_[np.ones(len(real)), np.zeros(len(swapped))]
    rows = []
    for name, a, b in (("cross-encoder", real, swapped), ("cosine of the MiniLM vectors", np.array(cos_real),
                                                          np.array(cos_swap))):
        rows.append([name, f"{roc_auc_score(y, np.r_[a, b]):.3f}",
                     *(f"{np.mean(b < np.quantile(a, q)):.1%}" for q in QUANTILES)])
    print_table(f"python benchmarks/bench_cross_encoder.py --store {args.store} --fold {args.fold} --epochs "
                f"{args.epochs} --max-tokens {args.max_tokens}: grounding fold {args.fold} held out ({len(real)} real trials, {len(swapped)} with an "
                f"unrelated trial's conditions; trained on {len(train)})",
                ["score", "ROC-AUC", *(f"swaps caught, {q:.1%} of held-out real rejected" for q in QUANTILES)], rows)
    limits = {q: float(np.quantile(real, q)) for q in QUANTILES}

    positives, why_stopped = phase2_positives(store, args.n, args.seed)
    kinds = spoil(positives, args.seed, why_stopped, doc_sentences(), embed)
    gate = critic_rejects(store, splits, build_knowledge(store, splits))
    def cross(trials: list) -> np.ndarray:
        return score([(conditions_text(t), criteria_text(t)) for t in trials])

    sets = {"real": positives, "swapped conditions": kinds["unrelated_conditions"],
            "swapped eligibility": kinds["unrelated_eligibility"], "one nonsense criterion": kinds["one_bad_criterion"],
            "off-topic criterion": kinds["off_topic_criterion"]}
    scores = {name: cross(trials) for name, trials in sets.items()}
    gates = {name: gate(trials) for name, trials in sets.items()}
    rows = []
    for q, limit in limits.items():
        row = [f"{q:.1%}"]
        for name in sets:
            alone = scores[name] < limit
            row.append(f"{alone.mean():.1%}; {(alone | gates[name]).mean():.1%} ({gates[name].mean():.1%})")
        rows.append(row)
    print_table(f"bench_critic's phase II trials ({len(positives)} of each; {time.perf_counter() - start:.0f} s in all): "
                "the cross-encoder alone; with the critic (the critic alone)",
                ["threshold: quantile of the held-out grounding fold's real trials", "real rejected",
                 *(f"{name} caught" for name in list(sets)[1:])], rows)


if __name__ == "__main__":
    main()
