"""Which variant to run under a memory budget: a documented memory estimate and a pure
selection rule.

Why an estimate and not just file size: a model needs its weights *plus* a KV cache and
runtime buffers, and at small budgets the overhead decides what fits. The estimate below
is deliberately simple, every parameter is printed next to the recommendation, and it is
a pure function so a reader can recompute any row by hand.

Memory need (bytes) =
    weights      size_on_disk * (1 + weights_overhead_frac)
  + KV cache     2 (K and V) * kv_bytes_per_value * context_tokens * kv_width
  + runtime      runtime_fixed_gib * 2**30
with kv_width = n_layers * kv_dim per token, which manifests do not record; it is
approximated as ``kv_width_coef * sqrt(n_params)``. The default 0.4 matches grouped-query
models within about 30 %: Llama-3-8B (32 x 1024 = 32,768 vs 0.4 * sqrt(8.0e9) = 35,777),
SmolLM2-135M (30 x 192 = 5,760 vs 4,648), Gemma-3-270M (18 x 256 = 4,608 vs 6,573);
models without GQA (Llama-2-7B: 131,072) need about 4x more, so raise the coefficient.

Budgets are in GiB (2**30 bytes), the unit GPUs and ``nvidia-smi`` report.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from quantsuite.errors import UserError

GIB = 2**30
DEFAULT_BUDGETS_GIB: tuple[float, ...] = (1, 2, 4, 8, 16, 24, 48, 80)


@dataclass(frozen=True)
class MemoryModel:
    context_tokens: int = 4096          # KV cache sized for this many tokens (one sequence)
    kv_bytes_per_value: float = 2.0     # fp16 cache
    kv_width_coef: float = 0.4          # n_layers * kv_dim ~= coef * sqrt(n_params)
    weights_overhead_frac: float = 0.05  # dequant scratch, alignment, fragmentation
    runtime_fixed_gib: float = 0.3      # compute buffers, CUDA context / llama.cpp graph

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["formula"] = ("size_bytes*(1+weights_overhead_frac) + 2*kv_bytes_per_value*context_tokens*"
                        "kv_width_coef*sqrt(n_params) + runtime_fixed_gib*2^30")
        return d


def memory_need(size_bytes: float, n_params: float | None, mm: MemoryModel = MemoryModel()) -> dict[str, float]:
    """Estimated bytes to serve one variant: weights, KV cache, runtime and their total.

    ``n_params`` unknown (None/0) -> the KV term is 0 and ``kv_known`` is False, so the
    report can say the estimate is a lower bound.
    """
    weights = float(size_bytes) * (1.0 + mm.weights_overhead_frac)
    kv_known = bool(n_params)
    kv = 2.0 * mm.kv_bytes_per_value * mm.context_tokens * mm.kv_width_coef * math.sqrt(n_params) if kv_known else 0.0
    runtime = mm.runtime_fixed_gib * GIB
    return {"weights": weights, "kv_cache": kv, "runtime": runtime, "total": weights + kv + runtime,
            "kv_known": kv_known}


def parse_budgets(budgets: Sequence[float] | str | None) -> list[float]:
    """Budgets in GiB from a list or a '1,2,4' string; sorted, unique, positive."""
    if budgets is None:
        return list(DEFAULT_BUDGETS_GIB)
    items = budgets.split(",") if isinstance(budgets, str) else list(budgets)
    out = []
    for b in items:
        try:
            f = float(str(b).strip().lower().removesuffix("gib").removesuffix("gb"))
        except ValueError:
            raise UserError(f"memory budget '{b}' is not a number of GiB") from None
        if not math.isfinite(f) or f <= 0:
            raise UserError(f"memory budget must be a positive number of GiB, got '{b}'")
        out.append(f)
    if not out:
        raise UserError("no memory budgets given")
    return sorted(set(out))


@dataclass(frozen=True)
class Candidate:
    """A variant with its memory need and its accuracy per condition (task, condition label)."""

    model: str
    variant_id: str
    need_bytes: float
    scores: dict[tuple[str, str], float] = field(default_factory=dict)
    ci: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model}/{self.variant_id}"


Option = tuple  # (score, Candidate, detail, ci_low or None)


def _pick(options: list[Option]) -> Option | None:
    """Highest score; ties go to the smaller memory need, then the name (deterministic)."""
    if not options:
        return None
    return min(options, key=lambda o: (-o[0], o[1].need_bytes, o[1].name))


def _ladder(budgets: list[float], options: list[Option]) -> list[dict[str, Any]]:
    """Best option per budget, and what the next-larger budget would add over it.

    ``within_noise`` flags a gain the new pick's own 95 % CI does not support (its lower
    bound is at or below the current pick's score): a reason to save the memory.
    """
    picks = [_pick([o for o in options if o[1].need_bytes <= b * GIB]) for b in budgets]
    rows = []
    for i, (b, pick) in enumerate(zip(budgets, picks)):
        row: dict[str, Any] = {"budget_gib": b, "pick": _describe(pick), "next": None}
        if i + 1 < len(budgets):
            nxt = picks[i + 1]
            if nxt is None or (pick is not None and (nxt[1].name, nxt[2]) == (pick[1].name, pick[2])):
                row["next"] = {"budget_gib": budgets[i + 1], "buys": None}
            else:
                buys = _describe(nxt)
                buys["gain"] = nxt[0] - pick[0] if pick else None
                buys["within_noise"] = bool(pick and nxt[3] is not None and nxt[3] <= pick[0])
                row["next"] = {"budget_gib": budgets[i + 1], "buys": buys}
        rows.append(row)
    return rows


def _describe(o: Option | None) -> dict[str, Any] | None:
    if o is None:
        return None
    return {"model": o[1].model, "variant_id": o[1].variant_id, "score": o[0], "detail": o[2],
            "need_gib": o[1].need_bytes / GIB}


def recommend(candidates: Sequence[Candidate], budgets_gib: Sequence[float]) -> dict[str, Any]:
    """Best variant per task and overall for each budget (see ``overall_conditions``).

    Per task: the highest accuracy over the task's conditions (strategies) the variant
    was evaluated with; ``detail`` names the condition. Overall: mean accuracy over the
    conditions every included candidate has, so no variant wins by skipping a hard task.
    """
    budgets = sorted(budgets_gib)
    tasks = sorted({t for c in candidates for t, _ in c.scores})
    per_task = {}
    for t in tasks:
        opts = []
        for c in candidates:
            mine = [(s, cond) for (tt, cond), s in c.scores.items() if tt == t and s is not None]
            if mine:
                s, cond = max(mine, key=lambda x: (x[0], x[1]))
                opts.append((s, c, cond, (c.ci.get((t, cond)) or (None, None))[0]))
        per_task[t] = _ladder(budgets, opts)
    conds, included, excluded = overall_conditions(candidates)
    opts = [(sum(c.scores[k] for k in conds) / len(conds), c, None, None) for c in included] if conds else []
    return {
        "budgets_gib": budgets,
        "per_task": per_task,
        "overall": {
            "definition": ("unweighted mean accuracy over the task x strategy conditions that every "
                           "included variant was evaluated on"),
            "conditions": [{"task": t, "condition": c} for t, c in conds],
            "excluded": [c.name for c in excluded],
            "rows": _ladder(budgets, opts),
        },
    }


def overall_conditions(candidates: Sequence[Candidate]) -> tuple[list[tuple[str, str]], list[Candidate], list[Candidate]]:
    """The conditions the overall score averages, and who is in and out.

    All candidates' shared conditions if there are any; otherwise the most widely run
    condition is kept, the candidates lacking it are excluded, and the shared set of the
    rest is used. Returns (conditions, included, excluded).
    """
    pool = [c for c in candidates if any(v is not None for v in c.scores.values())]
    if not pool:
        return [], [], list(candidates)

    def have(c: Candidate) -> set:
        return {k for k, v in c.scores.items() if v is not None}

    shared = set.intersection(*(have(c) for c in pool))
    if not shared:
        counts: dict[tuple[str, str], int] = {}
        for c in pool:
            for k in have(c):
                counts[k] = counts.get(k, 0) + 1
        top = min(counts, key=lambda k: (-counts[k], k))
        pool = [c for c in pool if top in have(c)]
        shared = set.intersection(*(have(c) for c in pool))
    names = {c.name for c in pool}
    return sorted(shared), pool, [c for c in candidates if c.name not in names]
