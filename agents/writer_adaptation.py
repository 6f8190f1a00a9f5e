"""Adapting the writer to the grounding trials: LoRA fine-tuning of a causal LM (PEFT on
transformers) on the real trials of the grounding splits, sampled label-conditionally at generation.

The classic augmentation recipe at this model size (GPT-2 124M in Kumar et al. 2020; LAMBADA,
Anaby-Tavor et al. 2020). Each training example is the prompt the adapted writer sends at
generation (`agents.writer.adapted_writer_messages`: the drug and the outcome, one or two real
trials of the same drug and label drawn as the retriever draws them, the trial itself excluded,
and the evidence reasons computed without it) followed by that real trial in the writer's output
format (`DraftSpec.answer_of`, the one real-to-writer conversion), the loss on the answer only.
Prompt and answer fit a token budget (`PROMPT_TOKENS` + `ANSWER_TOKENS`), the same at generation;
an answer over budget loses criteria from the end of its lists.

The adapter folder holds the PEFT adapter (`peft/`), a llama.cpp LoRA adapter in GGUF when the
base is a GGUF model (`adapter.gguf`, `tools.lora_gguf`), and `adapter.json` (`AdapterInfo`: base
model and hash, store, splits, the NCT ids trained on — the leakage guard reads them —, options,
loss curve, time). Training is resumable (`checkpoint/`), and `minutes` stops at a step boundary
with a usable adapter.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage
from pydantic import BaseModel, Field
from synthtrials.agents.prompting import prompt_version
from synthtrials.agents.writer import (
    ANSWER_TOKENS,
    PROMPT_TOKENS,
    adapted_writer_messages,
)
from synthtrials.tools.adapter_folder import (
    ADAPTER_FILE,
    GGUF_FILE,
    PEFT_DIR,
    AdapterInfo,
    base_weights_sha256,
)
from synthtrials.tools.atomic import write_text_atomic
from synthtrials.tools.domain import trial_drugs
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.evidence import drug_evidence, evidence_reasons
from synthtrials.tools.llm import BUNDLED_GGUF, CHAT_TOKENS_PER_MESSAGE, resolve_gguf
from synthtrials.tools.progress import SayFn
from synthtrials.tools.splits import Split
from synthtrials.tools.store import (
    TrialStore,
    default_grounding_splits,
    grounding_filter,
    open_store,
)
from synthtrials.tools.trial import Trial, render_for_classifier
from synthtrials.tools.writer_format import DraftSpec

CHECKPOINT_DIR = "checkpoint"
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
Progress = Callable[[int, int, float, float], None]  # step, steps, loss, tokens per second


class AdaptOptions(BaseModel):
    """Every tunable of an adaptation, with its default in one place."""

    store: str
    out: Path
    ground_on: list[Split] | None = Field(None, description="None: train when the store has a train split, else pool")
    base: str = Field("smollm2", description="a bundled GGUF name, a GGUF path, or a Hugging Face causal LM folder/id")
    max_trials: int | None = Field(None, ge=1, description="adapt on this many grounding trials (seeded sample)")
    epochs: float = Field(1.0, gt=0)
    minutes: float | None = Field(None, gt=0, description="stop at the first step boundary after this long (resumable)")
    rank: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(4, ge=1)
    examples: int = Field(2, ge=0, le=3, description="real examples in each prompt")
    seed: int = 0
    prompt_tokens: int = PROMPT_TOKENS
    answer_tokens: int = ANSWER_TOKENS
    save_every: int = Field(25, ge=1, description="steps between checkpoints")

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed."""
        return self.model_dump(mode="json", exclude={"out", "minutes", "save_every"})


class TrainingExample(BaseModel):
    nct_id: str
    drug: str
    label: int
    messages: list[dict[str, str]]
    answer: str


# --- the examples -----------------------------------------------------------------------------------

def _as_dicts(messages: list[BaseMessage]) -> list[dict[str, str]]:
    return [{"role": "system" if m.type == "system" else "user", "content": str(m.content)} for m in messages]


