"""Reasoning under a token budget: anytime answers and the Anytime Index (arXiv 2601.11038).

For each item one reasoning chain is generated (greedy CoT, up to the largest budget).
At every checkpoint b1 < ... < bT the chain is cut after b tokens and the model is made
to answer at once from the cut reasoning (a follow-up turn ending in "Final answer:").
A chain that finished within b tokens is not cut: its own answer is used when it has
one, so the model is not asked twice for what it already said. Budget 0 asks for an
answer with no reasoning at all.

Anytime Index: the area under the best-so-far quality curve Q*(b) = max_{b_i <= b} Q(b_i),
trapezoidal over the checkpoints, divided by (bT - b1). It is in [0, 1] for qualities in
[0, 1], is 1 only when the best quality is there from the first checkpoint, and rewards
reaching good answers early. Per item, quality is correctness (0/1) and the index is
stored in ``scores``; for a run, ``summarize`` computes the index of the accuracy
curve (mean quality per checkpoint), which is what the paper reports.

Token positions come from ``client.tokenize`` (the model's own tokenizer): the cut is
the longest prefix of the chain whose tokenization has at most b tokens.

Options: ``anytime:budgets=0/256/512/1024,temperature=0`` (budgets separated by '/',
since ',' separates options on the command line).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from evalsuite.strategies import STRATEGIES, Strategy
from evalsuite.strategies.answer import (Meter, check_task, extract, generate_metered, is_correct,
                                         prompt_hash, question_prompt)
from evalsuite.types import GenRequest, InferenceClient, Item, Prediction
from quantsuite.errors import UserError

FORCE_MC = "Stop reasoning now. Based on your reasoning so far, reply with the letter of the correct option only.\nFinal answer:"
FORCE_GEN = "Stop reasoning now. Based on your reasoning so far, reply only with 'The answer is <answer>.'\nFinal answer:"
FORCE_TOKENS = 32


# -- the metric ------------------------------------------------------------------------------
def best_so_far(qualities: Sequence[float]) -> list[float]:
    out, best = [], float("-inf")
    for q in qualities:
        best = max(best, float(q))
        out.append(best)
    return out


def anytime_index(budgets: Sequence[float], qualities: Sequence[float]) -> float:
    """Normalised trapezoidal area under the best-so-far quality curve.

    >>> anytime_index([0, 1000, 2000, 4000], [0, .5, .4, 1])
    0.5625
    """
    b = [float(x) for x in budgets]
    q = [float(x) for x in qualities]
    if len(b) != len(q) or not b:
        raise UserError(f"anytime index needs one quality per budget (got {len(b)} budgets, {len(q)} qualities)")
    if any(y <= x for x, y in zip(b, b[1:])):
        raise UserError(f"budgets must be strictly increasing, got {list(budgets)}")
    if any(not 0.0 <= x <= 1.0 for x in q):
        raise UserError(f"qualities must be in [0, 1], got {list(qualities)}")
    best = best_so_far(q)
    if len(b) == 1:
        return best[0]
    area = sum((b[i + 1] - b[i]) * (best[i] + best[i + 1]) / 2 for i in range(len(b) - 1))
    return area / (b[-1] - b[0])


def parse_budgets(value: Any) -> list[int]:
    """'0/256/512', '0 256 512', [0, 256, 512] or a single int -> sorted-checked ints."""
    if isinstance(value, (int, float)):
        parts = [value]
    elif isinstance(value, str):
        parts = [p for p in re.split(r"[/;| ]+", value.strip()) if p]
    else:
        parts = list(value)
    try:
        out = [int(p) for p in parts]
    except (TypeError, ValueError):
        raise UserError(f"budgets must be integers separated by '/', got '{value}'") from None
    if not out or out[0] < 0 or any(y <= x for x, y in zip(out, out[1:])):
        raise UserError(f"budgets must be non-negative and strictly increasing, got '{value}'")
    return out


def summarize(preds: Sequence[Prediction | dict]) -> dict[str, float]:
    """Run-level figures: accuracy at each budget and the Anytime Index of that curve.

    Takes Predictions or stored sample rows (dicts with ``scores``), so a report can
    recompute it from the results store.
    """
    scores = [p.scores if isinstance(p, Prediction) else (p.get("scores") or {}) for p in preds]
    rows = [s for s in scores if s.get("budgets")]
    if not rows:
        return {}
    budgets = rows[0]["budgets"]
    acc = [sum(r["quality"][i] for r in rows) / len(rows) for i in range(len(budgets))]
    out = {f"acc@{b}": a for b, a in zip(budgets, acc)}
    out["anytime_index"] = anytime_index(budgets, acc)
    return out


# -- truncation ------------------------------------------------------------------------------
def truncate(text: str, budget: int, tokenize) -> str:
    """Longest prefix of ``text`` that tokenizes to at most ``budget`` tokens (binary search)."""
    if budget <= 0:
        return ""
    if len(tokenize(text)) <= budget:
        return text
    lo, hi = 0, len(text)               # invariant: prefix lo fits, prefix hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if len(tokenize(text[:mid])) <= budget:
            lo = mid
        else:
            hi = mid
    return text[:lo]


# -- the strategy ----------------------------------------------------------------------------
@STRATEGIES.register("anytime")
class Anytime(Strategy):
    name = "anytime"
    defaults = {"budgets": "0/128/256/512", "temperature": 0.0, "top_p": 1.0, "top_k": 0, "seed": 0, "system": ""}

    def __init__(self, **params: Any):
        super().__init__(**params)
        # canonical text form: the same budgets always give the same run key
        self.params["budgets"] = "/".join(str(b) for b in parse_budgets(self.params["budgets"]))

    @property
    def budgets(self) -> list[int]:
        return parse_budgets(self.params["budgets"])

    def run_metrics(self, samples) -> dict[str, float]:
        return summarize(samples)

    def run(self, items: Sequence[Item], client: InferenceClient, task) -> list[Prediction]:
        check_task(task)
        budgets = self.budgets
        meters = [Meter() for _ in items]
        prompts = [question_prompt(task, it, cot=True) for it in items]
        chains, finished = [""] * len(items), [False] * len(items)
        if budgets[-1] > 0:
            p = self.params
            sampled = float(p["temperature"]) > 0
            reqs = [GenRequest.chat(pr, system=str(p["system"]), max_tokens=budgets[-1], seed=int(p["seed"]),
                                    temperature=float(p["temperature"]), top_p=float(p["top_p"]) if sampled else 1.0,
                                    top_k=int(p["top_k"]) if sampled else 0) for pr in prompts]
            gens = generate_metered(client, reqs, meters)
            chains = [g.texts[0] if g.texts else "" for g in gens]
            finished = [bool(g.finish_reasons) and g.finish_reasons[0] != "length" for g in gens]
        tokenize = client.tokenize
        lengths = [len(tokenize(c)) for c in chains]
        # which (item, checkpoint) pairs need a forced answer, and which reuse the chain's own
        answers: list[list[Any]] = [[None] * len(budgets) for _ in items]
        forced: list[list[bool]] = [[False] * len(budgets) for _ in items]
        reqs, where = [], []
        for i, (it, chain) in enumerate(zip(items, chains)):
            own = extract(task, chain, it) if finished[i] else None
            for t, b in enumerate(budgets):
                if b > 0 and finished[i] and lengths[i] <= b and own is not None:
                    answers[i][t] = own
                    continue
                cut = chain if lengths[i] <= b else truncate(chain, b, tokenize)
                reqs.append(self._force(task, prompts[i], cut))
                where.append((i, t))
                forced[i][t] = True
        for (i, t), g in zip(where, generate_metered(client, reqs, [meters[i] for i, _ in where])):
            answers[i][t] = extract(task, g.texts[0] if g.texts else "", items[i])
        preds = []
        for i, it in enumerate(items):
            quality = [float(is_correct(task, a, it)) for a in answers[i]]
            scores = {"budgets": budgets, "answers": answers[i], "quality": quality, "forced": forced[i],
                      "chain_tokens": lengths[i], "chain_finished": finished[i],
                      "anytime_index": round(anytime_index(budgets, quality), 6),
                      "prompt_hash": prompt_hash(prompts[i])}
            scores.update({f"acc@{b}": q for b, q in zip(budgets, quality)})
            final = answers[i][-1]
            preds.append(meters[i].prediction(it, final, is_correct(task, final, it), chains[i], scores))
        return preds

    def _force(self, task, prompt: str, reasoning: str) -> GenRequest:
        """Answer now: the cut reasoning as the model's own turn, then a 'Final answer:' turn."""
        force = FORCE_MC if task.kind == "mc" else FORCE_GEN
        system = str(self.params["system"])
        sys_msg = (("system", system),) if system else ()
        if reasoning.strip():
            msgs = sys_msg + (("user", prompt), ("assistant", reasoning), ("user", force))
        else:
            msgs = sys_msg + (("user", f"{prompt}\n\n{force}"),)
        return GenRequest(messages=msgs, max_tokens=FORCE_TOKENS, temperature=0.0, seed=int(self.params["seed"]))
