"""The critic as a measured gate: how many real trials it keeps, how many spoiled ones it catches.

Positives: real TOP phase II trials the store does not hold (the store is built from phase I; its
grounding split is phase_I_train), status and why-stopped removed. Negatives: the same trials
spoiled one way each, plus drafts written by the embedded model (not adapted):

- unrelated_conditions: the conditions of an unrelated trial (another phase II trial whose
  conditions are far from these);
- unrelated_eligibility: the eligibility criteria of an unrelated trial;
- fluent_nonsense: every criterion replaced by a fluent English sentence from another domain
  (sentences of the Python standard library's documentation, so nothing was written to fool or
  to please the critic);
- outcome_statement: a sentence stating the outcome, built from real why-stopped texts;
- personal_data: a person's name with an e-mail address and a phone number;
- phone_number: a phone number alone, in one of six forms: North American, international, with the "00"
  prefix, and made up ("555-123-4567", which no phone plan counts as valid); drawn with a random generator of
  its own, so every other kind is spoiled as before;
- nct_id: a real-format NCT id;
- fragments: every criterion cut to a fragment of 8-20 characters;
- one_bad_criterion: one fluent nonsense sentence inserted among the real inclusion criteria;
- off_topic_criterion: one real inclusion criterion of an unrelated trial inserted among the real
  ones, one about that trial's conditions (`tools.knowledge.calibration.off_topic_criteria`: it names one of
  them whole, else a word of them the trial's own conditions lack; a criterion such as "signed
  informed consent" fits every trial and is no error). Where the unrelated trial drawn has no such
  criterion, another donor is drawn among those that have one (`off_topic_donor`, draws of its own, so
  every other kind is drawn as before); a trial for which none has one gets no copy of this kind. Until
  stop 54 such a copy took any of the first donor's criteria: 20 of the 150 held a criterion that names none
  of the donor's conditions ("≥18 years old.", which fits any trial);
- embedded_drafts: drafts of the base embedded model for these trials' drugs and labels.

Each rate comes with its Wilson 95% interval. The LLM critic and judge are the embedded model by
default, or any OpenAI-compatible server (`--llm-backend llamacpp-server`: llama.cpp's server on
loopback, reached through ChatOpenAI; `--llm-backend openai --base-url URL --model NAME`); `--llm-n 0` skips them.

For each kind: the share the deterministic critic gets right (accepts positives, rejects
negatives), and with the LLM critic enforcing; the AUC of the LLM critic's and the LLM judge's
scores between the positives and that kind (0.5 = chance). Nothing here was used to set a
threshold: the critic is calibrated on phase_I_train only.

    python benchmarks/bench_critic.py [--store benchmarks/out/phase1_store] [--n 150] [--llm-n 25] [--calibration KEY]
        [--llm-backend llamacpp-server | --llm-backend openai --base-url http://127.0.0.1:PORT/v1 --model NAME]
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, TOP, print_table  # noqa: E402
from synthtrials.agents.critic import check_trials, llm_judgement  # noqa: E402
from synthtrials.agents.writer import write_draft  # noqa: E402
from synthtrials.evals.judge import judge_trial  # noqa: E402
from synthtrials.tools.knowledge.calibration import (  # noqa: E402
    Calibration,
    build_knowledge,
    load_or_calibrate,
    off_topic_criteria,
    off_topic_donor,
    with_off_topic_criterion,
)

from synthtrials.tools.records.eligibility import trial_drugs  # noqa: E402
from synthtrials.tools.llm.client import LLMClient, LLMConfig, LLMError  # noqa: E402
from synthtrials.tools.readers import read_trials  # noqa: E402
from synthtrials.tools.store.protocol import (
    default_grounding_splits,
    grounding_filter,
)
from synthtrials.tools.store.trial_store import open_store
from synthtrials.tools.records.trial import Eligibility, Trial, render_for_classifier  # noqa: E402
from synthtrials.tools.records.writer_format import DraftSpec  # noqa: E402

DOC_MODULES = ("email", "http.client", "json", "argparse", "logging", "collections", "unittest", "textwrap",
               "calendar", "decimal", "sqlite3", "zipfile", "tarfile", "csv", "smtplib", "ftplib", "shutil",
               "threading", "asyncio", "urllib.request", "xml.dom.minidom", "pathlib", "datetime", "random")
FIRST_NAMES = ("Anna", "James", "Maria", "Wei", "Fatima", "Lukas", "Sofia", "Ahmed", "Olga", "Daniel")
LAST_NAMES = ("Lee", "Martin", "Garcia", "Chen", "Okafor", "Novak", "Rossi", "Kim", "Larsen", "Haddad")


def doc_sentences() -> list[str]:
    """Fluent English sentences from another domain: the standard library's docstrings."""
    out = []
    for name in DOC_MODULES:
        module = importlib.import_module(name)
        texts = [module.__doc__ or ""] + [getattr(module, a).__doc__ or "" for a in dir(module)
                                          if not a.startswith("_") and callable(getattr(module, a, None))]
        for text in texts:
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
                words = sentence.split()
                if 6 <= len(words) <= 22 and re.fullmatch(r"[A-Za-z ,;'()-]+\.", sentence):
                    out.append(sentence)
    return sorted(set(out))


