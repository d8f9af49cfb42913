"""Our PPL and KLD agree with llama.cpp's `llama-perplexity --kl-divergence` within 2%
(scripts/check_against_llama_cpp.py) on the same GGUF files, text, context and chunks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PLAN = """
output: {out}
models: [smollm2-135m-instruct]
variants:
  - {{method: gguf, schemes: [f16, q8_0, q2_k]}}
"""


def test_ppl_and_kld_match_llama_perplexity(tmp_path, models_dir):
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(out=tmp_path / "variants"))
    run_cli("quantize", "--plan", str(plan), "--models-dir", str(models_dir))
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_against_llama_cpp.py"),
                           str(tmp_path / "variants" / "smollm2-135m-instruct"), "--chunks", "3", "--threads", "2"],
                          capture_output=True, text=True)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "gguf-q2_k" in proc.stdout and "kld_mean" in proc.stdout
