"""The HTTP layer with a fake model: wire format, safety checks, errors, queueing, shutdown."""

from __future__ import annotations

import json
import threading
import time

import pytest

pytest.importorskip("fastapi")
from starlette.testclient import TestClient  # noqa: E402

from quantsuite.serve.app import Guard, create_app  # noqa: E402
from quantsuite.serve.config import ServeConfig  # noqa: E402
from quantsuite.serve.engine import Engine, Job  # noqa: E402
from quantsuite.serve.fakellm import FakeLlama  # noqa: E402
from quantsuite.serve.protocol import ApiError, GenParams  # noqa: E402

MODEL = "fake/model"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv("QUANTSUITE_API_KEY", raising=False)


def client(llm: FakeLlama | None = None, **kw) -> tuple[TestClient, FakeLlama, Engine]:
    llm = llm or FakeLlama()
    cfg = ServeConfig(model="unused", n_ctx=llm.n_ctx(), **kw).resolved()
    engine = Engine(llm, model_id=MODEL, n_ctx=cfg.n_ctx, max_queue=cfg.max_queue)
    return TestClient(Guard(create_app(engine, cfg), cfg.api_key, cfg.max_body_bytes)), llm, engine


def sse_events(resp) -> list:
    out = []
    for line in resp.iter_lines():
        if line.startswith("data: "):
            data = line[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_chat_completion_uses_sandboxed_template_and_stops():
    c, llm, _ = client(FakeLlama().enqueue("Hi!"))
    with c:
        r = c.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hi!"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": len(llm.calls[0]["prompt"]), "completion_tokens": 3,
                             "total_tokens": len(llm.calls[0]["prompt"]) + 3}
    prompt = llm.detokenize(llm.calls[0]["prompt"], special=True).decode()
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert "<|im_end|>" in llm.calls[0]["stop"]          # the family's turn end is a stop string


def test_chat_streaming_sse_format_and_usage():
    c, _, _ = client(FakeLlama().enqueue("abc"))
    with c, c.stream("POST", "/v1/chat/completions",
                     json=dict(CHAT, stream=True, stream_options={"include_usage": True})) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        ev = sse_events(r)
    assert ev[-1] == "[DONE]"
    assert ev[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in ev[1:-2] if e["choices"])
    assert text == "abc"
    assert ev[-3]["choices"][0]["finish_reason"] == "stop"
    assert ev[-2]["choices"] == [] and ev[-2]["usage"]["completion_tokens"] == 3
    assert all(e["object"] == "chat.completion.chunk" for e in ev[:-1])


def test_completions_plain_stream_echo_and_length():
    c, llm, _ = client(FakeLlama().enqueue("0123456789", "xyz"))
    with c:
        r = c.post("/v1/completions", json={"model": MODEL, "prompt": "Count:", "max_tokens": 4, "echo": True})
        assert r.status_code == 200
        ch = r.json()["choices"][0]
        assert ch["text"] == "Count:0123" and ch["finish_reason"] == "length"
        with c.stream("POST", "/v1/completions", json={"prompt": "p", "stream": True, "max_tokens": 9}) as s:
            ev = sse_events(s)
    assert "".join(e["choices"][0]["text"] for e in ev[:-1]) == "xyz" and ev[-1] == "[DONE]"
    assert all(e["object"] == "text_completion" for e in ev[:-1])


def test_models_and_health():
    c, _, _ = client()
    with c:
        assert c.get("/health").json() == {"status": "ok"}
        data = c.get("/v1/models").json()
        assert data["object"] == "list" and [m["id"] for m in data["data"]] == [MODEL]
        assert c.get(f"/v1/models/{MODEL}").json()["id"] == MODEL
        r = c.get("/v1/models/other")
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_api_key_required_everywhere_but_health():
    c, llm, _ = client(api_key="s3cret")
    with c:
        assert c.get("/health").status_code == 200
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"),
                             ("GET", "/nope")):
            r = c.request(method, path, json=CHAT)
            assert r.status_code == 401, path
            assert r.json()["error"]["type"] == "authentication_error"
        assert c.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Basic s3cret"}).status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert llm.calls == []


def test_api_key_from_environment(monkeypatch):
    monkeypatch.setenv("QUANTSUITE_API_KEY", "envkey")
    c, _, _ = client()
    with c:
        assert c.get("/v1/models").status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Bearer envkey"}).status_code == 200


