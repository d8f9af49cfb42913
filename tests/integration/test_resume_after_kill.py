"""kill -9 in the middle of quantize and eval, then rerun: nothing duplicated, nothing
half-written that looks finished, nothing recomputed that was already stored."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

PLAN = """
output: {out}
models: [smollm2-135m-instruct]
variants:
  - {{method: gguf, schemes: [q8_0, q4_0, q4_k_m, q2_k]}}
"""


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "quantsuite", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "QUANTSUITE_THREADS": "1"})


def _wait_for(cond, proc: subprocess.Popen, timeout: float = 600) -> None:
    t0 = time.time()
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"process ended (rc={proc.returncode}) before the kill point")
        if time.time() - t0 > timeout:
            proc.kill()
            pytest.fail("kill point not reached in time")
        time.sleep(0.05)


def test_quantize_killed_then_rerun(tmp_path, models_dir):
    out = tmp_path / "variants"
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(out=out))
    model_dir = out / "smollm2-135m-instruct"
    proc = _start("quantize", "--plan", str(plan), "--models-dir", str(models_dir))
    # kill while the second GGUF variant is being written into its temporary folder
    _wait_for(lambda: (model_dir / "gguf-q8_0" / "manifest.json").exists()
              and any(model_dir.glob(".tmp-gguf-q4_0-*")), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name for p in model_dir.glob("*/manifest.json")}
    assert "gguf-q4_0" not in finished                       # the interrupted one does not look done
    q8 = json.loads((model_dir / "gguf-q8_0" / "manifest.json").read_text())
    rerun = run_cli("quantize", "--plan", str(plan), "--models-dir", str(models_dir))
    assert "gguf-q8_0 already done" in rerun.stderr + rerun.stdout
    names = sorted(p.name for p in model_dir.iterdir() if not p.name.startswith("."))
    assert names == ["base", "gguf-q2_k", "gguf-q4_0", "gguf-q4_k_m", "gguf-q8_0"]
    assert not list(model_dir.glob(".tmp-*"))                 # leftovers of the killed run are gone
    assert json.loads((model_dir / "gguf-q8_0" / "manifest.json").read_text())["created_at"] == q8["created_at"]
    assert "verified" in run_cli("verify", str(out)).stdout


def test_eval_killed_then_rerun(tmp_path, models_dir):
    out = tmp_path / "variants"
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(out=out).replace("[q8_0, q4_0, q4_k_m, q2_k]", "[q4_k_m]"))
    run_cli("quantize", "--plan", str(plan), "--models-dir", str(models_dir))
    variant = out / "smollm2-135m-instruct" / "gguf-q4_k_m"
    store = tmp_path / "r.sqlite"
    args = ("eval", str(variant), "--tasks", "arc_easy", "--limit", "80", "--store", str(store))

    def n_rows() -> int:
        if not store.exists():
            return 0
        try:
            return sqlite3.connect(store, timeout=1).execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    proc = _start(*args)
    _wait_for(lambda: n_rows() >= 16, proc)                   # at least one committed batch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = n_rows()
    assert 16 <= kept < 80
    db = sqlite3.connect(store)
    first_ids = {r[0] for r in db.execute("SELECT item_id FROM samples")}
    first_raw = dict(db.execute("SELECT item_id, parsed FROM samples"))
    run_cli(*args)
    rows = db.execute("SELECT item_id, parsed FROM samples").fetchall()
    assert len(rows) == 80 and len({r[0] for r in rows}) == 80   # completed, no duplicates
    assert all(dict(rows)[i] == first_raw[i] for i in first_ids)  # kept rows untouched
    status = db.execute("SELECT status FROM runs").fetchall()
    assert status == [("done",)]