def fit_answer(answer: dict[str, Any], count: Callable[[str], int], budget: int, spec: DraftSpec) -> str | None:
    """The answer as JSON within `budget` tokens: criteria dropped from the end of the longer list."""
    answer = json.loads(json.dumps(answer))
    text = json.dumps(answer, ensure_ascii=False)
    lists = [k for k in ("exclusion_criteria", "inclusion_criteria") if k in answer]
    minimum = {"inclusion_criteria": spec.bounds.min_inclusion, "exclusion_criteria": spec.bounds.min_exclusion}
    while count(text) > budget:
        longer = max(lists, key=lambda k: len(answer[k]), default=None)
        if longer is None or len(answer[longer]) <= max(1, minimum[longer]):
            return None
        answer[longer].pop()
        text = json.dumps(answer, ensure_ascii=False)
    return text


def training_examples(store: TrialStore, splits: list[str], spec: DraftSpec, count: Callable[[str], int],
                      options: AdaptOptions) -> list[TrainingExample]:
    """One example per grounding trial (or `max_trials` of them): the adapted writer's prompt for
    the trial's drug and label, with examples and reasons that never include the trial itself."""
    grounding = grounding_filter(splits)
    trials = store.filter(grounding)
    rng = random.Random(f"{options.seed}:adapt")
    rng.shuffle(trials)
    trials = [t for t in trials if t.label in (0, 1) and trial_drugs(t)]
    if options.max_trials:
        trials = trials[:options.max_trials]

    def message_tokens(messages: list[BaseMessage]) -> int:
        return sum(count(str(m.content)) + CHAT_TOKENS_PER_MESSAGE for m in messages)

    by_drug: dict[str, list[Trial]] = {}
    out = []
    for trial in trials:
        drug = trial_drugs(trial)[0]
        label = int(trial.label)  # type: ignore[arg-type]
        answer = spec.answer_of(trial)
        if answer is None:
            continue
        answer["interventions"][0]["name"] = drug  # the writer's schema pins the drug's normalised name
        text = fit_answer(answer, count, options.answer_tokens, spec)
        if text is None:
            continue
        if drug not in by_drug:
            by_drug[drug] = store.filter(grounding.narrowed(intervention=drug))
        same = sorted((t for t in by_drug[drug] if t.label == label and t.nct_id != trial.nct_id), key=lambda t: t.nct_id)
        chosen = random.Random(f"{options.seed}:examples:{trial.nct_id}").sample(same, min(options.examples, len(same)))
        if len(chosen) < options.examples:  # the retriever's fallback: semantic neighbours with the label
            hits = store.search(drug, k=options.examples - len(chosen), flt=grounding.narrowed(
                label=label, exclude_ids=frozenset({trial.nct_id, *(t.nct_id for t in chosen)})))
            chosen += [h.trial for h in hits]
        reasons = evidence_reasons(drug_evidence(by_drug[drug], drug, label, exclude=trial.nct_id))
        messages = adapted_writer_messages(drug, label, [render_for_classifier(t, spec.fields) for t in chosen],
                                           reasons, [], message_tokens, options.prompt_tokens)
        out.append(TrainingExample(nct_id=trial.nct_id, drug=drug, label=label, messages=_as_dicts(messages),
                                   answer=text))
    return out


# --- the base model ----------------------------------------------------------------------------------

def resolve_base(base: str) -> tuple[str, dict[str, Any], Path | None]:
    """(transformers folder or id, from_pretrained kwargs, the GGUF file if the base is one)."""
    if base in BUNDLED_GGUF or base.endswith(".gguf"):
        gguf = Path(resolve_gguf(base))
        return str(gguf.parent), {"gguf_file": gguf.name}, gguf
    path = Path(base).expanduser()
    if path.exists():
        return str(path), {}, None
    if base.startswith((".", "/", "~")):
        raise ConfigError(f"{base}: model folder not found")
    return base, {}, None  # a hub id, usable only where it is already cached (offline)


