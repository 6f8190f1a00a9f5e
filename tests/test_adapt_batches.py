"""Writer adaptation's batches and steps: the length-grouped sampler covers every example exactly
once per epoch, reproducibly for a seed; a batch computed one padding-free sequence at a time has
the padded batch's loss and gradients; a run stopped by its time budget and resumed trains exactly
as one that was not stopped."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from synthtrials.agents import writer_adaptation as wa


def lengths_like_trials(n: int, seed: int = 0) -> list[int]:
    """Prompt + answer lengths spread like phase I train's (239 to 644 tokens, most near the cap)."""
    rng = random.Random(seed)
    return [min(644, int(rng.gauss(560, 90))) if rng.random() < 0.9 else rng.randint(239, 400) for _ in range(n)]


@pytest.mark.parametrize("n,batch_size", [(941, 4), (37, 4), (5, 8), (1, 1), (200, 3)])
def test_every_example_exactly_once_per_epoch(n, batch_size):
    lengths = lengths_like_trials(n)
    for epoch in range(3):
        batches = wa.length_grouped_batches(lengths, batch_size, seed=0, epoch=epoch)
        assert Counter(i for b in batches for i in b) == Counter(range(n))
        assert all(1 <= len(b) <= batch_size for b in batches)
        assert sum(len(b) < batch_size for b in batches) <= 1  # only the last megabatch can leave a short batch
        assert len(batches) == -(-n // batch_size)  # as many steps per epoch as adapt plans


def test_the_same_seed_gives_the_same_batches_and_another_seed_or_epoch_others():
    lengths = lengths_like_trials(400)
    first = wa.length_grouped_batches(lengths, 4, seed=3, epoch=0)
    assert wa.length_grouped_batches(list(lengths), 4, seed=3, epoch=0) == first
    assert wa.length_grouped_batches(lengths, 4, seed=4, epoch=0) != first
    assert wa.length_grouped_batches(lengths, 4, seed=3, epoch=1) != first


def test_grouped_batches_carry_little_padding():
    lengths = lengths_like_trials(941)
    grouped = wa.length_grouped_batches(lengths, 4, seed=0, epoch=0)
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    unsorted = [order[i:i + 4] for i in range(0, len(order), 4)]
    assert wa.padding_share(lengths, grouped) < 0.02 < wa.padding_share(lengths, unsorted)
    assert wa.padding_share([5, 5, 5, 5], [[0, 1], [2, 3]]) == 0
    assert wa.padding_share([2, 4], [[0, 1]]) == pytest.approx(0.25)


def test_the_plan_spans_epochs_and_stops_at_the_steps():
    lengths = lengths_like_trials(10)
    plan = wa.plan_batches(lengths, 4, epochs=2, seed=0, steps=6)
    assert len(plan) == 6 and Counter(i for b in plan for i in b) == Counter({i: 2 for i in range(10)})
    assert plan[:3] == wa.length_grouped_batches(lengths, 4, 0, 0)
    assert wa.plan_batches(lengths, 4, epochs=0.5, seed=0, steps=2) == plan[:2]  # a resumed plan is the same


def test_checkpoints_from_before_the_sampler_resume_in_their_own_order():
    lengths = [7, 3, 9, 1, 5, 2]
    plan = wa.plan_batches(lengths, 2, epochs=1, seed=0, steps=3, sampler="sorted")
    assert sorted(plan) == [[0, 2], [1, 4], [3, 5]]  # all sorted by length, then cut: (7, 9), (3, 5), (1, 2)
    assert plan == wa.sorted_batches(lengths, 2, 0, 0)


@pytest.fixture(scope="module")
def tiny_lora():
    """A small random Llama with a LoRA on every projection (no download, no GGUF): the step's
    arithmetic, not the model, is under test."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05,
                                                                target_modules=wa.TARGET_MODULES, task_type="CAUSAL_LM"))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # nonzero, so that every LoRA weight gets a gradient
            torch.nn.init.normal_(parameter, std=0.1)
    model.eval()  # dropout off: the two ways must see the same network
    rng = random.Random(1)
    encoded = []
    for length in (23, 17, 23, 9):
        prompt = rng.randint(3, length - 3)
        ids = [rng.randint(1, 96) for _ in range(length)]
        encoded.append((ids, [-100] * prompt + ids[prompt:]))
    return model, encoded


def _gradients(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_one_sequence_at_a_time_has_the_padded_batch_loss_and_gradients(tiny_lora):
    import torch

    model, encoded = tiny_lora
    batch = [0, 1, 2, 3]
    results = {}
    for micro in (False, True):
        model.zero_grad()
        loss, tokens, computed = wa.train_step(model, encoded, batch, 0, "cpu", "fp32", micro=micro)
        results[micro] = loss, tokens, computed, _gradients(model)
    (padded_loss, tokens, padded, padded_grads), (micro_loss, micro_tokens, computed, micro_grads) = results[False], \
        results[True]
    assert tokens == micro_tokens == 23 + 17 + 23 + 9
    assert padded == 4 * 23 and computed == tokens  # one sequence at a time computes no padding
    assert micro_loss == pytest.approx(padded_loss, rel=1e-5)
    for name, grad in padded_grads.items():
        torch.testing.assert_close(micro_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # the batch loss is the mean over its answer tokens, as before the change
    ids, labels, mask = wa._collate(encoded, batch, 0)
    with torch.no_grad():
        assert float(wa.answer_loss(model, ids, labels, mask)) == pytest.approx(padded_loss, rel=1e-5)
    assert sum(wa.answer_tokens(encoded[i]) for i in batch) == int((labels[:, 1:] != -100).sum())


def test_bf16_autocast_is_close_to_fp32(tiny_lora):
    model, encoded = tiny_lora
    model.zero_grad()
    fp32, _, _ = wa.train_step(model, encoded, [0, 1], 0, "cpu", "fp32")
    model.zero_grad()
    bf16, _, _ = wa.train_step(model, encoded, [0, 1], 0, "cpu", "bf16")
    model.zero_grad()
    assert bf16 == pytest.approx(fp32, rel=0.02)


def test_frozen_weights_stored_in_bf16_give_autocasts_step_to_the_bit(tiny_lora):
    """`store_in_bf16` only moves autocast's cast of a frozen weight to load time: the same loss and the
    same LoRA gradients, bit for bit, and the LoRA weights stay fp32."""
    import copy

    import torch
    from peft.tuners.lora import LoraLayer

    model, encoded = tiny_lora
    stored = copy.deepcopy(model)
    projections = [m.get_base_layer() for m in stored.modules() if isinstance(m, LoraLayer)]
    for layer in projections:
        wa.store_in_bf16(layer)
        layer.register_forward_hook(wa._to_fp32)
    assert projections and all(layer.weight.dtype == torch.bfloat16 for layer in projections)
    assert all(p.dtype == torch.float32 for n, p in stored.named_parameters() if p.requires_grad)
    results = []
    for m in (model, stored):
        if m is model:  # autocast over the fp32 weights, with the same fp32 sum of base and LoRA outputs
            hooks = [mod.get_base_layer().register_forward_hook(wa._to_fp32) for mod in m.modules()
                     if isinstance(mod, LoraLayer)]
        m.zero_grad()
        loss, _, _ = wa.train_step(m, encoded, [0, 1, 2], 0, "cpu", "bf16")
        results.append((loss, _gradients(m)))
        if m is model:
            for hook in hooks:
                hook.remove()
    (loss, grads), (stored_loss, stored_grads) = results
    assert stored_loss == loss
    assert grads.keys() == stored_grads.keys()
    for name, grad in grads.items():
        assert torch.equal(stored_grads[name], grad), name
    model.zero_grad()


def test_precision_auto_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(wa, "cpu_has_bf16", lambda: True)
    assert wa.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(wa, "cpu_has_bf16", lambda: False)
    assert wa.resolve_precision("auto", "cpu") == "fp32" and wa.resolve_precision("bf16", "cpu") == "bf16"
    options = wa.AdaptOptions(store="s", out="o")
    assert "precision" not in options.fingerprint()  # a checkpoint resumes whichever precision computes it


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """The first 40 trials of phase_I_train (split train), embedded: enough for 8 examples."""
    from support import TOP, head_csv
    from synthtrials.tools.store.ingest import ingest
    from synthtrials.tools.store.trial_store import open_store

    data = tmp_path_factory.mktemp("adapt_data")
    path = tmp_path_factory.mktemp("adapt_store")
    store = open_store(path)
    ingest(store, [head_csv(TOP / "phase_I_train.csv", data / "phase_I_train.csv", 40)])
    store.close()
    return path


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A Hugging Face model folder: SmolLM2's tokenizer (chat template included) and a small random
    Llama of its vocabulary: `adapt` runs whole (examples, plan, checkpoint, resume) in seconds."""
    from pathlib import Path

    from synthtrials.tools.llm.client import resolve_gguf
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = Path(resolve_gguf("smollm2"))
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    folder = tmp_path_factory.mktemp("tiny_base")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_a_run_stopped_by_its_budget_resumes_as_if_never_stopped(small_store, tiny_base, tmp_path, monkeypatch,
                                                                  dropout):
    """The same batches in the same order, the same optimizer, scheduler and dropout state: the
    loss of every step and the adapter are those of an uninterrupted run (with a LoRA dropout too,
    whose masks continue from the saved random state)."""
    import json

    monkeypatch.setattr(wa, "LORA_DROPOUT", dropout)

    from safetensors.numpy import load_file

    def options(out, minutes=None):
        return wa.AdaptOptions(store=str(small_store), out=out, base=str(tiny_base), max_trials=12, batch_size=4,
                               rank=4, minutes=minutes)

    whole = wa.adapt(options(tmp_path / "whole"))
    steps = whole.steps_planned
    assert whole.complete and whole.steps == steps >= 2 and len(set(whole.loss)) == steps
    said = []
    first = wa.adapt(options(tmp_path / "stopped", minutes=1e-6), say=said.append)
    assert not first.complete and first.steps == 1 and (tmp_path / "stopped" / "checkpoint").is_dir()
    assert any(f"time budget reached at step 1 of {steps}" in s for s in said)
    state = json.loads((tmp_path / "stopped" / "checkpoint" / "state.json").read_text())["state"]
    assert state["sampler"] == wa.SAMPLER and state["computed_tokens"] == state["tokens"]  # no padding on a CPU
    resumed = wa.adapt(options(tmp_path / "stopped"), say=said.append)
    assert any(f"resuming at step 1 of {steps}" in s for s in said)
    assert resumed.complete and not (tmp_path / "stopped" / "checkpoint").exists()
    assert resumed.trained_on == whole.trained_on and resumed.tokens == whole.tokens
    assert resumed.loss == pytest.approx(whole.loss, abs=2e-4)
    a = load_file(str(tmp_path / "whole" / "peft" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "stopped" / "peft" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]).max() < 1e-5 for k in a)


