"""The evaluation loop with scripted clients: resume, run keys, one reference pass for KLD."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from evalsuite import runner as runner_mod
from evalsuite.metrics import log_softmax, perplexity
from evalsuite.quality import PplConfig
from evalsuite.runner import EvalConfig, Evaluator
from evalsuite.store import ResultsStore
from quant.manifest import VariantManifest
from tests.fakes import FakeClient

VOCAB = 50


def manifest(vid: str, size: int, model: str = "m") -> VariantManifest:
    return VariantManifest(variant_id=vid, model=model, base={}, spec={"method": vid.split("-")[0], "bits": 4},
                           runtime=["fake"], artifact="x", files={"x": {"bytes": size, "sha256": f"sha-{model}-{vid}"}},
                           size_bytes=size, bits_per_weight=4.0)


class PplFake(FakeClient):
    """Deterministic next-token distributions: a fixed bigram table, plus per-variant noise."""

    def __init__(self, noise: float = 0.0, seed: int = 0, **kw):
        super().__init__(**kw)
        rng = np.random.default_rng(42)
        self.table = rng.standard_normal((VOCAB, VOCAB)) * 2
        self.noise = np.random.default_rng(seed).standard_normal((VOCAB, VOCAB)) * noise
        self.logprob_calls = 0

    def tokenize(self, text, add_bos=False):
        ids = [2 + zlib.crc32(w.encode()) % (VOCAB - 2) for w in self._words(text)]
        return ([1] if add_bos else []) + ids

    def token_logprobs(self, tokens):
        self.logprob_calls += 1
        return log_softmax(self.table[list(tokens)] + self.noise[list(tokens)])


@pytest.fixture
def clients(monkeypatch):
    """variant_id -> client; open_variant is patched to hand them out and count the opens."""
    made: dict[str, FakeClient] = {}
    opens: list[str] = []

    def open_variant(m, cfg=None, runtime=None):
        opens.append(m.variant_id)
        return made[m.variant_id]

    monkeypatch.setattr(runner_mod, "open_variant", open_variant)
    return made, opens


@pytest.fixture
def mc_file(tmp_path):
    p = tmp_path / "quiz.jsonl"
    rows = [{"id": f"q{i}", "question": f"Question number {i}?", "choices": ["short", "a longer answer"],
             "answer": i % 2} for i in range(6)]
    p.write_text("\n".join(json.dumps(r) for r in rows))
    return p


def test_mc_runs_are_stored_and_a_second_run_recomputes_nothing(tmp_path, clients, mc_file):
    made, opens = clients
    made["base"] = FakeClient()       # default scorer: shorter continuation wins -> always choice 0
    store = ResultsStore(tmp_path / "r.sqlite")
    cfg = EvalConfig(tasks=[f"user:{mc_file}"], strategies=["ll"], batch_items=2)
    keys = Evaluator(store, cfg).run([manifest("base", 100)])
    assert len(keys) == 1 and opens == ["base"]
    run = store.runs(run_key=keys[0])[0]
    assert run["status"] == "done" and run["n_items"] == 6 and run["runtime"] == "fake"
    assert store.metrics(keys[0])["acc"]["value"] == pytest.approx(0.5)      # gold alternates 0, 1
    n_requests = len(made["base"].ll_requests)
    assert n_requests == 12                                                   # 6 items x 2 choices

    assert Evaluator(store, cfg).run([manifest("base", 100)]) == keys
    assert opens == ["base"] and len(made["base"].ll_requests) == n_requests  # nothing reopened or rescored


class Interrupting(FakeClient):
    def __init__(self, after_calls: int):
        super().__init__()
        self.after = after_calls

    def loglikelihood(self, reqs):
        if self.after == 0:
            raise KeyboardInterrupt
        self.after -= 1
        return super().loglikelihood(reqs)


def test_interrupted_run_keeps_finished_batches_and_resumes_the_rest(tmp_path, clients, mc_file):
    made, _ = clients
    made["base"] = Interrupting(after_calls=2)          # two batches of two items, then ^C
    store = ResultsStore(tmp_path / "r.sqlite")
    cfg = EvalConfig(tasks=[f"user:{mc_file}"], batch_items=2)
    with pytest.raises(KeyboardInterrupt):
        Evaluator(store, cfg).run([manifest("base", 100)])
    (run,) = store.runs()
    assert run["status"] == "running" and len(store.done_items(run["run_key"])) == 4
    assert made["base"].closed                           # the client is closed on the way out

    made["base"] = FakeClient()
    Evaluator(store, cfg).run([manifest("base", 100)])
    assert {r.context for r in made["base"].ll_requests} == {r.context for r in made["base"].ll_requests[:4]}
    assert len(made["base"].ll_requests) == 4           # only the last 2 items (x 2 choices) were scored
    assert store.runs()[0]["status"] == "done" and len(store.samples(run["run_key"])) == 6


def test_changing_seed_limit_or_strategy_params_never_reuses_results(tmp_path, clients, mc_file):
    made, _ = clients
    made["base"] = FakeClient()
    store = ResultsStore(tmp_path / "r.sqlite")
    k1 = Evaluator(store, EvalConfig(tasks=[f"user:{mc_file}"])).run([manifest("base", 100)])
    k2 = Evaluator(store, EvalConfig(tasks=[f"user:{mc_file}"], seed=1)).run([manifest("base", 100)])
    k3 = Evaluator(store, EvalConfig(tasks=[f"jsonl:path={mc_file},k_shot=1"])).run([manifest("base", 100)])
    assert len({*k1, *k2, *k3}) == 3
    # a larger --limit extends the same run instead of starting over
    k4 = Evaluator(store, EvalConfig(tasks=[f"user:{mc_file}"], limit=3)).run([manifest("base", 100)])
    assert k4 == k1


def test_kld_costs_one_reference_pass_shared_with_the_base_ppl(tmp_path, clients):
    made, opens = clients
    text = tmp_path / "wiki.txt"
    rng = np.random.default_rng(1)
    text.write_text(" ".join(f"w{int(x)}" for x in rng.integers(0, 400, 2000)))
    made["base"] = PplFake(noise=0.0)
    made["gguf-f16"] = PplFake(noise=0.0)
    made["gguf-q2_k"] = PplFake(noise=1.0, seed=7)
    made["gguf-q4_k_m"] = PplFake(noise=0.3, seed=7)
    store = ResultsStore(tmp_path / "r.sqlite")
    cfg = EvalConfig(tasks=[f"wikitext2:path={text}"], ppl=PplConfig(n_ctx=64, chunks=5))
    ms = [manifest("gguf-q2_k", 20), manifest("gguf-q4_k_m", 40), manifest("gguf-f16", 80), manifest("base", 160)]
    keys = Evaluator(store, cfg).run(ms)
    assert opens[0] == "base" and sorted(opens) == sorted(m.variant_id for m in ms)   # reference family first
    assert {v: c.logprob_calls for v, c in made.items()} == {"base": 5, "gguf-f16": 5, "gguf-q2_k": 5, "gguf-q4_k_m": 5}

    by_variant = {store.runs(run_key=k)[0]["variant_id"]: store.metrics(k) for k in keys}
    assert "kld_mean" not in by_variant["base"]
    assert by_variant["gguf-f16"]["kld_mean"]["value"] == pytest.approx(0.0, abs=1e-4)   # fp16-stored reference
    assert by_variant["gguf-f16"]["same_top1"]["value"] == 1.0
    assert 0 < by_variant["gguf-q4_k_m"]["kld_mean"]["value"] < by_variant["gguf-q2_k"]["kld_mean"]["value"]
    # the base's PPL (from the reference pass) equals the unquantized copy's, scored normally
    assert by_variant["base"]["ppl"]["value"] == pytest.approx(by_variant["gguf-f16"]["ppl"]["value"], rel=1e-5)

    # and it is the PPL of the scored halves of each chunk, computed here independently
    c = PplFake()
    toks = c.tokenize(text.read_text(), add_bos=True)
    nll = []
    for i in range(5):
        chunk = toks[i * 64:(i + 1) * 64]
        chunk[0] = 1
        lp = c.token_logprobs(chunk)
        nll += [-lp[t, chunk[t + 1]] for t in range(32, 63)]
    assert by_variant["base"]["ppl"]["value"] == pytest.approx(perplexity(nll), rel=1e-5)

    # a rerun with a fresh evaluator loads the cached reference and opens nothing
    opens.clear()
    Evaluator(store, cfg).run(ms)
    assert opens == []


def test_runtime_choice_applies_where_the_variant_supports_it(tmp_path):
    from evalsuite.runtimes import open_variant, pick_runtime
    from quantsuite.errors import BackendUnavailable, UserError

    hf = manifest("gptq-w4g64", 100)
    hf.runtime = ["hf", "vllm"]
    gguf = manifest("gguf-q4_k_m", 50)
    gguf.runtime = ["llamacpp"]
    assert pick_runtime(hf, "vllm") == "vllm" and pick_runtime(gguf, "vllm") == "llamacpp"
    assert pick_runtime(hf, None) == "hf"
    with pytest.raises(UserError, match="unknown runtime 'vlm'"):
        pick_runtime(hf, "vlm")
    # vLLM is reached through its server: asking for it in-process says how, in one message
    with pytest.raises(BackendUnavailable, match="vllm serve .*--endpoint openai:"):
        open_variant(hf, runtime="vllm")
