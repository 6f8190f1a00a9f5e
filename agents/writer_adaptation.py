"""Adapting the writer to the grounding trials: LoRA fine-tuning of a causal LM (PEFT on
transformers) on the real trials of the grounding splits, sampled label-conditionally at generation.

The classic augmentation recipe at this model size (GPT-2 124M in Kumar et al. 2020; LAMBADA,
Anaby-Tavor et al. 2020). Each training example is the prompt the adapted writer sends at
generation (`agents.writer.adapted_writer_messages`: the drug and the outcome, one or two real
trials of the same drug and label drawn as the retriever draws them, the trial itself excluded,
and the evidence reasons computed without it) followed by that real trial in the writer's output
format (`DraftSpec.answer_of`, the one real-to-writer conversion), the loss on the answer only.
Prompt and answer fit a token budget (`PROMPT_TOKENS` + `ANSWER_TOKENS`, or with `answer_tokens="auto"` the
grounding answers' 95th percentile: `answer_budget`), the same at generation; an answer over budget loses criteria
from the end of its lists.

The adapter folder holds the PEFT adapter (`peft/`), a llama.cpp LoRA adapter in GGUF when the
base is a GGUF model (`adapter.gguf`, `tools.llm.lora_gguf`), and `adapter.json` (`AdapterInfo`: base
model and hash, store, splits, the NCT ids trained on — the leakage guard reads them —, options,
loss curve, time). Training is resumable (`checkpoint/`), and `minutes` stops at a step boundary
with a usable adapter.

Speed (benchmarks/bench_adapt_speed.py): batches are drawn by a seeded length-grouped sampler
(`length_grouped_batches`, like transformers' `group_by_length`); on a CPU each sequence of a batch
is its own padding-free forward and backward pass (gradients accumulated, the batch's loss the same
mean over its answer tokens), so no padding is computed and memory is a quarter of a padded batch;
matrix products run in bfloat16 (autocast, fp32 LoRA weights and optimizer) where the hardware
has bf16 units (AMX / AVX512-BF16 CPUs, CUDA), else in fp32 (`precision`), the frozen projections
stored in bf16 (`store_in_bf16`: autocast would cast them again at every use), each adapted
projection's base and LoRA outputs summed in fp32 (`lora_model`); no LoRA dropout (`LORA_DROPOUT`);
the examples' token counts are cached and their few query embeddings run on one thread.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from langchain_core.messages import BaseMessage
from pydantic import BaseModel, Field
from synthtrials.agents.prompting import prompt_version
from synthtrials.agents.retriever import draw_examples
from synthtrials.agents.writer import (
    ANSWER_TOKENS,
    PROMPT_TOKENS,
    adapted_writer_messages,
)
from synthtrials.graphs.resolve import settle_draft, settle_ground_sample, settle_grounding
from synthtrials.tools.atomic import write_text_atomic
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.hardware import cpu_has_bf16
from synthtrials.tools.records.eligibility import trial_drugs
from synthtrials.tools.knowledge.evidence import drug_evidence, evidence_reasons
from synthtrials.tools.llm.adapter_folder import (
    ADAPTER_FILE,
    GGUF_FILE,
    PEFT_DIR,
    AdapterInfo,
    base_weights_sha256,
)
from synthtrials.tools.llm.client import (
    BUNDLED_GGUF,
    CHAT_TOKENS_PER_MESSAGE,
    resolve_gguf,
)
from synthtrials.tools.progress import SayFn
from synthtrials.tools.records.splits import Split
from synthtrials.tools.records.trial import Trial, render_for_classifier, render_for_embedding
from synthtrials.tools.records.writer_format import DraftSpec
from synthtrials.tools.seeds import stream
from synthtrials.tools.store.protocol import (
    TrialStore,
    grounding_filter,
)
from synthtrials.tools.store.trial_store import open_store

CHECKPOINT_DIR = "checkpoint"
CONTEXT_MARGIN = 128  # tokens of the context kept beside prompt and answer (chat markup, the end token)
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_DROPOUT = 0.0  # was 0.05: its masks took 14% of a step, and in one epoch (the default) no example is
# seen twice, so there is nothing for dropout to keep the adapter from memorising by repetition
MEGABATCH = 50  # batches per length-sorted megabatch (transformers' group_by_length uses 50)
SAMPLER = "length_grouped"  # recorded in checkpoints; one without it was planned by `sorted_batches`
Progress = Callable[[int, int, float, float], None]  # step, steps, loss, tokens per second
Precision = Literal["auto", "bf16", "fp32"]
Encoded = tuple[list[int], list[int]]  # token ids, labels (-100 where not scored)
ANSWER_PERCENTILE = 95  # `answer_tokens="auto"`: the budget that holds this share of grounding answers whole


class AdaptOptions(BaseModel):
    """Every tunable of an adaptation, with its default in one place."""

    store: str
    out: Path
    ground_on: list[Split] | None = Field(None, description="None: train when the store has a train split, else pool")
    base: str = Field("smollm2", description="a bundled GGUF name, a GGUF path, or a Hugging Face causal LM folder/id")
    max_trials: int | None = Field(None, ge=1, description="adapt on this many grounding trials (seeded sample)")
    ground_sample: float | None = Field(None, gt=0, le=1, description="a seeded, label-stratified fraction of the "
                                        "grounding trials (`generate --ground-sample` with the same seed: the same)")
    epochs: float = Field(1.0, gt=0)
    minutes: float | None = Field(None, gt=0, description="stop at the first step boundary after this long (resumable)")
    rank: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(4, ge=1)
    examples: int = Field(2, ge=0, le=3, description="real examples in each prompt")
    seed: int = 0
    prompt_tokens: int = Field(PROMPT_TOKENS, ge=128, le=4096, description="prompt budget in tokens: the examples "
                               "are trimmed to fit it, the same at generation (`GenerationConfig.writer_prompt_tokens`)")
    answer_tokens: int | Literal["auto"] = Field(ANSWER_TOKENS, description="answer budget in tokens; auto: the "
                                                 f"grounding answers' {ANSWER_PERCENTILE}th percentile, within the "
                                                 "base's context (`answer_budget`)")
    save_every: int = Field(25, ge=1, description="steps between checkpoints")
    precision: Precision = Field("auto", description="matrix products in bf16 (autocast) or fp32; auto: bf16 "
                                 "where the hardware has bf16 units (AMX / AVX512-BF16 CPUs, CUDA)")
    threads: int | None = Field(None, ge=1, description="torch threads for training (None: torch's default, the "
                                "cores); on cores shared with other jobs one thread can be several times faster")

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed (how fast it is computed need not)."""
        data = self.model_dump(mode="json", exclude={"out", "minutes", "save_every", "precision", "threads"})
        if data["ground_sample"] is None:  # adapters made before the option existed match without it
            del data["ground_sample"]
        return data


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


