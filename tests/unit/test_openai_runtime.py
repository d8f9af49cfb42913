"""The 'openai' runtime against our real server app (fake model) on a loopback port."""

from __future__ import annotations

import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")
from fastapi import Request  # noqa: E402  (module level: the stub's route annotations must resolve)

from evalsuite.runtimes import RUNTIMES, RuntimeConfig  # noqa: E402
from evalsuite.runtimes.openai_compat import OpenAICompatClient  # noqa: E402
from evalsuite.types import GenRequest, InferenceClient, LLRequest  # noqa: E402
from quantsuite.errors import BackendUnavailable, UserError  # noqa: E402
from quantsuite.serve.app import Guard, create_app  # noqa: E402
from quantsuite.serve.config import ServeConfig  # noqa: E402
from quantsuite.serve.engine import Engine  # noqa: E402
from quantsuite.serve.fakellm import FakeLlama  # noqa: E402

MODEL = "fake/model"
HOST = "127.0.0.1"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv("QUANTSUITE_API_KEY", raising=False)


class LiveServer:
    """uvicorn serving our app in a thread, on a socket bound to a free loopback port."""

    def __init__(self, llm: FakeLlama, api_key: str | None = None):
        cfg = ServeConfig(model="unused", n_ctx=llm.n_ctx(), api_key=api_key or "").resolved()
        engine = Engine(llm, model_id=MODEL, n_ctx=cfg.n_ctx, max_queue=cfg.max_queue)
        app = Guard(create_app(engine, cfg), cfg.api_key, cfg.max_body_bytes)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}/v1"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                                    timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 5
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def served():
    llm = FakeLlama()
    with LiveServer(llm) as srv:
        yield srv, llm


def open_client(srv: LiveServer, model: str | None = MODEL, **kw) -> OpenAICompatClient:
    return OpenAICompatClient(srv.url, model, cfg=RuntimeConfig(), timeout=5, max_retries=0, **kw)


def test_registered_and_protocol():
    assert RUNTIMES.get("openai") is OpenAICompatClient
    c = OpenAICompatClient(f"http://{HOST}:9/v1", MODEL, max_retries=0)
    assert isinstance(c, InferenceClient) and c.bos_id is None
    c.close()


