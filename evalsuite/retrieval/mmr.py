"""Maximal marginal relevance (Carbonell & Goldstein 1998): relevant *and* diverse picks.

Each step takes the candidate maximising ``λ·rel(d) − (1−λ)·max_{s∈selected} sim(d, s)``.
Relevance is min-max scaled to [0, 1] over the candidates first, so BM25's unbounded
scores and cosine similarities are on one scale and λ means the same for every
retriever. λ = 1 is plain top-k by relevance (ties to the earlier candidate); λ = 0
only avoids redundancy.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

import numpy as np


def mmr(relevance: Sequence[float], similarity: np.ndarray, k: int, lam: float) -> list[int]:
    """Indices (into the candidates) of the ``k`` picks, in pick order."""
    rel = np.asarray(relevance, dtype=np.float64)
    n = rel.size
    if n == 0 or k <= 0:
        return []
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"MMR lambda must be in [0, 1], got {lam}")
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.ones(n)
    sim = np.asarray(similarity, dtype=np.float64)
    chosen: list[int] = []
    max_sim = np.full(n, -np.inf)
    free = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        score = lam * rel - (1.0 - lam) * penalty
        score[~free] = -np.inf
        best = int(np.argmax(score))          # first index among equals
        chosen.append(best)
        free[best] = False
        max_sim = np.maximum(max_sim, sim[best])
    return chosen


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    v = v / np.where(norms > 0, norms, 1.0)
    return v @ v.T


def lexical_similarity(texts: Sequence[str]) -> np.ndarray:
    """Cosine of word-count vectors: the redundancy measure when no embeddings exist."""
    counts = [Counter(re.findall(r"\w+", t.lower())) for t in texts]
    vocab = {w: i for i, w in enumerate(sorted(set().union(*counts)))} if counts else {}
    m = np.zeros((len(texts), max(len(vocab), 1)))
    for r, c in enumerate(counts):
        for w, n in c.items():
            m[r, vocab[w]] = n
    return cosine_matrix(m)
