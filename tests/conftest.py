"""Shared fixtures. Real-model fixtures build once per session and cache the dequantized
base under the user cache, so repeated runs on one machine do not redo the conversion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "quantsuite", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "QUANTSUITE_THREADS": os.environ.get("QUANTSUITE_THREADS", "2"), **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"quantsuite {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def models_dir() -> Path:
    from quantsuite.paths import cache_dir

    d = cache_dir() / "models"
    d.mkdir(parents=True, exist_ok=True)
    return d
