"""Helpers shared by runtimes: lm-eval-compatible context/continuation splitting, grouping."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Sequence

from evalsuite.types import LLRequest


def encode_pair(tokenize: Callable[[str], list[int]], context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Split tokens as lm-evaluation-harness does, so scores match its numbers.

    Trailing spaces of the context move to the continuation; the continuation's tokens are
    the whole string's tokens after the context's, so a merge across the boundary is
    attributed to the continuation.
    """
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenize(context + continuation)
    ctx = tokenize(context)
    return whole[: len(ctx)], whole[len(ctx):]


def group_by_context(reqs: Sequence[LLRequest]) -> "OrderedDict[str, list[int]]":
    """Request indices grouped by identical context, in first-seen order (prefix sharing)."""
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for i, r in enumerate(reqs):
        groups.setdefault(r.context, []).append(i)
    return groups


def messages_of(req) -> list[dict]:
    return [{"role": r, "content": c} for r, c in req.messages]
