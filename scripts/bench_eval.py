#!/usr/bin/env python
"""Benchmark the evaluator's two shortcuts, in one run; prints figures and ratios, asserts nothing.

(a) Multiple-choice scoring throughput: ARC-Easy items/s with our ``ll`` strategy on the HF
    runtime (each context evaluated once with its choices under a tree mask, many
    questions packed into one forward pass) against lm-evaluation-harness's own HFLM (every context+choice sequence run
    in full, batched), same model (the HF base), same items, same threads. Optionally
    also our lm-eval bridge (lm-eval's task, our runtime): ``--bridge``.
(b) KLD for N variants: the base's reference distributions are computed once and cached
    (evalsuite.quality), so N variants cost one base run plus N variant runs, where a
    naive KLD reruns the base for every variant. Times the reference computation, its
    save/load, and one variant's scoring against it, then projects N = 4 and N = 10.

Timings on shared CPUs are noisy: the load average is printed before and after, and
``--rounds`` repeats (a) interleaved and reports the median. Defaults finish in a few
minutes on 2 cores; raise --items / --chunks for steadier figures.

    python scripts/bench_eval.py --variants variants/smollm2-135m-instruct --threads 2
    python scripts/bench_eval.py --variants /tmp/qs-var/smollm2-135m-instruct --items 100 --chunks 8 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evalsuite import quality  # noqa: E402
from evalsuite.runtimes import RuntimeConfig, open_variant  # noqa: E402
from quant.manifest import VariantManifest, find_manifests  # noqa: E402
from quantsuite.errors import UserError  # noqa: E402


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def pick_manifests(args) -> tuple[VariantManifest, VariantManifest | None]:
    ms = find_manifests([args.variants]) if args.variants and Path(args.variants).exists() else []
    base = VariantManifest.load(args.base) if args.base else next((m for m in ms if m.variant_id == "base"), None)
    if base is None:
        raise UserError(f"no base manifest (variant_id 'base') under {args.variants}; give --base or --variants")
    if args.variant:
        var = VariantManifest.load(args.variant)
    else:
        ggufs = [m for m in ms if m.variant_id != "base" and "llamacpp" in m.runtime]
        var = next((m for m in ggufs if m.variant_id == "gguf-q4_k_m"), ggufs[0] if ggufs else None)
    return base, var


# -- (a) multiple-choice throughput ------------------------------------------------------------
def time_ours(client, task, items, batch_items: int) -> tuple[float, float, int]:
    from evalsuite.strategies import parse_strategy

    strat = parse_strategy("ll")
    t0 = time.perf_counter()
    preds = []
    for i in range(0, len(items), batch_items):
        preds += strat.run(items[i:i + batch_items], client, task)
    dt = time.perf_counter() - t0
    return dt, sum(p.correct for p in preds) / len(preds), sum(p.tokens_in for p in preds)


def time_lmeval(lm, t, n: int) -> tuple[float, float, int]:
    import lm_eval

    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(model=lm, tasks=[t.task], limit=n, task_manager=t.manager,
                                  bootstrap_iters=0, log_samples=True)
    dt = time.perf_counter() - t0
    tok = getattr(lm, "tokenizer", None)
    n_tok = 0
    if tok is not None:          # tokens HFLM runs through the model (context + choice, minus one)
        for s in res["samples"][t.name]:
            n_tok += sum(len(tok(c + x, add_special_tokens=False)["input_ids"]) - 1 for c, x in s["arguments"])
    return dt, res["results"][t.name]["acc,none"], n_tok


def time_bridge(base, t, n: int, cfg: RuntimeConfig, cache_dir: Path) -> tuple[float, float]:
    from evalsuite.lmeval_bridge import run_lmeval
    from evalsuite.store import ResultsStore

    store = ResultsStore(cache_dir / f"bridge-{time.time_ns()}.sqlite")
    t0 = time.perf_counter()
    (key,) = run_lmeval([base], [t.name], store, cfg, limit=n, cache_dir=cache_dir / f"c{time.time_ns()}")
    dt = time.perf_counter() - t0
    return dt, store.metrics(key)["acc"]["value"]


def bench_mc(args, base: VariantManifest, cfg: RuntimeConfig) -> None:
    import torch
    from lm_eval.models.huggingface import HFLM

    from evalsuite.lmeval_bridge import build_tasks
    from evalsuite.tasks import get_task

    n = args.items
    task = get_task("arc_easy", limit=n)
    items = task.load()
    t = build_tasks(["arc_easy"])["arc_easy"]
    client = open_variant(base, cfg)
    torch.set_num_threads(args.threads)           # HFClient set it too; HFLM leaves it alone
    lm = HFLM(pretrained=str(base.artifact_path), dtype="float32", device="cpu", batch_size=args.lm_eval_batch)
    print(f"\n(a) ARC-Easy multiple choice, {n} items, model {base.model}/{base.variant_id} (HF fp32), "
          f"torch threads {torch.get_num_threads()}")
    # warm-up (first calls allocate and initialise kernels), not timed
    time_ours(client, task, items[:2], args.batch_items)
    time_lmeval(lm, t, 2)
    ours, theirs, bridge = [], [], []
    for r in range(args.rounds):
        dt, acc_o, tok_o = time_ours(client, task, items, args.batch_items)
        ours.append(dt)
        dt, acc_l, tok_l = time_lmeval(lm, t, n)
        theirs.append(dt)
        print(f"  round {r + 1}: ours {n / ours[-1]:.2f} items/s, lm-eval hf {n / theirs[-1]:.2f} items/s "
              f"(load {load_avg()})")
    if args.bridge:
        client.close()
        dt, acc_b = time_bridge(base, t, n, cfg, Path(args.workdir))
        bridge.append(dt)
    o, l_ = statistics.median(ours), statistics.median(theirs)
    print(f"  ours (ll strategy, hf runtime): {n / o:7.2f} items/s  acc {acc_o:.3f}  forward tokens {tok_o}")
    print(f"  lm-eval HFLM (batch {args.lm_eval_batch}):      {n / l_:7.2f} items/s  acc {acc_l:.3f}  forward tokens {tok_l}")
    if bridge:
        print(f"  lm-eval bridge on our hf:       {n / bridge[0]:7.2f} items/s  acc {acc_b:.3f}  "
              f"(includes task build and store writes)")
    print(f"  => throughput ratio ours / lm-eval: {l_ / o:.2f}x")


# -- (b) KLD reference caching -------------------------------------------------------------------
def bench_kld(args, base: VariantManifest, var: VariantManifest, cfg: RuntimeConfig) -> None:
    from evalsuite.tasks import get_task

    pc = quality.PplConfig(n_ctx=args.ctx, chunks=args.chunks)
    text = get_task("wikitext2").text()
    ref_client = open_variant(base, cfg)
    adds = getattr(ref_client, "adds_bos", ref_client.bos_id is not None)
    tokens = ref_client.tokenize(text, add_bos=adds)
    chunks = quality.make_chunks(tokens, pc, ref_client.bos_id if adds else None)
    print(f"\n(b) KLD on WikiText-2: {len(chunks)} chunks x {pc.n_ctx} tokens; reference {base.variant_id} "
          f"({ref_client.name}), variant {var.variant_id} ({var.runtime[0]}, llama.cpp threads {cfg.n_threads})")
    t0 = time.perf_counter()
    ref = quality.compute_reference(ref_client, chunks, pc)
    t_ref = time.perf_counter() - t0
    ref_client.close()
    path = Path(args.workdir) / "ref.npz"
    t0 = time.perf_counter()
    ref.save(path)
    t_save = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = quality.Reference.load(path)
    t_load = time.perf_counter() - t0
    client = open_variant(var, cfg)
    t0 = time.perf_counter()
    kld = []
    for c, d in zip(chunks, ref.dists):
        kld += quality.score_chunk_against(client, c, pc, d)["kld"]
    t_var = time.perf_counter() - t0
    client.close()
    print(f"  reference (base logits + nucleus), once: {t_ref:7.2f} s   save {t_save:.2f} s, load {t_load:.2f} s")
    print(f"  one variant scored against it:           {t_var:7.2f} s   (mean KLD {sum(kld) / len(kld):.4f})")
    for n in (4, 10):
        cached = t_ref + t_save + n * (t_load + t_var)
        naive = n * (t_ref + t_var)
        print(f"  N={n:2d} variants: cached reference {cached:7.1f} s vs base rerun per variant {naive:7.1f} s "
              f"=> {naive / cached:.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default="variants", help="variants tree with a 'base' and GGUF variants")
    ap.add_argument("--base", help="base manifest (default: variant_id 'base' under --variants)")
    ap.add_argument("--variant", help="variant manifest for (b) (default: gguf-q4_k_m, else any GGUF)")
    ap.add_argument("--threads", type=int, default=2, help="torch and llama.cpp threads")
    ap.add_argument("--items", type=int, default=40, help="ARC-Easy items for (a)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved repeats of (a); the median is reported")
    ap.add_argument("--batch-items", type=int, default=16, help="items per strategy call (as the Evaluator)")
    ap.add_argument("--lm-eval-batch", type=int, default=16, help="HFLM batch size")
    ap.add_argument("--bridge", action="store_true", help="also time lm-eval's arc_easy through our runtime")
    ap.add_argument("--chunks", type=int, default=4, help="WikiText-2 chunks for (b)")
    ap.add_argument("--ctx", type=int, default=512, help="chunk size in tokens for (b)")
    ap.add_argument("--skip", choices=("a", "b"), help="skip one part")
    args = ap.parse_args()
    os.environ["QUANTSUITE_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    cfg = RuntimeConfig(threads=args.threads)
    base, var = pick_manifests(args)
    print(f"threads: torch {torch.get_num_threads()} (interop {torch.get_num_interop_threads()}), "
          f"llama.cpp {cfg.n_threads}; cpus {os.cpu_count()}; load average {load_avg()}")
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as wd:
        args.workdir = wd
        if args.skip != "a":
            bench_mc(args, base, cfg)
        if args.skip != "b":
            if var is None:
                print("\n(b) skipped: no GGUF variant (give --variant)")
            else:
                bench_kld(args, base, var, cfg)
    print(f"\nload average at the end: {load_avg()}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as e:
        print(f"bench_eval: error: {e}", file=sys.stderr)
        sys.exit(2)
