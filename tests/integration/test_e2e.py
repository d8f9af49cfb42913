"""The walking skeleton on the real SmolLM2-135M-Instruct: quantize -> eval -> report.

Checks real properties, not plumbing: the GGUF ladder is ordered by size, KL divergence to
the base grows as bits shrink (Q2_K > Q4_K_M > Q8_0 > F16), the second eval recomputes
nothing, and the report names every variant.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

PLAN = """
output: {out}
models: [smollm2-135m-instruct]
variants:
  - {{method: gguf, schemes: [f16, q8_0, q4_k_m, q2_k]}}
"""


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, models_dir):
    work = tmp_path_factory.mktemp("e2e")
    plan = work / "plan.yaml"
    plan.write_text(PLAN.format(out=work / "variants"))
    run_cli("quantize", "--plan", str(plan), "--models-dir", str(models_dir))
    store = work / "results.sqlite"
    args = ("eval", str(work / "variants"), "--tasks", "arc_easy,wikitext2", "--limit", "30",
            "--chunks", "3", "--store", str(store))
    first = run_cli(*args)
    return work, store, first, args


def _metrics(store: Path) -> dict[tuple[str, str], dict[str, float]]:
    db = sqlite3.connect(store)
    out: dict[tuple[str, str], dict[str, float]] = {}
    for vid, task, name, value in db.execute(
            "SELECT r.variant_id, r.task, m.name, m.value FROM runs r JOIN metrics m USING(run_key)"):
        out.setdefault((vid, task), {})[name] = value
    return out


def test_manifests_sizes_ordered_and_verified(pipeline):
    work, *_ = pipeline
    manifests = {p.parent.name: json.loads(p.read_text()) for p in (work / "variants").rglob("manifest.json")}
    assert set(manifests) == {"base", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m", "gguf-q2_k"}
    sizes = [manifests[v]["size_bytes"] for v in ("base", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m", "gguf-q2_k")]
    assert sizes == sorted(sizes, reverse=True)
    bpw = [manifests[v]["bits_per_weight"] for v in ("gguf-f16", "gguf-q8_0", "gguf-q4_k_m", "gguf-q2_k")]
    assert bpw == sorted(bpw, reverse=True) and 15.9 < bpw[0] < 16.1
    for m in manifests.values():
        assert all(len(f["sha256"]) == 64 for f in m["files"].values())
    assert "verified" in run_cli("verify", str(work / "variants")).stdout
    assert not list((work / "variants").rglob(".tmp-*"))


def test_kld_grows_as_bits_shrink(pipeline):
    _, store, _, _ = pipeline
    m = _metrics(store)
    kld = {v: m[(v, "wikitext2")]["kld_mean"] for v in ("gguf-f16", "gguf-q8_0", "gguf-q4_k_m", "gguf-q2_k")}
    assert kld["gguf-q2_k"] > kld["gguf-q4_k_m"] > kld["gguf-q8_0"] > 0
    assert kld["gguf-f16"] < kld["gguf-q8_0"] * 1.5     # f16 differs from fp32 only by rounding
    ppl = {v: m[(v, "wikitext2")]["ppl"] for v in ("base", "gguf-q8_0", "gguf-q2_k")}
    assert ppl["gguf-q2_k"] > ppl["base"]
    assert abs(ppl["gguf-q8_0"] / ppl["base"] - 1) < 0.02
    top1 = m[("gguf-q2_k", "wikitext2")]["same_top1"]
    assert 0.3 < top1 < m[("gguf-q8_0", "wikitext2")]["same_top1"] <= 1.0


def test_arc_accuracy_is_real(pipeline):
    _, store, _, _ = pipeline
    m = _metrics(store)
    acc = m[("base", "arc_easy")]["acc"]
    assert 0.3 <= acc <= 0.95     # a 135M instruct model is above chance (0.25) on ARC-Easy
    # Q8_0 answers nearly like the base
    assert abs(m[("gguf-q8_0", "arc_easy")]["acc"] - acc) <= 0.1


def test_second_eval_recomputes_nothing(pipeline):
    _, store, _, args = pipeline
    db = sqlite3.connect(store)
    before = db.execute("SELECT COUNT(*), MAX(updated_at) FROM runs").fetchone()
    n_samples = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    second = run_cli(*args)
    assert "already stored" in second.stderr
    assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == n_samples
    assert db.execute("SELECT COUNT(*), MAX(updated_at) FROM runs").fetchone() == before


def test_report_contains_every_variant(pipeline):
    work, store, _, _ = pipeline
    out = work / "report.html"
    res = run_cli("report", str(store), "-o", str(out))
    assert Path(res.stdout.strip()) == out.resolve()
    html = out.read_text()
    for v in ("base", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m", "gguf-q2_k"):
        assert v in html
    assert "dequantized" in html.lower()
    assert "<script src=\"http" not in html
