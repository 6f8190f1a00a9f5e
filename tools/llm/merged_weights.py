"""The file an adapted writer decodes: its LoRA adapter merged into the base weights, written in
the weight format that decodes fastest on the CPU, cached beside the adapter and named by the
adapter's hash.

A LoRA applied at run time adds two small matrix products to every adapted layer of every decoded
token; merged, it costs nothing. llama.cpp's own tools do the work: `llama-export-lora` adds the
adapter to the base (the adapted tensors come out in F16), `llama-quantize` writes the result as
Q4_0 (repacked for AVX2 when llama.cpp loads it; measured 1.5x SmolLM2's shipped Q4_1 at decoding,
benchmarks/bench_writer_speed.py) or Q8_0. The merge is done once per adapter and format: a file
appears whole or not at all, and two processes asking at once merge it once.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

from synthtrials.tools.llm.llama_server import llama_cpp_tool
from synthtrials.tools.llm.errors import LLMConfigError

WeightFormat = Literal["Q4_0", "Q8_0", "F16"]
DEFAULT_FORMAT: WeightFormat = "Q4_0"
MERGE_TIMEOUT_S = 900


def merged_path(adapter_dir: str | Path, adapter_hash: str, fmt: WeightFormat) -> Path:
    return Path(adapter_dir) / f"merged-{adapter_hash[:16]}.{fmt}.gguf"


def _run(command: list[str], what: str, log: Path) -> None:
    with log.open("ab") as handle:
        handle.write(f"\n# {' '.join(command)}\n".encode())
        handle.flush()
        try:
            result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=MERGE_TIMEOUT_S,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise LLMConfigError(f"{what} took over {MERGE_TIMEOUT_S} s (log: {log})") from None
    if result.returncode != 0:
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-2:])[:240]
        raise LLMConfigError(f"{what} failed with code {result.returncode} ({tail}); log: {log}")


def merged_weights(base_gguf: str | Path, adapter_gguf: str | Path, adapter_hash: str,
                   fmt: WeightFormat = DEFAULT_FORMAT) -> Path:
    """The merged, requantized GGUF of an adapter (made on first use, then reused)."""
    adapter_dir = Path(adapter_gguf).parent
    target = merged_path(adapter_dir, adapter_hash, fmt)
    if target.is_file():
        return target
    log = adapter_dir / "merge.log"
    with (adapter_dir / ".merge.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be merging the same adapter
        if target.is_file():
            return target
        with tempfile.TemporaryDirectory(dir=adapter_dir, prefix=".merge-") as work:
            f16 = Path(work) / "merged.F16.gguf"
            _run([str(llama_cpp_tool("llama-export-lora")), "-m", str(base_gguf), "--lora", str(adapter_gguf),
                  "-o", str(f16)], "merging the adapter into the base weights (llama-export-lora)", log)
            if fmt == "F16":
                final = f16
            else:
                final = Path(work) / f"merged.{fmt}.gguf"
                _run([str(llama_cpp_tool("llama-quantize")), "--allow-requantize", str(f16), str(final), fmt],
                     f"writing the merged weights as {fmt} (llama-quantize)", log)
            os.replace(final, target)
    return target
