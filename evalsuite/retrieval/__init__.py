"""Retrieval for RAG strategies: datastores, BM25 / dense / hybrid search, MMR, decontamination.

Modules: ``datastore`` (documents -> chunks, content key), ``bm25`` (lexical, bm25s),
``dense`` (all-MiniLM-L6-v2 offline), ``hybrid`` (reciprocal rank fusion, dense
re-ranking), ``mmr`` (diversity), ``decontam`` (13-gram overlap filter) and ``pipeline``
(the cached per-item retrieval that strategies call). Heavy libraries (bm25s, torch,
transformers) are imported only when an index is actually built.
"""

from evalsuite.retrieval.pipeline import RETRIEVAL_DEFAULTS, RetrievalConfig, Retrieved, Retriever

__all__ = ["RETRIEVAL_DEFAULTS", "RetrievalConfig", "Retrieved", "Retriever"]
