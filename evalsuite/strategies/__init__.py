"""Prompting strategies: one file each, found through ``STRATEGIES``.

A strategy answers a whole batch of items with one client, so runtimes can batch, and
records per item the compute it used (calls, tokens in/out, seconds). Its parameters
(``params``) go into the run key, so changing k or a retriever never reuses stale rows.

Names on the command line: ``ll``, ``direct``, ``cot``, ``sc@8``, ``rag``, ``rag+sc@8``,
``lot``, ``anytime``; options as ``name:key=value,key=value`` (``sc@8:temperature=0.7``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from evalsuite.types import InferenceClient, Item, Prediction
from quantsuite.errors import UserError
from quantsuite.registry import Registry

STRATEGIES: Registry = Registry("strategy")
STRATEGIES.lazy("ll", "evalsuite.strategies.loglikelihood")
STRATEGIES.lazy("direct", "evalsuite.strategies.direct")
STRATEGIES.lazy("cot", "evalsuite.strategies.cot")
STRATEGIES.lazy("sc", "evalsuite.strategies.self_consistency")
STRATEGIES.lazy("rag", "evalsuite.strategies.rag")
STRATEGIES.lazy("rag+sc", "evalsuite.strategies.rag")
STRATEGIES.lazy("rag-xdoc", "evalsuite.strategies.rag")
STRATEGIES.lazy("rag-select", "evalsuite.strategies.rag")
STRATEGIES.lazy("lot", "evalsuite.strategies.lot")
STRATEGIES.lazy("anytime", "evalsuite.strategies.anytime")


class Strategy:
    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise UserError(f"strategy {self.name}: unknown option(s) {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(sorted(self.defaults)) or 'none'})")
        self.params: dict[str, Any] = {**self.defaults, **params}

    @property
    def label(self) -> str:
        return self.name

    def supports(self, task) -> bool:
        return task.kind in ("mc", "gen")

    def run(self, items: Sequence[Item], client: InferenceClient, task) -> list[Prediction]:
        raise NotImplementedError

    def run_metrics(self, samples: Sequence[dict]) -> dict[str, float]:
        """Run-level figures beyond per-item means (e.g. the Anytime Index of the mean curve).

        Computed from stored sample rows, so a resumed run gets the same numbers."""
        return {}


def _coerce(v: str) -> Any:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def parse_strategy(text: str) -> Strategy:
    """'sc@8:temperature=0.7' -> SelfConsistency(k=8, temperature=0.7)."""
    text = text.strip()
    name, _, opts = text.partition(":")
    params: dict[str, Any] = {}
    if "@" in name:
        name, k = name.split("@", 1)
        try:
            params["k"] = int(k)
        except ValueError:
            raise UserError(f"strategy '{text}': '@' must be followed by a sample count") from None
    for kv in filter(None, opts.split(",")):
        if "=" not in kv:
            raise UserError(f"strategy '{text}': option '{kv}' is not key=value")
        k, v = kv.split("=", 1)
        params[k.strip()] = _coerce(v.strip())
    return STRATEGIES.get(name)(**params)