def phone_number(rng: random.Random) -> str:
    """A phone number in one of six forms (North American, international with "+" or "00", made up)."""
    line = f"{rng.randint(0, 9999):04d}"
    return rng.choice([f"+1 617 555 {line}", f"(617) 555-{line}", f"+44 20 7946 {line}", f"0044 20 7946 {line}",
                       f"+49 30 1234{line}", f"555-123-{line}"])


def criteria(trial: Trial) -> list[str]:
    return (trial.eligibility.inclusion + trial.eligibility.exclusion) if trial.eligibility else []


def spoil(trials: list[Trial], seed: int, why_stopped: list[str], sentences: list[str], embed) -> dict[str, list[Trial]]:
    rng = random.Random(seed)
    phones = random.Random(f"phone_number {seed}")  # its own draws: the other kinds are spoiled as before
    vectors = embed(["; ".join(t.conditions) or "none" for t in trials])
    similarity = vectors @ vectors.T

    off_topic = random.Random(f"off_topic_criterion {seed}")  # a second donor's draws (stop 54)

    def far(i: int) -> list[Trial]:
        return [trials[j] for j in range(len(trials)) if similarity[i, j] < 0.35 and criteria(trials[j])]

    def unrelated(i: int) -> Trial:
        return rng.choice(far(i))

    def with_criteria(trial: Trial, inclusion: list[str], exclusion: list[str]) -> Trial:
        return trial.model_copy(update={"eligibility": Eligibility(inclusion=inclusion, exclusion=exclusion)})

    out: dict[str, list[Trial]] = {k: [] for k in ("unrelated_conditions", "unrelated_eligibility", "fluent_nonsense",
                                                   "outcome_statement", "personal_data", "phone_number", "nct_id",
                                                   "fragments", "one_bad_criterion", "off_topic_criterion")}
    for i, trial in enumerate(trials):
        elig = trial.eligibility or Eligibility()
        inc, exc = list(elig.inclusion) or ["Adults"], list(elig.exclusion)
        out["unrelated_conditions"].append(trial.model_copy(update={"conditions": unrelated(i).conditions}))
        out["unrelated_eligibility"].append(trial.model_copy(update={"eligibility": unrelated(i).eligibility}))
        out["fluent_nonsense"].append(with_criteria(trial, rng.sample(sentences, max(3, len(inc))),
                                                    rng.sample(sentences, max(1, len(exc)))))
        statement = (f"The study was terminated early: {rng.choice(why_stopped).rstrip('.')}." if trial.label == 0
                     else "The trial met its primary endpoint and was completed as planned.")
        out["outcome_statement"].append(with_criteria(trial, inc + [statement], exc))
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        contact = (f"Contact the study coordinator Dr. {first} {last} at {first.lower()}.{last.lower()}@example.org "
                   f"or +1 617 555 {rng.randint(1000, 9999)}")
        out["personal_data"].append(with_criteria(trial, inc + [contact], exc))
        out["phone_number"].append(with_criteria(trial, inc + [f"Questions about the study: call {phone_number(phones)}"],
                                                 exc))
        nct = f"Patients previously enrolled in NCT{rng.randint(0, 99999999):08d} are not eligible"
        out["nct_id"].append(with_criteria(trial, inc, exc + [nct]))
        cut = [c[:rng.randint(8, 20)] for c in inc + exc]
        out["fragments"].append(with_criteria(trial, cut[:len(inc)], cut[len(inc):]))
        one = list(elig.inclusion)
        one.insert(rng.randint(0, len(one)), rng.choice(sentences))
        out["one_bad_criterion"].append(with_criteria(trial, one, exc))
        drawn = unrelated(i)
        off = with_off_topic_criterion(trial, drawn, rng)  # drawn as before stop 54, so every other kind is too
        if not off_topic_criteria(trial, drawn):  # none about its own conditions: another donor, by draws of its own
            donor = off_topic_donor(trial, far(i), off_topic)
            off = with_off_topic_criterion(trial, donor, off_topic) if donor is not None else None
        if off is not None:
            out["off_topic_criterion"].append(off)
    return out