def writer_answer(trial: Trial, spec: DraftSpec) -> dict[str, Any] | None:
    """A grounding trial as the adapted writer is trained to answer: `answer_of` with the drug's normalised name
    (the writer's schema pins it); None for a trial without a drug or a field the spec writes."""
    drugs = trial_drugs(trial)
    answer = spec.answer_of(trial) if drugs else None
    if answer is not None:
        answer["interventions"][0]["name"] = drugs[0]
    return answer


def answer_budget(trials: Sequence[Trial], spec: DraftSpec, count: Callable[[str], int], ceiling: int,
                  percentile: float = ANSWER_PERCENTILE) -> int:
    """The smallest answer budget that holds `percentile`% of the trials' answers whole (issue 18's shape parity: an answer
    cut to a smaller budget loses criteria), at most `ceiling` (what the base's context leaves the answer)."""
    tokens = [count(json.dumps(a, ensure_ascii=False)) for a in (writer_answer(t, spec) for t in trials) if a is not None]
    if not tokens:
        raise ConfigError("no grounding trial can be written in the writer's format: no answer budget to measure")
    return min(ceiling, int(np.percentile(tokens, percentile, method="inverted_cdf")))


def training_examples(store: TrialStore, splits: list[str], spec: DraftSpec, count: Callable[[str], int],
                      options: AdaptOptions, sample: list[str] | None = None,
                      budget: int | None = None) -> list[TrainingExample]:
    """One example per grounding trial (or `max_trials` of them): the adapted writer's prompt for
    the trial's drug and label, with examples and reasons that never include the trial itself; each answer
    within `budget` tokens (None: `options.answer_tokens`, which must then be a number)."""
    if budget is None:
        assert isinstance(options.answer_tokens, int), "resolve answer_tokens='auto' with answer_budget first"
        budget = options.answer_tokens
    grounding = grounding_filter(splits, sample)
    trials = store.filter(grounding)
    stream(options.seed, "adapt").shuffle(trials)
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
        answer = writer_answer(trial, spec)
        if answer is None:
            continue
        text = fit_answer(answer, count, budget, spec)
        if text is None:
            continue
        if drug not in by_drug:
            by_drug[drug] = store.filter(grounding.narrowed(intervention=drug))
        same, neighbours, _ = draw_examples(store, grounding, drug, label, options.examples,
                                            stream(options.seed, "examples", trial.nct_id),
                                            exclude=frozenset({trial.nct_id}), query=render_for_embedding(trial))
        chosen = store.get_many(same + neighbours)
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

