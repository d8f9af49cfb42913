"""Running external tools (llama.cpp binaries, converter scripts) with clean failures."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from quantsuite.errors import UserError


def run_tool(cmd: Sequence[str | Path], what: str, env: dict | None = None, cwd: Path | None = None) -> str:
    """Run a command; on failure raise one UserError line with the tool's last message."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=full_env, cwd=cwd)
    if proc.returncode != 0:
        lines = [l for l in (proc.stderr + proc.stdout).splitlines() if l.strip()]
        last = next((l for l in reversed(lines) if "error" in l.lower()), lines[-1] if lines else "")
        raise UserError(f"{what} failed (exit {proc.returncode}): {last.strip()[:300]}")
    return proc.stdout + proc.stderr


def peak_rss_bytes() -> int:
    """Peak resident memory of this process and of finished child processes."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) * 1024


def python_exe() -> str:
    return sys.executable
