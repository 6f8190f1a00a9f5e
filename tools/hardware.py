"""What the machine computes natively: one answer for every part that picks its arithmetic (the
writer's adaptation, the sentence encoder)."""

from __future__ import annotations

import re
from pathlib import Path


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AMX or AVX512-BF16); without them
    bf16 is emulated, slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return re.search(r"\b(amx_bf16|avx512_bf16)\b", flags) is not None


def native_bfloat16(device: str) -> bool:
    """Whether `device` multiplies bfloat16 natively: a CUDA device that supports it, or a CPU with
    AMX or AVX512-BF16 (`cpu_has_bf16`)."""
    if device.startswith("cuda"):
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return device == "cpu" and cpu_has_bf16()
