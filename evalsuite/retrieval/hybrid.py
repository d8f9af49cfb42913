"""Hybrid retrieval: lexical and dense rankings fused, or BM25 candidates re-ranked densely.

Reciprocal rank fusion (Cormack et al. 2009) scores a chunk by ``Σ 1/(c + rank)`` over
the rankings it appears in (c = 60). It needs no score calibration between BM25 and
cosine similarity, which have nothing in common but their order, and it rewards chunks
both retrievers agree on. ``DenseRerank`` is the cheap alternative to a cross-encoder:
BM25 finds candidates, the embedding model orders them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from evalsuite.retrieval.bm25 import BM25Index, top_k
from evalsuite.retrieval.dense import DenseIndex

RRF_C = 60


def rrf(rankings: Sequence[Sequence[int]], c: int = RRF_C) -> list[tuple[int, float]]:
    """Fused (id, score), score descending, ties to the smaller id."""
    score: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, 1):
            score[doc] = score.get(doc, 0.0) + 1.0 / (c + rank)
    return sorted(score.items(), key=lambda kv: (-kv[1], kv[0]))


class HybridIndex:
    name = "hybrid"

    def __init__(self, bm25: BM25Index, dense: DenseIndex):
        self.bm25, self.dense = bm25, dense

    def search_many(self, queries: Sequence[str], k: int) -> list[list[tuple[int, float]]]:
        lex = self.bm25.search_many(queries, k)
        den = self.dense.search_many(queries, k)
        return [rrf([[d for d, _ in a], [d for d, _ in b]])[:k] for a, b in zip(lex, den)]


class DenseRerank:
    name = "rerank"

    def __init__(self, bm25: BM25Index, dense: DenseIndex, depth: int = 100):
        self.bm25, self.dense, self.depth = bm25, dense, depth

    def search_many(self, queries: Sequence[str], k: int) -> list[list[tuple[int, float]]]:
        if not queries:
            return []
        qv = self.dense.embedder.encode(list(queries))
        out = []
        for q, v in zip(queries, qv):
            cand = [d for d, _ in self.bm25.search(q, max(self.depth, k))]
            if not cand:
                out.append([])
                continue
            sims = self.dense.vectors[cand] @ v
            out.append([(cand[i], s) for i, s in top_k(np.asarray(sims), k)])
        return out
