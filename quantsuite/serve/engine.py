"""One llama.cpp model behind one worker thread and a bounded FIFO queue.

Why a single worker thread: a llama.cpp context (KV cache, sampler, batch buffers) is not
thread-safe, and on a CPU box one generation at a time already uses every core, so running
requests in parallel would only thrash the cache. Every request becomes a ``Job`` on a
queue; the worker owns the ``Llama`` object exclusively (no other thread ever touches it, so
no lock can be forgotten), tokenizes, checks the context budget and generates, pushing
events to the job's ``sink``. Waiting jobs beyond ``max_queue`` are refused with 503 rather
than piling up memory. A job can be cancelled (client went away, server shutting down): the
worker checks a flag on every sampled token through llama-cpp-python's stopping criteria.

Events pushed to ``sink`` (tuples): ``("start", n_prompt_tokens)``, ``("delta", text)``
(streaming only), ``("done", text_or_None, finish_reason, usage)``, ``("error", ApiError)``.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from quantsuite.errors import BackendUnavailable, UserError
from quantsuite.serve.protocol import ApiError, GenParams, usage
from quantsuite.serve.template import TemplateInfo, from_metadata

log = logging.getLogger("quantsuite.serve")
Sink = Callable[[tuple], None]


@dataclass
class Job:
    prompt: str | list[int]
    params: GenParams
    stream: bool
    sink: Sink
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancelled.set()

    def emit(self, event: tuple) -> None:
        try:
            self.sink(event)
        except Exception:  # the receiver is gone (closed loop, dropped client): stop work
            self.cancelled.set()


class _Criteria:
    """Stopping criterion that counts sampled tokens and ends generation on cancel."""

    def __init__(self, cancelled: threading.Event):
        self.cancelled, self.calls = cancelled, 0

    def __call__(self, input_ids: Any, logits: Any) -> bool:
        self.calls += 1
        return self.cancelled.is_set()


class Engine:
    """Owns the model; ``submit`` jobs from any thread, results arrive through their sink."""

    def __init__(self, llm: Any, *, model_id: str, n_ctx: int, max_queue: int = 64,
                 chat_template: str | None = None):
        self.llm, self.model_id, self.n_ctx = llm, model_id, n_ctx
        self.max_queue = max_queue
        self.template: TemplateInfo = from_metadata(dict(getattr(llm, "metadata", {}) or {}), self._token_text,
                                                    override=chat_template)
        self.add_bos = _adds_bos(llm)
        bos = llm.token_bos()
        self.bos_text = self._token_text(bos) if bos is not None and bos >= 0 else ""
        self.n_vocab = llm.n_vocab()
        self._q: queue.Queue[Job | None] = queue.Queue()
        self._waiting = 0
        self._count_lock = threading.Lock()
        self._current: Job | None = None
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    # -- construction ------------------------------------------------------------------
    @classmethod
    def load(cls, gguf: str | Path, *, model_id: str, n_ctx: int, n_threads: int, n_threads_batch: int,
             n_batch: int, max_queue: int = 64, chat_template: str | None = None) -> "Engine":
        try:
            from llama_cpp import Llama
        except ImportError:
            raise BackendUnavailable("llama-cpp-python is not installed (pip install quantsuite[gguf])") from None
        try:
            llm = Llama(model_path=str(gguf), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads_batch,
                        n_batch=n_batch, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise UserError(f"llama.cpp cannot load {Path(gguf).name}: {e}") from None
        return cls(llm, model_id=model_id, n_ctx=n_ctx, max_queue=max_queue, chat_template=chat_template)

    def _token_text(self, tid: int) -> str:
        try:
            return self.llm.detokenize([tid], special=True).decode("utf-8", errors="replace")
        except Exception:
            return ""

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> "Engine":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="quantsuite-llm", daemon=True)
            self._thread.start()
        return self

    def begin_shutdown(self) -> None:
        """Refuse new jobs, fail the waiting ones with 503, cut the running one short.

        Called as soon as a shutdown signal arrives, so open streams end at once with an
        in-band error instead of holding the server for its whole grace period. Safe to
        call from any thread and more than once.
        """
        self._closing.set()
        while True:
            try:
                job = self._q.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._q.put(None)
                break
            with self._count_lock:
                self._waiting -= 1
            job.emit(("error", _shutting_down()))
        cur = self._current
        if cur is not None:
            cur.cancel()

    def stop(self, timeout: float = 10.0) -> None:
        """``begin_shutdown``, then wait for the worker and free the model."""
        self.begin_shutdown()
        self._q.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("generation thread did not stop within %.0f s", timeout)
                return  # never free a model that a thread may still be using
        close = getattr(self.llm, "close", None)
        if callable(close):
            close()

    @property
    def waiting(self) -> int:
        return self._waiting

    # -- submitting ------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        if self._closing.is_set():
            raise _shutting_down()
        with self._count_lock:
            if self._waiting >= self.max_queue:
                raise ApiError(503, f"server busy: {self._waiting} requests are already waiting",
                               code="server_busy")
            self._waiting += 1
        self._q.put(job)

    def run_sync(self, prompt: str | list[int], params: GenParams, stream: bool = True) -> Iterator[tuple]:
        """Submit a job and yield its events in this thread (terminal chat, scripts)."""
        events: queue.Queue[tuple] = queue.Queue()
        job = Job(prompt, params, stream, events.put)
        self.submit(job)
        try:
            while True:
                ev = events.get()
                yield ev
                if ev[0] in ("done", "error"):
                    return
        finally:
            job.cancel()

    # -- the worker ------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            with self._count_lock:
                self._waiting -= 1
            self._current = job          # set before the checks: begin_shutdown() cancels it
            try:
                if job.cancelled.is_set() and not self._closing.is_set():
                    continue             # the client went away while waiting
                if self._closing.is_set():
                    raise _shutting_down()
                self._process(job)
            except ApiError as e:
                job.emit(("error", e))
            except Exception as e:  # a bug or llama.cpp failure: report it, keep serving
                log.exception("generation failed")
                job.emit(("error", ApiError(500, f"generation failed: {type(e).__name__}: {e}")))
            finally:
                self._current = None

    def tokenize(self, prompt: str) -> list[int]:
        add_bos = self.add_bos and not (self.bos_text and prompt.startswith(self.bos_text))
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)

    def _process(self, job: Job) -> None:
        if isinstance(job.prompt, str):
            tokens = self.tokenize(job.prompt)
        else:
            tokens = list(job.prompt)
            if any(t >= self.n_vocab for t in tokens):
                raise ApiError(400, f"prompt has token ids outside the vocabulary (size {self.n_vocab})",
                               param="prompt")
        n_in = len(tokens)
        if n_in == 0:
            raise ApiError(400, "the prompt is empty", param="prompt")
        if n_in >= self.n_ctx:
            raise ApiError(400, f"the prompt has {n_in} tokens; this server's context is {self.n_ctx} tokens",
                           param="messages", code="context_length_exceeded")
        p = job.params
        crit = _Criteria(job.cancelled)
        kw = dict(max_tokens=min(p.max_tokens, self.n_ctx - n_in), temperature=p.temperature, top_p=p.top_p,
                  top_k=p.top_k, min_p=p.min_p, stop=list(p.stop), seed=p.seed,
                  presence_penalty=p.presence_penalty, frequency_penalty=p.frequency_penalty,
                  repeat_penalty=p.repeat_penalty, logit_bias=p.logit_bias, stopping_criteria=crit)
        job.emit(("start", n_in))
        if not job.stream:
            res = self.llm.create_completion(tokens, stream=False, **kw)
            if self._closing.is_set() and job.cancelled.is_set():
                raise _shutting_down()
            ch = res["choices"][0]
            job.emit(("done", ch["text"], ch.get("finish_reason") or "stop",
                      usage(n_in, res["usage"]["completion_tokens"])))
            return
        finish = None
        for chunk in self.llm.create_completion(tokens, stream=True, **kw):
            ch = chunk["choices"][0]
            if ch["text"]:
                job.emit(("delta", ch["text"]))
            finish = ch.get("finish_reason") or finish
        if self._closing.is_set() and job.cancelled.is_set():
            raise _shutting_down()       # do not pass a cut-off answer as a normal "stop"
        finish = finish or "stop"
        # the criterion runs once per sampled token plus once after the loop; an end-of-
        # generation token is sampled but not returned (exact except for stop-string endings)
        n_out = max(0, crit.calls - 1 - (1 if finish == "stop" else 0))
        job.emit(("done", None, finish, usage(n_in, n_out)))


def _shutting_down() -> ApiError:
    return ApiError(503, "server is shutting down", code="shutting_down")


def _adds_bos(llm: Any) -> bool:
    model = getattr(llm, "_model", None)
    fn = getattr(model, "add_bos_token", None)
    if callable(fn):
        try:
            return bool(fn())
        except Exception:
            pass
    v = (getattr(llm, "metadata", {}) or {}).get("tokenizer.ggml.add_bos_token", "false")
    return str(v).lower() in ("true", "1")