def test_chat_generation_and_params(served):
    srv, llm = served
    llm.enqueue("Hi!")
    c = open_client(srv)
    [g] = c.generate([GenRequest.chat("hi", system="be brief", max_tokens=20, temperature=0.5, top_p=0.9,
                                      top_k=7, stop=("\n\n",), seed=42)])
    c.close()
    assert g.texts == ["Hi!"] and g.finish_reasons == ["stop"]
    assert g.tokens_in == len(llm.calls[0]["prompt"]) and g.tokens_out == 3 and g.seconds > 0
    call = llm.calls[0]
    prompt = llm.detokenize(call["prompt"], special=True).decode()
    assert prompt == ("<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                      "<|im_start|>assistant\n")                       # the chat endpoint, templated
    assert call["max_tokens"] == 20 and call["temperature"] == 0.5 and call["top_p"] == 0.9
    assert call["top_k"] == 7 and call["seed"] == 42 and "\n\n" in call["stop"]


def test_completion_generation_raw_prompt_and_length(served):
    srv, llm = served
    llm.enqueue("0123456789")
    c = open_client(srv)
    [g] = c.generate([GenRequest(prompt="Count:", max_tokens=4)])
    c.close()
    assert g.texts == ["0123"] and g.finish_reasons == ["length"]
    assert llm.detokenize(llm.calls[0]["prompt"]).decode() == "Count:"   # raw: no template
    assert g.tokens_in == len("Count:") and g.tokens_out == 4
    assert llm.calls[0]["top_k"] == 40        # top_k=0 is not sent: the server's default applies


def test_n_samples_fall_back_to_one_request_each(served):
    srv, llm = served
    llm.enqueue("a", "bb", "ccc", "dd", "e")
    c = open_client(srv)
    g1, g2 = c.generate([GenRequest(prompt="Q:", n=3, seed=10, temperature=0.8),
                         GenRequest.chat("x", n=2, seed=5, temperature=0.8)])
    c.close()
    assert g1.texts == ["a", "bb", "ccc"] and g2.texts == ["dd", "e"]
    assert [k["seed"] for k in llm.calls] == [10, 11, 12, 5, 6]           # seed + s per sample
    assert g1.tokens_in == len("Q:")                                       # prompt counted once
    assert g1.tokens_out == 1 + 2 + 3 and g2.tokens_out == 2 + 1
    assert g1.finish_reasons == ["stop"] * 3
    assert c._n_supported is False    # the refused n=3 is remembered: the second request did not retry it


def test_model_is_discovered_when_not_given(served):
    srv, llm = served
    c = OpenAICompatClient.from_url(f"openai:{srv.url}", RuntimeConfig(extra={"max_retries": 0, "timeout": 5}))
    assert c.model == MODEL
    assert c.generate([GenRequest(prompt="p", max_tokens=2)])[0].texts == ["He"]
    c.close()


def test_scoring_and_tokenize_are_unavailable(served):
    srv, _ = served
    c = open_client(srv)
    with pytest.raises(BackendUnavailable, match="log-prob"):
        c.loglikelihood([LLRequest("a", " b")])
    with pytest.raises(BackendUnavailable):
        c.token_logprobs([1, 2, 3])
    with pytest.raises(BackendUnavailable, match="tokenize"):   # quantsuite serve has no /tokenize
        c.tokenize("hello")
    c.close()


def test_api_key_is_sent_and_a_wrong_one_is_a_user_error():
    llm = FakeLlama()
    with LiveServer(llm, api_key="s3cret") as srv:
        ok = open_client(srv, api_key="s3cret")
        assert ok.generate([GenRequest(prompt="p", max_tokens=3)])[0].texts == ["Hel"]
        ok.close()
        bad = open_client(srv, api_key="wrong")
        with pytest.raises(UserError, match="401") as e:
            bad.generate([GenRequest(prompt="p", n=2)])    # not mistaken for a refused n
        assert "\n" not in str(e.value)
        bad.close()


def test_unknown_model_is_a_user_error(served):
    srv, _ = served
    c = open_client(srv, model="other/model")
    with pytest.raises(UserError, match="404.*not served"):
        c.generate([GenRequest.chat("hi")])
    c.close()


def test_unreachable_server_is_one_line_naming_the_url():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()                         # nothing listens there now
    c = OpenAICompatClient.from_url(f"openai:http://{HOST}:{port}/v1#m",
                                    RuntimeConfig(extra={"max_retries": 0, "timeout": 2}))
    t0 = time.monotonic()
    with pytest.raises(UserError) as e:
        c.generate([GenRequest.chat("hi")])
    assert time.monotonic() - t0 < 3
    msg = str(e.value)
    assert f"http://{HOST}:{port}/v1" in msg and "\n" not in msg
    c.close()


@pytest.mark.parametrize("url", ["openai:", "openai:ftp://127.0.0.1/v1#m", "127.0.0.1:8000#m", "openai:http://#m"])
def test_bad_urls_are_user_errors(url):
    with pytest.raises(UserError):
        OpenAICompatClient.from_url(url, RuntimeConfig())


def test_from_url_parses_model_and_defaults_v1():
    c = OpenAICompatClient.from_url("openai:http://127.0.0.1:8000#org/model-Q4_K_M", RuntimeConfig())
    assert c.base_url == "http://127.0.0.1:8000/v1" and c.model == "org/model-Q4_K_M"
    c.close()
    c = OpenAICompatClient.from_url("http://127.0.0.1:8000/v1/#m", RuntimeConfig())
    assert c.base_url == "http://127.0.0.1:8000/v1" and c.model == "m"
    c.close()


def llama_server_like():
    """A stub with what llama-server/vLLM add over quantsuite serve: n > 1 and POST /tokenize."""
    from fastapi import FastAPI

    app, seen = FastAPI(), []

    @app.post("/tokenize")
    async def tokenize(request: Request):
        d = await request.json()
        return {"tokens": ([1] if d.get("add_special") else []) + [ord(ch) for ch in d["content"]]}

    @app.post("/v1/completions")
    async def completions(request: Request):
        d = await request.json()
        seen.append(d)
        n = d.get("n", 1)
        return {"id": "c", "object": "text_completion", "created": 0, "model": d["model"],
                "choices": [{"index": i, "text": f"s{i}", "finish_reason": "stop", "logprobs": None}
                            for i in range(n)],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2 * n, "total_tokens": 5 + 2 * n}}

    return app, seen


def test_native_n_and_tokenize_on_a_llama_server_like_endpoint():
    app, seen = llama_server_like()
    srv = LiveServer(FakeLlama())
    srv.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    srv.thread = threading.Thread(target=srv.server.run, kwargs={"sockets": [srv.sock]}, daemon=True)
    with srv:
        c = open_client(srv, model="m")
        [g] = c.generate([GenRequest(prompt="p", n=3, seed=7, top_k=5)])
        assert g.texts == ["s0", "s1", "s2"] and g.tokens_in == 5 and g.tokens_out == 6
        assert len(seen) == 1 and seen[0]["n"] == 3 and seen[0]["seed"] == 7 and seen[0]["top_k"] == 5
        assert c._n_supported is True
        assert c.tokenize("hi") == [ord("h"), ord("i")]
        assert c.tokenize("hi", add_bos=True) == [1, ord("h"), ord("i")]
        c.close()
