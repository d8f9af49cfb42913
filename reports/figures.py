"""Plotly figures from the report model (not from the store), one spec per chart.

Why from the model: the charts then show exactly the numbers of the tables and of the
JSON export. Each chart carries ``expected_points`` (how many markers it must draw), which
the browser test compares with the SVG plotly renders. Encodings are fixed across the
report: a model family always has the same colour and symbol, so "larger model at 4 bits
vs smaller model at 16 bits" reads directly off every chart. Plotly is imported inside
the functions: ``quantsuite --help`` must not pay for it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from reports.frontier import step_line

MB = 1e6
# strategies keep the family's symbol and vary its style, so families read the same everywhere
STRATEGY_STYLES = ["", "-open", "-dot", "-open-dot"]


def _metric(run: dict, name: str) -> dict | None:
    m = run["metrics"].get(name)
    return m if m and m.get("value") is not None else None


def _hover(run: dict, extra: str = "") -> str:
    bpw = run.get("bits_per_weight")
    partial = f"<br>partial: {run['n_done']}/{run['n_items']} items" if run.get("partial") else ""
    return (f"<b>{run['model']}</b><br>{run['variant_id']} ({run['method']})<br>"
            f"{(run['size_bytes'] or 0) / MB:,.1f} MB" + (f", {bpw:.2f} bpw" if bpw else "")
            + (f"<br>{extra}" if extra else "") + partial)


def _scatter(runs: list[dict], fam: dict, x_of, y_name: str, scale: float, name: str, symbol: str | None = None):
    """One marker trace: the runs that have both x and y, with CI error bars when known."""
    import plotly.graph_objects as go

    pts = [(x_of(r), _metric(r, y_name), r) for r in runs]
    pts = [(x, m, r) for x, m, r in pts if x is not None and m is not None]
    if not pts:
        return None, 0
    ys = [m["value"] * scale for _, m, _ in pts]
    up = [((m["hi"] if m["hi"] is not None else m["value"]) - m["value"]) * scale for _, m, _ in pts]
    down = [(m["value"] - (m["lo"] if m["lo"] is not None else m["value"])) * scale for _, m, _ in pts]
    has_ci = any(u or d for u, d in zip(up, down))
    trace = go.Scatter(
        x=[x for x, _, _ in pts], y=ys, mode="markers", name=name, legendgroup=fam["model"],
        marker={"color": fam["colour"], "symbol": symbol or fam["symbol"], "size": 10,
                "line": {"width": 1, "color": "white"}},
        error_y={"type": "data", "array": up, "arrayminus": down, "visible": True, "thickness": 1.2, "width": 3,
                 "color": fam["colour"]} if has_ci else None,
        hovertext=[_hover(r, f"{y_name} = {m['value'] * scale:.4g}"
                             + (f" [{m['lo'] * scale:.4g}, {m['hi'] * scale:.4g}]"
                                if m.get("lo") is not None and m.get("hi") is not None else ""))
                   for _, m, r in pts],
        hoverinfo="text",
    )
    return trace, len(pts)


def _front_traces(runs: list[dict], y_name: str, scale: float, flag: str, higher: bool, name: str, colour: str):
    """Staircase through the front points, and their variant names as text (no markers)."""
    import plotly.graph_objects as go

    on = [r for r in runs if r["pareto"].get(flag) and _metric(r, y_name) is not None and r["size_bytes"]]
    if not on:
        return []
    xs = [r["size_bytes"] / MB for r in on]
    ys = [_metric(r, y_name)["value"] * scale for r in on]
    lx, ly = step_line(xs, ys, higher_is_better=higher)
    return [
        go.Scatter(x=lx, y=ly, mode="lines", name=name, line={"color": colour, "dash": "dash", "width": 1.5},
                   hoverinfo="skip"),
        go.Scatter(x=xs, y=ys, mode="text", text=[r["variant_id"] for r in on], textposition="top center",
                   textfont={"size": 10, "color": "#444"}, showlegend=False, hoverinfo="skip"),
    ]


def _layout(fig, title: str, x_title: str, y_title: str, log_x: bool = True) -> None:
    fig.update_layout(
        title={"text": title, "font": {"size": 15}}, template="plotly_white", height=430,
        margin={"l": 60, "r": 20, "t": 50, "b": 50}, legend={"orientation": "v"}, hovermode="closest",
    )
    fig.update_xaxes(title_text=x_title, type="log" if log_x else "linear")
    fig.update_yaxes(title_text=y_title)


def _size(r: dict) -> float | None:
    return r["size_bytes"] / MB if r.get("size_bytes") else None


def build_figures(model: dict[str, Any]) -> list[dict[str, Any]]:
    """Chart specs: {id, section, title, caption, figure (plotly Figure), expected_points}."""
    import plotly.graph_objects as go

    by_cond: dict[str, list[dict]] = defaultdict(list)
    for r in model["runs"]:
        by_cond[r["condition"]].append(r)
    charts: list[dict[str, Any]] = []

    def add(section: str, title: str, caption: str, fig, n: int) -> None:
        charts.append({"id": f"chart-{len(charts) + 1}", "section": section, "title": title, "caption": caption,
                       "figure": fig, "expected_points": n})

    for cond in model["conditions"]:
        runs = by_cond[cond["label"]]
        if cond["kind"] == "acc":
            fig, n = go.Figure(), 0
            for fam in model["families"]:
                t, k = _scatter([r for r in runs if r["model"] == fam["model"]], fam, _size, "acc", 100, fam["model"])
                if t is not None:
                    fig.add_trace(t)
                    n += k
            for t in _front_traces(runs, "acc", 100, "acc", True, "Pareto front (all families)", "#666"):
                fig.add_trace(t)
            _layout(fig, f"{cond['label']}: size vs accuracy", "size on disk (MB, log)", "accuracy (%)")
            add("frontier", cond["label"], "Error bars: 95 % bootstrap CI over items. Dashed: Pareto front "
                "(no other variant is smaller and more accurate), across model families.", fig, n)
        elif cond["kind"] == "ppl":
            for metric, title, y_title in (("ppl", "size vs perplexity", "perplexity (lower is better)"),
                                           ("kld_mean", "size vs KL divergence to the base",
                                            "mean KLD to base (nats/token)")):
                fig, n = go.Figure(), 0
                for fam in model["families"]:
                    mine = [r for r in runs if r["model"] == fam["model"]]
                    t, k = _scatter(mine, fam, _size, metric, 1, fam["model"])
                    if t is not None:
                        fig.add_trace(t)
                        n += k
                        for ft in _front_traces(mine, metric, 1, metric, False, f"front: {fam['model']}",
                                                fam["colour"]):
                            fig.add_trace(ft)
                if n:
                    _layout(fig, f"{cond['label']}: {title}", "size on disk (MB, log)", y_title)
                    add("kld" if metric == "kld_mean" else "frontier", f"{cond['label']}: {title}",
                        "Fronts are per family: perplexity and KLD depend on the tokenizer and the family's own "
                        "base, so they are not comparable across families. KLD error bars: mean ± 1.96 SE.",
                        fig, n)

    # accuracy vs compute, per task: colour = family, symbol = strategy
    tasks = sorted({c["task"] for c in model["conditions"] if c["kind"] == "acc"})
    for task in tasks:
        conds = [c["label"] for c in model["conditions"] if c["task"] == task and c["kind"] == "acc"]
        for x_name, x_title, section in (
                ("tokens_per_item", "tokens per item (prompt + generated, log)", "compute"),
                ("seconds_per_item", "seconds per item (log)", "compute"),
                ("tokens_per_second", "throughput: tokens processed per second (log)", "speed")):
            fig, n = go.Figure(), 0
            for j, cond in enumerate(conds):
                for fam in model["families"]:
                    mine = [r for r in by_cond[cond] if r["model"] == fam["model"]]

                    def x_of(r, x_name=x_name):
                        m = _metric(r, x_name)
                        return m["value"] if m and m["value"] > 0 else None

                    t, k = _scatter(mine, fam, x_of, "acc", 100, f"{fam['model']} · {cond.split(' · ', 1)[-1]}",
                                    fam["symbol"] + STRATEGY_STYLES[j % len(STRATEGY_STYLES)])
                    if t is not None:
                        fig.add_trace(t)
                        n += k
            if n:
                _layout(fig, f"{task}: accuracy vs {x_title.split(' (')[0]}", x_title, "accuracy (%)")
                add(section, f"{task}: accuracy vs {x_name.replace('_', ' ')}",
                    "Colour and symbol: model family; filled / open / dotted: strategy. Timings come from the machine each run recorded "
                    "(see provenance) and are only comparable between runs on the same machine and runtime.",
                    fig, n)
    return charts