def base_sha256(base: str) -> tuple[str, str]:
    """(the base's path, a hash of its weights)."""
    folder, _, gguf = resolve_base(base)
    path = gguf if gguf is not None else Path(folder)
    return str(path), base_weights_sha256(path)


def load_base(base: str):
    """Tokenizer and causal LM of the base (a GGUF is dequantised by transformers)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    folder, kwargs, _ = resolve_base(base)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"{base}: not a chat model (its tokenizer has no chat template); "
                              "the writer is prompted as a chat")
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{base}: not a causal language model transformers can load "
                          f"({' '.join(str(exc).split())[:160]})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


# --- training ------------------------------------------------------------------------------------------

def encode(example: TrainingExample, tokenizer) -> tuple[list[int], list[int]]:
    """Token ids of prompt + answer, and labels that score the answer (and its end) only."""
    prompt = tokenizer.apply_chat_template(example.messages, add_generation_prompt=True, tokenize=True)
    if hasattr(prompt, "keys"):  # a BatchEncoding in recent transformers
        prompt = prompt["input_ids"]
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    end = end if isinstance(end, int) and end >= 0 else tokenizer.eos_token_id
    answer = tokenizer(example.answer, add_special_tokens=False)["input_ids"] + [end]
    return list(prompt) + answer, [-100] * len(prompt) + answer


def batches(encoded: list[tuple[list[int], list[int]]], batch_size: int, epoch: int, seed: int) -> list[list[int]]:
    """Example indices per batch: similar lengths together (little padding), in a seeded order."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    groups = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    random.Random(f"{seed}:epoch:{epoch}").shuffle(groups)
    return groups


