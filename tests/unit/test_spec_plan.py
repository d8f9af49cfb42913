"""Plan expansion and validation, manifest round-trip, bits per weight from tensors.

Validation must catch every invalid combination before any work starts, one line per
problem (group 128 on SmolLM2's 576-wide matrices, 3-bit AWQ, GPU-only formats...).
None of this needs torch: backends import their heavy libraries inside quantize().
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from quant.bpw import bits_per_weight, bytes_by_kind, n_weights, read_header, tensor_bytes
from quant.manifest import VariantManifest, find_manifests, hash_files
from quant.plan import parse_plan
from quant.run import validate
from quant.spec import QuantSpec
from quantsuite.errors import UserError

SMOL = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
        "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True, "head_dim": 64}


def plan(*variants: dict) -> dict:
    return {"models": ["smollm2-135m-instruct"], "variants": list(variants)}


# -- plan expansion ---------------------------------------------------------------------
def test_plan_expands_bits_times_group_sizes_into_distinct_variants():
    p = parse_plan(plan({"method": "gptq", "bits": [4, 8], "group_size": [32, 64, -1], "params": {"n_samples": 16}},
                        {"method": "awq", "bits": 4, "group_size": 64},
                        {"method": "bnb", "schemes": ["nf4", "fp4", "int8"]},
                        {"method": "bnb", "scheme": "nf4", "params": {"double_quant": True}}))
    ids = [s.variant_id for s in p.specs["smollm2-135m-instruct"]]
    assert ids == ["gptq-w4g32", "gptq-w4g64", "gptq-w4pc", "gptq-w8g32", "gptq-w8g64", "gptq-w8pc",
                   "awq-w4g64", "bnb-nf4", "bnb-fp4", "bnb-int8", "bnb-nf4-dq"]
    assert all(s.p["n_samples"] == 16 for s in p.specs["smollm2-135m-instruct"][:6])
    assert validate(p.specs["smollm2-135m-instruct"], SMOL) == []


def test_act_order_is_part_of_the_variant_id_and_key():
    a = QuantSpec.make("gptq", 4, group_size=64, act_order=True)
    b = QuantSpec.make("gptq", 4, group_size=64)
    assert a.variant_id == "gptq-w4g64-ao" and b.variant_id == "gptq-w4g64"
    assert a.key() != b.key()
    # calibration settings do not rename the folder but do change the key (no stale resume)
    assert QuantSpec.make("gptq", 4, group_size=64, n_samples=8).key() != b.key()


def test_group_128_on_hidden_576_is_one_line_per_problem():
    specs = [QuantSpec.make("gptq", 4, group_size=128), QuantSpec.make("awq", 4, group_size=128)]
    problems = validate(specs, SMOL)
    assert len(problems) == 2
    assert all("group size 128 does not divide hidden_size=576" in p for p in problems)
    assert problems[0].startswith("gptq-w4g128:") and problems[1].startswith("awq-w4g128:")
    assert all("\n" not in p for p in problems)


def test_group_sizes_dividing_every_width_pass_and_others_fail():
    ok = [QuantSpec.make("gptq", 4, group_size=g) for g in (32, 64, -1)]
    assert validate(ok, SMOL) == []
    llama = {**SMOL, "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32, "head_dim": 128}
    assert validate([QuantSpec.make("gptq", 4, group_size=128)], llama) == []
    (p,) = validate([QuantSpec.make("gptq", 4, group_size=48)], SMOL)
    assert "group size 48 not supported" in p


def test_three_bit_awq_is_rejected_before_work_starts():
    (p,) = validate([QuantSpec.make("awq", 3, group_size=64)], SMOL)
    assert p.startswith("awq-w3g64:") and "4-bit only" in p


def test_several_problems_in_one_spec_give_several_lines():
    problems = validate([QuantSpec.make("awq", 3, group_size=128)], SMOL)
    assert len(problems) == 2


def test_gptq_bits_and_formats():
    problems = validate([QuantSpec.make("gptq", 3, group_size=64),
                         QuantSpec.make("gptq", 4, group_size=64, format="marlin"),
                         QuantSpec.make("gptq", 4, group_size=64, format="auto_gptq"),
                         QuantSpec.make("gptq", 4, group_size=64, damping=0.1),
                         QuantSpec.make("gptq", 4, group_size=64, dtype="int8")], SMOL)
    assert len(problems) == 5
    assert "4 or 8 bits" in problems[0]
    assert "GPU" in problems[1] and "marlin" in problems[1]
    assert "auto_gptq" in problems[2] and "compressed-tensors" in problems[2]
    assert "unknown GPTQ parameter(s) damping" in problems[3]
    assert "dtype must be one of float32, bfloat16, float16" in problems[4]


def test_bnb_checks():
    problems = validate([QuantSpec.make("bnb", scheme="int8", double_quant=True),
                         QuantSpec.make("bnb", scheme="nf4", storage_dtype="int4")], SMOL)
    assert len(problems) == 2 and "int8" in problems[0] and "storage_dtype" in problems[1]
    with pytest.raises(UserError, match="nf4, fp4 or int8"):
        QuantSpec.make("bnb", scheme="nf2")


def test_plan_with_bad_entries_reports_all_of_them():
    with pytest.raises(UserError) as e:
        parse_plan(plan({"method": "gptq"}, {"method": "bnb", "scheme": "q4"}, {"method": "magic", "bits": 4}))
    msg = str(e.value)
    # every entry is reported (UserError currently folds the lines into one; see report)
    assert all(f"variants[{i}]" in msg for i in (1, 2, 3))
    assert "--bits is required" in msg and "'q4'" in msg and "'magic'" in msg


# -- manifest round-trip ------------------------------------------------------------------
def _manifest(tmp: Path) -> VariantManifest:
    (tmp / "model.safetensors").write_bytes(b"x" * 100)
    (tmp / "config.json").write_text("{}")
    spec = QuantSpec.make("gptq", 4, group_size=64, act_order=True, n_samples=16)
    files = hash_files(tmp, ["model.safetensors", "config.json"])
    return VariantManifest(variant_id=spec.variant_id, model="smol", base={"path": "/b", "sha256": "ab"},
                           spec=spec.to_dict(), runtime=["hf", "vllm"], artifact=".", files=files,
                           size_bytes=sum(f["bytes"] for f in files.values()), bits_per_weight=4.52,
                           n_params=134515008, calibration={"name": "wikitext2-valid", "n_samples": 16},
                           tool_versions={"llmcompressor": "0.14.0.1"}, notes=["n"])


def test_manifest_round_trips_and_spec_survives(tmp_path):
    m = _manifest(tmp_path)
    m.write(tmp_path)
    back = VariantManifest.load(tmp_path)
    assert back.to_dict() == m.to_dict()
    assert back.quant_spec == QuantSpec.make("gptq", 4, group_size=64, act_order=True, n_samples=16)
    assert back.quant_spec.key() == m.quant_spec.key()
    assert back.artifact_path.resolve() == tmp_path.resolve()
    assert back.verify() == []
    assert [x.variant_id for x in find_manifests([tmp_path])] == ["gptq-w4g64-ao"]


def test_manifest_verify_names_a_changed_file(tmp_path):
    m = _manifest(tmp_path)
    m.write(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"y" * 100)
    (problem,) = VariantManifest.load(tmp_path).verify()
    assert "model.safetensors sha256 differs" in problem


def test_manifest_from_a_newer_version_is_refused(tmp_path):
    d = _manifest(tmp_path).to_dict()
    d["format_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(UserError, match="newer"):
        VariantManifest.load(tmp_path)


# -- bits per weight ----------------------------------------------------------------------------
@pytest.fixture
def base_and_variant(tmp_path):
    """A 2-layer fake base (fp32) and a GPTQ-like variant: int32-packed 4-bit codes and
    fp16 scales per 64 weights, fp16 embeddings, with their exact byte counts."""
    from safetensors.numpy import save_file

    base, var = tmp_path / "base", tmp_path / "var"
    base.mkdir()
    var.mkdir()
    rows, cols, vocab = 128, 256, 1000
    save_file({"embed.weight": np.zeros((vocab, cols), np.float32),
               "l0.weight": np.zeros((rows, cols), np.float32), "l1.weight": np.zeros((rows, cols), np.float32),
               "norm.weight": np.zeros((cols,), np.float32)}, str(base / "model.safetensors"))
    tensors = {"embed.weight": np.zeros((vocab, cols), np.float16), "norm.weight": np.zeros((cols,), np.float16)}
    for i in range(2):
        tensors[f"l{i}.weight_packed"] = np.zeros((rows, cols // 8), np.int32)
        tensors[f"l{i}.weight_scale"] = np.zeros((rows, cols // 64), np.float16)
    # split across two shards, as large checkpoints are
    save_file({k: v for k, v in tensors.items() if k.startswith("l0")}, str(var / "model-00001-of-00002.safetensors"))
    save_file({k: v for k, v in tensors.items() if not k.startswith("l0")}, str(var / "model-00002-of-00002.safetensors"))
    n = vocab * cols + 2 * rows * cols + cols
    data = 2 * (vocab * cols + cols) + 2 * (rows * cols // 2 + rows * cols // 64 * 2)
    return base, var, n, data


def test_bits_per_weight_counts_tensor_bytes_over_base_weights(base_and_variant):
    base, var, n, data = base_and_variant
    assert n_weights(base) == n
    assert tensor_bytes(var) == data
    bpw, count = bits_per_weight(var, base)
    assert count == n and bpw == pytest.approx(8 * data / n)
    assert bits_per_weight(base, base)[0] == pytest.approx(32.0)
    assert bits_per_weight(var, n)[0] == bpw          # a weight count works as the base too


def test_bytes_by_kind_separates_codes_scales_and_the_rest(base_and_variant):
    _, var, _, data = base_and_variant
    kinds = bytes_by_kind(var)
    assert kinds["weights"] == 2 * 128 * 256 // 2
    assert kinds["scales_zeros"] == 2 * 128 * 256 // 64 * 2
    assert sum(kinds.values()) == data


def test_header_reader_rejects_a_non_safetensors_file(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\xff" * 16)
    with pytest.raises(UserError, match="not a readable safetensors"):
        read_header(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no .safetensors"):
        tensor_bytes(empty)
