"""Export a PEFT LoRA adapter as a llama.cpp LoRA adapter (GGUF).

Why: the project fine-tunes SmolLM2 with PEFT on transformers (which loads the GGUF dequantised),
but generates with llama.cpp on the quantised GGUF. llama.cpp applies a LoRA adapter at run time
(`Llama(model_path=base, lora_path=adapter)`, `ChatLlamaCpp(lora_path=...)`), from a GGUF file that
llama.cpp's loader (`llama_adapter_lora_init`) checks as follows:

- metadata ``general.type = "adapter"``, ``adapter.type = "lora"``, ``general.architecture`` equal
  to the base model's, and ``adapter.lora.alpha`` (float32): each pair is scaled by alpha / rank,
  rank being the rows of ``lora_a``;
- one ``NAME.lora_a`` / ``NAME.lora_b`` pair per adapted base tensor ``NAME`` (``blk.N.attn_q.weight``):
  ``lora_a`` is PEFT's ``lora_A`` (rank x in) and ``lora_b`` PEFT's ``lora_B`` (out x rank), both
  untransposed (numpy order; GGUF stores the dimensions reversed, as llama.cpp expects).

Two conversions make the adapter compute what PEFT computes:

- transformers un-permutes the rows of ``attn_q`` / ``attn_k`` when it loads a llama GGUF (llama.cpp's
  converter had interleaved each head's rotary halves), so the output rows of their ``lora_B`` are
  permuted back the way llama.cpp's converter permutes q/k weights;
- PEFT scales by alpha / r (alpha / sqrt(r) with rsLoRA, per-module alpha with ``alpha_pattern``);
  llama.cpp by one file-wide alpha / rank: any per-module difference is folded into ``lora_b``.

Only llama-architecture bases are accepted: that is the architecture whose q/k rows transformers
un-permutes, and the one the permutation here reverses.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gguf
import numpy as np
from synthtrials.tools.errors import ConfigError

if TYPE_CHECKING:
    from peft import PeftModel

#: what `get_peft_model_state_dict` (and `save_pretrained`) put before the Hugging Face module names
PEFT_PREFIX = "base_model.model."
LORA_KEY = re.compile(r"(?P<module>.+)\.lora_(?P<part>[AB])\.weight")
SUPPORTED_ARCHITECTURE = "llama"


@dataclass(frozen=True)
class BaseGGUF:
    """What the export needs from the base model file."""

    path: Path
    architecture: str
    n_blocks: int
    n_head: int
    n_head_kv: int
    shapes: dict[str, tuple[int, ...]]  # tensor name -> shape in numpy order (out, in)


@dataclass(frozen=True)
class LoraSettings:
    """The parts of a PEFT LoRA config that decide the scaling."""

    lora_alpha: float
    use_rslora: bool
    alpha_pattern: dict[str, float]

    def scaling(self, module: str, rank: int) -> float:
        """PEFT's scaling of one module's update (``LoraLayer.update_layer``)."""
        alpha = self.lora_alpha
        for pattern, value in self.alpha_pattern.items():  # PEFT's `get_pattern_key`: first match wins
            if re.match(rf"(.*\.)?({pattern})$", module):
                alpha = value
                break
        return alpha / (rank**0.5 if self.use_rslora else rank)


def export_lora_gguf(peft_model_or_dir: PeftModel | str | Path, base_gguf: str | Path,
                     out_path: str | Path) -> Path:
    """Write the LoRA adapter of a PEFT model (or a `save_pretrained` folder) as a llama.cpp GGUF.

    `base_gguf` is the llama.cpp base the adapter will run on (any quantisation): it gives the
    architecture, the tensor names and the head counts. Returns `out_path`, written whole or not at all.
    Raises `ConfigError` for an adapter llama.cpp cannot apply or a base that is not a llama GGUF.
    """
    source = str(peft_model_or_dir) if isinstance(peft_model_or_dir, (str, Path)) else "the PEFT model"
    config, state = load_peft_lora(peft_model_or_dir)
    settings = lora_settings(config, source)
    base = read_base_gguf(Path(base_gguf))
    pairs = gguf_lora_pairs(state, settings, base, source)
    return write_adapter(pairs, settings.lora_alpha, base.architecture, Path(out_path))


def read_base_gguf(path: Path) -> BaseGGUF:
    """The base's architecture, head counts and tensor shapes (cached per file version)."""
    if not path.is_file():
        raise ConfigError(f"{path}: base GGUF not found")
    stat = path.stat()
    return _read_base_gguf(path.resolve(), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)  # GGUFReader spends seconds parsing the tokenizer arrays of the metadata
def _read_base_gguf(path: Path, mtime_ns: int, size: int) -> BaseGGUF:
    """`mtime_ns` and `size` only key the cache: a rewritten file is read again."""
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{path}: not a readable GGUF file ({' '.join(str(exc).split())[:120]})") from None

    def field(key: str) -> Any:
        if key not in reader.fields:
            raise ConfigError(f"{path}: GGUF metadata has no {key}")
        return reader.fields[key].contents()

    architecture = field(gguf.Keys.General.ARCHITECTURE)
    if architecture != SUPPORTED_ARCHITECTURE:
        raise ConfigError(f"{path}: architecture {architecture!r} is not supported (only llama-family GGUFs)")
    if gguf.Keys.General.TYPE in reader.fields and field(gguf.Keys.General.TYPE) != "model":
        raise ConfigError(f"{path}: general.type is {field(gguf.Keys.General.TYPE)!r}, not a base model")
    n_head = int(field(gguf.Keys.Attention.HEAD_COUNT.format(arch=architecture)))
    kv_key = gguf.Keys.Attention.HEAD_COUNT_KV.format(arch=architecture)
    return BaseGGUF(
        path=path,
        architecture=architecture,
        n_blocks=int(field(gguf.Keys.LLM.BLOCK_COUNT.format(arch=architecture))),
        n_head=n_head,
        n_head_kv=int(field(kv_key)) if kv_key in reader.fields else n_head,
        shapes={t.name: tuple(int(n) for n in reversed(t.shape)) for t in reader.tensors},
    )