def encode(example: TrainingExample, tokenizer) -> Encoded:
    """Token ids of prompt + answer, and labels that score the answer (and its end) only."""
    prompt = tokenizer.apply_chat_template(example.messages, add_generation_prompt=True, tokenize=True)
    if hasattr(prompt, "keys"):  # a BatchEncoding in recent transformers
        prompt = prompt["input_ids"]
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    end = end if isinstance(end, int) and end >= 0 else tokenizer.eos_token_id
    answer = tokenizer(example.answer, add_special_tokens=False)["input_ids"] + [end]
    return list(prompt) + answer, [-100] * len(prompt) + answer


def answer_tokens(encoded: Encoded) -> int:
    """The tokens the loss scores (every label but the first: a position predicts the next token)."""
    return sum(1 for target in encoded[1][1:] if target != -100)


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                           megabatch: int = MEGABATCH) -> list[list[int]]:
    """One epoch's batches of example indices, every example exactly once, the same for the same
    seed and epoch: a seeded permutation cut into megabatches of `megabatch` batches, each sorted by
    length and cut into batches (similar lengths together: little padding), the batches shuffled.
    transformers' `group_by_length` sampler, with a seeded batch order."""
    rng = stream(seed, "epoch", epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    size = batch_size * megabatch
    out: list[list[int]] = []
    for start in range(0, len(order), size):
        group = sorted(order[start:start + size], key=lambda i: (-lengths[i], i))
        out += [group[i:i + batch_size] for i in range(0, len(group), batch_size)]
    rng.shuffle(out)
    return out


def sorted_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The order of checkpoints written before `length_grouped_batches` (no sampler recorded): all
    examples sorted by length, cut into batches, the batches shuffled; kept so that they resume in
    the order they started."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    stream(seed, "epoch", epoch).shuffle(groups)
    return groups


def plan_batches(lengths: Sequence[int], batch_size: int, epochs: float, seed: int, steps: int,
                 sampler: str = SAMPLER) -> list[list[int]]:
    """Every step's batch, for all epochs: a function of the seed alone, so a resumed run continues
    the same order."""
    draw = length_grouped_batches if sampler == SAMPLER else sorted_batches
    return [b for epoch in range(math.ceil(epochs)) for b in draw(lengths, batch_size, seed, epoch)][:steps]


def padding_share(lengths: Sequence[int], planned: list[list[int]]) -> float:
    """The share of padding tokens if every batch were padded to its longest sequence."""
    real = sum(lengths[i] for batch in planned for i in batch)
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in planned)
    return 1 - real / max(padded, 1)


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


