"""Paired comparisons of a variant with its base: recovery, flips, McNemar, drill-down.

Why paired: two variants answering the same items differ far less by chance than two
independent samples, so the comparison uses only the item_ids both runs answered (a
running run or a ``--limit`` run must not be compared with the full base), and tests the
difference with the exact McNemar test on the discordant pairs.
All functions are pure: they take lists of sample dicts as the store returns them.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from evalsuite.metrics import flip_rate, mcnemar_exact

RAW_CHARS = 300


def _answer_key(v: Any) -> str:
    """Answers compared as canonical JSON, so 1 == 1 but '1' != 1 as the store keeps them."""
    return json.dumps(v, sort_keys=True, default=str)


def paired_items(base: Sequence[dict], variant: Sequence[dict]) -> list[tuple[dict, dict]]:
    """(base sample, variant sample) for item_ids graded in both runs, sorted by item_id."""
    b = {s["item_id"]: s for s in base if s.get("correct") is not None}
    v = {s["item_id"]: s for s in variant if s.get("correct") is not None}
    return [(b[i], v[i]) for i in sorted(b.keys() & v.keys())]


def recovery(base: Sequence[dict], variant: Sequence[dict]) -> dict[str, Any] | None:
    """Accuracy of the variant as % of the base's on the same items, with flips and McNemar.

    lost = right in the base, wrong in the variant; gained = the reverse; answer_flip_rate
    counts any change of the parsed answer (also wrong -> other wrong). None when the runs
    share no graded item.
    """
    pairs = paired_items(base, variant)
    if not pairs:
        return None
    bc = [bool(b["correct"]) for b, _ in pairs]
    vc = [bool(v["correct"]) for _, v in pairs]
    test = mcnemar_exact(bc, vc)
    base_acc = sum(bc) / len(bc)
    var_acc = sum(vc) / len(vc)
    return {
        "n_paired": len(pairs),
        "base_acc": base_acc,
        "variant_acc": var_acc,
        "recovery_pct": 100.0 * var_acc / base_acc if base_acc > 0 else None,
        "delta_pts": 100.0 * (var_acc - base_acc),
        "lost": int(test["b10"]),
        "gained": int(test["b01"]),
        "answer_flip_rate": flip_rate([_answer_key(b.get("parsed")) for b, _ in pairs],
                                      [_answer_key(v.get("parsed")) for _, v in pairs]),
        "mcnemar_p": float(test["p_value"]),
    }


def _question(s: dict) -> str:
    """Question text if the evaluator stored one (a future column, or in scores)."""
    for src in (s, s.get("scores") or {}):
        for k in ("question", "prompt"):
            if isinstance(src.get(k), str) and src[k]:
                return src[k]
    return ""


def _truncate(text: str | None, n: int = RAW_CHARS) -> str:
    text = text or ""
    return text if len(text) <= n else text[:n] + f"… [{len(text) - n} more chars]"


def flipped_items(base: Sequence[dict], variant: Sequence[dict], limit: int | None = 50) -> dict[str, Any]:
    """Items whose outcome or answer differs from the base, most important first.

    Order: lost (base right, variant wrong), gained, then changed (a different wrong
    answer), each by item_id. ``limit`` caps the rows kept (``total`` says how many there
    were), so one bad variant cannot make the HTML file huge.
    """
    rank = {"lost": 0, "gained": 1, "changed": 2}
    rows = []
    for b, v in paired_items(base, variant):
        if bool(b["correct"]) and not v["correct"]:
            kind = "lost"
        elif not b["correct"] and bool(v["correct"]):
            kind = "gained"
        elif _answer_key(b.get("parsed")) != _answer_key(v.get("parsed")):
            kind = "changed"
        else:
            continue
        rows.append({
            "item_id": v["item_id"], "kind": kind, "question": _question(v) or _question(b),
            "base_answer": b.get("parsed"), "variant_answer": v.get("parsed"), "gold": v.get("gold"),
            "base_raw": _truncate(b.get("raw")), "variant_raw": _truncate(v.get("raw")),
        })
    rows.sort(key=lambda r: (rank[r["kind"]], r["item_id"]))
    counts = {k: sum(1 for r in rows if r["kind"] == k) for k in rank}
    return {"total": len(rows), "counts": counts, "rows": rows if limit is None else rows[:limit]}
