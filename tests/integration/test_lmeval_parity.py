"""Parity on the real SmolLM2-135M-Instruct base (fp32): ARC-Easy scored three ways.

(a) lm-evaluation-harness's own ``hf`` backend (HFLM) on lm-eval's ``arc_easy`` task,
    reading the local ../shared/data copy;
(b) our Evaluator, task ``arc_easy``, strategy ``ll`` (lm-eval's prompt format, our HF
    runtime with context sharing);
(c) the lm-eval bridge: lm-eval's ``arc_easy`` task through our runtime (``run_lmeval``).

acc and acc_norm must agree within one item (batching and KV-cache reuse change float
sums in the last bits, which can flip a near-tie). The figures are printed (run with -s)
and recorded in docs/lmeval.md. Default: first 100 items; QUANTSUITE_PARITY_LIMIT=570
runs the whole validation split.
"""

from __future__ import annotations

import os
import time

import pytest

LIMIT = int(os.environ.get("QUANTSUITE_PARITY_LIMIT", "100"))
THREADS = int(os.environ.get("QUANTSUITE_THREADS", "2"))
# ARC runs of a 135M model on 2 shared cores: minutes each, more under load
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(max(2400, 24 * LIMIT))]
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("lm_eval")


@pytest.fixture(scope="module")
def base(tmp_path_factory, models_dir):
    from quant.base_model import resolve_base
    from quant.run import base_manifest

    b = resolve_base("smollm2-135m-instruct", models_dir)
    return b, base_manifest(b, tmp_path_factory.mktemp("variants"))


@pytest.fixture(scope="module")
def lm_eval_hf(base):
    """lm-eval's own HFLM on the local arc_easy data: (acc, acc_norm, per-item correct, seconds)."""
    import lm_eval
    import torch
    from lm_eval.models.huggingface import HFLM

    from evalsuite.lmeval_bridge import build_tasks

    torch.set_num_threads(THREADS)
    t = build_tasks(["arc_easy"])["arc_easy"]
    lm = HFLM(pretrained=str(base[0].path), dtype="float32", device="cpu", batch_size=16)
    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(model=lm, tasks=[t.task], limit=LIMIT, task_manager=t.manager,
                                  bootstrap_iters=0, log_samples=True)
    dt = time.perf_counter() - t0
    r = res["results"]["arc_easy"]
    per_item = {t.item_ids[s["doc_id"]]: bool(s["acc"]) for s in res["samples"]["arc_easy"]}
    return r["acc,none"], r["acc_norm,none"], per_item, dt


def _ours(base, tmp_path):
    from evalsuite.runner import EvalConfig, Evaluator
    from evalsuite.runtimes import RuntimeConfig
    from evalsuite.store import ResultsStore

    store = ResultsStore(tmp_path / "ours.sqlite")
    t0 = time.perf_counter()
    (key,) = Evaluator(store, EvalConfig(tasks=["arc_easy"], strategies=["ll"], limit=LIMIT,
                                         runtime=RuntimeConfig(threads=THREADS))).run([base[1]])
    return store, key, time.perf_counter() - t0


def _bridge(base, tmp_path):
    from evalsuite.lmeval_bridge import run_lmeval
    from evalsuite.runtimes import RuntimeConfig
    from evalsuite.store import ResultsStore

    store = ResultsStore(tmp_path / "bridge.sqlite")
    t0 = time.perf_counter()
    (key,) = run_lmeval([base[1]], ["arc_easy"], store, RuntimeConfig(threads=THREADS), limit=LIMIT)
    return store, key, time.perf_counter() - t0


def _check(name, store, key, dt, lm_eval_hf):
    acc_l, norm_l, items_l, dt_l = lm_eval_hf
    samples = store.samples(key)
    assert len(samples) == LIMIT
    acc = sum(s["correct"] for s in samples) / LIMIT
    norm = sum(s["scores"]["acc_norm"] for s in samples) / LIMIT
    flips = sum(bool(s["correct"]) != items_l[s["item_id"]] for s in samples)
    print(f"\nARC-Easy first {LIMIT} items, SmolLM2-135M-Instruct fp32, {THREADS} threads:"
          f"\n  lm-eval hf backend: acc {acc_l:.4f}  acc_norm {norm_l:.4f}  ({dt_l:.0f} s)"
          f"\n  {name:18s}: acc {acc:.4f}  acc_norm {norm:.4f}  ({dt:.0f} s; {flips} item(s) differ in acc)")
    assert abs(acc - acc_l) * LIMIT <= 1 + 1e-9
    assert abs(norm - norm_l) * LIMIT <= 1 + 1e-9
    assert flips <= 2


def test_our_ll_strategy_matches_lm_eval_hf(base, lm_eval_hf, tmp_path):
    store, key, dt = _ours(base, tmp_path)
    _check("ours (ll)", store, key, dt, lm_eval_hf)


def test_lm_eval_bridge_on_our_runtime_matches_lm_eval_hf(base, lm_eval_hf, tmp_path):
    store, key, dt = _bridge(base, tmp_path)
    (run,) = store.runs()
    assert run["strategy"] == "lm-eval" and run["status"] == "done"
    m = store.metrics(key)
    assert m["acc"]["lo"] <= m["acc"]["value"] <= m["acc"]["hi"]
    _check("bridge (our hf)", store, key, dt, lm_eval_hf)