def _collate(encoded, indices, pad_id: int):
    import torch

    width = max(len(encoded[i][0]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    labels = torch.full((len(indices), width), -100, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        tokens, targets = encoded[i]
        ids[row, :len(tokens)] = torch.tensor(tokens)
        labels[row, :len(targets)] = torch.tensor(targets)
        mask[row, :len(tokens)] = 1
    return ids, labels, mask


def answer_loss(model, ids, labels, mask):
    """The causal LM loss on the answer tokens, with the output layer applied to those positions
    only (about 40% of a budgeted example is prompt: its vocabulary-sized logits are never needed)."""
    import torch.nn.functional as F

    base = model.get_base_model()
    hidden = base.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    targets = labels[:, 1:]
    keep = targets != -100
    return F.cross_entropy(base.lm_head(hidden[keep]).float(), targets[keep])


def adapt(options: AdaptOptions, progress: Progress | None = None,
          say: SayFn | None = None) -> AdapterInfo:
    """Adapt the writer (see the module docstring); resumes a checkpoint of the same options."""
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    say = say or (lambda message: None)
    store = open_store(options.store, create=False)
    splits = list(options.ground_on or default_grounding_splits(store))
    if not store.filter_ids(grounding_filter(splits)):
        raise ConfigError(f"{options.store}: no real trials in split(s) {', '.join(splits)} to adapt on")
    out = options.out
    if (out / ADAPTER_FILE).exists() and not (out / CHECKPOINT_DIR).exists():
        saved = AdapterInfo.model_validate_json((out / ADAPTER_FILE).read_text())
        if saved.complete and saved.options == options.fingerprint():
            say(f"{out} already holds this adapter: nothing to do")
            return saved
        raise ConfigError(f"{out}: holds another adapter; choose another --out")
    base_path, base_hash = base_sha256(options.base)
    say(f"loading {options.base} (transformers)")
    tokenizer, model = load_base(options.base)
    spec = DraftSpec.from_trials(store.filter(grounding_filter(splits)))

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    examples = training_examples(store, splits, spec, count, options)
    if not examples:
        raise ConfigError(f"{options.store}: no grounding trial can be written in the writer's format")
    encoded = [encode(e, tokenizer) for e in examples]
    torch.manual_seed(options.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = get_peft_model(model, LoraConfig(r=options.rank, lora_alpha=options.alpha, lora_dropout=0.05,
                                             target_modules=TARGET_MODULES, task_type="CAUSAL_LM")).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=options.learning_rate)
    per_epoch = math.ceil(len(encoded) / options.batch_size)
    steps = max(1, round(per_epoch * options.epochs))
    import transformers

    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, max(1, steps // 20), steps)
    state = {"step": 0, "tokens": 0, "loss": [], "seconds": 0.0}
    checkpoint = out / CHECKPOINT_DIR
    if checkpoint.exists():
        meta = json.loads((checkpoint / "state.json").read_text())
        if meta["options"] != options.fingerprint():
            raise ConfigError(f"{out}: holds an unfinished adaptation with other options; choose another --out")
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(checkpoint / "adapter_model.safetensors")))
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
        state = meta["state"]
        say(f"resuming at step {state['step']} of {steps}")
    model.train()
    start = time.perf_counter()
    seconds_before = state["seconds"]
    pad = tokenizer.pad_token_id
    planned = [b for epoch in range(math.ceil(options.epochs)) for b in batches(encoded, options.batch_size, epoch,
                                                                                   options.seed)][:steps]
    stopped = False
    for step in range(state["step"], steps):
        ids, labels, mask = (t.to(device) for t in _collate(encoded, planned[step], pad))
        loss = answer_loss(model, ids, labels, mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        state["step"] = step + 1
        state["tokens"] += int(mask.sum())
        state["loss"].append(round(float(loss.detach()), 4))
        state["seconds"] = seconds_before + time.perf_counter() - start
        if progress:
            progress(state["step"], steps, state["loss"][-1], state["tokens"] / max(state["seconds"], 1e-9))
        out_of_time = options.minutes is not None and time.perf_counter() - start > options.minutes * 60
        if state["step"] % options.save_every == 0 or out_of_time:
            _save_checkpoint(model, optimizer, scheduler, checkpoint, options, state)
        if out_of_time and state["step"] < steps:
            stopped = True
            say(f"time budget reached at step {state['step']} of {steps}: the adapter so far is saved; "
                "re-run the same command to continue")
            break
    complete = not stopped
    trained_on = sorted({examples[i].nct_id for batch in planned[:state["step"]] for i in batch})
    info = _write_adapter(model, options, out, spec, splits, base_path, base_hash, trained_on, state, steps, complete)
    if complete:
        shutil.rmtree(checkpoint, ignore_errors=True)
    store.close()
    return info


def _save_checkpoint(model, optimizer, scheduler, folder: Path, options: AdaptOptions, state: dict) -> None:
    """Everything to resume, written to a temporary folder and renamed (whole or not at all)."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(model).items()},
              str(tmp / "adapter_model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    (tmp / "state.json").write_text(json.dumps({"options": options.fingerprint(), "state": state}))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def _write_adapter(model, options: AdaptOptions, out: Path, spec: DraftSpec, splits: list[str], base_path: str,
                   base_hash: str, trained_on: list[str], state: dict, steps: int, complete: bool) -> AdapterInfo:
    from synthtrials.tools.lora_gguf import export_lora_gguf

    tmp = out / (PEFT_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    shutil.rmtree(out / PEFT_DIR, ignore_errors=True)
    tmp.rename(out / PEFT_DIR)
    gguf = None
    if base_path.endswith(".gguf"):
        gguf = str(export_lora_gguf(model, base_path, out / GGUF_FILE))
    info = AdapterInfo(
        base=options.base, base_path=base_path, base_sha256=base_hash, gguf=gguf, store=str(options.store),
        splits=splits, trained_on=trained_on, draft=spec,
        prompt_template=prompt_version("writer_adapted"), options=options.fingerprint(), steps=state["step"],
        steps_planned=steps, tokens=state["tokens"], loss=state["loss"], seconds=round(state["seconds"], 1),
        tokens_per_second=round(state["tokens"] / max(state["seconds"], 1e-9), 1), complete=complete)
    write_text_atomic(out / ADAPTER_FILE, info.model_dump_json(indent=1) + "\n")
    return info
