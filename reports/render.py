"""Renderers: the report model as one self-contained HTML file, Markdown, CSV or JSON.

Why self-contained HTML: reports are mailed around and opened from file:// on machines
without network access, so plotly.js, the CSS and the data are all inlined and the page
requests nothing (the browser test checks it). Every renderer takes the same model dict
(reports/model.py) and returns text; writing the file is build.py's job.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

FORMATS = ("html", "md", "csv", "json")
TEMPLATES = Path(__file__).resolve().parent / "templates"


# -- formatting (shared by HTML filters and Markdown) ------------------------------------------
def _ok(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fmt_pct(v: Any) -> str:
    return f"{100 * v:.1f} %" if _ok(v) else "—"


def fmt_num(v: Any, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if _ok(v) else "—"


def fmt_mb(v: Any) -> str:
    return f"{v / 1e6:,.1f}" if _ok(v) else "—"


def fmt_gib(v: Any) -> str:
    if not _ok(v):
        return "—"
    return f"{v:g} GiB" if v >= 1 or v == round(v, 2) else f"{v:.2f} GiB"


def fmt_pts(v: Any) -> str:
    return f"{100 * v:+.1f} pts" if _ok(v) else "—"


def fmt_p(v: Any) -> str:
    if not _ok(v):
        return "—"
    return f"{v:.2g}" if v < 0.001 else f"{v:.3f}"


def fmt_js(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str, ensure_ascii=False)


def fmt_int(v: Any) -> str:
    return f"{int(v):,}" if _ok(v) else "—"


def clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, tuples -> lists, unknown objects -> str."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if hasattr(obj, "item"):          # numpy scalar
        return clean(obj.item())
    return str(obj)


# -- JSON ---------------------------------------------------------------------------------------
def render_json(model: dict[str, Any]) -> str:
    return json.dumps(clean(model), indent=2, allow_nan=False, ensure_ascii=False) + "\n"


# -- CSV ------------------------------------------------------------------------------------------
CSV_FIELDS = [
    "model", "variant_id", "method", "is_base", "size_bytes", "bits_per_weight", "need_gib", "task", "task_version",
    "strategy", "params", "seed", "condition", "kind", "status", "n_items", "n_done", "partial",
    "acc", "acc_lo", "acc_hi", "acc_norm", "ppl", "ppl_lo", "ppl_hi", "kld_mean", "kld_p99", "same_top1",
    "tokens_per_item", "seconds_per_item", "tokens_per_second", "pareto",
    "recovery_pct", "delta_pts", "lost", "gained", "answer_flip_rate", "mcnemar_p", "n_paired", "run_key",
    "base_run_key",
]


def render_csv(model: dict[str, Any]) -> str:
    """One row per run (variant x task x strategy): the flat table to load into pandas.

    Recommendations, drill-down and provenance are nested data: see the JSON export.
    """
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in model["runs"]:
        row = {k: r.get(k) for k in CSV_FIELDS}
        row["params"] = fmt_js(r["params"])
        for name in ("acc", "acc_norm", "ppl", "kld_mean", "kld_p99", "same_top1", "tokens_per_item",
                     "seconds_per_item", "tokens_per_second"):
            m = r["metrics"].get(name) or {}
            row[name] = m.get("value")
            if name in ("acc", "ppl"):
                row[f"{name}_lo"], row[f"{name}_hi"] = m.get("lo"), m.get("hi")
        flag = {"acc": "acc", "ppl": "ppl"}.get(r["kind"])
        row["pareto"] = r["pareto"].get(flag) if flag else None
        row.update({k: v for k, v in (r.get("recovery") or {}).items() if k in CSV_FIELDS})
        w.writerow({k: ("" if v is None else v) for k, v in clean(row).items()})
    return buf.getvalue()


def extra_text(extra: dict[str, Any], limit: int = 6) -> str:
    """'maj@1=0.40, maj@5=0.55, anytime_index=0.41': strategy metrics, a few, compactly."""
    items = sorted(extra.items(), key=lambda kv: (not kv[0].startswith("maj@"), kv[0]))[:limit]
    return ", ".join(f"{k}={fmt_num(v, 3)}" for k, v in items) or "—"


# -- Markdown --------------------------------------------------------------------------------------
def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _md_ladder(rows: list[dict]) -> str:
    out = []
    for r in rows:
        p, nxt = r["pick"], r["next"]
        if nxt is None:
            buys = "—"
        elif nxt["buys"] is None:
            buys = f"nothing better at {fmt_gib(nxt['budget_gib'])}"
        else:
            b = nxt["buys"]
            buys = (f"{fmt_gib(nxt['budget_gib'])}: {b['model']}/{b['variant_id']} ({fmt_pct(b['score'])}"
                    + (f", {fmt_pts(b['gain'])}" if b["gain"] is not None else "") + ")"
                    + (" — within CI, may be noise" if b.get("within_noise") else ""))
        if p is None:
            out.append([fmt_gib(r["budget_gib"]), "nothing fits", "", "", "", buys])
        else:
            out.append([fmt_gib(r["budget_gib"]), f"{p['model']}/{p['variant_id']}", fmt_pct(p["score"]),
                        p["detail"] or "", fmt_gib(p["need_gib"]), buys])
    return _md_table(["budget", "best variant", "accuracy", "condition", "memory need", "next budget buys"], out)


def render_md(model: dict[str, Any]) -> str:
    rec = model["recommendations"]
    mm = rec["memory_model"]
    s = [f"# {model['title']}\n",
         f"Generated {model['generated_at']} by quantsuite {model['quantsuite_version']} from "
         f"`{model['store']['path']}`. Charts are in the HTML format (`--format html`).\n"]
    s.append("## Read this first\n")
    s += [f"- {n}" for n in model["notes"]] or ["No caveats."]
    if model["headlines"]:
        s.append("\n### Frontier in words\n")
        s += [f"- {h}" for h in model["headlines"]]
    s.append("\n## Recommendation by memory budget\n")
    s.append(f"Memory need = `{mm['formula']}` with " + ", ".join(f"{k}={v}" for k, v in mm.items() if k != "formula")
             + ". Budgets in GiB.\n")
    conds = ", ".join(c["condition"] for c in rec["overall"]["conditions"]) or "none"
    s.append(f"### Overall\n\nOverall = {rec['overall']['definition']}: {conds}."
             + (f" Excluded: {', '.join(rec['overall']['excluded'])}." if rec["overall"]["excluded"] else "") + "\n")
    s.append(_md_ladder(rec["overall"]["rows"]))
    for task, rows in rec["per_task"].items():
        s.append(f"### {task}\n")
        s.append(_md_ladder(rows))
    s.append("## Size vs accuracy\n")
    for cond in model["conditions"]:
        runs = [r for r in model["runs"] if r["condition"] == cond["label"]]
        s.append(f"### {cond['label']}\n")
        if cond["kind"] == "acc":
            rows = [[r["model"], r["variant_id"], fmt_mb(r["size_bytes"]), fmt_num(r["bits_per_weight"], 2),
                     fmt_pct((r["metrics"].get("acc") or {}).get("value")),
                     f"{fmt_pct((r['metrics'].get('acc') or {}).get('lo'))} – {fmt_pct((r['metrics'].get('acc') or {}).get('hi'))}",
                     "yes" if r["pareto"].get("acc") else "", f"{r['n_done']}/{r['n_items']}"] for r in runs]
            s.append(_md_table(["family", "variant", "size (MB)", "bpw", "acc", "95 % CI", "Pareto", "items"], rows))
        elif cond["kind"] == "ppl":
            q = [x for x in model["quality"] if x["condition"] == cond["label"]]
            s.append(_md_table(["family", "variant", "size (MB)", "PPL", "PPL/base", "KLD mean", "KLD p99", "same top-1"],
                               [[x["model"], x["variant_id"], fmt_mb(x["size_bytes"]), fmt_num(x["ppl"]),
                                 fmt_num(x["ppl_ratio"], 4), fmt_num(x["kld_mean"], 4), fmt_num(x["kld_p99"], 4),
                                 fmt_pct(x["same_top1"])] for x in q]))
    if model.get("compute"):
        s.append("## Accuracy and compute by strategy\n\nPer item: model calls, prompt tokens evaluated (after "
                 "prefix sharing), generated tokens, wall seconds.\n")
        s.append(_md_table(["task", "family", "variant", "strategy", "items", "acc", "95 % CI", "calls", "tokens in",
                            "tokens out", "seconds", "strategy metrics"],
                           [[c["task"], c["model"], c["variant_id"], c["strategy"], f"{c['n_done']}/{c['n_items']}",
                             fmt_pct(c["acc"]), f"{fmt_pct(c['acc_lo'])} – {fmt_pct(c['acc_hi'])}",
                             fmt_num(c["calls"], 1), fmt_num(c["tokens_in"], 0), fmt_num(c["tokens_out"], 0),
                             fmt_num(c["seconds"], 2), extra_text(c["extra"])] for c in model["compute"]]))
    s.append("## Recovery versus the base\n\nPaired on shared item_ids; p = exact McNemar (two-sided).\n")
    s.append(_md_table(["family", "variant", "condition", "items", "base acc", "variant acc", "recovery", "lost",
                        "gained", "answer flips", "McNemar p"],
                       [[r["model"], r["variant_id"], r["condition"], r["n_paired"], fmt_pct(r["base_acc"]),
                         fmt_pct(r["variant_acc"]), fmt_num(r["recovery_pct"], 1) + " %", r["lost"], r["gained"],
                         fmt_pct(r["answer_flip_rate"]), fmt_p(r["mcnemar_p"])] for r in model["recovery"]]))
    s.append(f"## Drill-down: flipped items (at most {model['drill_limit']} per variant and condition)\n")
    for d in model["drilldown"]:
        c = d["counts"]
        s.append(f"### {d['model']}/{d['variant_id']} · {d['condition']}: {c['lost']} lost, {c['gained']} gained, "
                 f"{c['changed']} changed\n")
        s.append(_md_table(["item", "flip", "question", "base answer", "variant answer", "gold", "variant output"],
                           [[f"`{r['item_id']}`", r["kind"], r["question"], fmt_js(r["base_answer"]),
                             fmt_js(r["variant_answer"]), fmt_js(r["gold"]), r["variant_raw"][:120]]
                            for r in d["rows"]]))
    s.append("## Provenance\n")
    s += [f"- {x}" for x in model["data_sources"]]
    s.append("")
    s.append(_md_table(["family", "variant", "method", "size (MB)", "bpw", "tool versions", "calibration", "notes"],
                       [[v["model"], v["variant_id"], v["method"], fmt_mb(v["size_bytes"]),
                         fmt_num(v["bits_per_weight"], 3), ", ".join(f"{k} {x}" for k, x in v["tool_versions"].items()),
                         fmt_js(v["calibration"]) if v["calibration"] else "—", "; ".join(v["notes"])]
                        for v in model["variants"]]))
    s.append(_md_table(["run key", "variant", "task", "strategy", "params", "seed", "items", "status", "updated"],
                       [[f"`{r['run_key']}`", f"{r['model']}/{r['variant_id']}", r["task_version"], r["strategy"],
                         fmt_js(r["params"]), r["seed"], f"{r['n_done']}/{r['n_items']}", r["status"], r["updated_at"]]
                        for r in model["runs"]]))
    return "\n".join(s)


# -- HTML -----------------------------------------------------------------------------------------
def render_html(model: dict[str, Any]) -> str:
    """The whole report in one file; plotly.js inlined from the installed plotly package."""
    import jinja2
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    from reports.figures import build_figures

    figs = build_figures(model)
    fig_json = "{" + ",".join(json.dumps(c["id"]) + ":" + pio.to_json(c["figure"], validate=False)
                              for c in figs) + "}"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=fmt_pct, num=fmt_num, mb=fmt_mb, gib=fmt_gib, pts=fmt_pts, pval=fmt_p, js=fmt_js, extra=extra_text,
                       int_sep=fmt_int)
    return env.get_template("report.html").render(
        m=clean(model), figs=figs,
        plotly_js=jinja2.utils.markupsafe.Markup(_script_safe(get_plotlyjs())),
        figures_json=jinja2.utils.markupsafe.Markup(_script_safe(fig_json)),
    )


def _script_safe(text: str) -> str:
    """Text that cannot end its <script> element early (nor open a comment inside it)."""
    return re.sub(r"<(/script|!--)", r"<\\\1", text, flags=re.IGNORECASE)


RENDERERS = {"html": render_html, "md": render_md, "csv": render_csv, "json": render_json}
