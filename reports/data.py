"""Reading a results store into per-run summaries, recomputed from the samples.

Why recompute: the ``metrics`` table is written only when a run finishes, so a running
run has none and a resumed run may carry numbers from before it grew. The samples are
the ground truth, so every metric the report shows is derived from them here (pure
functions below); a stored metric is used only when no sample can produce it (e.g. the
samples were pruned), and is then marked ``source="store"``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from evalsuite.metrics import bootstrap_ci, summarize_kld
from evalsuite.store import ResultsStore, canonical
from quantsuite.errors import UserError

# per-item score keys averaged into run metrics, as the evaluator's summarize() does
SCORE_METRIC = re.compile(r"^(acc.+|maj@\d+|budget@.+)$")
Z95 = 1.959963984540054
# Parameters that name the comparison's reference rather than change the measurement: the
# evaluator stores ppl runs with {"reference": "base"}, and the base's own run with None.
CONDITION_IGNORES: dict[str, frozenset[str]] = {"ppl": frozenset({"reference"})}
HEADLINE_METRICS = ("acc", "acc_norm", "ppl", "kld_mean", "kld_p99", "same_top1")


@dataclass
class Metric:
    value: float
    lo: float | None = None
    hi: float | None = None
    n: int | None = None
    source: str = "samples"      # samples | store

    def as_dict(self) -> dict[str, Any]:
        return {"value": _num(self.value), "lo": _num(self.lo), "hi": _num(self.hi), "n": self.n, "source": self.source}


@dataclass
class Run:
    """One row of ``runs`` with its recomputed metrics and its samples (for pairing)."""

    run_key: str
    model: str
    variant_id: str
    variant_sha: str
    method: str
    size_bytes: int | None
    bits_per_weight: float | None
    manifest: dict
    task: str
    task_version: str
    strategy: str
    params: dict
    seed: int
    n_items: int | None
    status: str
    runtime: str
    env: dict
    created_at: str
    updated_at: str
    metrics: dict[str, Metric] = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list)

    @property
    def n_done(self) -> int:
        return len(self.samples)

    @property
    def condition(self) -> tuple:
        """What must match for two runs to be compared item by item (see CONDITION_IGNORES)."""
        drop = CONDITION_IGNORES.get(self.strategy, frozenset())
        params = {k: v for k, v in self.params.items() if k not in drop}
        return (self.task, self.task_version, self.strategy, canonical(params), self.seed)

    @property
    def kind(self) -> str:
        """'ppl' (lower is better, per-family only), 'acc', or 'other' (nothing to plot)."""
        if "ppl" in self.metrics or self.strategy == "ppl":
            return "ppl"
        return "acc" if "acc" in self.metrics else "other"

    @property
    def n_params(self) -> int | None:
        n = self.manifest.get("n_params")
        if n:
            return int(n)
        if self.size_bytes and self.bits_per_weight:
            return int(self.size_bytes * 8 / self.bits_per_weight)
        return None

    @property
    def partial(self) -> bool:
        return self.status != "done" or (self.n_items is not None and self.n_done < self.n_items)


def _num(v: Any) -> float | None:
    """JSON-safe float: NaN and inf become None."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


# -- pure metric maths ---------------------------------------------------------------------
def accuracy(values: Sequence[float], seed: int = 0) -> Metric:
    lo, hi = bootstrap_ci(values, seed=seed)
    return Metric(float(np.mean(values)), lo, hi, len(values))


def perplexity_from_chunks(nll_sums: Sequence[float], counts: Sequence[int], n_boot: int = 1000,
                           seed: int = 0) -> Metric:
    """exp(total NLL / total tokens), with a bootstrap CI over chunks (tokens within a
    chunk are correlated, so chunks are the resampling unit)."""
    s, c = np.asarray(nll_sums, float), np.asarray(counts, float)
    value = math.exp(s.sum() / c.sum())
    if len(s) < 2:
        return Metric(value, value, value, int(c.sum()))
    idx = np.random.default_rng(seed).integers(0, len(s), size=(n_boot, len(s)))
    boot = np.exp(s[idx].sum(axis=1) / c[idx].sum(axis=1))
    return Metric(value, float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975)), int(c.sum()))