def phase2_positives(store, n: int, seed: int) -> tuple[list[Trial], list[str]]:
    """`n` real TOP phase II trials the store does not hold (seeded), status and why-stopped removed,
    and the why-stopped texts of the failed ones (for `outcome_statement`)."""
    held = set(store.filter_ids(grounding_filter(["train", "valid", "test", "pool"])))
    phase2 = [t for t in read_trials([TOP / "phase_II_valid.csv"]) if t.nct_id not in held]
    why_stopped = sorted({t.why_stopped for t in phase2 if t.why_stopped and t.label == 0})
    rng = random.Random(seed)
    positives = [t.model_copy(update={"overall_status": None, "why_stopped": None})
                 for t in rng.sample(phase2, min(n, len(phase2)))]
    return positives, why_stopped


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score 95% interval of a proportion."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def embedded_drafts(store, splits, spec: DraftSpec, trials: list[Trial], n: int, seed: int) -> list[Trial]:
    """Drafts of the base embedded model (no adapter) for the trials' drugs and labels."""
    llm = LLMClient(LLMConfig(max_tokens=700))
    grounding = grounding_filter(splits)
    out = []
    for i, trial in enumerate(trials[:n]):
        drug = trial_drugs(trial)[0] if trial_drugs(trial) else trial.interventions[0].name
        examples = store.filter(grounding.narrowed(intervention=drug, label=trial.label))[:2] or \
            [h.trial for h in store.search(drug, k=2, flt=grounding)]
        try:
            _, result = write_draft(llm, spec, drug, int(trial.label or 0),
                                    [render_for_classifier(t, spec.fields)[:700] for t in examples], [], [],
                                    seed=i, temperature=0.7)
        except LLMError:
            continue
        out.append(spec.to_trial(result.value, f"SYN-{i:012x}", label=trial.label, provenance={}))
    return out


def auc(positive: list[float], negative: list[float]) -> float:
    from sklearn.metrics import roc_auc_score

    if not positive or not negative:
        return float("nan")
    return float(roc_auc_score([1] * len(positive) + [0] * len(negative), positive + negative))


