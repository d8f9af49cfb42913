"""Pure functions for the statistics: no I/O, no model, golden-tested.

Accuracy with bootstrap CIs; paired comparison of two variants on the same items
(exact McNemar test, answer-flip rate); perplexity; token-level KL divergence against a
compact reference (top-k log-probs plus the remaining mass) and same-top-1 rate.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np


# -- accuracy and uncertainty ---------------------------------------------------------
def mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if len(xs) else float("nan")


def bootstrap_ci(values: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (deterministic for a given seed)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    means = x[idx].mean(axis=1)
    return (float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2)))


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> dict[str, float]:
    """Exact (binomial) McNemar test on paired outcomes.

    b01: a wrong, b right; b10: a right, b wrong. p-value is two-sided:
    2 * P(X <= min(b01, b10)) for X ~ Binomial(b01 + b10, 1/2), capped at 1.
    """
    if len(a_correct) != len(b_correct):
        raise ValueError("paired outcomes must have the same length")
    b01 = sum(1 for a, b in zip(a_correct, b_correct) if not a and b)
    b10 = sum(1 for a, b in zip(a_correct, b_correct) if a and not b)
    n = b01 + b10
    if n == 0:
        return {"b01": 0, "b10": 0, "p_value": 1.0}
    k = min(b01, b10)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return {"b01": b01, "b10": b10, "p_value": min(1.0, 2 * tail)}


def flip_rate(a_answers: Sequence[Hashable], b_answers: Sequence[Hashable]) -> float:
    """Share of items whose answer changed between two variants (right or wrong)."""
    if len(a_answers) != len(b_answers):
        raise ValueError("paired answers must have the same length")
    if not a_answers:
        return float("nan")
    return sum(1 for a, b in zip(a_answers, b_answers) if a != b) / len(a_answers)


# -- voting -------------------------------------------------------------------------------
def majority_vote(answers: Sequence[Any]) -> Any:
    """Most frequent non-None answer; ties go to the answer seen first (deterministic).

    Unparseable answers (None) do not vote; all-None gives None.
    """
    votes = [a for a in answers if a is not None]
    if not votes:
        return None
    counts = Counter(votes)
    best = max(counts.values())
    for a in votes:  # first occurrence among the tied
        if counts[a] == best:
            return a
    return None  # unreachable


# -- perplexity and KL divergence -----------------------------------------------------
def perplexity(nlls: Sequence[float]) -> float:
    return float(math.exp(np.mean(nlls))) if len(nlls) else float("nan")


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64, copy=False)
    m = x.max(axis=-1, keepdims=True)
    return (x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))).astype(np.float32)


@dataclass
class TopK:
    """Compact reference distribution for N positions: top-k ids and log-probs."""

    ids: np.ndarray       # [N, k] int32
    logprobs: np.ndarray  # [N, k] float32, descending

    @classmethod
    def from_logprobs(cls, lp: np.ndarray, k: int) -> "TopK":
        k = min(k, lp.shape[-1])
        part = np.argpartition(-lp, k - 1, axis=-1)[:, :k]
        vals = np.take_along_axis(lp, part, axis=-1)
        order = np.argsort(-vals, axis=-1)
        return cls(np.take_along_axis(part, order, -1).astype(np.int32), np.take_along_axis(vals, order, -1).astype(np.float32))


def kl_divergence_full(p_logprobs: np.ndarray, q_logprobs: np.ndarray) -> np.ndarray:
    """Exact KL(P || Q) per position from full log-prob rows [N, V]."""
    p = np.exp(p_logprobs.astype(np.float64))
    return (p * (p_logprobs.astype(np.float64) - q_logprobs.astype(np.float64))).sum(axis=-1)


def kl_divergence_topk(ref: TopK, q_logprobs: np.ndarray) -> np.ndarray:
    """KL(P || Q) per position with P known only on its top-k plus one "rest" bucket.

    KL ~= sum_{i in topk} p_i (log p_i - log q_i) + p_r (log p_r - log q_r), where p_r and
    q_r are the masses outside P's top-k. By the log-sum inequality this is a lower bound
    of the exact value, and it is exact when P's mass is all in the top-k.
    """
    lp = ref.logprobs.astype(np.float64)
    lq = np.take_along_axis(q_logprobs, ref.ids.astype(np.int64), axis=-1).astype(np.float64)
    p = np.exp(lp)
    head = (p * (lp - lq)).sum(axis=-1)
    p_rest = np.clip(1.0 - p.sum(axis=-1), 0.0, 1.0)
    q_rest = np.clip(1.0 - np.exp(lq).sum(axis=-1), 1e-12, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = np.where(p_rest > 1e-12, p_rest * (np.log(np.maximum(p_rest, 1e-300)) - np.log(q_rest)), 0.0)
    return np.maximum(head + tail, 0.0)


def same_top1(ref: TopK, q_logprobs: np.ndarray) -> np.ndarray:
    return ref.ids[:, 0] == q_logprobs.argmax(axis=-1)


def summarize_kld(kld: np.ndarray) -> dict[str, float]:
    kld = np.asarray(kld, dtype=np.float64)
    n = max(kld.size, 1)
    return {
        "kld_mean": float(kld.mean()) if kld.size else float("nan"),
        "kld_se": float(kld.std(ddof=1) / math.sqrt(n)) if kld.size > 1 else float("nan"),
        "kld_median": float(np.median(kld)) if kld.size else float("nan"),
        "kld_p99": float(np.quantile(kld, 0.99)) if kld.size else float("nan"),
        "kld_max": float(kld.max()) if kld.size else float("nan"),
    }
