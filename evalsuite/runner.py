"""The evaluation loop: variants x tasks x strategies, resumable through the store.

For each variant one client is opened; for each (task, strategy) the run key is computed
from the variant's sha, the task version, the strategy and its parameters and the seed.
Items already stored under that key are skipped; the rest run in batches, each batch
committed before the next starts, so an interrupted eval loses at most one batch.
Perplexity/KLD runs score chunks of one shared token stream against a cached reference.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from evalsuite import quality
from evalsuite.metrics import bootstrap_ci, perplexity, summarize_kld
from evalsuite.runtimes import RuntimeConfig, open_variant, pick_runtime
from evalsuite.store import ResultsStore, SampleRow, run_key
from evalsuite.strategies import Strategy, parse_strategy
from evalsuite.tasks import get_task
from evalsuite.tasks.base import parse_task_spec
from quant.manifest import VariantManifest
from quantsuite.errors import UserError


@dataclass
class EvalConfig:
    tasks: list[str]
    strategies: list[str] = field(default_factory=lambda: ["ll"])
    limit: int | None = None
    seed: int = 0
    batch_items: int = 16
    ppl: quality.PplConfig = field(default_factory=quality.PplConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    reference: str = "base"                   # variant_id of the KLD reference in each model family
    runtime_name: str | None = None           # --runtime: used where a variant supports it
    task_options: dict[str, dict] = field(default_factory=dict)


class Progress:
    """Callbacks the CLI maps onto rich progress bars (tests pass a silent one)."""

    def start(self, label: str, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def note(self, msg: str) -> None: ...


def variant_info(m: VariantManifest) -> dict:
    return {"variant_id": m.variant_id, "model": m.model, "sha": m.sha, "method": m.method,
            "size_bytes": m.size_bytes, "bits_per_weight": m.bits_per_weight,
            "manifest": {**m.to_dict(), "path": str(m.path) if m.path else None}}


def environment(cfg: EvalConfig, runtime: str) -> dict:
    return {"threads": cfg.runtime.n_threads, "runtime": runtime, "machine": platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version()}


def _prompt_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def summarize(samples: list[dict]) -> dict[str, tuple]:
    """Run-level metrics from stored samples: accuracy with bootstrap CI, compute per item."""
    out: dict[str, tuple] = {}
    if not samples:
        return out
    n = len(samples)
    correct = [float(s["correct"]) for s in samples if s["correct"] is not None]
    if correct:
        lo, hi = bootstrap_ci(correct)
        out["acc"] = (float(np.mean(correct)), lo, hi, len(correct))
    extra_keys = sorted({k for s in samples for k, v in (s["scores"] or {}).items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool) and (k.startswith("acc") or k.startswith("maj@") or k.startswith("budget@"))})
    for k in extra_keys:
        vals = [float(s["scores"][k]) for s in samples if k in (s["scores"] or {})]
        lo, hi = bootstrap_ci(vals)
        out[k] = (float(np.mean(vals)), lo, hi, len(vals))
    for f in ("calls", "tokens_in", "tokens_out", "seconds"):
        out[f"{f}_per_item"] = (float(np.mean([s[f] or 0 for s in samples])), None, None, n)
    return out


def summarize_ppl(samples: list[dict]) -> dict[str, tuple]:
    sc = [s["scores"] for s in samples]
    n_tok = sum(s["n"] for s in sc)
    out: dict[str, tuple] = {"ppl": (float(np.exp(sum(s["nll_sum"] for s in sc) / n_tok)), None, None, n_tok)}
    if all("kld" in s for s in sc):
        kld = np.concatenate([np.asarray(s["kld"], dtype=np.float64) for s in sc])
        for k, v in summarize_kld(kld).items():
            out[k] = (v, None, None, int(kld.size))
        out["same_top1"] = (sum(s["same_top1"] for s in sc) / n_tok, None, None, n_tok)
    out["seconds_per_item"] = (float(np.mean([s["seconds"] for s in samples])), None, None, len(samples))
    return out


def build_plan(cfg: EvalConfig) -> tuple[list, list[tuple]]:
    """Tasks and (task, strategy) pairs from the config, every name and pairing checked;
    no data is read, so the CLI calls it to refuse bad input before touching anything."""
    tasks = []
    for spec in cfg.tasks:
        name, opts = parse_task_spec(spec)
        tasks.append(get_task(name, limit=cfg.limit, **{**cfg.task_options.get(name, {}), **opts}))
    strategies = [parse_strategy(s) for s in cfg.strategies]
    plan = [(t, s) for t in tasks for s in (strategies if t.kind != "ppl" else [None])]
    for t, s in plan:
        if s is not None and not s.supports(t):
            raise UserError(f"strategy {s.label} cannot run task {t.name}")
    return tasks, plan


class Evaluator:
    def __init__(self, store: ResultsStore, cfg: EvalConfig, progress: Progress | None = None,
                 cache_dir: Path | None = None):
        self.store, self.cfg = store, cfg
        self.progress = progress or Progress()
        self.cache_dir = cache_dir or store.path.parent / ".quantsuite-cache"
        self._streams: dict[str, list[int]] = {}

    # -- entry point --------------------------------------------------------------------
    def run(self, manifests: Sequence[VariantManifest]) -> list[str]:
        if not manifests:
            raise UserError("no variants to evaluate")
        tasks, plan = build_plan(self.cfg)
        items = {t.version_key: t.load() for t in tasks if t.kind != "ppl"}
        # the reference must exist before any variant's KLD: do each family's reference first
        ordered = sorted(manifests, key=lambda m: (m.model, m.variant_id != self.cfg.reference, m.size_bytes))
        keys: list[str] = []
        for m in ordered:
            todo = [(t, s) for t, s in plan if not self._finished(m, t, s, items)]
            if not todo:
                self.progress.note(f"{m.model}/{m.variant_id}: all runs already stored")
                keys += [self._key(m, t, s) for t, s in plan]
                continue
            client = open_variant(m, self.cfg.runtime, pick_runtime(m, self.cfg.runtime_name))
            try:
                for t, s in plan:
                    if t.kind == "ppl":
                        keys.append(self._run_ppl(m, client, t, manifests))
                    else:
                        keys.append(self._run_items(m, client, t, s, items[t.version_key]))
            finally:
                client.close()
        return keys

    # -- keys ----------------------------------------------------------------------------
    def _key(self, m: VariantManifest, task, strat: Strategy | None) -> str:
        if strat is None:
            return run_key(m.sha, task.name, task.version_key, "ppl", self._ppl_params(m), 0)
        return run_key(m.sha, task.name, task.version_key, strat.name, strat.params, self.cfg.seed)

    def _ppl_params(self, m: VariantManifest) -> dict:
        return {**self.cfg.ppl.as_params(), "reference": self.cfg.reference if m.variant_id != self.cfg.reference else None}

    def _finished(self, m, task, strat, items) -> bool:
        key = self._key(m, task, strat)
        runs = self.store.runs(run_key=key)
        if not runs or runs[0]["status"] != "done":
            return False
        n = len(items[task.version_key]) if task.kind != "ppl" else runs[0]["n_items"]
        return len(self.store.done_items(key)) >= n

    # -- item tasks -----------------------------------------------------------------------
    def _run_items(self, m: VariantManifest, client, task, strat: Strategy, items) -> str:
        key = self._key(m, task, strat)
        self.store.ensure_run(key, variant=variant_info(m), task=task.name, task_version=task.version_key,
                              strategy=strat.label, params=strat.params, seed=self.cfg.seed, n_items=len(items),
                              runtime=client.name, env=environment(self.cfg, client.name))
        done = self.store.done_items(key)
        todo = [it for it in items if it.id not in done]
        self.progress.start(f"{m.model}/{m.variant_id} {task.name} {strat.label}", len(items))
        self.progress.advance(len(items) - len(todo))
        by_id = {it.id: it for it in todo}
        for i in range(0, len(todo), self.cfg.batch_items):
            batch = todo[i:i + self.cfg.batch_items]
            preds = strat.run(batch, client, task)
            self.store.add_samples(key, [SampleRow(
                item_id=p.item_id, prompt_hash=_prompt_hash(task.version_key, strat.label, p.item_id),
                raw=p.raw, parsed=p.parsed, gold=by_id[p.item_id].gold, correct=p.correct,
                scores={**p.scores, "question": by_id[p.item_id].question[:400]},
                calls=p.calls, tokens_in=p.tokens_in, tokens_out=p.tokens_out, seconds=p.seconds) for p in preds])
            self.progress.advance(len(batch))
        samples = self.store.samples(key)
        metrics = summarize(samples)
        metrics.update({k: (float(v), None, None, len(samples)) for k, v in strat.run_metrics(samples).items()})
        self.store.finish_run(key, metrics)
        return key

    # -- perplexity / KLD ------------------------------------------------------------------
    def _stream(self, m: VariantManifest, task, client) -> tuple[list[int], int | None]:
        """The family's token stream for this text: tokenized once (by the first client of the
        family, the reference when present), cached, and fed as ids to every variant."""
        text = task.text()
        path = self.cache_dir / "streams" / f"{m.model}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.npz"
        if str(path) not in self._streams:
            if path.exists():
                z = np.load(path)
                self._streams[str(path)] = (z["tokens"].tolist(), int(z["bos"]) if int(z["bos"]) >= 0 else None)
            else:
                adds = getattr(client, "adds_bos", client.bos_id is not None)
                bos = client.bos_id if adds else None
                tokens = client.tokenize(text, add_bos=adds)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
                np.savez(tmp, tokens=np.asarray(tokens, dtype=np.int32), bos=np.int64(-1 if bos is None else bos))
                os.replace(tmp, path)
                self._streams[str(path)] = (tokens, bos)
        return self._streams[str(path)]

    def _reference_manifest(self, m: VariantManifest, manifests) -> VariantManifest | None:
        return next((x for x in manifests if x.model == m.model and x.variant_id == self.cfg.reference), None)

    def _reference(self, ref_m: VariantManifest, chunks, client=None) -> quality.Reference:
        """The family's reference nucleus, computed once and cached on disk. When the
        reference variant itself is being evaluated its open client is used, and its own
        PPL comes from the same pass (see _run_ppl)."""
        path = self.cache_dir / "reference" / f"{ref_m.sha[:16]}-{quality.stream_hash(sum(chunks, []))}-{self.cfg.ppl.ref_mass}.npz"
        if path.exists():
            return quality.Reference.load(path)
        self.progress.note(f"computing reference logits with {ref_m.model}/{ref_m.variant_id} (once)")
        own = client is None
        ref_client = open_variant(ref_m, self.cfg.runtime, pick_runtime(ref_m, self.cfg.runtime_name)) if own else client
        try:
            self.progress.start(f"{ref_m.model}/{ref_m.variant_id} reference", len(chunks))
            ref = quality.compute_reference(ref_client, chunks, self.cfg.ppl, progress=self.progress.advance)
        finally:
            if own:
                ref_client.close()
        ref.save(path)
        return ref

    def _run_ppl(self, m: VariantManifest, client, task, manifests) -> str:
        key = self._key(m, task, None)
        tokens, bos = self._stream(m, task, client)
        chunks = quality.make_chunks(tokens, self.cfg.ppl, bos)
        if not chunks:
            raise UserError(f"{task.name}: text shorter than one {self.cfg.ppl.n_ctx}-token chunk")
        self.store.ensure_run(key, variant=variant_info(m), task=task.name, task_version=task.version_key,
                              strategy="ppl", params=self._ppl_params(m), seed=0, n_items=len(chunks),
                              runtime=client.name, env=environment(self.cfg, client.name))
        done = self.store.done_items(key)
        todo = list(quality.iter_chunks_todo(chunks, done))
        ref_m = self._reference_manifest(m, manifests)
        is_ref = ref_m is not None and ref_m.variant_id == m.variant_id
        ref = self._reference(ref_m, chunks, client if is_ref else None) if ref_m is not None and todo else None
        self.progress.start(f"{m.model}/{m.variant_id} {task.name} ppl/kld", len(chunks))
        self.progress.advance(len(done))
        for i, c in todo:
            t0 = time.perf_counter()
            if is_ref:   # the reference pass already scored this chunk
                r = quality.reference_chunk_scores(ref, i)
                secs = (ref.seconds or [0.0] * len(chunks))[i]
            else:
                r = quality.score_chunk_against(client, c, self.cfg.ppl, ref.dists[i] if ref else None)
                secs = time.perf_counter() - t0
            self.store.add_samples(key, [SampleRow(item_id=f"chunk-{i:05d}", prompt_hash=quality.stream_hash(c),
                                                   scores=r, calls=1, tokens_in=len(c), seconds=secs)])
            self.progress.advance()
        self.store.finish_run(key, summarize_ppl(self.store.samples(key)))
        return key