def load_peft_lora(peft_model_or_dir: PeftModel | str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The adapter config (as a dict) and its LoRA tensors keyed as PEFT saves them."""
    if isinstance(peft_model_or_dir, (str, Path)):
        return _load_adapter_dir(Path(peft_model_or_dir))
    if not hasattr(peft_model_or_dir, "peft_config"):
        raise ConfigError(f"{type(peft_model_or_dir).__name__}: not a PEFT model nor an adapter folder")
    from peft import get_peft_model_state_dict

    adapter = peft_model_or_dir.active_adapter
    state = get_peft_model_state_dict(peft_model_or_dir, adapter_name=adapter, save_embedding_layers=False)
    config = peft_model_or_dir.peft_config[adapter].to_dict()
    return config, {key: tensor.detach().float().cpu().numpy() for key, tensor in state.items()}


def _load_adapter_dir(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from safetensors.numpy import load_file

    config_path, weights_path = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ConfigError(f"{path}: not found (expected a PEFT save_pretrained folder)")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    return config, {key: array.astype(np.float32) for key, array in load_file(weights_path).items()}


def lora_settings(config: dict[str, Any], source: str) -> LoraSettings:
    """Check that the adapter is a plain LoRA that llama.cpp can apply, and read its scaling."""
    peft_type = str(config.get("peft_type"))
    if peft_type.rsplit(".", 1)[-1] != "LORA":
        raise ConfigError(f"{source}: PEFT type {peft_type} is not LoRA")
    unsupported = {
        "use_dora": "DoRA",
        "lora_bias": "LoRA bias terms",
        "modules_to_save": "modules_to_save (fully trained layers)",
        "trainable_token_indices": "trainable tokens",
    }
    for key, feature in unsupported.items():
        if config.get(key):
            raise ConfigError(f"{source}: {feature} cannot be exported to a llama.cpp LoRA adapter")
    if config.get("lora_alpha") is None:
        raise ConfigError(f"{source}: the LoRA config has no lora_alpha")
    return LoraSettings(
        lora_alpha=float(config["lora_alpha"]),
        use_rslora=bool(config.get("use_rslora")),
        alpha_pattern={str(k): float(v) for k, v in (config.get("alpha_pattern") or {}).items()},
    )


def gguf_lora_pairs(state: dict[str, np.ndarray], settings: LoraSettings, base: BaseGGUF,
                    source: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Base GGUF tensor name -> (lora_a, lora_b) as llama.cpp applies them with alpha / rank."""
    by_module: dict[str, dict[str, np.ndarray]] = {}
    for key, tensor in state.items():
        match = LORA_KEY.fullmatch(key.removeprefix(PEFT_PREFIX))
        if not key.startswith(PEFT_PREFIX) or match is None:
            raise ConfigError(f"{source}: tensor {key} is not a LoRA weight of a Linear layer")
        by_module.setdefault(match["module"], {})[match["part"]] = tensor
    if not by_module:
        raise ConfigError(f"{source}: the adapter has no LoRA weights")
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, base.n_blocks)
    pairs = {}
    for module, parts in sorted(by_module.items()):
        if set(parts) != {"A", "B"}:
            raise ConfigError(f"{source}: {module} lacks lora_A or lora_B")
        name = name_map.get_name(f"{module}.weight", try_suffixes=(".weight",))
        if name is None or name not in base.shapes:
            raise ConfigError(f"{source}: {module} has no tensor in {base.path.name}")
        lora_a, lora_b = parts["A"], parts["B"]
        rank = lora_a.shape[0]
        if base.shapes[name] != (lora_b.shape[0], lora_a.shape[1]) or lora_b.shape[1] != rank:
            raise ConfigError(f"{source}: {module} LoRA shapes {lora_a.shape}, {lora_b.shape} "
                              f"do not fit {name} {base.shapes[name]} of {base.path.name}")
        # llama.cpp scales by alpha / rank: fold whatever else PEFT does (rsLoRA, alpha_pattern) into B
        fold = settings.scaling(module, rank) * rank / settings.lora_alpha
        pairs[name] = (lora_a, _llamacpp_row_order(name, lora_b * np.float32(fold), base))
    return pairs


def _llamacpp_row_order(name: str, lora_b: np.ndarray, base: BaseGGUF) -> np.ndarray:
    if name.endswith(".attn_q.weight"):
        return permute_rows_like_llamacpp(lora_b, base.n_head)
    if name.endswith(".attn_k.weight"):
        return permute_rows_like_llamacpp(lora_b, base.n_head_kv)
    return lora_b


def permute_rows_like_llamacpp(rows: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k permutation: per head, the two rotary halves become interleaved pairs."""
    per_half = rows.shape[0] // n_head // 2
    return rows.reshape(n_head, 2, per_half, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def write_adapter(pairs: dict[str, tuple[np.ndarray, np.ndarray]], alpha: float, architecture: str,
                  out_path: Path) -> Path:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f".{out_path.name}.partial")
    writer = gguf.GGUFWriter(partial, architecture)  # writes general.architecture
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for name, (lora_a, lora_b) in pairs.items():
            writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(lora_a, dtype=np.float32))
            writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(lora_b, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(partial, out_path)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    return out_path
