"""The report as data: one JSON-able dict that every output format renders.

Why one model: the HTML, Markdown, CSV and JSON outputs must never disagree, so all the
numbers (fronts, recovery, recommendations, drill-down, provenance) are computed once
here from the loaded runs, and the renderers only lay them out. ``--format json`` is
this dict as is.
"""

from __future__ import annotations

import time
from collections import defaultdict
from importlib import metadata
from typing import Any, Sequence

from reports.compare import flipped_items, recovery
from reports.data import HEADLINE_METRICS, Run, _num, condition_labels
from reports.frontier import pareto_mask
from reports.recommend import Candidate, MemoryModel, memory_need, recommend

# colour-blind-safe (Okabe-Ito) colours and distinct symbols, one per model family
COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
SYMBOLS = ["circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon"]
GLYPHS = {"circle": "●", "square": "■", "diamond": "◆", "triangle-up": "▲", "cross": "✚", "x": "✖", "star": "★",
          "hexagon": "⬢"}


def is_base(run: Run) -> bool:
    return run.variant_id == "base" or run.method == "base"


def base_note(manifest: dict) -> str:
    """The base model's provenance note (the manifest's base.note, else its notes)."""
    note = (manifest.get("base") or {}).get("note") or ""
    return note or "; ".join(n for n in manifest.get("notes") or [] if n)


def _families(runs: Sequence[Run]) -> list[dict[str, Any]]:
    out = []
    for i, model in enumerate(sorted({r.model for r in runs})):
        mine = [r for r in runs if r.model == model]
        base = next((r for r in mine if is_base(r)), None)
        note = base_note(base.manifest) if base else base_note(mine[0].manifest)
        out.append({
            "model": model, "colour": COLOURS[i % len(COLOURS)], "symbol": SYMBOLS[i % len(SYMBOLS)],
            "glyph": GLYPHS[SYMBOLS[i % len(SYMBOLS)]],
            "has_base": base is not None, "base_note": note,
            "dequantized": "dequantiz" in note.lower(),
            "base_size_bytes": base.size_bytes if base else None,
        })
    return out


def _variants(runs: Sequence[Run], mm: MemoryModel) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in runs:
        key = (r.model, r.variant_id)
        if key in out:
            continue
        m = r.manifest
        need = memory_need(r.size_bytes or 0, r.n_params, mm)
        out[key] = {
            "model": r.model, "variant_id": r.variant_id, "method": r.method, "is_base": is_base(r),
            "size_bytes": r.size_bytes, "bits_per_weight": r.bits_per_weight, "n_params": r.n_params,
            "memory": need, "need_gib": need["total"] / 2**30,
            "sha": r.variant_sha,
            "spec": m.get("spec") or {}, "tool_versions": m.get("tool_versions") or {},
            "calibration": m.get("calibration"), "imatrix": m.get("imatrix"), "notes": m.get("notes") or [],
            "base": m.get("base") or {}, "created_at": m.get("created_at", ""), "command": m.get("command", ""),
            "runtime": m.get("runtime") or [],
        }
    return out


def _metrics(run: Run) -> dict[str, Any]:
    return {k: v.as_dict() for k, v in sorted(run.metrics.items())}


def _value(run: Run, name: str) -> float | None:
    m = run.metrics.get(name)
    return None if m is None else _num(m.value)


