"""Deterministic k-shot example selection.

Shots are the first k items of the pool ordered by ``sha256(seed:id)``, the same for
every evaluated item (an item that is itself among them gets the next one instead). Why
not lm-eval's per-item ``random.sample``:

* the choice depends only on the seed and the pool, never on item order, ``--limit`` or
  Python's RNG implementation, so a resumed or partial run sees exactly the same prompts;
* one shared prefix lets runtimes reuse its evaluation (KV cache) across all items.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from evalsuite.types import Item
from quantsuite.errors import UserError


def shot_order(pool: Sequence[Item], seed: int) -> list[Item]:
    """The pool ordered by a seeded hash of each item's id (ties keep file order)."""
    def key(it: Item) -> str:
        return hashlib.sha256(f"{seed}:{it.id}".encode()).hexdigest()
    return sorted(pool, key=key)


class FewShotSampler:
    def __init__(self, pool: Sequence[Item], k: int, seed: int = 1234, task: str = "task"):
        if k < 0:
            raise UserError(f"task {task}: k_shot must be >= 0, not {k}")
        if k > len(pool):
            raise UserError(f"task {task}: k_shot={k} but the few-shot pool has only {len(pool)} items")
        self.k, self.task = k, task
        self._order = shot_order(pool, seed)

    def for_item(self, item: Item) -> list[Item]:
        """k shots for ``item``, never the item itself nor a copy of it.

        A pool item is skipped when its id or its question equals the item's. Both, because
        strategies may pass a copy of the item with an extended context (RAG, LoT), and
        published sets repeat items under new ids; skipping an unrelated item that merely
        shares an id or a question only costs taking the next one.
        """
        out: list[Item] = []
        for s in self._order:
            if len(out) == self.k:
                break
            if s.id == item.id or s.question == item.question:
                continue
            out.append(s)
        if len(out) < self.k:
            raise UserError(f"task {self.task}: not enough few-shot examples other than item "
                            f"{item.id} for k_shot={self.k}")
        return out
