"""Multiple choice by log-likelihood (lm-eval's ``multiple_choice``): acc and acc_norm.

No generation: every choice is scored as a continuation of the same context, so the
runtime can share the context's evaluation across choices.
"""

from __future__ import annotations

from typing import Sequence

from evalsuite.strategies import STRATEGIES, Strategy
from evalsuite.tasks.base import choose
from evalsuite.types import InferenceClient, Item, Prediction


@STRATEGIES.register("ll")
class LogLikelihood(Strategy):
    name = "ll"
    defaults = {}

    def supports(self, task) -> bool:
        return task.kind == "mc" and hasattr(task, "ll_requests")

    def run(self, items: Sequence[Item], client: InferenceClient, task) -> list[Prediction]:
        reqs, spans = [], []
        for it in items:
            r = task.ll_requests(it)
            spans.append((len(reqs), len(reqs) + len(r)))
            reqs.extend(r)
        results = client.loglikelihood(reqs)
        preds = []
        for it, (a, b) in zip(items, spans):
            res = results[a:b]
            lls = [r.logprob for r in res]
            lens = [float(len(q.continuation.strip())) or 1.0 for q in reqs[a:b]]
            pick = choose(lls)
            pick_norm = choose([ll / n for ll, n in zip(lls, lens)])
            preds.append(Prediction(
                item_id=it.id, parsed=pick, correct=pick == int(it.gold), raw="",
                calls=1, tokens_in=sum(r.tokens_in for r in res), tokens_out=0,
                seconds=sum(r.seconds for r in res),
                scores={"acc_norm": float(pick_norm == int(it.gold)), "parsed_norm": pick_norm,
                        "logprobs": [round(x, 4) for x in lls]},
            ))
        return preds