def assemble(runs: Sequence[Run], store_info: dict, budgets_gib: Sequence[float],
             mm: MemoryModel = MemoryModel(), drill_limit: int | None = 50,
             task_filter: str | None = None) -> dict[str, Any]:
    """Everything the report shows, from loaded runs (pure apart from the clock)."""
    labels = condition_labels(runs)
    variants = _variants(runs, mm)
    by_cond: dict[tuple, list[Run]] = defaultdict(list)
    for r in runs:
        by_cond[r.condition].append(r)
    base_of = {(r.model, r.condition): r for r in runs if is_base(r)}

    # Pareto flags: accuracy across families (the point of the comparison); perplexity and
    # KLD within a family only (different tokenizers / references are not comparable).
    front: dict[str, dict[str, bool]] = defaultdict(dict)
    for cond, rs in by_cond.items():
        acc = [r for r in rs if r.kind == "acc"]
        for r, on in zip(acc, pareto_mask([r.size_bytes for r in acc], [_value(r, "acc") for r in acc])):
            front[r.run_key]["acc"] = on
        for model in {r.model for r in rs}:
            ppl = [r for r in rs if r.kind == "ppl" and r.model == model]
            for name in ("ppl", "kld_mean"):
                mask = pareto_mask([r.size_bytes for r in ppl], [_value(r, name) for r in ppl], higher_is_better=False)
                for r, on in zip(ppl, mask):
                    front[r.run_key][name] = on

    run_rows, recovery_rows, quality_rows, drill = [], [], [], []
    for r in runs:
        base = base_of.get((r.model, r.condition))
        rec = recovery(base.samples, r.samples) if base is not None and base is not r and r.kind == "acc" else None
        v = variants[(r.model, r.variant_id)]
        row = {
            "run_key": r.run_key, "model": r.model, "variant_id": r.variant_id, "method": r.method,
            "is_base": is_base(r), "size_bytes": r.size_bytes, "bits_per_weight": r.bits_per_weight,
            "need_gib": v["need_gib"], "task": r.task, "task_version": r.task_version, "strategy": r.strategy,
            "params": r.params, "seed": r.seed, "condition": labels[r.condition], "kind": r.kind,
            "status": r.status, "n_items": r.n_items, "n_done": r.n_done, "partial": r.partial,
            "metrics": _metrics(r), "pareto": front.get(r.run_key, {}), "recovery": rec,
            "base_run_key": base.run_key if base is not None else None,
            "runtime": r.runtime, "env": r.env, "created_at": r.created_at, "updated_at": r.updated_at,
        }
        run_rows.append(row)
        if rec is not None:
            recovery_rows.append({k: row[k] for k in ("model", "variant_id", "condition", "task", "strategy",
                                                      "size_bytes", "run_key", "base_run_key", "partial")} | rec)
            flips = flipped_items(base.samples, r.samples, drill_limit)
            if flips["total"]:
                drill.append({"model": r.model, "variant_id": r.variant_id, "condition": labels[r.condition],
                              "task": r.task, "strategy": r.strategy, "run_key": r.run_key,
                              "base_run_key": base.run_key} | flips)
        if r.kind == "ppl":
            bppl = _value(base, "ppl") if base is not None else None
            ppl = _value(r, "ppl")
            quality_rows.append({
                "model": r.model, "variant_id": r.variant_id, "condition": labels[r.condition],
                "size_bytes": r.size_bytes, "ppl": ppl, "base_ppl": bppl,
                "ppl_ratio": ppl / bppl if ppl is not None and bppl else None,
                "kld_mean": _value(r, "kld_mean"), "kld_p99": _value(r, "kld_p99"),
                "same_top1": _value(r, "same_top1"), "partial": r.partial, "run_key": r.run_key,
            })

    candidates = _candidates(runs, variants, labels)
    conditions = [{"label": labels[c], "task": c[0], "task_version": c[1], "strategy": c[2], "params": c[3],
                   "seed": c[4], "kind": _kind(rs), "n_runs": len(rs)}
                  for c, rs in sorted(by_cond.items(), key=lambda kv: labels[kv[0]])]
    families = _families(runs)
    return {
        "title": "quantsuite report" + (f": {task_filter}" if task_filter else ""),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quantsuite_version": _version(),
        "store": store_info,
        "task_filter": task_filter,
        "families": families,
        "conditions": conditions,
        "variants": sorted(variants.values(), key=lambda v: (v["model"], v["size_bytes"] or 0, v["variant_id"])),
        "runs": run_rows,
        "recovery": recovery_rows,
        "quality": quality_rows,
        "recommendations": recommend(candidates, budgets_gib) | {"memory_model": mm.as_dict()},
        "drilldown": drill,
        "drill_limit": drill_limit,
        "compute": compute_rows(run_rows),
        "notes": _notes(runs, families, variants),
        "headlines": _headlines(run_rows, conditions),
        "data_sources": _data_sources(runs, store_info, variants),
    }


_STANDARD = {"acc", "acc_norm", "calls_per_item", "tokens_in_per_item", "tokens_out_per_item", "tokens_per_item",
             "seconds_per_item", "tokens_per_second"}


def compute_rows(run_rows: list[dict]) -> list[dict]:
    """Accuracy next to what it cost, per variant x task x strategy: the table that says
    whether test-time compute buys back what quantization lost. ``extra`` holds the
    strategy's own run metrics (maj@k, Anytime Index, retrieval reuse...)."""
    out = []
    for r in run_rows:
        if r["kind"] != "acc":
            continue
        m = r["metrics"]
        val = lambda k: (m.get(k) or {}).get("value")  # noqa: E731
        out.append({
            "model": r["model"], "variant_id": r["variant_id"], "task": r["task"], "strategy": r["strategy"],
            "params": r["params"], "n_done": r["n_done"], "n_items": r["n_items"], "partial": r["partial"],
            "acc": val("acc"), "acc_lo": (m.get("acc") or {}).get("lo"), "acc_hi": (m.get("acc") or {}).get("hi"),
            "calls": val("calls_per_item"), "tokens_in": val("tokens_in_per_item"),
            "tokens_out": val("tokens_out_per_item"), "seconds": val("seconds_per_item"),
            "extra": {k: v.get("value") for k, v in m.items() if k not in _STANDARD and v.get("value") is not None},
        })
    return sorted(out, key=lambda x: (x["task"], x["model"], x["variant_id"], x["strategy"]))