def test_body_limit_413_declared_and_chunked():
    c, llm, _ = client(max_body_bytes=1000)
    big = dict(CHAT, messages=[{"role": "user", "content": "x" * 2000}])
    with c:
        r = c.post("/v1/chat/completions", json=big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

        def chunks():
            for _ in range(5):
                yield b"x" * 400
        r = c.post("/v1/chat/completions", content=chunks())   # no Content-Length: counted while reading
        assert r.status_code == 413
    assert llm.calls == []


@pytest.mark.parametrize("body, status, param", [
    (b"{not json", 400, None),
    (b"[1, 2]", 400, None),
    (json.dumps({"messages": []}).encode(), 400, "messages"),
    (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(), 400, "messages[0].role"),
    (json.dumps(dict(CHAT, temperature=5)).encode(), 400, "temperature"),
    (json.dumps(dict(CHAT, max_tokens=0)).encode(), 400, "max_tokens"),
    (json.dumps(dict(CHAT, max_tokens=10 ** 6)).encode(), 400, "max_tokens"),
    (json.dumps(dict(CHAT, n=2)).encode(), 400, "n"),
    (json.dumps(dict(CHAT, tools=[{"type": "function"}])).encode(), 400, "tools"),
    (json.dumps(dict(CHAT, stop=[""])).encode(), 400, "stop"),
    (json.dumps(dict(CHAT, model="gpt-4")).encode(), 404, "model"),
])
def test_bad_requests_get_openai_style_errors(body, status, param):
    c, llm, _ = client()
    with c:
        r = c.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"] == "invalid_request_error" and err["param"] == param
    assert llm.calls == []


def test_unknown_route_and_method_are_json():
    c, _, _ = client()
    with c:
        r = c.get("/v2/whatever")
        assert r.status_code == 404 and "error" in r.json()
        r = c.get("/v1/chat/completions")
        assert r.status_code == 405 and "error" in r.json()


def test_prompt_longer_than_context_is_400():
    c, _, _ = client(FakeLlama(n_ctx=64))
    with c:
        r = c.post("/v1/completions", json={"prompt": "y" * 100, "max_tokens": 4})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


def test_max_tokens_is_clamped_to_remaining_context():
    c, llm, _ = client(FakeLlama(n_ctx=64))
    with c:
        r = c.post("/v1/completions", json={"prompt": "y" * 60, "max_tokens": 32})
    assert r.status_code == 200 and llm.calls[0]["max_tokens"] == 4


def test_template_refusal_is_400_and_sandbox_escape_is_500(tmp_path):
    strict = FakeLlama(chat_template="{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}"
                                     "{% endif %}{{ messages[0]['content'] }}")
    c, _, _ = client(strict)
    with c:
        r = c.post("/v1/chat/completions", json=dict(CHAT, messages=[{"role": "assistant", "content": "x"}]))
    assert r.status_code == 400 and "user first" in r.json()["error"]["message"]

    marker = tmp_path / "pwned"
    sneaky = FakeLlama(chat_template="{% if messages[-1]['content'] == 'go' %}"
                                     "{{ cycler.__init__.__globals__.os.popen('touch M').read() }}{% endif %}ok"
                       .replace("M", str(marker)))
    c, llm, _ = client(sneaky)
    with c:
        r = c.post("/v1/chat/completions", json=dict(CHAT, messages=[{"role": "user", "content": "go"}]))
    assert r.status_code == 500 and r.json()["error"]["code"] == "chat_template_rejected"
    assert not marker.exists() and llm.calls == []


# -- engine: queueing, cancellation, shutdown ---------------------------------------------------
def test_concurrent_jobs_are_serialised_not_crashed():
    llm = FakeLlama(delay=0.001, default_reply="abcdefgh")
    engine = Engine(llm, model_id=MODEL, n_ctx=256, max_queue=64).start()
    results, errors = [], []

    def worker():
        for _ in range(5):
            evs = list(engine.run_sync("hello", GenParams(max_tokens=8), stream=True))
            (errors if evs[-1][0] == "error" else results).append("".join(e[1] for e in evs if e[0] == "delta"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    engine.stop()
    assert errors == [] and results == ["abcdefgh"] * 40
    assert llm.max_active == 1          # never two generations on one context
    assert llm.closed


def test_queue_limit_gives_503_and_stop_fails_waiting_jobs():
    engine = Engine(FakeLlama(), model_id=MODEL, n_ctx=256, max_queue=2)   # not started: jobs wait
    got = []
    jobs = [Job("p", GenParams(max_tokens=4), False, got.append) for _ in range(3)]
    engine.submit(jobs[0])
    engine.submit(jobs[1])
    with pytest.raises(ApiError) as e:
        engine.submit(jobs[2])
    assert e.value.status == 503 and e.value.code == "server_busy"
    engine.stop(timeout=1)
    assert [ev[0] for ev in got] == ["error", "error"] and got[0][1].status == 503
    with pytest.raises(ApiError, match="shutting down"):
        engine.submit(jobs[2])


def test_cancelled_job_stops_generating():
    llm = FakeLlama(delay=0.01, default_reply="x" * 500)
    engine = Engine(llm, model_id=MODEL, n_ctx=1024).start()
    got: list = []
    job = Job("p", GenParams(max_tokens=500), True, got.append)
    engine.submit(job)
    time.sleep(0.1)
    job.cancel()
    t0 = time.time()
    while not got or got[-1][0] != "done":
        time.sleep(0.01)
        assert time.time() - t0 < 5
    engine.stop()
    assert sum(1 for e in got if e[0] == "delta") < 100


def test_app_shutdown_unloads_model():
    c, llm, _ = client()
    with c:
        assert c.get("/health").status_code == 200
    assert llm.closed


def test_shutdown_cuts_running_generation_with_503_not_a_fake_stop():
    llm = FakeLlama(delay=0.01, default_reply="x" * 500)
    engine = Engine(llm, model_id=MODEL, n_ctx=1024).start()
    got: list = []
    engine.submit(Job("p", GenParams(max_tokens=500), True, got.append))
    waiting: list = []
    engine.submit(Job("q", GenParams(max_tokens=5), False, waiting.append))
    time.sleep(0.1)
    engine.begin_shutdown()
    engine.stop()
    assert got[-1][0] == "error" and got[-1][1].code == "shutting_down"
    assert [e[0] for e in waiting] == ["error"] and waiting[0][1].status == 503
    assert sum(1 for e in got if e[0] == "delta") < 100
