"""The llama.cpp runtime on the real bundled SmolLM2 GGUF (fast: a 135M model, no conversion)."""

from __future__ import annotations

import numpy as np
import pytest

from evalsuite.types import GenRequest, LLRequest

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def client():
    from evalsuite.runtimes import RuntimeConfig
    from evalsuite.runtimes.llamacpp import LlamaCppClient
    from quant.base_model import bundled_gguf

    c = LlamaCppClient(bundled_gguf("smollm2-135m-instruct"), RuntimeConfig(n_ctx=1024, threads=2))
    yield c
    c.close()


REQS = [LLRequest("Question: What color is the sky on a clear day?\nAnswer:", c) for c in (" blue", " green", " loud")]
GREEDY = GenRequest(prompt="The capital of France is", max_tokens=12, temperature=0.0)


def test_loglikelihood_prefers_the_sensible_answer_and_matches_full_rows(client):
    res = client.loglikelihood(REQS)
    assert res[0].logprob > res[1].logprob and res[0].logprob > res[2].logprob
    # the shared-context path equals reading the same tokens' full log-prob rows
    from evalsuite.runtimes.common import encode_pair

    ctx, cont = encode_pair(lambda s: client.tokenize(s), REQS[0].context, REQS[0].continuation)
    bos = [client.bos_id] if client.adds_bos and client.bos_id is not None else []
    lp = client.token_logprobs(bos + ctx + cont)
    start = len(bos + ctx) - 1
    want = sum(lp[start + t, cont[t]] for t in range(len(cont)))
    assert res[0].logprob == pytest.approx(float(want), abs=1e-3)


def test_generation_with_last_logits_only_is_unchanged_and_scoring_still_works(client):
    before = client.loglikelihood(REQS)
    fast = client.generate([GREEDY])[0]
    assert client.llm._logits_all                      # restored after generation
    slow = client._generate([GREEDY])[0]               # every row kept, as before the switch
    assert fast.texts == slow.texts and fast.tokens_out == slow.tokens_out > 0
    after = client.loglikelihood(REQS)
    assert np.allclose([r.logprob for r in before], [r.logprob for r in after], atol=1e-4)


def test_n_samples_share_one_prompt_evaluation(client):
    g = client.generate([GenRequest(prompt="Write a number:", max_tokens=4, temperature=0.9, n=3, seed=1)])[0]
    assert len(g.texts) == 3 and g.tokens_in == len(client.tokenize("Write a number:", add_bos=client.adds_bos))
