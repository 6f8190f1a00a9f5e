"""PEFT LoRA -> llama.cpp LoRA GGUF: llama.cpp with the exported adapter changes the logits as PEFT does.

A LoRA on the transformers-loaded SmolLM2 gets random lora_B weights; the logit change it causes
(adapted - base) in transformers is compared with the change the exported GGUF adapter causes in
llama.cpp. On the Q4_1 base llama.cpp quantises activations to 8 bits, which adds noise to the
change (correlation 0.96 here); on a dequantised F32 copy of the same base both sides compute the same
weights, so the changes agree almost exactly, and an export without the q/k row permutation does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.llm import lora_gguf
from synthtrials.tools.llm.client import resolve_gguf

PROMPT = "The patient was enrolled in a phase II trial of metformin for"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GGUF_NAMES = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
RANK, ALPHA = 8, 16
# lora_B std: q/k get the largest share of the change, since only they need the row permutation
LORA_B_STD = {"q_proj": 0.15, "k_proj": 0.15}
DEFAULT_LORA_B_STD = 0.03


@dataclass
class Adapted:
    peft_model: object
    token_ids: list[int]
    transformers_delta: np.ndarray  # (positions, vocab): adapted - base logits


def llamacpp_logits(model_path: Path, token_ids: list[int], lora_path: Path | None = None) -> np.ndarray:
    from llama_cpp import Llama

    # one thread: on shared cores a ggml thread pool waits on descheduled threads (evals 10x slower)
    llm = Llama(model_path=str(model_path), lora_path=str(lora_path) if lora_path else None,
                n_ctx=64, n_threads=1, n_threads_batch=1, logits_all=True, verbose=False)
    llm.eval(token_ids)
    logits = np.array(llm.scores[: len(token_ids)])
    llm.close()
    return logits


def delta_agreement(expected: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """Correlation of two logit changes, and the least-squares slope of `got` on `expected`."""
    correlation = float(np.corrcoef(expected.ravel(), got.ravel())[0, 1])
    slope = float((expected * got).sum() / (expected * expected).sum())
    return correlation, slope


@pytest.fixture(scope="module")
def base_gguf() -> Path:
    return Path(resolve_gguf("smollm2"))


@pytest.fixture(scope="module")
def f32_base_gguf(base_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Q4_1 base dequantised to F32 by llama.cpp (540 MB): the weights transformers computes with."""
    import llama_cpp

    out = tmp_path_factory.mktemp("f32") / "smollm2-f32.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.allow_requantize, params.nthread = llama_cpp.LLAMA_FTYPE_ALL_F32, True, 2
    assert llama_cpp.llama_model_quantize(str(base_gguf).encode(), str(out).encode(), params) == 0
    yield out
    out.unlink()


@pytest.fixture(scope="module")
def adapted(base_gguf: Path, smollm2_transformers) -> Adapted:
    """A LoRA on a float32 copy of the session's transformers-loaded SmolLM2 (the same GGUF, dequantised
    once per session), with random lora_B weights, and the logit change it causes."""
    import torch
    from llama_cpp import Llama
    from peft import LoraConfig, get_peft_model
    from support import smollm2_copy

    token_ids = Llama(model_path=str(base_gguf), vocab_only=True, verbose=False).tokenize(
        PROMPT.encode(), add_bos=False)
    _, model = smollm2_copy(smollm2_transformers)
    model = model.to(torch.float32).eval()
    inputs = torch.tensor([token_ids])
    with torch.no_grad():
        base = model(inputs).logits[0].numpy()
    torch.manual_seed(0)  # lora_A's initialisation and lora_B's values
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if ".lora_B." in name:
                module = name.split(".lora_B.")[0].rsplit(".", 1)[-1]
                parameter.normal_(0.0, LORA_B_STD.get(module, DEFAULT_LORA_B_STD))
        adapted_logits = peft_model(inputs).logits[0].numpy()
    return Adapted(peft_model, token_ids, adapted_logits - base)


