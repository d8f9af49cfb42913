"""The HTTP server: a thin FastAPI app speaking the OpenAI API in front of ``Engine``.

Why our own app rather than ``llama_cpp.server``: we decide what is safe. The server binds
127.0.0.1 unless told otherwise; with an API key set, every request except ``GET /health``
needs ``Authorization: Bearer <key>`` (401 otherwise; /health stays open so process
supervisors and load balancers can probe liveness, and it reveals nothing but "ok");
bodies over ``max_body_bytes`` are refused with 413 before they are read in full;
``max_tokens`` is capped; chat templates are rendered in a Jinja sandbox; every error is an
OpenAI-style JSON body. No CORS headers are sent, so web pages on other origins cannot call
the API from a browser.

Endpoints: ``GET /health``, ``GET /v1/models``, ``GET /v1/models/{id}``,
``POST /v1/chat/completions`` and ``POST /v1/completions`` (both with SSE streaming).
"""

# no "from __future__ import annotations": FastAPI must see the real Request class in route
# signatures, and it is imported inside create_app to keep module import light.

import hmac
import json
import logging
import time
from typing import Any, AsyncIterator

from quantsuite.errors import UserError
from quantsuite.serve.config import ServeConfig, is_loopback, resolve_target
from quantsuite.serve.engine import Engine, Job
from quantsuite.serve.protocol import (ApiError, chat_chunk, chat_response, completion_chunk, completion_response,
                                       model_card, new_id, parse_chat, parse_completion, parse_json, sse,
                                       usage_chunk)
from quantsuite.serve.template import TemplateInputError, TemplateRejected

log = logging.getLogger("quantsuite.serve")
OPEN_PATHS = {"/health"}


class Guard:
    """ASGI middleware run before routing: API key check, then the Content-Length limit.

    Pure ASGI (not ``BaseHTTPMiddleware``) so streaming responses pass through untouched.
    Bodies sent without Content-Length (chunked) are counted as they are read instead.
    """

    def __init__(self, app: Any, api_key: str | None, max_body: int):
        self.app, self.api_key, self.max_body = app, api_key, max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.api_key and scope.get("path") not in OPEN_PATHS:
            auth = headers.get(b"authorization", b"")
            given = auth[7:].strip() if auth[:7].lower() == b"bearer " else b""
            if not hmac.compare_digest(given, self.api_key.encode()):   # constant time
                return await _send_json(send, ApiError(401, "missing or invalid API key (send 'Authorization: "
                                                       "Bearer <key>')", type="authentication_error",
                                                       code="invalid_api_key"))
        cl = headers.get(b"content-length")
        if cl is not None:
            try:
                too_big = int(cl) > self.max_body
            except ValueError:
                return await _send_json(send, ApiError(400, "invalid Content-Length header"))
            if too_big:
                return await _send_json(send, _too_large(self.max_body))
        return await self.app(scope, receive, send)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body is larger than this server's limit of {limit} bytes",
                    code="request_too_large")


async def _send_json(send: Any, err: ApiError) -> None:
    body = json.dumps(err.body()).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if err.status == 401:
        hdrs.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": err.status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