def llm_scores(llm: LLMClient, trials: list[Trial]) -> tuple[list[float], list[float]]:
    """Per trial: the LLM critic's score (1 consistent, 0 not) and the judge's mean rubric score."""
    critic, judge = [], []
    for i, trial in enumerate(trials):
        drug = trial.interventions[0].name if trial.interventions else "the drug"
        problems = llm_judgement(llm, trial, drug, int(trial.label or 0), seed=i, temperature=0.0)[0]
        critic.append(0.0 if problems else 1.0)
        try:
            scores = judge_trial(llm, trial, seed=i)
            judge.append(float(np.mean([scores[c] for c in ("realism", "domain_consistency", "label_consistency",
                                                             "coherence")])))
        except LLMError:
            judge.append(float("nan"))
    return critic, judge


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", default=str(OUT / "phase1_store"))
    parser.add_argument("--n", type=int, default=150, help="positives (real phase II trials)")
    parser.add_argument("--llm-n", type=int, default=25, help="trials per kind scored by the LLM critic and judge")
    parser.add_argument("--drafts", type=int, default=16, help="drafts of the embedded model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration", default=None,
                        help="judge by the calibration saved under this key in the store (e.g. an earlier version's) "
                             "instead of the current version's: its thresholds and joint score, read against today's "
                             "scores (a cross-encoder calibration's fold models are not attached)")
    parser.add_argument("--llm-backend", default="llamacpp",
                        help="LLM critic and judge: llamacpp (in process), llamacpp-server (llama.cpp's OpenAI-compatible "
                             "server started on 127.0.0.1, reached through ChatOpenAI) or openai (with --base-url)")
    parser.add_argument("--base-url", default=None, help="openai: the OpenAI-compatible server")
    parser.add_argument("--model", default=None, help="openai: the server's model name")
    args = parser.parse_args()
    start = time.perf_counter()
    store = open_store(args.store, create=False)
    splits = default_grounding_splits(store)
    positives, why_stopped = phase2_positives(store, args.n, args.seed)
    knowledge = build_knowledge(store, splits)
    if args.calibration:
        saved = store.load_calibration(args.calibration)
        if saved is None:
            sys.exit(f"{args.store}: no calibration saved under {args.calibration}")
        calibration = Calibration.model_validate(saved)
    else:
        calibration = load_or_calibrate(store, splits, knowledge, say=print)
    thresholds = calibration.critic_thresholds()
    spec = DraftSpec.from_trials(store.filter(grounding_filter(splits)))
    kinds = {"real (positives)": positives,
             **spoil(positives, args.seed, why_stopped, doc_sentences(), store.embeddings.embed_array)}
    kinds["embedded_drafts"] = embedded_drafts(store, splits, spec, positives, args.drafts, args.seed)
    llm_config = LLMConfig(backend=args.llm_backend, base_url=args.base_url, model=args.model, max_tokens=300,
                           seed=args.seed)
    llm = LLMClient(llm_config)
    rows, details = [], {}
    positive_llm = None
    for kind, trials in kinds.items():
        if not trials:  # --drafts 0
            continue
        verdicts = check_trials(trials, store=store, splits=splits, knowledge=knowledge, thresholds=thresholds,
                                fields=spec.fields)
        rejected = [v.verdict == "reject" for v in verdicts]
        is_positive = kind.startswith("real")
        correct = [not r if is_positive else r for r in rejected]
        sample = trials[:args.llm_n]
        critic, judge = llm_scores(llm, sample) if sample else ([], [])
        if is_positive:
            positive_llm = (critic, judge)
        # positives: right when both accept; negatives: right when either rejects
        with_llm = [(c and s == 1.0) if is_positive else (c or s == 0.0) for c, s in zip(correct[:len(sample)], critic)]
        critic_auc = judge_auc = float("nan")
        if not is_positive and positive_llm:
            critic_auc = auc(positive_llm[0], critic)
            judge_auc = auc([j for j in positive_llm[1] if j == j], [j for j in judge if j == j])
        failed: dict[str, int] = {}
        for v in verdicts:
            for check in v.failed_checks:
                failed[check] = failed.get(check, 0) + 1
        low, high = wilson(int(sum(correct)), len(correct))
        details[kind] = {"n": len(trials), "correct": float(np.mean(correct)) if correct else float("nan"),
                         "ci95": [low, high], "failed_checks": failed,
                         "llm_critic_right": float(np.mean(with_llm)) if with_llm else None, "llm_n": len(sample)}
        rows.append([kind, len(trials), f"{np.mean(correct):.1%} [{low:.1%}, {high:.1%}]",
                     f"{np.mean(with_llm):.1%} (n={len(sample)})" if sample else "-",
                     "-" if is_positive or not sample else f"{critic_auc:.2f}",
                     "-" if is_positive or not sample else f"{judge_auc:.2f}",
                     ", ".join(f"{k} {n}" for k, n in sorted(failed.items(), key=lambda kv: -kv[1])[:3])])
    print_table(f"Critic on real phase II trials and spoiled copies (store {Path(args.store).name}, grounding "
                f"{'/'.join(splits)}, calibration {calibration.key}; {time.perf_counter() - start:.0f} s)",
                ["kind", "trials", "deterministic critic right [95% CI]", "with the LLM critic enforcing",
                 "LLM critic AUC vs real", "LLM judge AUC vs real", "most failed checks"], rows)
    print("\ntargets: accept >= 95% of the real positives; catch >= 80% of unrelated_conditions, unrelated_eligibility, "
          "one_bad_criterion and off_topic_criterion; >= 95% of every other negative kind")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_critic.json").write_text(json.dumps({"calibration": calibration.model_dump(), "kinds": details},
                                                      indent=1))


if __name__ == "__main__":
    main()
