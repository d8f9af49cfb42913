"""Packing log-likelihood requests into few, dense forward passes (pure layout, no model).

Why: on a CPU the cost of a multiple-choice benchmark is the number of forward passes and
the padding they carry. lm-eval's ``hf`` backend runs each (context, choice) pair as its own
padded row, so a 4-choice question evaluates its context four times. Here each distinct
context becomes a *tree*: the context once, then every continuation scored after it.
Continuations see the context and their own earlier tokens only, and their positions restart
right after the context, so each one is scored exactly as if it followed the context alone.
Trees are packed first-fit-decreasing into rows of about ``row_tokens`` tokens under a
block-diagonal attention mask, and rows are grouped into batches of about ``batch_tokens``.

The layout is built with numpy so it can be golden-tested without torch or a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Tree:
    ctx: list[int]
    conts: list[list[int]]
    req_idx: list[int]                # request index of each continuation

    @property
    def size(self) -> int:
        return len(self.ctx) + sum(len(c) for c in self.conts)


@dataclass
class Span:
    """Where one continuation's scores are read: ``at[t]`` is the column whose logits predict
    ``cont[t]`` (the context's last token for t = 0)."""

    row: int
    req: int
    first_of_tree: bool
    n_ctx: int
    cont: list[int]
    at: list[int] = field(default_factory=list)


@dataclass
class Batch:
    ids: np.ndarray          # [B, W] int64
    positions: np.ndarray    # [B, W] int64
    allowed: np.ndarray      # [B, W, W] bool: query (row) may attend to key (column)
    spans: list[Span]


def pack_rows(sizes: list[int], row_tokens: int) -> list[list[int]]:
    """First-fit decreasing: tree indices into rows of at most ``row_tokens`` tokens (a larger
    tree gets a row of its own). Rows come out largest first."""
    cap = max([row_tokens, *sizes]) if sizes else row_tokens
    rows: list[list[int]] = []
    room: list[int] = []
    for t in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        r = next((k for k, left in enumerate(room) if left >= sizes[t]), None)
        if r is None:
            rows.append([])
            room.append(cap)
            r = len(rows) - 1
        rows[r].append(t)
        room[r] -= sizes[t]
    rows.sort(key=lambda r: -sum(sizes[t] for t in r))
    return rows


def group_rows(rows: list[list[int]], sizes: list[int], batch_tokens: int) -> list[list[list[int]]]:
    """Consecutive rows (largest first) into batches whose padded size stays near the budget."""
    out, b = [], 0
    while b < len(rows):
        width = max(sum(sizes[t] for t in rows[b]), 1)
        n = max(1, min(len(rows) - b, batch_tokens // width))
        out.append(rows[b:b + n])
        b += n
    return out


def layout(trees: list[Tree], batch_rows: list[list[int]], pad_id: int) -> Batch:
    width = max(sum(trees[t].size for t in row) for row in batch_rows)
    n = len(batch_rows)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    pos = np.zeros((n, width), dtype=np.int64)
    allowed = np.zeros((n, width, width), dtype=bool)
    spans: list[Span] = []
    for i, row in enumerate(batch_rows):
        o = 0
        for t in row:
            tree = trees[t]
            s, n_ctx = o, len(tree.ctx)
            ids[i, o:o + n_ctx] = tree.ctx
            pos[i, o:o + n_ctx] = np.arange(n_ctx)
            allowed[i, o:o + n_ctx, o:o + n_ctx] = np.tri(n_ctx, dtype=bool)
            o += n_ctx
            for j, (req, c) in enumerate(zip(tree.req_idx, tree.conts)):
                k = len(c)
                ids[i, o:o + k] = c
                pos[i, o:o + k] = np.arange(n_ctx, n_ctx + k)
                allowed[i, o:o + k, s:s + n_ctx] = True
                allowed[i, o:o + k, o:o + k] = np.tri(k, dtype=bool)
                at = ([s + n_ctx - 1] + list(range(o, o + k - 1))) if k else []
                spans.append(Span(i, req, j == 0, n_ctx, list(c), at))
                o += k
        pad = np.arange(o, width)
        allowed[i, pad, pad] = True          # padding attends to itself: no all-masked (NaN) rows
    return Batch(ids, pos, allowed, spans)


def plan_batches(trees: list[Tree], pad_id: int, row_tokens: int = 256, batch_tokens: int = 1024) -> list[Batch]:
    sizes = [t.size for t in trees]
    return [layout(trees, rows, pad_id) for rows in group_rows(pack_rows(sizes, row_tokens), sizes, batch_tokens)]