def create_app(engine: Engine, cfg: ServeConfig, *, manage_engine: bool = True):
    """The ASGI app; ``cfg`` must be ``resolved()``. The engine is started/stopped with the app."""
    import asyncio
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    created = int(time.time())
    limit = int(cfg.max_tokens_limit or engine.n_ctx)

    @asynccontextmanager
    async def lifespan(_app):
        if manage_engine:
            engine.start()
        try:
            yield
        finally:
            if manage_engine:
                await run_in_threadpool(engine.stop, max(cfg.shutdown_timeout, 1.0))
                log.info("model unloaded, shutdown complete")

    app = FastAPI(title="quantsuite", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)

    def err(e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(ApiError)
    async def _api_error(_r: Request, e: ApiError):
        return err(e)

    @app.exception_handler(HTTPException)
    async def _http_error(_r: Request, e: HTTPException):
        msg = "not found" if e.status_code == 404 else "method not allowed" if e.status_code == 405 else str(e.detail)
        return err(ApiError(e.status_code, msg, code="not_found" if e.status_code == 404 else None))

    @app.exception_handler(Exception)
    async def _crash(_r: Request, e: Exception):
        log.exception("unhandled error")
        return err(ApiError(500, "internal server error"))

    async def read_json(request: Request) -> dict:
        chunks, size = [], 0
        async for c in request.stream():
            size += len(c)
            if size > cfg.max_body_bytes:
                raise _too_large(cfg.max_body_bytes)
            chunks.append(c)
        return parse_json(b"".join(chunks))

    def check_model(name: str | None) -> None:
        if name is not None and name != engine.model_id:
            raise ApiError(404, f"model '{name}' is not served here (available: {engine.model_id})",
                           param="model", code="model_not_found")

    async def events(prompt: str | list[int], params: Any, stream: bool, request: Any = None) -> AsyncIterator[tuple]:
        """Submit a job and yield its events; cancels the job if the consumer stops early.

        With ``request`` (non-streaming calls), a watcher cancels the job when the client
        disconnects, so abandoned requests do not keep the queue busy. Streaming responses
        get the same from Starlette, which stops the body iterator on disconnect.
        """
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[tuple] = asyncio.Queue()

        def sink(ev: tuple) -> None:
            loop.call_soon_threadsafe(q.put_nowait, ev)

        job = Job(prompt, params, stream, sink)
        engine.submit(job)

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            job.cancel()
            q.put_nowait(("error", ApiError(499, "client closed the request", code="client_closed")))

        watcher = asyncio.create_task(watch()) if request is not None else None
        try:
            while True:
                ev = await q.get()
                yield ev
                if ev[0] in ("done", "error"):
                    return
        finally:
            job.cancel()
            if watcher is not None:
                watcher.cancel()

    async def first(gen: AsyncIterator[tuple]) -> tuple:
        ev = await gen.__anext__()
        if ev[0] == "error":
            await gen.aclose()
            raise ev[1]
        return ev

    async def respond(request, prompt, params, stream: bool, rid: str, include_usage: bool, chat: bool,
                      prefix: str = ""):
        gen = events(prompt, params, stream, None if stream else request)
        await first(gen)                    # errors before any output become a plain 4xx/5xx
        if not stream:
            ev = await gen.__anext__()
            await gen.aclose()
            if ev[0] == "error":
                raise ev[1]
            _, text, finish, use = ev
            build = chat_response if chat else completion_response
            return Response(json.dumps(build(rid, engine.model_id, prefix + text, finish, use), ensure_ascii=False),
                            media_type="application/json")

        created = int(time.time())
        obj = "chat.completion.chunk" if chat else "text_completion"

        async def body() -> AsyncIterator[bytes]:
            try:
                if chat:
                    yield sse(chat_chunk(rid, engine.model_id, created, {"role": "assistant", "content": ""}))
                elif prefix:
                    yield sse(completion_chunk(rid, engine.model_id, created, prefix))
                async for ev in gen:
                    if ev[0] == "delta":
                        yield sse(chat_chunk(rid, engine.model_id, created, {"content": ev[1]}) if chat
                                  else completion_chunk(rid, engine.model_id, created, ev[1]))
                    elif ev[0] == "done":
                        _, _, finish, use = ev
                        yield sse(chat_chunk(rid, engine.model_id, created, {}, finish) if chat
                                  else completion_chunk(rid, engine.model_id, created, "", finish))
                        if include_usage:
                            yield sse(usage_chunk(rid, engine.model_id, created, obj, use))
                    elif ev[0] == "error":  # headers are sent: report in-band, as OpenAI does
                        yield sse(ev[1].body())
                yield sse("[DONE]")
            finally:
                await gen.aclose()

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [model_card(engine.model_id, created)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        check_model(model_id)
        return model_card(engine.model_id, created)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        req = parse_chat(await read_json(request), limit)
        check_model(req.model)
        try:
            prompt = await run_in_threadpool(engine.template.template.render, req.messages)
        except TemplateInputError as e:
            raise ApiError(400, str(e), param="messages", code="chat_template_error") from None
        except TemplateRejected as e:
            log.error("%s", e)
            raise ApiError(500, "the model's chat template was rejected by the sandbox",
                           code="chat_template_rejected") from None
        params = req.params
        params.stop = list(dict.fromkeys(params.stop + engine.template.stops))
        return await respond(request, prompt, params, req.stream, new_id("chatcmpl"), req.include_usage, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        req = parse_completion(await read_json(request), limit)
        check_model(req.model)
        if req.echo and not isinstance(req.prompt, str):
            raise ApiError(400, "'echo' needs a text prompt", param="echo", code="unsupported_parameter")
        prefix = req.prompt if req.echo else ""
        return await respond(request, req.prompt, req.params, req.stream, new_id("cmpl"), req.include_usage, chat=False,
                             prefix=prefix)

    return app


def build(cfg: ServeConfig) -> tuple[Engine, ServeConfig]:
    """Resolve the target, fill machine defaults from the GGUF header, load the model."""
    from pathlib import Path

    from quantsuite.ggufmeta import read_metadata

    target = resolve_target(cfg.model, cfg.model_id)
    meta = read_metadata(target.gguf)
    arch = meta.get("general.architecture", "")
    rcfg = cfg.resolved(int(meta.get(f"{arch}.context_length", 0) or 0))
    tpl = None
    if rcfg.chat_template:
        p = Path(rcfg.chat_template)
        if not p.is_file():
            raise UserError(f"chat template file not found: {p}")
        tpl = p.read_text()
    engine = Engine.load(target.gguf, model_id=target.model_id, n_ctx=rcfg.n_ctx, n_threads=rcfg.n_threads,
                         n_threads_batch=rcfg.n_threads_batch, n_batch=rcfg.n_batch, max_queue=rcfg.max_queue,
                         chat_template=tpl)
    return engine, rcfg


def run_server(config: ServeConfig) -> None:
    """Load the model and serve until SIGINT/SIGTERM (uvicorn handles both: stop accepting,
    let in-flight requests finish for ``shutdown_timeout`` s, then unload the model)."""
    try:
        import uvicorn
    except ImportError:
        raise UserError("serving needs the [serve] extra: pip install 'quantsuite[serve]'") from None
    logging.basicConfig(level=getattr(logging, config.log_level.upper(), logging.INFO),
                        format="%(levelname)s:     %(message)s")
    _check_port(config.host, config.port)
    engine, cfg = build(config)
    if not is_loopback(cfg.host) and not cfg.api_key:
        log.warning("listening on %s without an API key: anyone who can reach this port can use the model "
                    "(set --api-key or %s)", cfg.host, "QUANTSUITE_API_KEY")
    app = Guard(create_app(engine, cfg), cfg.api_key, cfg.max_body_bytes)
    log.info("serving %s (%s) on http://%s:%d/v1  ctx=%d threads=%d/%d batch=%d auth=%s", engine.model_id,
             engine.template.template.family or "custom template", cfg.host, cfg.port, cfg.n_ctx, cfg.n_threads,
             cfg.n_threads_batch, cfg.n_batch, "on" if cfg.api_key else "off")
    ucfg = uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level.lower(),
                          access_log=cfg.access_log, timeout_graceful_shutdown=cfg.shutdown_timeout,
                          limit_concurrency=cfg.max_queue + 64, server_header=False)
    server = _Server(ucfg, engine)
    # uvicorn restores the previous SIGINT/SIGTERM handlers after its graceful shutdown and
    # re-raises the signal; with Python's defaults that is a KeyboardInterrupt traceback or
    # death by SIGTERM. Installing a recorder first makes a signalled shutdown exit normally.
    import signal
    import threading

    caught: list[int] = []
    prev = {}
    if threading.current_thread() is threading.main_thread():
        prev = {s: signal.signal(s, lambda sig, _f: caught.append(sig)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    except SystemExit as e:  # uvicorn exits when it cannot bind after all (race with another process)
        raise UserError(f"cannot listen on {cfg.host}:{cfg.port} (exit {e.code}; see the error above)") from None
    finally:
        for s, h in prev.items():
            signal.signal(s, h)
    if caught:
        log.info("stopped by %s", signal.Signals(caught[0]).name)


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, telling the engine the moment a shutdown signal arrives."""

        def __init__(self, config, engine: Engine):
            super().__init__(config)
            self.engine = engine

        def handle_exit(self, sig: int, frame: Any) -> None:
            # from a thread: the signal handler may have interrupted code holding engine locks
            import threading

            threading.Thread(target=self.engine.begin_shutdown, daemon=True).start()
            super().handle_exit(sig, frame)

    return Server


def _Server(config, engine: Engine):
    return _server_class()(config, engine)


def _check_port(host: str, port: int) -> None:
    """Fail with one clear line before loading anything if the address cannot be bound."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UserError(f"cannot resolve host {host!r}: {e.strerror}") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as uvicorn does
        try:
            s.bind(addr)
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None
