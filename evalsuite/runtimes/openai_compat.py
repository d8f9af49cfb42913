"""Any OpenAI-compatible HTTP endpoint (llama-server, vLLM, quantsuite serve) for generation tasks.

Chat requests go to ``/v1/chat/completions``, raw prompts to ``/v1/completions``. ``n``
samples are asked for in one request where the server supports it; a server that refuses
``n`` (a 4xx: quantsuite serve only does n=1) or returns fewer choices gets one request per
missing sample with ``seed + s``, as the llama.cpp runtime does. The prompt's tokens are
counted once per request, completion tokens are summed over samples.

Scoring is not possible: chat endpoints do not return prompt log-probabilities, so
``loglikelihood`` and ``token_logprobs`` raise ``BackendUnavailable``. ``tokenize`` uses
llama-server's ``POST /tokenize`` when the server has it.

Open one with ``OpenAICompatClient.from_url("openai:http://127.0.0.1:8000/v1#model-id", cfg)``;
without ``#model-id`` the first model of ``GET /v1/models`` is used. The API key is the
``api_key`` argument, else ``cfg.extra["api_key"]`` (from_url), else ``$QUANTSUITE_API_KEY``;
``$OPENAI_API_KEY`` is deliberately not read, so a real OpenAI key is never sent to some
other server by accident. ``cfg.extra["concurrency"]`` (default 1) sends that many requests
at once, which pays off on batching servers such as vLLM.
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from evalsuite.runtimes import RUNTIMES, RuntimeConfig
from evalsuite.runtimes.common import messages_of
from evalsuite.types import Generation, GenRequest, LLRequest, LLResult
from quantsuite.errors import BackendUnavailable, UserError

DEFAULT_TIMEOUT = 600.0        # seconds per HTTP request: CPU servers can be slow on long answers
NO_KEY = "no-key"              # servers without auth ignore the header; the openai client needs one


def _normalize_base_url(url: str) -> str:
    """``http://host:port`` -> ``http://host:port/v1``; other paths are kept as given."""
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(f"not an http(s) URL for an OpenAI-compatible server: {url!r} "
                        "(expected e.g. http://127.0.0.1:8000/v1)")
    path = parts.path.rstrip("/")
    if not path:
        path = "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _root_of(base_url: str) -> str:
    """The server root (where llama-server has /tokenize): base URL without a trailing /v1."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def _one_line(s: Any, limit: int = 300) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


class _Refused(Exception):
    """A 4xx answer to a request with n > 1: retry one sample at a time."""


@RUNTIMES.register("openai")
class OpenAICompatClient:
    name = "openai"

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None,
                 cfg: RuntimeConfig | None = None, timeout: float = DEFAULT_TIMEOUT, max_retries: int = 2):
        self.cfg = cfg or RuntimeConfig()
        self.base_url = _normalize_base_url(base_url)
        try:
            import openai
        except ImportError:
            raise BackendUnavailable("the openai package is not installed (pip install openai)") from None
        self._openai = openai
        self._api_key = api_key or os.environ.get("QUANTSUITE_API_KEY") or NO_KEY
        self.timeout = float(timeout)
        self.client = openai.OpenAI(base_url=self.base_url, api_key=self._api_key, timeout=self.timeout,
                                    max_retries=max_retries)
        self._model = model or None
        self._n_supported: bool | None = None      # None: not tried yet
        self._tokenize_ok: bool | None = None
        self._http = None                          # httpx.Client for /tokenize, made on first use
        self.concurrency = max(1, int(self.cfg.extra.get("concurrency", 1) or 1))

    @classmethod
    def from_url(cls, url: str, cfg: RuntimeConfig | None = None) -> "OpenAICompatClient":
        """Parse ``openai:http://127.0.0.1:8000/v1#model-id`` (the ``openai:`` prefix and ``#model`` are optional)."""
        cfg = cfg or RuntimeConfig()
        spec = (url or "").strip()
        if spec.startswith("openai:"):
            spec = spec[len("openai:"):]
        base, _, model = spec.partition("#")
        ex = cfg.extra
        return cls(base, model.strip() or None, api_key=ex.get("api_key"), cfg=cfg,
                   timeout=float(ex.get("timeout", DEFAULT_TIMEOUT)), max_retries=int(ex.get("max_retries", 2)))

    @classmethod
    def from_manifest(cls, manifest, cfg: RuntimeConfig) -> "OpenAICompatClient":
        """Endpoint pseudo-manifests (``endpoint_manifest``) carry the URL as their artifact."""
        if not str(manifest.artifact).startswith(("openai:", "http://", "https://")):
            raise UserError("the 'openai' runtime talks to a running server, not a variant file: "
                            "use openai:http://HOST:PORT/v1#model-id")
        return cls.from_url(str(manifest.artifact), cfg)

    # -- errors -----------------------------------------------------------------------------
    def _call(self, fn, refusable: bool = False, **kw):
        """Run one API call, turning transport and HTTP errors into one-line UserErrors.

        With ``refusable``, a 4xx other than 401/429 raises ``_Refused`` instead, so the
        caller can retry without the parameter the server may have refused.
        """
        o = self._openai
        try:
            return fn(**kw)
        except o.APITimeoutError:
            raise UserError(f"OpenAI-compatible server at {self.base_url} did not answer within "
                            f"{self.timeout:g} s") from None
        except o.APIConnectionError as e:
            cause = e.__cause__ or e
            raise UserError(f"cannot reach an OpenAI-compatible server at {self.base_url}: "
                            f"{_one_line(cause) or type(cause).__name__}") from None
        except o.APIStatusError as e:
            if refusable and 400 <= e.status_code < 500 and e.status_code not in (401, 429):
                raise _Refused() from None
            raise self._status_error(e) from None

    def _status_error(self, e: Any) -> UserError:
        msg = e.message
        body = getattr(e, "body", None)
        if isinstance(body, dict):
            err = body.get("error", body)
            msg = (err.get("message") if isinstance(err, dict) else err) or msg
        if e.status_code == 401:
            return UserError(f"{self.base_url} refused the API key (HTTP 401): {_one_line(msg)}")
        return UserError(f"{self.base_url} answered HTTP {e.status_code}: {_one_line(msg)}")

    @property
    def model(self) -> str:
        """The model id sent with each request; asked from ``GET /models`` when not given."""
        if self._model is None:
            page = self._call(self.client.models.list)
            ids = [m.id for m in getattr(page, "data", []) or []]
            if not ids:
                raise UserError(f"{self.base_url} lists no models; give one as URL#model-id")
            self._model = ids[0]
        return self._model

    # -- generation ---------------------------------------------------------------------------
    def _params(self, r: GenRequest, seed: int) -> dict[str, Any]:
        kw: dict[str, Any] = dict(model=self.model, max_tokens=r.max_tokens, temperature=r.temperature,
                                  top_p=r.top_p, seed=seed)
        if r.stop:
            kw["stop"] = list(r.stop)
        if r.top_k > 0:
            kw["extra_body"] = {"top_k": r.top_k}
        return kw

    def _request(self, r: GenRequest, seed: int, n: int,
                 refusable: bool = False) -> tuple[list[str], list[str], int, int]:
        """One HTTP request: (texts, finish reasons, prompt tokens, completion tokens)."""
        kw = self._params(r, seed)
        if n > 1:
            kw["n"] = n
        if r.messages:
            res = self._call(self.client.chat.completions.create, refusable, messages=messages_of(r), **kw)
            texts = [(c.message.content or "") if c.message else "" for c in res.choices]
        else:
            res = self._call(self.client.completions.create, refusable, prompt=r.prompt, **kw)
            texts = [c.text or "" for c in res.choices]
        reasons = [c.finish_reason or "" for c in res.choices]
        u = res.usage
        return texts, reasons, int(getattr(u, "prompt_tokens", 0) or 0), int(getattr(u, "completion_tokens", 0) or 0)

    def _generate_one(self, r: GenRequest) -> Generation:
        t0 = time.perf_counter()
        n = max(1, int(r.n))
        texts: list[str] = []
        reasons: list[str] = []
        t_in = t_out = 0
        if n > 1 and self._n_supported is not False:
            try:
                texts, reasons, t_in, t_out = self._request(r, r.seed, n, refusable=True)
                texts, reasons = texts[:n], reasons[:n]
                # a server that ignores n answers with one choice: the rest are fetched below
                self._n_supported = len(texts) == n
            except _Refused:
                pass                                   # e.g. quantsuite serve: "only n=1 is supported"
        for s in range(len(texts), n):
            tx, rs, ti, to = self._request(r, r.seed + s, 1)
            if n > 1 and self._n_supported is None:
                self._n_supported = False              # n was refused but one sample works: stop asking
            texts.append(tx[0] if tx else "")
            reasons.append(rs[0] if rs else "")
            t_in = t_in or ti                          # the prompt is counted once per request
            t_out += to
        return Generation(texts, t_in, t_out, time.perf_counter() - t0, reasons)

    def generate(self, reqs: Sequence[GenRequest]) -> list[Generation]:
        if self.concurrency == 1 or len(reqs) <= 1:
            return [self._generate_one(r) for r in reqs]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(reqs))) as pool:
            return list(pool.map(self._generate_one, reqs))

    # -- what an HTTP endpoint cannot do --------------------------------------------------------
    def loglikelihood(self, reqs: Sequence[LLRequest]) -> list[LLResult]:
        raise BackendUnavailable("the 'openai' runtime cannot score log-likelihoods: chat/completion "
                                 "endpoints do not return prompt log-probabilities (use llamacpp or hf)")

    def token_logprobs(self, tokens: Sequence[int]) -> np.ndarray:
        raise BackendUnavailable("the 'openai' runtime cannot compute per-token log-probabilities: "
                                 "OpenAI-compatible endpoints do not return them for the prompt (use llamacpp or hf)")

    def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        """llama-server's ``POST /tokenize`` when the server has it, else BackendUnavailable."""
        if self._tokenize_ok is False:
            raise self._no_tokenize()
        import httpx

        if self._http is None:
            self._http = httpx.Client(timeout=self.timeout,
                                      headers={"Authorization": f"Bearer {self._api_key}"})
        url = _root_of(self.base_url) + "/tokenize"
        try:
            resp = self._http.post(url, json={"content": text, "add_special": bool(add_bos)})
        except httpx.HTTPError as e:
            raise UserError(f"cannot reach an OpenAI-compatible server at {self.base_url}: "
                            f"{_one_line(e) or type(e).__name__}") from None
        tokens = None
        if resp.status_code == 200:
            try:
                data = resp.json()
                tokens = data.get("tokens") if isinstance(data, dict) else None
            except ValueError:
                tokens = None
        if resp.status_code == 401:
            raise UserError(f"{self.base_url} refused the API key (HTTP 401) on /tokenize")
        if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            self._tokenize_ok = False
            raise self._no_tokenize()
        self._tokenize_ok = True
        return tokens

    def _no_tokenize(self) -> BackendUnavailable:
        return BackendUnavailable(f"the server at {self.base_url} offers no /tokenize endpoint "
                                  "(llama-server does; other OpenAI-compatible servers do not)")

    @property
    def bos_id(self) -> int | None:
        return None

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self._http is not None:
                self._http.close()
                self._http = None