def answer_loss(model, ids, labels, mask, scored: int | None = None):
    """The causal LM loss on the answer tokens, with the output layer applied to those positions
    only (about 40% of a budgeted example is prompt: its vocabulary-sized logits are never needed):
    their mean, or their sum divided by `scored` (a part of a batch of `scored` answer tokens).
    `mask` None: no padding (the attention is plain causal)."""
    import torch.nn.functional as F

    base = model.get_base_model()
    hidden = base.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    targets = labels[:, 1:]
    keep = targets != -100
    logits = base.lm_head(hidden[keep]).float()
    if scored is None:
        return F.cross_entropy(logits, targets[keep])
    return F.cross_entropy(logits, targets[keep], reduction="sum") / scored


def resolve_precision(precision: Precision, device: str) -> Literal["bf16", "fp32"]:
    if precision != "auto":
        return precision
    if device == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def _to_fp32(module, inputs, output):
    return output.float()


def lora_model(model, options: AdaptOptions, device: str, precision: Literal["bf16", "fp32"],
               dropout: float | None = None):
    """The base with a LoRA on every projection (`TARGET_MODULES`), on `device`. In bf16, each
    adapted projection's frozen part returns fp32: its output plus the LoRA's, summed in bf16 (8 bits
    of mantissa), would round away the LoRA's small early changes (losses measured up to 0.06 above
    fp32 within 4 steps); summed in fp32 they stay."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer

    model = get_peft_model(model, LoraConfig(r=options.rank, lora_alpha=options.alpha,
                                             lora_dropout=LORA_DROPOUT if dropout is None else dropout,
                                             target_modules=TARGET_MODULES, task_type="CAUSAL_LM")).to(device)
    if precision == "bf16":
        for module in model.modules():
            if isinstance(module, LoraLayer):
                store_in_bf16(module.get_base_layer())
                module.get_base_layer().register_forward_hook(_to_fp32)
    return model


def store_in_bf16(layer) -> None:
    """A frozen projection's weights kept in bf16. Autocast casts an fp32 weight to bf16 at every use
    (a frozen tensor's cast is never cached): 12% of a step went to those copies. The product is the
    same to the bit, as the weight is rounded the same way once (tests/test_adapt_batches.py); the
    step is 1.4x faster (benchmarks/RESULTS.md) and the base holds half the memory."""
    import torch

    for parameter in (layer.weight, getattr(layer, "bias", None)):
        if parameter is not None and not parameter.requires_grad:
            parameter.data = parameter.data.to(torch.bfloat16)


def micro_batches(batch: list[int], device: str) -> list[list[int]]:
    """How a batch is computed: on a CPU one padding-free sequence at a time (a batch's rows add no
    speed there, its padding only cost), on an accelerator the batch at once."""
    return [batch] if device != "cpu" else [[i] for i in batch]


def train_step(model, encoded: list[Encoded], batch: list[int], pad_id: int, device: str,
               precision: Literal["bf16", "fp32"], micro: bool = True) -> tuple[float, int, int]:
    """Forward and backward passes of one batch (gradients accumulated; the optimizer is the
    caller's): (its loss, the mean over its answer tokens; real tokens; tokens computed, padding
    included)."""
    import torch

    scored = sum(answer_tokens(encoded[i]) for i in batch)
    loss_sum, computed = 0.0, 0
    for part in micro_batches(batch, device) if micro else [batch]:
        ids, labels, mask = (t.to(device) for t in _collate(encoded, part, pad_id))
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = answer_loss(model, ids, labels, None if bool(mask.all()) else mask, scored)
        loss.backward()
        loss_sum += float(loss.detach())
        computed += ids.numel()
    return loss_sum, sum(len(encoded[i][0]) for i in batch), computed


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to `n` for a while, then back. The examples' only torch work
    is embedding short queries, which a thread pool on cores shared with other jobs slows tens of
    times (its threads wait on descheduled ones): they run on one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def adapt(options: AdaptOptions, progress: Progress | None = None,
          say: SayFn | None = None) -> AdapterInfo:
    """Adapt the writer (see the module docstring); resumes a checkpoint of the same options."""
    import torch
    from peft import set_peft_model_state_dict

    say = say or (lambda message: None)
    store = open_store(options.store, create=False)
    splits = settle_grounding(store, options.ground_on, "adapt on")
    sample = settle_ground_sample(store, splits, options.ground_sample, options.seed)
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
    spec = settle_draft(store, splits, sample)

    @lru_cache(maxsize=None)
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    budget = options.answer_tokens
    if budget == "auto":
        context = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        budget = answer_budget(store.filter(grounding_filter(splits, sample)), spec, count,
                               ceiling=context - options.prompt_tokens - CONTEXT_MARGIN)
        say(f"answer budget: {budget} tokens (the {ANSWER_PERCENTILE}th percentile of the grounding answers)")
    with torch_threads(1):
        examples = training_examples(store, splits, spec, count, options, sample, budget)
    if not examples:
        raise ConfigError(f"{options.store}: no grounding trial can be written in the writer's format")
    encoded = [encode(e, tokenizer) for e in examples]
    torch.manual_seed(options.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = resolve_precision(options.precision, device)
    model = lora_model(model, options, device, precision)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=options.learning_rate)
    per_epoch = math.ceil(len(encoded) / options.batch_size)
    steps = max(1, round(per_epoch * options.epochs))
    import transformers

    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, max(1, steps // 20), steps)
    state = {"step": 0, "tokens": 0, "computed_tokens": 0, "loss": [], "seconds": 0.0, "sampler": SAMPLER}
    checkpoint = out / CHECKPOINT_DIR
    if checkpoint.exists():
        meta = json.loads((checkpoint / "state.json").read_text())
        if meta["options"] != options.fingerprint():
            raise ConfigError(f"{out}: holds an unfinished adaptation with other options; choose another --out")
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(checkpoint / "adapter_model.safetensors")))
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
        if (checkpoint / "rng.pt").exists():  # the dropout masks continue as without the stop
            torch.set_rng_state(torch.load(checkpoint / "rng.pt", weights_only=True))
        state = {"sampler": "sorted", "computed_tokens": meta["state"]["tokens"], **meta["state"]}
        say(f"resuming at step {state['step']} of {steps}")
    model.train()
    start = time.perf_counter()
    seconds_before = state["seconds"]
    pad = tokenizer.pad_token_id
    planned = plan_batches([len(e[0]) for e in encoded], options.batch_size, options.epochs, options.seed, steps,
                           state["sampler"])
    stopped = False
    with torch_threads(options.threads or torch.get_num_threads()):
        for step in range(state["step"], steps):
            loss, tokens, computed = train_step(model, encoded, planned[step], pad, device, precision)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            state["step"] = step + 1
            state["tokens"] += tokens
            state["computed_tokens"] += computed
            state["loss"].append(round(loss, 4))
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
    info = _write_adapter(model, options, out, spec, splits, base_path, base_hash, trained_on, state, steps, complete,
                          budget)
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
    torch.save(torch.get_rng_state(), tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps({"options": options.fingerprint(), "state": state}))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def _write_adapter(model, options: AdaptOptions, out: Path, spec: DraftSpec, splits: list[str], base_path: str,
                   base_hash: str, trained_on: list[str], state: dict, steps: int, complete: bool,
                   answer_tokens: int) -> AdapterInfo:
    from synthtrials.tools.llm.lora_gguf import export_lora_gguf

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
        prompt_template=prompt_version("writer_adapted"), options=options.fingerprint(), answer_tokens=answer_tokens,
        steps=state["step"],
        steps_planned=steps, tokens=state["tokens"], loss=state["loss"], seconds=round(state["seconds"], 1),
        tokens_per_second=round(state["tokens"] / max(state["seconds"], 1e-9), 1), complete=complete)
    write_text_atomic(out / ADAPTER_FILE, info.model_dump_json(indent=1) + "\n")
    return info