def summarize_samples(samples: Sequence[dict], seed: int = 0) -> dict[str, Metric]:
    """Every metric the report uses, from one run's samples (see module docstring)."""
    out: dict[str, Metric] = {}
    if not samples:
        return out
    correct = [float(s["correct"]) for s in samples if s.get("correct") is not None]
    if correct:
        out["acc"] = accuracy(correct, seed)
    scores = [s.get("scores") or {} for s in samples]
    numeric = [{k: v for k, v in sc.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
               for sc in scores]
    for name in sorted({k for sc in numeric for k in sc if SCORE_METRIC.match(k)}):
        vals = [float(sc[name]) for sc in numeric if name in sc]
        if vals:
            out[name] = accuracy(vals, seed)
    chunks = [sc for sc in scores if "nll_sum" in sc and sc.get("n")]
    if chunks:
        out["ppl"] = perplexity_from_chunks([c["nll_sum"] for c in chunks], [c["n"] for c in chunks], seed=seed)
        with_kld = [c for c in chunks if c.get("kld")]
        if with_kld:
            kld = np.concatenate([np.asarray(c["kld"], float) for c in with_kld])
            k = summarize_kld(kld)
            se = k["kld_se"] if math.isfinite(k["kld_se"]) else 0.0
            out["kld_mean"] = Metric(k["kld_mean"], max(0.0, k["kld_mean"] - Z95 * se), k["kld_mean"] + Z95 * se, kld.size)
            for name in ("kld_p99", "kld_median", "kld_max", "kld_se"):
                out[name] = Metric(k[name], n=kld.size)
            top1 = [c for c in with_kld if "same_top1" in c]
            if top1:
                out["same_top1"] = Metric(sum(c["same_top1"] for c in top1) / sum(c["n"] for c in top1),
                                          n=sum(c["n"] for c in top1))
    n = len(samples)
    tokens = sum((s.get("tokens_in") or 0) + (s.get("tokens_out") or 0) for s in samples)
    seconds = sum(s.get("seconds") or 0.0 for s in samples)
    out["tokens_per_item"] = Metric(tokens / n, n=n)
    out["seconds_per_item"] = Metric(seconds / n, n=n)
    for f in ("calls", "tokens_in", "tokens_out"):
        out[f"{f}_per_item"] = Metric(sum(s.get(f) or 0 for s in samples) / n, n=n)
    if seconds > 0 and tokens > 0:
        out["tokens_per_second"] = Metric(tokens / seconds, n=n)
    return out


def merge_metrics(computed: dict[str, Metric], stored: dict[str, dict]) -> dict[str, Metric]:
    """Sample-derived metrics win; stored ones fill gaps only (marked source='store')."""
    out = dict(computed)
    for name, row in stored.items():
        if name not in out and row.get("value") is not None:
            out[name] = Metric(row["value"], row.get("lo"), row.get("hi"), row.get("n"), source="store")
    return out


# -- store --------------------------------------------------------------------------------------
def open_store(path: str | Path) -> ResultsStore:
    """Open an existing store; a missing or foreign file is a UserError, never a new empty store."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"results store not found: {p}")
    if not p.is_file():
        raise UserError(f"results store is not a file: {p}")
    if p.stat().st_size == 0:
        raise UserError(f"results store is empty (0 bytes): {p}")
    return ResultsStore(p)


def load_runs(path: str | Path, task: str | None = None) -> tuple[list[Run], dict]:
    """All runs of a store (optionally one task), with metrics recomputed from samples.

    Returns the runs and facts about the store itself (for provenance).
    """
    store = open_store(path)
    try:
        rows = store.runs()
        if not rows:
            raise UserError(f"results store has no runs yet: {path} (run `quantsuite eval` first)")
        if task is not None:
            tasks = sorted({r["task"] for r in rows})
            rows = [r for r in rows if r["task"] == task]
            if not rows:
                raise UserError(f"no runs for task '{task}' in {path} (tasks there: {', '.join(tasks)})")
        runs = []
        for r in rows:
            samples = store.samples(r["run_key"])
            run = Run(
                run_key=r["run_key"], model=r["model"], variant_id=r["variant_id"],
                variant_sha=r.get("variant_sha") or "", method=r.get("method") or "",
                size_bytes=r.get("size_bytes"), bits_per_weight=r.get("bits_per_weight"),
                manifest=r.get("manifest") or {}, task=r["task"], task_version=r["task_version"],
                strategy=r["strategy"], params=r.get("params") or {}, seed=r["seed"], n_items=r.get("n_items"),
                status=r.get("status") or "", runtime=r.get("runtime") or "", env=r.get("env") or {},
                created_at=r.get("created_at") or "", updated_at=r.get("updated_at") or "", samples=samples,
            )
            run.metrics = merge_metrics(summarize_samples(samples), store.metrics(r["run_key"]))
            runs.append(run)
        info = {"path": str(Path(path).resolve()), "bytes": Path(path).stat().st_size,
                "schema_version": store.schema_version}
    finally:
        store.close()
    return runs, info


def condition_labels(runs: Sequence[Run]) -> dict[tuple, str]:
    """Readable names for conditions: 'task · strategy', plus params/seed/version only
    where they are needed to tell two conditions of the same task and strategy apart."""
    conds = sorted({r.condition for r in runs}, key=str)
    labels = {}
    for c in conds:
        task, version, strategy, params, seed = c
        same = [d for d in conds if d[0] == task and d[2] == strategy]
        label = f"{task} · {strategy}"
        extra = []
        if len({d[1] for d in same}) > 1:
            extra.append(f"v{version}")
        if len({d[3] for d in same}) > 1 and params != "{}":
            extra.append(", ".join(f"{k}={v}" for k, v in json.loads(params).items()))
        if len({d[4] for d in same}) > 1:
            extra.append(f"seed {seed}")
        labels[c] = label + (f" ({'; '.join(extra)})" if extra else "")
    return labels
