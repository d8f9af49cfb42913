"""Where things live: the shared benchmark data, the per-user cache, the built llama.cpp."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from quantsuite.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LLAMA_CPP_VERSION = "0.3.36"


def cache_dir() -> Path:
    d = Path(os.environ.get("QUANTSUITE_CACHE", Path.home() / ".cache" / "quantsuite"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def data_dir() -> Path:
    """Benchmark data: $QUANTSUITE_DATA, else ../shared/data beside the project root."""
    env = os.environ.get("QUANTSUITE_DATA")
    candidates = [Path(env)] if env else []
    candidates += [PROJECT_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    raise UserError(
        "benchmark data not found: set QUANTSUITE_DATA or place it in ../shared/data "
        f"(looked in {', '.join(str(c) for c in candidates)})"
    )


def _cpu_key() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return hashlib.sha256(line.encode()).hexdigest()[:12]
    except OSError:
        pass
    return hashlib.sha256(b"generic").hexdigest()[:12]


def llama_cpp_root() -> Path:
    """Folder made by scripts/build_llama_cpp.sh (tools in bin/, sources in src/)."""
    env = os.environ.get("QUANTSUITE_LLAMA_CPP")
    root = Path(env) if env else cache_dir() / "llama.cpp" / f"{LLAMA_CPP_VERSION}-{_cpu_key()}"
    if not (root / ".complete").exists():
        raise UserError(
            f"llama.cpp tools not built (expected {root}); run scripts/build_llama_cpp.sh "
            "or `make setup`"
        )
    return root


def llama_tool(name: str) -> Path:
    exe = llama_cpp_root() / "bin" / name
    if not exe.exists():
        raise UserError(f"llama.cpp tool {name} missing from {exe.parent}; rebuild with `make setup`")
    return exe
