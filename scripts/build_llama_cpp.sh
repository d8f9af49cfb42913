#!/usr/bin/env bash
# Build llama.cpp once, from the source distribution of the pinned llama-cpp-python, and
# reuse it for both the Python bindings and the command-line tools.
#
# Why: llama-cpp-python only ships as source, and building it with pip compiles ggml and
# llama a first time (~12 min on 2 cores); llama.cpp's own tools (llama-quantize with an
# importance matrix, llama-imatrix, llama-perplexity --kl-divergence, llama-bench) would
# compile them a second time. One standalone CMake build with shared libraries gives both:
# the bindings are installed without their own build (-DLLAMA_BUILD=OFF) and load the
# libraries from this build, and the tools sit beside them. Version-matched by construction.
#
# Output (printed on the last line): the cache directory, holding
#   src/      the unpacked sdist (convert_hf_to_gguf.py and gguf-py live in src/vendor/llama.cpp)
#   bin/      llama-quantize llama-imatrix llama-perplexity llama-bench + lib*.so (RPATH $ORIGIN)
#   sdist.tar.gz, and a stamp file written last (a killed build is redone, never half-used).
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
PY="${PYTHON:-python3}"
# absolute (without resolving a venv's symlink): the script changes directory below
PY=$(command -v "$PY")
[[ "$PY" == /* ]] || PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
JOBS="${JOBS:-$(nproc)}"
# -march=native builds are only valid on the CPU they were made on: key the cache by CPU flags.
CPU_KEY=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | sha256sum | cut -c1-12 || echo generic)
ROOT="${QUANTSUITE_CACHE:-$HOME/.cache/quantsuite}/llama.cpp/${VERSION}-${CPU_KEY}"
STAMP="$ROOT/.complete"

if [[ -f "$STAMP" ]]; then
  echo "$ROOT"
  exit 0
fi

mkdir -p "$ROOT"
cd "$ROOT"
if [[ ! -f sdist.tar.gz ]]; then
  echo "[llama.cpp] downloading llama-cpp-python==$VERSION source distribution" >&2
  tmp=$(mktemp -d)
  "$PY" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$tmp" >&2
  mv "$tmp"/llama_cpp_python-"$VERSION".tar.gz sdist.tar.gz.part
  mv sdist.tar.gz.part sdist.tar.gz
  rm -rf "$tmp"
fi
if [[ ! -d src/vendor/llama.cpp ]]; then
  rm -rf src src.part && mkdir src.part
  tar xzf sdist.tar.gz -C src.part --strip-components=1
  mv src.part src
fi

echo "[llama.cpp] configuring (shared libs, CPU, -j$JOBS)" >&2
cmake -S src/vendor/llama.cpp -B build -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=ON \
  -DCMAKE_BUILD_RPATH='$ORIGIN' \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_COMMON=ON \
  -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF >&2

echo "[llama.cpp] building llama + tools (4-10 minutes on 2 cores, once per machine)" >&2
cmake --build build -j "$JOBS" --target llama ggml llama-quantize llama-imatrix llama-perplexity llama-bench >&2

rm -rf bin && cp -a build/bin bin
touch "$STAMP"
echo "$ROOT"