def test_an_auto_answer_budget_is_measured_recorded_and_followed_at_generation(small_store, tiny_base, tmp_path):
    """`answer_tokens="auto"`: the budget is the grounding answers' 95th percentile within what the base's
    context leaves (this base: 1,024 positions), recorded in adapter.json, and the writer's client decodes to it;
    the same options again find the adapter done."""
    from synthtrials.graphs.config import GenerationConfig
    from synthtrials.graphs.runner import adapted_writer_client
    from synthtrials.tools.llm.adapter_folder import read_adapter
    from synthtrials.tools.llm.client import LLMConfig

    said: list[str] = []
    options = wa.AdaptOptions(store=str(small_store), out=tmp_path / "auto", base=str(tiny_base), max_trials=4,
                              batch_size=4, rank=2, answer_tokens="auto")
    info = wa.adapt(options, say=said.append)
    ceiling = 1024 - options.prompt_tokens - wa.CONTEXT_MARGIN
    assert info.options["answer_tokens"] == "auto" and 384 < info.answer_tokens <= ceiling
    assert any(f"answer budget: {info.answer_tokens} tokens" in s for s in said)
    assert read_adapter(str(tmp_path / "auto")).answer_tokens == info.answer_tokens
    llm = LLMConfig(backend="transformers", model_path=str(tiny_base))
    client = adapted_writer_client(GenerationConfig(llm=llm, writer_adapter=str(tmp_path / "auto")))
    assert client is not None and client.config.max_tokens == info.answer_tokens + 64
    again: list[str] = []
    wa.adapt(options, say=again.append)
    assert any("already holds this adapter" in s for s in again)
