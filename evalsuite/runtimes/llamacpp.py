"""llama-cpp-python runtime for GGUF variants.

Log-likelihood of continuations is computed here from per-token logits (lm-eval's GGUF
path cannot), sharing the context: the context is evaluated once into the KV cache and
each continuation is evaluated on top of it after truncating the cache back to the
context. Perplexity/KLD read full log-softmax rows for a token stream.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from evalsuite.metrics import log_softmax
from evalsuite.runtimes import RUNTIMES, RuntimeConfig
from evalsuite.runtimes.common import encode_pair, group_by_context, messages_of
from evalsuite.types import Generation, GenRequest, LLRequest, LLResult
from quantsuite.errors import BackendUnavailable, UserError


def _check_gguf(path: Path) -> None:
    if not path.exists():
        raise UserError(f"GGUF file not found: {path}")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise UserError(f"{path} is not a GGUF file (bad magic)")


@RUNTIMES.register("llamacpp")
class LlamaCppClient:
    name = "llamacpp"

    def __init__(self, model_path: str | Path, cfg: RuntimeConfig | None = None):
        self.cfg = cfg or RuntimeConfig()
        self.path = Path(model_path)
        _check_gguf(self.path)
        try:
            from llama_cpp import Llama
        except ImportError:
            raise BackendUnavailable("llama-cpp-python is not installed (run `make setup`)") from None
        try:
            self.llm = Llama(
                model_path=str(self.path), n_ctx=self.cfg.n_ctx, n_threads=self.cfg.n_threads,
                n_threads_batch=self.cfg.n_threads, n_batch=self.cfg.n_batch, logits_all=True,
                seed=self.cfg.seed, verbose=False,
            )
        except (ValueError, RuntimeError) as e:
            raise UserError(f"llama.cpp cannot load {self.path.name}: {e}") from None
        self.n_vocab = self.llm.n_vocab()

    @classmethod
    def from_manifest(cls, manifest, cfg: RuntimeConfig) -> "LlamaCppClient":
        return cls(manifest.artifact_path, cfg)

    # -- tokens ----------------------------------------------------------------------
    @property
    def bos_id(self) -> int | None:
        b = self.llm.token_bos()
        return b if b >= 0 else None

    @property
    def adds_bos(self) -> bool:
        return self.llm._model.add_bos_token() if hasattr(self.llm._model, "add_bos_token") else False

    def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False)

    def _eval_from(self, keep: int, tokens: Sequence[int]) -> None:
        """Keep the first ``keep`` cached tokens, evaluate ``tokens`` after them."""
        self.llm.n_tokens = keep
        if tokens:
            self.llm.eval(list(tokens))

    # -- scoring -----------------------------------------------------------------------
    def token_logprobs(self, tokens: Sequence[int]) -> np.ndarray:
        if len(tokens) > self.cfg.n_ctx:
            raise UserError(f"{len(tokens)} tokens exceed the context size {self.cfg.n_ctx}")
        self.llm.reset()
        self._eval_from(0, tokens)
        return log_softmax(np.asarray(self.llm.scores[: len(tokens)], dtype=np.float32))

    def loglikelihood(self, reqs: Sequence[LLRequest]) -> list[LLResult]:
        out: list[LLResult | None] = [None] * len(reqs)
        tok = lambda s: self.tokenize(s, add_bos=False)  # noqa: E731
        bos = [self.bos_id] if (self.adds_bos and self.bos_id is not None) else []
        for ctx_text, idxs in group_by_context(reqs).items():
            t0 = time.perf_counter()
            pairs = [encode_pair(tok, ctx_text, reqs[i].continuation) for i in idxs]
            ctx = bos + pairs[0][0]
            if not ctx:  # lm-eval conditions an empty context on the end-of-text token
                ctx = [self.llm.token_eos()]
            if len(ctx) + max(len(c) for _, c in pairs) > self.cfg.n_ctx:
                ctx = ctx[-(self.cfg.n_ctx - max(len(c) for _, c in pairs)):]
            self.llm.reset()
            self._eval_from(0, ctx)
            first_in = len(ctx)
            for j, (i, (_, cont)) in enumerate(zip(idxs, pairs)):
                self._eval_from(len(ctx), cont[:-1])
                rows = np.asarray(self.llm.scores[len(ctx) - 1: len(ctx) - 1 + len(cont)], dtype=np.float32)
                lp = log_softmax(rows)
                picked = lp[np.arange(len(cont)), cont]
                out[i] = LLResult(
                    logprob=float(picked.sum()), is_greedy=bool((lp.argmax(-1) == np.asarray(cont)).all()),
                    n_tokens=len(cont), tokens_in=(first_in if j == 0 else 0) + max(len(cont) - 1, 0),
                )
            dt = (time.perf_counter() - t0) / len(idxs)
            for i in idxs:
                out[i].seconds = dt
        return out  # type: ignore[return-value]

    # -- generation ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _last_logits_only(self) -> Iterator[None]:
        """Scoring needs logits at every position (``logits_all``); sampling needs the last
        one only. With logits_all on, every prompt token also pays the output projection
        (49k x 576 on SmolLM2, a fifth of the model) and a copy of its row, so generation
        switches it off for its duration. Values are unaffected: only which rows are kept."""
        if not hasattr(self.llm, "_logits_all"):
            yield
            return
        prev, self.llm._logits_all = self.llm._logits_all, False
        try:
            yield
        finally:
            self.llm._logits_all = prev

    def generate(self, reqs: Sequence[GenRequest]) -> list[Generation]:
        with self._last_logits_only():
            return self._generate(reqs)

    def _generate(self, reqs: Sequence[GenRequest]) -> list[Generation]:
        results = []
        for r in reqs:
            t0 = time.perf_counter()
            texts, reasons, t_in, t_out = [], [], 0, 0
            for s in range(r.n):
                # identical prompts reuse the evaluated prefix in the KV cache (llama-cpp-python
                # matches the longest common prefix), so n samples cost one prompt evaluation
                kw = dict(max_tokens=r.max_tokens, temperature=r.temperature, top_p=r.top_p,
                          top_k=r.top_k if r.top_k else 0 if r.temperature > 0 else 40,
                          stop=list(r.stop) or None, seed=r.seed + s)
                if r.messages:
                    res = self.llm.create_chat_completion(messages=messages_of(r), **kw)
                    texts.append(res["choices"][0]["message"]["content"] or "")
                else:
                    res = self.llm.create_completion(prompt=r.prompt, **kw)
                    texts.append(res["choices"][0]["text"])
                reasons.append(res["choices"][0].get("finish_reason") or "")
                t_in += res["usage"]["prompt_tokens"] if s == 0 else 0
                t_out += res["usage"]["completion_tokens"]
            results.append(Generation(texts, t_in, t_out, time.perf_counter() - t0, reasons))
        return results

    def close(self) -> None:
        self.llm.close() if hasattr(self.llm, "close") else None
