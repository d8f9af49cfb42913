"""Lexical retrieval with BM25 (the ``bm25s`` library, Lucene variant).

Scoring is left to ``bm25s`` (maintained, sparse, fast); tokenization and top-k are
ours, so the query and the corpus are tokenized identically (lower case, words of 2+
characters, English stop words removed) and ranking is deterministic: score descending,
ties to the earlier chunk. Chunks that share no term with the query (score 0) are never
returned: they are not evidence, and fusing them would only add noise.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from quantsuite.errors import BackendUnavailable

_TOKEN = re.compile(r"(?u)\b\w\w+\b")


def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def tokenize(text: str, stopwords: frozenset[str] | None = None) -> list[str]:
    stop = _stopwords() if stopwords is None else stopwords
    return [t for t in _TOKEN.findall(text.lower()) if t not in stop]


def top_k(scores: np.ndarray, k: int, positive: bool = False) -> list[tuple[int, float]]:
    """(index, score) of the k best, score descending, ties to the lower index."""
    idx = np.flatnonzero(scores > 0) if positive else np.arange(scores.size)
    if idx.size == 0 or k <= 0:
        return []
    order = idx[np.lexsort((idx, -scores[idx]))][:k]
    return [(int(i), float(scores[i])) for i in order]


class BM25Index:
    name = "bm25"

    def __init__(self, texts: Sequence[str], k1: float = 1.5, b: float = 0.75):
        try:
            import bm25s
        except ImportError:
            raise BackendUnavailable("BM25 retrieval needs bm25s: pip install 'quantsuite[rag]'") from None
        self._stop = _stopwords()
        self.model = bm25s.BM25(k1=k1, b=b, method="lucene")
        corpus = [tokenize(t, self._stop) for t in texts]
        self.vocab = {w for doc in corpus for w in doc}
        self.model.index(corpus, show_progress=False)
        self.n_docs = len(texts)

    def scores(self, query: str) -> np.ndarray:
        toks = [t for t in tokenize(query, self._stop) if t in self.vocab]
        if not toks:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.asarray(self.model.get_scores(toks), dtype=np.float32)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        return top_k(self.scores(query), k, positive=True)

    def search_many(self, queries: Sequence[str], k: int) -> list[list[tuple[int, float]]]:
        return [self.search(q, k) for q in queries]
