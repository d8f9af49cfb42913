"""Packed log-likelihood: the layout (golden, numpy only) and, on tiny random transformers
models, equality with scoring every (context, continuation) pair on its own."""

from __future__ import annotations

import types

import numpy as np
import pytest

from evalsuite.runtimes.packing import Tree, group_rows, layout, pack_rows, plan_batches
from evalsuite.types import LLRequest


def test_layout_golden_one_tree():
    # context [5, 6, 7], continuations [8] and [9, 10]
    b = layout([Tree([5, 6, 7], [[8], [9, 10]], [0, 1])], [[0]], pad_id=0)
    assert b.ids.tolist() == [[5, 6, 7, 8, 9, 10]]
    assert b.positions.tolist() == [[0, 1, 2, 3, 3, 4]]       # both continuations start at 3
    a = b.allowed[0].astype(int).tolist()
    assert a == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],      # 8 sees the context and itself
        [1, 1, 1, 0, 1, 0],      # 9 does not see 8
        [1, 1, 1, 0, 1, 1],
    ]
    (s0, s1) = b.spans
    assert (s0.req, s0.at, s0.first_of_tree) == (0, [2], True)          # 8 is predicted at column 2
    assert (s1.req, s1.at, s1.first_of_tree) == (1, [2, 4], False)      # 9 at 2, 10 at 4


def test_layout_two_trees_in_a_row_are_blind_to_each_other_and_padding_is_safe():
    trees = [Tree([1, 2], [[3]], [0]), Tree([4], [[5], [6]], [1, 2])]
    b = layout(trees, [[0, 1], [1]], pad_id=99)
    assert b.ids.tolist() == [[1, 2, 3, 4, 5, 6], [4, 5, 6, 99, 99, 99]]
    assert b.positions[0].tolist() == [0, 1, 2, 0, 1, 1]
    assert not b.allowed[0, 3:, :3].any() and not b.allowed[0, :3, 3:].any()
    assert b.allowed.any(axis=-1).all()            # every query row attends to something
    assert [(s.row, s.req, s.at) for s in b.spans] == [(0, 0, [1]), (0, 1, [3]), (0, 2, [3]), (1, 1, [0]), (1, 2, [0])]


def test_pack_rows_first_fit_decreasing():
    sizes = [100, 200, 60, 50, 40, 300]
    rows = pack_rows(sizes, 256)
    assert sorted(t for r in rows for t in r) == list(range(6))            # every tree exactly once
    # the largest tree (300) raises the row capacity to 300: 300 | 200+100 | 60+50+40
    assert all(sum(sizes[t] for t in r) <= 300 for r in rows)
    assert rows == [[5], [1, 0], [2, 3, 4]]
    assert pack_rows([10, 10, 10], 20) == [[0, 1], [2]]
    assert pack_rows([], 256) == []


def test_group_rows_respects_the_token_budget():
    sizes = [100] * 10
    rows = pack_rows(sizes, 200)                     # 5 rows of 200
    batches = group_rows(rows, sizes, 500)
    assert [len(b) for b in batches] == [2, 2, 1]
    assert len(plan_batches([Tree([1], [[2]], [0])] * 3, 0, 256, 1024)) == 1


# -- on real transformers code, random tiny weights ---------------------------------------------
def _client(arch: str, window: int | None = None):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from evalsuite.runtimes import RuntimeConfig
    from evalsuite.runtimes.hf import HFClient

    torch.manual_seed(0)
    if arch == "llama":
        cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    else:
        cfg = transformers.Gemma3TextConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                            sliding_window=window, max_position_embeddings=256,
                                            layer_types=["sliding_attention", "full_attention"])
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()

    class CharClient(HFClient):
        def __init__(self):                     # no files: the model and a character "tokenizer"
            self.cfg, self.torch, self.model = RuntimeConfig(threads=1), torch, model
            self.tok = types.SimpleNamespace(pad_token_id=0, eos_token_id=1, bos_token_id=None)

        def tokenize(self, text, add_bos=False):
            return [2 + (ord(ch) % 95) for ch in text]

    return CharClient(), torch


def _naive(client, torch, req: LLRequest) -> tuple[float, bool]:
    """Score one pair alone: a full forward over context + continuation, no sharing."""
    from evalsuite.runtimes.common import encode_pair

    ctx, cont = encode_pair(client.tokenize, req.context, req.continuation)
    with torch.inference_mode():
        lp = torch.log_softmax(client.model(input_ids=torch.tensor([ctx + cont])).logits[0].float(), -1)
    rows = lp[len(ctx) - 1: len(ctx) + len(cont) - 1]
    return float(rows[torch.arange(len(cont)), torch.tensor(cont)].sum()), bool((rows.argmax(-1) == torch.tensor(cont)).all())


REQS = [LLRequest(f"Question {q}: which one? Answer:", f" {c}") for q, cs in
        [(1, ["red", "green apple", "b"]), (2, ["yes", "no"]), (33, ["a much longer choice text here", "x"])] for c in cs]


@pytest.mark.parametrize("arch,window,extra", [
    ("llama", None, {}),
    ("llama", None, {"ll_row_tokens": 40, "ll_batch_tokens": 80}),     # many rows and batches
    ("llama", None, {"ll_no_packing": True}),                            # the KV-cache path
    ("gemma3", 512, {}),                                                 # sliding layers, trees inside the window
    ("gemma3", 8, {}),                                                   # trees longer than the window: cached path
])
def test_packed_scores_equal_scoring_each_pair_alone(arch, window, extra):
    client, torch = _client(arch, window)
    client.cfg.extra.update(extra)
    got = client.loglikelihood(REQS)
    for r, g in zip(REQS, got):
        lp, greedy = _naive(client, torch, r)
        assert g.logprob == pytest.approx(lp, abs=2e-4), r
        assert g.is_greedy == greedy and g.n_tokens == len(client.tokenize(r.continuation))
    # prefix sharing: each context is counted once in tokens_in
    assert sum(g.tokens_in for g in got) < sum(len(client.tokenize(r.context + r.continuation)) for r in REQS)
    assert client.loglikelihood([]) == []


# -- generation: greedy requests batched with left padding ------------------------------------
def test_batched_greedy_generation_equals_one_at_a_time():
    from evalsuite.types import GenRequest

    client, torch = _client("llama")
    client.tok.decode = lambda ids, skip_special_tokens=True: " ".join(map(str, ids))
    client.tok.add_bos_token = False
    client.cfg.batch_size = 3
    reqs = [GenRequest(prompt=p, max_tokens=m, temperature=0.0) for p, m in
            [("Hi", 6), ("A much longer prompt than the others", 6), ("Mid length one", 6), ("x", 4), ("yy", 4)]]
    batched = client.generate(reqs)
    alone = [client._generate_one(r) for r in reqs]
    assert [g.texts for g in batched] == [g.texts for g in alone]
    assert [g.tokens_out for g in batched] == [g.tokens_out for g in alone]
    assert [g.tokens_in for g in batched] == [len(client.tokenize(r.prompt)) for r in reqs]
    # sampled requests keep their own seed: the same answer alone or among others
    s = GenRequest(prompt="Hi", max_tokens=5, temperature=0.9, n=2, seed=7)
    assert client.generate([reqs[0], s])[1].texts == client.generate([s])[0].texts
