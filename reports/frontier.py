"""Pareto-front maths for size-vs-quality charts: pure functions, no plotting, no I/O.

Why a separate module: the front is the one claim a reader takes away from a frontier
chart ("nothing smaller is as good"), so it is computed here, once, and tested against a
brute-force definition, instead of being drawn by eye.

Definition used everywhere in the reports: point ``j`` dominates point ``i`` when it is no
larger (``x_j <= x_i``), no worse (``y_j >= y_i``, or ``<=`` when lower is better) and
strictly better in at least one of the two. The front is the set of points that no other
point dominates. Consequences, all tested:

- exact duplicates dominate neither each other: both stay on the front;
- among points of equal size only the best quality can be on the front (ties included);
- points whose x or y is missing (None or NaN) are never on the front and never
  dominate anything: a run without a result must not hide runs that have one.
"""

from __future__ import annotations

import math
from typing import Any, Sequence


def is_missing(v: Any) -> bool:
    """True for None, NaN, or anything that is not a real number."""
    if v is None:
        return True
    try:
        f = float(v)
    except (TypeError, ValueError):
        return True
    return math.isnan(f)


def dominates(a: tuple[float, float], b: tuple[float, float], higher_is_better: bool = True) -> bool:
    """Does point ``a`` = (size, quality) dominate ``b``? (smaller size, better quality)."""
    (xa, ya), (xb, yb) = a, b
    if not higher_is_better:
        ya, yb = -ya, -yb
    return xa <= xb and ya >= yb and (xa < xb or ya > yb)


def pareto_mask(xs: Sequence[Any], ys: Sequence[Any], higher_is_better: bool = True) -> list[bool]:
    """For each point, whether it is on the Pareto front (small x, good y).

    O(n log n): sort by size ascending and, within a size, best quality first; a point is
    on the front iff its quality beats everything strictly smaller, and it ties the best
    quality at its own size. Missing points get False.
    """
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length ({len(xs)} != {len(ys)})")
    sign = 1.0 if higher_is_better else -1.0
    pts = [(float(x), sign * float(y), i) for i, (x, y) in enumerate(zip(xs, ys))
           if not is_missing(x) and not is_missing(y)]
    pts.sort(key=lambda p: (p[0], -p[1]))
    mask = [False] * len(xs)
    best_smaller = -math.inf   # best quality among strictly smaller sizes
    k = 0
    while k < len(pts):
        size = pts[k][0]
        group_end = k
        while group_end < len(pts) and pts[group_end][0] == size:
            group_end += 1
        top = pts[k][1]        # best quality at this size (group sorted best first)
        if top > best_smaller:
            for x, y, i in pts[k:group_end]:
                if y == top:
                    mask[i] = True
        best_smaller = max(best_smaller, top)
        k = group_end
    return mask


def pareto_indices(xs: Sequence[Any], ys: Sequence[Any], higher_is_better: bool = True) -> list[int]:
    """Indices of the front, ordered by size (then original order): ready to draw as a step line."""
    mask = pareto_mask(xs, ys, higher_is_better)
    idx = [i for i, m in enumerate(mask) if m]
    return sorted(idx, key=lambda i: (float(xs[i]), i))


def pareto_brute_force(xs: Sequence[Any], ys: Sequence[Any], higher_is_better: bool = True) -> list[bool]:
    """The definition, literally (O(n^2)): the reference the fast version is tested against."""
    ok = [not is_missing(x) and not is_missing(y) for x, y in zip(xs, ys)]
    out = []
    for i in range(len(xs)):
        if not ok[i]:
            out.append(False)
            continue
        pi = (float(xs[i]), float(ys[i]))
        out.append(not any(ok[j] and j != i and dominates((float(xs[j]), float(ys[j])), pi, higher_is_better)
                           for j in range(len(xs))))
    return out


def step_line(xs: Sequence[float], ys: Sequence[float], higher_is_better: bool = True) -> tuple[list[float], list[float]]:
    """Coordinates of the staircase through the front (what a reader can get at each size).

    Between two front points the best attainable quality is the smaller point's, so the
    line goes right at constant quality, then up (or down) to the next point.
    """
    idx = pareto_indices(xs, ys, higher_is_better)
    lx: list[float] = []
    ly: list[float] = []
    for n, i in enumerate(idx):
        x, y = float(xs[i]), float(ys[i])
        if n:
            lx.append(x)
            ly.append(ly[-1])
        lx.append(x)
        ly.append(y)
    return lx, ly