@pytest.fixture(scope="module")
def exported(adapted: Adapted, base_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lora_gguf.export_lora_gguf(adapted.peft_model, base_gguf, tmp_path_factory.mktemp("lora") / "a.gguf")


@pytest.mark.slow
def test_metadata_and_tensor_names_follow_the_base(exported: Path) -> None:
    import gguf

    reader = gguf.GGUFReader(exported)
    metadata = {key: field.contents() for key, field in reader.fields.items() if not key.startswith("GGUF.")}
    assert metadata == {"general.architecture": "llama", "general.type": "adapter",
                        "adapter.type": "lora", "adapter.lora.alpha": float(ALPHA)}
    shapes = {t.name: tuple(int(n) for n in reversed(t.shape)) for t in reader.tensors}
    assert set(shapes) == {f"blk.{block}.{name}.weight.lora_{part}"
                           for block in range(30) for name in GGUF_NAMES for part in "ab"}
    assert shapes["blk.0.attn_k.weight.lora_a"] == (RANK, 576)  # PEFT's lora_A: rank x in
    assert shapes["blk.0.attn_k.weight.lora_b"] == (192, RANK)  # PEFT's lora_B: out x rank
    assert shapes["blk.29.ffn_down.weight.lora_a"] == (RANK, 1536)


@pytest.mark.slow
def test_llamacpp_on_the_quantised_base_applies_the_adapter_like_peft(
        adapted: Adapted, exported: Path, base_gguf: Path) -> None:
    base = llamacpp_logits(base_gguf, adapted.token_ids)
    delta = llamacpp_logits(base_gguf, adapted.token_ids, exported) - base
    correlation, slope = delta_agreement(adapted.transformers_delta, delta)
    assert adapted.transformers_delta.std() > 0.5  # the adapter changes the logits clearly
    assert correlation > 0.8 and 0.7 < slope < 1.4, (correlation, slope)


@pytest.mark.slow
def test_on_the_dequantised_base_llamacpp_matches_peft_and_needs_the_qk_permutation(
        adapted: Adapted, exported: Path, f32_base_gguf: Path, base_gguf: Path,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = llamacpp_logits(f32_base_gguf, adapted.token_ids)
    delta = llamacpp_logits(f32_base_gguf, adapted.token_ids, exported) - base
    correlation, slope = delta_agreement(adapted.transformers_delta, delta)
    assert correlation > 0.999 and abs(slope - 1) < 0.02, (correlation, slope)

    monkeypatch.setattr(lora_gguf, "permute_rows_like_llamacpp", lambda rows, n_head: rows)
    unpermuted = lora_gguf.export_lora_gguf(adapted.peft_model, base_gguf, tmp_path / "unpermuted.gguf")
    wrong_delta = llamacpp_logits(f32_base_gguf, adapted.token_ids, unpermuted) - base
    wrong_correlation, _ = delta_agreement(adapted.transformers_delta, wrong_delta)
    assert wrong_correlation < 0.8, wrong_correlation


@pytest.mark.slow
def test_a_saved_adapter_folder_exports_the_same_file(adapted: Adapted, exported: Path, base_gguf: Path,
                                                      tmp_path: Path) -> None:
    adapted.peft_model.save_pretrained(tmp_path / "adapter")
    from_folder = lora_gguf.export_lora_gguf(tmp_path / "adapter", base_gguf, tmp_path / "b.gguf")
    assert from_folder.read_bytes() == exported.read_bytes()


def write_adapter_folder(folder: Path, config: str) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir()
    (folder / "adapter_config.json").write_text(config, encoding="utf-8")
    prefix = "base_model.model.model.layers.0.self_attn.v_proj"
    save_file({f"{prefix}.lora_A.weight": np.ones((RANK, 576), dtype=np.float32),
               f"{prefix}.lora_B.weight": np.ones((192, RANK), dtype=np.float32)},
              str(folder / "adapter_model.safetensors"))
    return folder


def test_a_base_that_is_not_llama_is_refused(tmp_path: Path) -> None:
    import gguf

    adapter = write_adapter_folder(tmp_path / "adapter", '{"peft_type": "LORA", "lora_alpha": 16}')
    base = tmp_path / "gemma.gguf"
    writer = gguf.GGUFWriter(base, "gemma3")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ConfigError, match=r"gemma\.gguf: architecture 'gemma3' is not supported"):
        lora_gguf.export_lora_gguf(adapter, base, tmp_path / "out.gguf")


def test_a_peft_config_that_is_not_lora_is_refused(tmp_path: Path) -> None:
    adapter = write_adapter_folder(tmp_path / "adapter", '{"peft_type": "IA3"}')
    with pytest.raises(ConfigError, match="adapter: PEFT type IA3 is not LoRA"):
        lora_gguf.export_lora_gguf(adapter, tmp_path / "unread.gguf", tmp_path / "out.gguf")


@pytest.mark.parametrize("options", [{"alpha_pattern": {"v_proj": 2.0}, "rank_pattern": {"q_proj": 2}},
                                     {"use_rslora": True}])
def test_scaling_is_the_one_peft_applies(options: dict) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tiny = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, vocab_size=32))
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS, **options)
    peft_model = get_peft_model(tiny, config)
    settings = lora_gguf.lora_settings(peft_model.peft_config["default"].to_dict(), "tiny")
    layers = {name.removeprefix(lora_gguf.PEFT_PREFIX): module
              for name, module in peft_model.named_modules() if isinstance(module, LoraLayer)}
    assert len(layers) == 2 * len(TARGETS)
    for name, layer in layers.items():
        assert settings.scaling(name, layer.r["default"]) == pytest.approx(layer.scaling["default"]), name
