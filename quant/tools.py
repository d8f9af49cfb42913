"""Running external tools (llama.cpp binaries, converter scripts) with clean failures."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from quantsuite.errors import UserError


_child_peak = 0       # largest RSS of a tool run since the last PeakRss started (bytes)


def run_tool(cmd: Sequence[str | Path], what: str, env: dict | None = None, cwd: Path | None = None) -> str:
    """Run a command; on failure raise one UserError line with the tool's last message.

    The child is reaped with ``wait4`` so its own peak RSS is known (RUSAGE_CHILDREN only
    gives the largest child ever, which would charge one variant with another's tool)."""
    global _child_peak
    full_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, text=True, env=full_env, cwd=cwd)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        _child_peak = max(_child_peak, usage.ru_maxrss * 1024)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        lines = [l for l in (stderr + stdout).splitlines() if l.strip()]
        last = next((l for l in reversed(lines) if "error" in l.lower()), lines[-1] if lines else "")
        raise UserError(f"{what} failed (exit {proc.returncode}): {last.strip()[:300]}")
    return stdout + stderr


class PeakRss:
    """Peak resident memory of one step (a variant): this process's high-water mark is reset
    on entry (Linux ``/proc/self/clear_refs``), tool children are measured one by one.

    Where the reset is not possible the process-wide peak is reported (an upper bound)."""

    def __enter__(self) -> "PeakRss":
        global _child_peak
        _child_peak = 0
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset = True
        except OSError:
            self.reset = False
        return self

    def __exit__(self, *exc) -> None:
        self._final = self._measure()

    @property
    def bytes(self) -> int:
        """The peak so far inside the block, or the block's peak once it has ended."""
        return getattr(self, "_final", None) or self._measure()

    def _measure(self) -> int:
        own = _hwm_bytes() if self.reset else None
        if own is None:
            own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return max(own, _child_peak)


def _hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def python_exe() -> str:
    return sys.executable
