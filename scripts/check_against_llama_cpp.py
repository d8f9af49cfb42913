#!/usr/bin/env python
"""Cross-check our PPL and KLD against llama.cpp's own `llama-perplexity --kl-divergence`.

Same GGUF files, same text, same context size and chunk count; the KLD reference is the
F16 GGUF on both sides (llama-perplexity cannot run the HF base). Prints a table of both
figures and their relative differences; exits 1 if any differs by more than --tol.

    python scripts/check_against_llama_cpp.py variants/smollm2-135m-instruct --chunks 8
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evalsuite.quality import PplConfig  # noqa: E402
from evalsuite.runner import EvalConfig, Evaluator  # noqa: E402
from evalsuite.runtimes import RuntimeConfig  # noqa: E402
from evalsuite.store import ResultsStore  # noqa: E402
from quant.manifest import find_manifests  # noqa: E402
from quant.tools import run_tool  # noqa: E402
from quantsuite.paths import data_dir, llama_tool  # noqa: E402


def llama_perplexity(exe, gguf: Path, text: Path, ctx: int, chunks: int, threads: int, base_kld: Path,
                     make_base: bool) -> dict:
    # -fa off: llama-perplexity turns flash attention on by default ("auto"), llama-cpp-python
    # (our runtime) leaves it off; with it on, Q8_0's PPL moves by 0.07% and its tiny KLD by 3%.
    cmd = [exe, "-m", gguf, "-f", text, "-c", str(ctx), "--chunks", str(chunks), "-t", str(threads),
           "-fa", "off", "--kl-divergence-base", base_kld]
    if not make_base:
        cmd.append("--kl-divergence")
    out = run_tool(cmd, what="llama-perplexity")
    res = {}
    if make_base:
        res["ppl"] = float(re.search(r"Final estimate: PPL = ([\d.]+)", out).group(1))
    else:
        res["ppl"] = float(re.search(r"Mean PPL\(Q\)\s*:\s*([\d.]+)", out).group(1))
        res["kld_mean"] = float(re.search(r"Mean\s+KLD:\s*([\d.]+)", out).group(1))
        res["same_top1"] = float(re.search(r"Same top p:\s*([\d.]+)", out).group(1)) / 100
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("variants", type=Path)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tol", type=float, default=0.02)
    args = ap.parse_args()
    ms = [m for m in find_manifests([args.variants]) if "llamacpp" in m.runtime]
    ref = next((m for m in ms if m.variant_id == "gguf-f16"), None)
    if ref is None:
        print("need a gguf-f16 variant as the common reference", file=sys.stderr)
        return 2
    text = data_dir() / "wikitext2" / "test.txt"
    exe = llama_tool("llama-perplexity")
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultsStore(Path(tmp) / "r.sqlite")
        cfg = EvalConfig(tasks=["wikitext2"], ppl=PplConfig(n_ctx=args.ctx, chunks=args.chunks),
                         runtime=RuntimeConfig(n_ctx=args.ctx, threads=args.threads), reference="gguf-f16")
        Evaluator(store, cfg).run(ms)
        ours = {r["variant_id"]: {k: v["value"] for k, v in store.metrics(r["run_key"]).items()} for r in store.runs()}
        base_kld = Path(tmp) / "base.kld"
        theirs = {"gguf-f16": llama_perplexity(exe, ref.artifact_path, text, args.ctx, args.chunks, args.threads, base_kld, True)}
        for m in ms:
            if m.variant_id != "gguf-f16":
                theirs[m.variant_id] = llama_perplexity(exe, m.artifact_path, text, args.ctx, args.chunks,
                                                        args.threads, base_kld, False)
    worst = 0.0
    print(f"{'variant':<16}{'metric':<11}{'quantsuite':>12}{'llama.cpp':>12}{'rel.diff':>10}")
    for vid in sorted(theirs, key=lambda v: -ours[v]["ppl"] if v in ours else 0):
        for k, v in theirs[vid].items():
            o = ours[vid].get(k)
            rel = abs(o - v) / abs(v) if v else 0.0
            if k != "same_top1":
                worst = max(worst, rel)
            print(f"{vid:<16}{k:<11}{o:>12.5f}{v:>12.5f}{rel:>9.2%}")
    print(f"largest relative difference (ppl, kld): {worst:.2%} (tolerance {args.tol:.0%})")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
