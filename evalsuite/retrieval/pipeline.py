"""Retrieval for a batch of items: search (cached), decontaminate, diversify.

The expensive part, searching the datastore, depends only on the question and the
search settings, never on the model being evaluated. Its result, the ``pool`` best
candidates, is cached on disk under
``<cache>/retrieval/<datastore key>/<search settings hash>/<question hash>.json``, so
every variant, every RAG strategy (``rag``, ``rag+sc``, ``rag-xdoc``, ``rag-select``
share it whatever their ``docs``, ``mmr`` or ``decontam``) and every resumed run reuse
it. Hits and misses are counted (``stats``) so the reuse is visible.

On top of the cached pool, cheap and deterministic: candidates sharing an n-gram with
the item (question, question + answer) are dropped (``decontam`` = n, 0 = off), then
MMR with λ = ``mmr`` picks ``docs`` of the rest (λ = 1: plain top-k). Indexes (BM25,
embeddings) are built only on a cache miss, and at most once per process; MMR over
dense retrievers reads the cached chunk embeddings without loading the model.

The default retriever is BM25: it indexes GSM8K train in about two seconds, while
embedding it with MiniLM takes minutes on a 2-core CPU (once, then cached).
``retriever=dense`` / ``hybrid`` (RRF of both) / ``rerank`` (BM25 hits ordered by
embeddings) are one option away.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from evalsuite.retrieval.datastore import ChunkConfig, Datastore, load
from evalsuite.retrieval.decontam import Decontaminator
from evalsuite.retrieval.mmr import cosine_matrix, lexical_similarity, mmr
from quantsuite.errors import UserError

RETRIEVERS = ("bm25", "dense", "hybrid", "rerank")
CACHE_VERSION = "1"

#: Strategy parameters that configure retrieval (they go into run keys with the rest).
RETRIEVAL_DEFAULTS: dict[str, Any] = {
    "datastore": "auto", "retriever": "bm25", "docs": 3, "pool": 20, "mmr": 1.0,
    "decontam": 13, "chunk_words": 200, "chunk_overlap": 40,
}


@dataclass(frozen=True)
class RetrievalConfig:
    datastore: str = "auto"
    retriever: str = "bm25"
    docs: int = 3
    pool: int = 20
    mmr: float = 1.0
    decontam: int = 13
    chunk_words: int = 200
    chunk_overlap: int = 40

    def __post_init__(self):
        if self.retriever not in RETRIEVERS:
            raise UserError(f"retriever '{self.retriever}' is not one of {', '.join(RETRIEVERS)}")
        if self.docs < 1 or self.pool < self.docs:
            raise UserError(f"retrieval needs docs >= 1 and pool >= docs (got docs={self.docs}, pool={self.pool})")
        if not 0.0 <= self.mmr <= 1.0:
            raise UserError(f"mmr (lambda) must be between 0 and 1, got {self.mmr}")
        if self.decontam < 0:
            raise UserError(f"decontam is an n-gram length (0 = off), got {self.decontam}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **override: Any) -> "RetrievalConfig":
        vals = {k: params[k] for k in RETRIEVAL_DEFAULTS if k in params}
        vals.update(override)
        types = {"datastore": str, "retriever": str, "mmr": float}
        try:
            return cls(**{k: types.get(k, int)(v) for k, v in vals.items()})
        except (TypeError, ValueError) as e:
            raise UserError(f"bad retrieval option: {e}") from None

    @property
    def chunking(self) -> ChunkConfig:
        return ChunkConfig(self.chunk_words, self.chunk_overlap)


@dataclass
class Retrieved:
    """Documents retrieved for one item, best first."""

    ids: list[int]
    texts: list[str]
    scores: list[float]
    sources: list[str]
    dropped: int = 0           # candidates removed by decontamination
    cached: bool = False
    seconds: float = 0.0


class RetrievalCache:
    """One small JSON file per (datastore, settings, item); atomic writes, safe to share."""

    def __init__(self, root: Path):
        self.root = root
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        p = self._path(key)
        try:
            value = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, key: str, value: dict) -> None:
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(value))
        os.replace(tmp, p)


_DATASTORES: dict[tuple, Datastore] = {}
_INDEXES: dict[tuple, Any] = {}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


class Retriever:
    """Retrieval with caching for one configuration and one task's default datastore."""

    def __init__(self, cfg: RetrievalConfig, task_name: str = "", cache_root: Path | None = None,
                 embedder: Any = None):
        self.cfg = cfg
        self.task_name = task_name
        self._cache_root = cache_root
        self._embedder = embedder
        self.stats: dict[str, int] = {"hits": 0, "misses": 0, "dropped": 0}
        self._ds: Datastore | None = None
        self._cache: RetrievalCache | None = None

    # -- lazy pieces -----------------------------------------------------------------------
    @property
    def datastore(self) -> Datastore:
        if self._ds is None:
            memo = (str(self.cfg.datastore), self.task_name, self.cfg.chunking)
            if memo not in _DATASTORES:
                _DATASTORES[memo] = load(self.cfg.datastore, self.cfg.chunking, self.task_name)
            self._ds = _DATASTORES[memo]
        return self._ds

    @property
    def cache_root(self) -> Path:
        if self._cache_root is None:
            from quantsuite.paths import cache_dir

            self._cache_root = cache_dir()
        return self._cache_root

    @property
    def cache(self) -> RetrievalCache:
        if self._cache is None:
            search = {"retriever": self.cfg.retriever, "pool": self.cfg.pool, "embedder": self._embedder_name(),
                      "v": CACHE_VERSION}
            self._cache = RetrievalCache(self.cache_root / "retrieval" / self.datastore.key / _hash(search)[:16])
        return self._cache

    def _embedder_name(self) -> str:
        if self.cfg.retriever == "bm25":
            return ""
        if self._embedder is not None:
            return self._embedder.name
        from evalsuite.retrieval.dense import MiniLMEmbedder

        return MiniLMEmbedder.name

    def _bm25(self):
        key = ("bm25", self.datastore.key)
        if key not in _INDEXES:
            from evalsuite.retrieval.bm25 import BM25Index

            _INDEXES[key] = BM25Index(self.datastore.texts)
        return _INDEXES[key]

    def _embedding_file(self, name: str) -> Path:
        return self.cache_root / "datastores" / self.datastore.key / f"{name}.npy"

    def _dense(self):
        from evalsuite.retrieval.dense import DenseIndex, default_embedder

        emb = self._embedder or default_embedder()
        f = self._embedding_file(emb.name)
        key = ("dense", str(f))
        if key not in _INDEXES:
            _INDEXES[key] = DenseIndex.build(self.datastore.texts, emb, f)
        return _INDEXES[key]

    def index(self):
        kind = self.cfg.retriever
        if kind == "bm25":
            return self._bm25()
        if kind == "dense":
            return self._dense()
        from evalsuite.retrieval.hybrid import DenseRerank, HybridIndex

        return HybridIndex(self._bm25(), self._dense()) if kind == "hybrid" else DenseRerank(self._bm25(), self._dense())

    # -- retrieval -------------------------------------------------------------------------
    def retrieve(self, queries: Sequence[str], references: Sequence[Sequence[str]] | None = None) -> list[Retrieved]:
        """Documents for each query; ``references`` (text segments per query, normally the
        question and question + answer) drive decontamination; default: the query alone."""
        references = [list(r) for r in references] if references is not None else [[q] for q in queries]
        if len(references) != len(queries):
            raise ValueError("one decontamination reference per query")
        keys = [_hash({"q": q}) for q in queries]
        pools: list[list[tuple[int, float]] | None] = []
        for key in keys:
            hit = self.cache.get(key)
            pools.append([(int(d), float(s)) for d, s in hit["cand"]] if hit is not None else None)
        todo = [i for i, p in enumerate(pools) if p is None]
        spent = [0.0] * len(queries)
        if todo:
            t0 = time.perf_counter()
            found = self.index().search_many([queries[i] for i in todo], self.cfg.pool)
            per = (time.perf_counter() - t0) / len(todo)
            for i, cand in zip(todo, found):
                pools[i] = [(int(d), round(float(s), 6)) for d, s in cand]
                spent[i] = per
                self.cache.put(keys[i], {"q": queries[i], "cand": pools[i], "seconds": round(per, 6)})
        out = []
        for i, cand in enumerate(pools):
            t1 = time.perf_counter()
            r = self._select(cand or [], references[i])
            r.cached = i not in todo
            r.seconds = round(spent[i] + time.perf_counter() - t1, 6)
            out.append(r)
        self.stats["hits"] = self.cache.hits
        self.stats["misses"] = self.cache.misses
        self.stats["dropped"] += sum(r.dropped for r in out)
        return out

    def _select(self, cand: list[tuple[int, float]], reference: Sequence[str]) -> Retrieved:
        ds = self.datastore
        dropped = 0
        if self.cfg.decontam:
            keep, dropped = Decontaminator(reference, self.cfg.decontam).filter([ds.texts[d] for d, _ in cand])
            cand = [cand[i] for i in keep]
        picks = list(range(min(self.cfg.docs, len(cand))))
        if self.cfg.mmr < 1.0 and len(cand) > self.cfg.docs:
            picks = mmr([s for _, s in cand], self._similarity([d for d, _ in cand]), self.cfg.docs, self.cfg.mmr)
        chosen = [cand[i] for i in picks]
        return Retrieved(ids=[d for d, _ in chosen], texts=[ds.texts[d] for d, _ in chosen],
                         scores=[s for _, s in chosen], sources=[ds.sources[d] for d, _ in chosen], dropped=dropped)

    def _similarity(self, ids: list[int]):
        """Redundancy between candidates: chunk embeddings for dense kinds, word overlap for BM25."""
        if self.cfg.retriever == "bm25":
            return lexical_similarity([self.datastore.texts[d] for d in ids])
        f = self._embedding_file(self._embedder_name())
        if f.exists():
            vec = np.load(f, mmap_mode="r")
            if vec.shape[0] == len(self.datastore):
                return cosine_matrix(np.asarray(vec[ids]))
        return cosine_matrix(self._dense().vectors[ids])
