"""Perplexity and KL divergence to the base on one shared token stream.

The token stream and chunking follow llama.cpp's ``llama-perplexity`` so the numbers are
comparable: the text is tokenized once (with BOS if the model adds one), cut into
``n_ctx``-token chunks, the first token of each chunk is replaced by BOS (when the model
uses one), and only the second half of each chunk is scored (every scored token has at
least n_ctx/2 tokens of context).

The reference (base) model is run once; its distribution at every scored position is
kept compactly as a nucleus of log-probs (``SparseDist``), cached on disk, and reused for every
variant, so KLD for N variants costs N variant runs plus one base run, not 2N.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from evalsuite.metrics import SparseDist, kl_divergence_sparse, same_top1


@dataclass(frozen=True)
class PplConfig:
    n_ctx: int = 512
    chunks: int = 20          # 0 = every chunk of the text
    ref_mass: float = 0.999   # reference probability mass kept per position (see SparseDist)

    def as_params(self) -> dict:
        return {"n_ctx": self.n_ctx, "chunks": self.chunks, "ref_mass": self.ref_mass}


def make_chunks(tokens: Sequence[int], cfg: PplConfig, bos: int | None) -> list[list[int]]:
    n = len(tokens) // cfg.n_ctx
    if cfg.chunks:
        n = min(n, cfg.chunks)
    out = []
    for i in range(n):
        c = list(tokens[i * cfg.n_ctx:(i + 1) * cfg.n_ctx])
        if bos is not None:
            c[0] = bos
        out.append(c)
    return out


def first_scored(cfg: PplConfig) -> int:
    return cfg.n_ctx // 2


def scored_rows(client, chunk: list[int], cfg: PplConfig) -> tuple[np.ndarray, np.ndarray]:
    """Log-prob rows predicting tokens first+1..n_ctx-1, and those target tokens."""
    lp = client.token_logprobs(chunk)
    f = first_scored(cfg)
    return lp[f:len(chunk) - 1], np.asarray(chunk[f + 1:], dtype=np.int64)


def stream_hash(tokens: Sequence[int]) -> str:
    return hashlib.sha256(np.asarray(tokens, dtype=np.int32).tobytes()).hexdigest()[:16]


@dataclass
class Reference:
    """Base model's nucleus at each scored position, and its NLL there, per chunk."""

    dists: list[SparseDist]
    nll: list[np.ndarray]
    seconds: list[float] | None = None     # base model time per chunk (its own PPL run reuses it)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            ids=np.concatenate([d.ids for d in self.dists]),
            lps=np.concatenate([d.logprobs.astype(np.float16) for d in self.dists]),
            sizes=np.array([len(d.ids) for d in self.dists]),
            offsets=np.stack([d.offsets for d in self.dists]),
            nll=np.stack(self.nll),
            seconds=np.asarray(self.seconds or [0.0] * len(self.dists), dtype=np.float64),
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "Reference":
        z = np.load(path)
        bounds = np.concatenate([[0], np.cumsum(z["sizes"])])
        dists = [SparseDist(z["ids"][a:b], z["lps"][a:b].astype(np.float32), off)
                 for a, b, off in zip(bounds[:-1], bounds[1:], z["offsets"])]
        secs = list(z["seconds"]) if "seconds" in z.files else None
        return cls(dists, list(z["nll"]), secs)


def compute_reference(client, chunks: list[list[int]], cfg: PplConfig,
                      progress: Callable[[], None] | None = None) -> Reference:
    tks, nlls, secs = [], [], []
    for c in chunks:
        t0 = time.perf_counter()
        rows, tgt = scored_rows(client, c, cfg)
        tks.append(SparseDist.from_logprobs(rows, cfg.ref_mass))
        nlls.append(-rows[np.arange(len(tgt)), tgt].astype(np.float32))
        secs.append(time.perf_counter() - t0)
        if progress:
            progress()
    return Reference(tks, nlls, secs)


def reference_chunk_scores(ref: Reference, i: int) -> dict:
    """The reference model's own per-chunk figures, read from its cached reference: the base's
    PPL run costs no second pass over the text."""
    return {"nll_sum": float(np.asarray(ref.nll[i], dtype=np.float64).sum()), "n": int(len(ref.nll[i]))}


def score_chunk_against(client, chunk: list[int], cfg: PplConfig, ref: SparseDist | None) -> dict:
    """Per-chunk figures for one variant: NLL per token, and KLD/top-1 vs the reference."""
    rows, tgt = scored_rows(client, chunk, cfg)
    nll = -rows[np.arange(len(tgt)), tgt].astype(np.float64)
    out = {"nll_sum": float(nll.sum()), "n": int(len(tgt))}
    if ref is not None:
        kld = kl_divergence_sparse(ref, rows)
        out["kld"] = [round(float(x), 7) for x in kld]
        out["same_top1"] = int(same_top1(ref, rows).sum())
    return out


def iter_chunks_todo(chunks: list[list[int]], done: set[str]) -> Iterator[tuple[int, list[int]]]:
    for i, c in enumerate(chunks):
        if f"chunk-{i:05d}" not in done:
            yield i, c