def _headlines(run_rows: list[dict], conditions: list[dict]) -> list[str]:
    """One line per accuracy condition: its Pareto front, smallest first — the answer to
    "larger model at low bits or smaller model at high bits?" in words."""
    out = []
    for c in conditions:
        if c["kind"] != "acc":
            continue
        front = sorted((r for r in run_rows if r["condition"] == c["label"] and r["pareto"].get("acc")),
                       key=lambda r: (r["size_bytes"] or 0, r["model"], r["variant_id"]))
        if front:
            out.append(f"{c['label']}: Pareto front, smallest first: " + " → ".join(
                f"{r['model']}/{r['variant_id']} ({(r['size_bytes'] or 0) / 1e6:,.0f} MB, "
                f"{100 * r['metrics']['acc']['value']:.1f} %)" for r in front))
    return out


def _kind(rs: Sequence[Run]) -> str:
    kinds = {r.kind for r in rs}
    return "ppl" if "ppl" in kinds else ("acc" if "acc" in kinds else "other")


def _candidates(runs: Sequence[Run], variants: dict, labels: dict) -> list[Candidate]:
    scores: dict[tuple[str, str], dict] = defaultdict(dict)
    cis: dict[tuple[str, str], dict] = defaultdict(dict)
    for r in runs:
        m = r.metrics.get("acc")
        # a variant of unknown size cannot be placed under a budget: it is left out
        if r.kind == "acc" and m is not None and _num(m.value) is not None and r.size_bytes:
            scores[(r.model, r.variant_id)][(r.task, labels[r.condition])] = float(m.value)
            cis[(r.model, r.variant_id)][(r.task, labels[r.condition])] = (m.lo, m.hi)
    return [Candidate(model, vid, variants[(model, vid)]["memory"]["total"], s, cis[(model, vid)])
            for (model, vid), s in sorted(scores.items())]


def _notes(runs: Sequence[Run], families: list, variants: dict) -> list[str]:
    """Warnings a reader must see before trusting a number."""
    notes = []
    for f in families:
        if f["dequantized"]:
            notes.append(f"The base of {f['model']} is not a full-precision original: {f['base_note']}. "
                         "Recovery, flips and KLD are measured against this dequantized model.")
        elif not f["has_base"]:
            notes.append(f"{f['model']} has no 'base' variant in the store: no recovery or KLD reference for it.")
    partial = [r for r in runs if r.partial]
    if partial:
        notes.append(f"{len(partial)} run(s) are partial (still running or interrupted); their numbers use the "
                     "items finished so far: " + ", ".join(f"{r.model}/{r.variant_id} {r.task}·{r.strategy} "
                                                          f"({r.n_done}/{r.n_items})" for r in partial[:8])
                     + (" …" if len(partial) > 8 else ""))
    stale = sorted({f"{r.model}/{r.variant_id} {r.task}" for r in runs
                    if any(r.metrics[k].source == "store" for k in HEADLINE_METRICS if k in r.metrics)})
    if stale:
        notes.append("Some metrics come from the metrics table because no sample could produce them: "
                     + ", ".join(stale[:8]))
    sizeless = [f"{v['model']}/{v['variant_id']}" for v in variants.values() if not v["size_bytes"]]
    if sizeless:
        notes.append("Size unknown, left out of the frontier and the recommendations: " + ", ".join(sizeless))
    unknown = [f"{v['model']}/{v['variant_id']}" for v in variants.values()
               if v["size_bytes"] and not v["memory"]["kv_known"]]
    if unknown:
        notes.append("Parameter count unknown, memory need excludes the KV cache for: " + ", ".join(unknown))
    return notes


def _data_sources(runs: Sequence[Run], store_info: dict, variants: dict) -> list[str]:
    out = [f"results store {store_info.get('path')} (schema v{store_info.get('schema_version')}, "
           f"{store_info.get('bytes', 0):,} bytes)"]
    for (model, vid), v in sorted(variants.items()):
        if v["is_base"]:
            b = v["base"]
            out.append(f"base model {model}: {b.get('source') or b.get('path') or '?'}"
                       + (f" (weights sha256 {str(b.get('sha256'))[:16]}…)" if b.get("sha256") else ""))
    calib = sorted({f"{(v['calibration'] or {}).get('name', '?')} "
                    f"(hash {str((v['calibration'] or {}).get('sha256') or (v['calibration'] or {}).get('hash') or '?')[:12]})"
                    for v in variants.values() if v["calibration"]})
    out += [f"calibration set {c}" for c in calib]
    tasks = sorted({(r.task, r.task_version) for r in runs})
    out.append("tasks: " + ", ".join(f"{t} ({v})" for t, v in tasks))
    return out


def _version() -> str:
    try:
        return metadata.version("quantsuite")
    except metadata.PackageNotFoundError:
        return "unknown"
