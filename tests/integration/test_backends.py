"""GPTQ, AWQ and bitsandbytes on the real SmolLM2-135M-Instruct, through quantize_model.

Each variant must: get a manifest with measured bits per weight and every file hashed,
reload through the evaluator's HF runtime (HFClient) and generate text, stay close to the
base model (top-1 agreement on plain prose), and differ from it (it really is quantized).
Calibration is kept small (16 samples x 256 tokens; AWQ and the bf16 GPTQ 8 x 128) so CPU
runs stay short. Measured on a 2-core box: bitsandbytes 10-20 s each, GPTQ bf16 8x128 34 s,
AWQ 8x128 57 s, GPTQ 16x256 76-116 s; everything over about a minute is marked slow
(CI's full run still runs it).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from quant.manifest import MANIFEST_NAME, VariantManifest
from quant.spec import QuantSpec
from quantsuite.errors import UserError

pytestmark = pytest.mark.integration
pytest.importorskip("torch")
pytest.importorskip("transformers")

TEXT = ("The history of the city goes back to a small fishing village on the river. Over the centuries it grew "
        "into a busy port, and merchants from many countries came to trade wool, salt and wine.")
THREADS = int(os.environ.get("QUANTSUITE_THREADS", "1"))


@pytest.fixture(scope="module")
def work(tmp_path_factory, models_dir):
    from quant.base_model import resolve_base

    base = resolve_base("smollm2-135m-instruct", models_dir)
    return {"out": tmp_path_factory.mktemp("variants"), "models_dir": models_dir, "base": base, "made": {}}


def make(work, spec: QuantSpec) -> tuple[VariantManifest, float]:
    """Quantize once per spec in this module (later tests reuse the folder)."""
    from quant.run import quantize_model

    if spec not in work["made"]:
        t0 = time.perf_counter()
        ms = quantize_model("smollm2-135m-instruct", [spec], work["out"], work["models_dir"],
                            calibration={"name": "wikitext2-valid", "n_samples": 16}, threads=THREADS,
                            include_base=False)
        work["made"][spec] = (ms[0], time.perf_counter() - t0)
    return work["made"][spec]


@pytest.fixture(scope="module")
def base_logprobs(work):
    from evalsuite.runtimes import RuntimeConfig
    from evalsuite.runtimes.hf import HFClient

    c = HFClient(work["base"].path, RuntimeConfig(threads=THREADS))
    ids = c.tokenize(TEXT, add_bos=True)
    lp = c.token_logprobs(ids)
    c.close()
    return ids, lp


def check_variant(m: VariantManifest, base_logprobs, bpw_range: tuple[float, float], min_top1: float) -> dict:
    from evalsuite.runtimes import RuntimeConfig
    from evalsuite.runtimes.hf import HFClient
    from evalsuite.types import GenRequest

    # manifest: measured, complete, intact
    assert bpw_range[0] < m.bits_per_weight < bpw_range[1], m.bits_per_weight
    assert m.n_params == 134515008
    on_disk = sorted(str(p.relative_to(m.folder)) for p in m.folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
    assert sorted(m.files) == on_disk and "config.json" in m.files
    assert m.size_bytes == sum(f["bytes"] for f in m.files.values())
    assert m.verify() == []
    assert "hf" in m.runtime and m.tool_versions.get("torch")
    assert any("reload check" in n for n in m.notes)
    # the evaluator's runtime loads it and generates
    client = HFClient(m.artifact_path, RuntimeConfig(threads=THREADS))
    (gen,) = client.generate([GenRequest.chat("What is the capital of France? Answer in one word.", max_tokens=12)])
    assert gen.texts[0].strip(), "empty generation"
    ids, ref = base_logprobs
    lp = client.token_logprobs(ids)
    client.close()
    top1 = float(np.mean(lp[:-1].argmax(-1) == ref[:-1].argmax(-1)))
    kl = float(np.mean(np.sum(np.exp(ref) * (ref - lp), axis=-1)))
    assert top1 >= min_top1, f"top-1 agreement with the base {top1:.2f}"
    assert 1e-5 < kl < 2.0, f"KL to base {kl}"
    return {"text": gen.texts[0], "top1": top1, "kl": kl}


# -- validation before work -----------------------------------------------------------------------
def test_invalid_specs_fail_before_any_work(work):
    from quant.run import quantize_model

    t0 = time.perf_counter()
    bad = [QuantSpec.make("gptq", 4, group_size=128), QuantSpec.make("awq", 3, group_size=64)]
    with pytest.raises(UserError) as e:
        quantize_model("smollm2-135m-instruct", bad, work["out"], work["models_dir"], include_base=False)
    assert "gptq-w4g128" in str(e.value) and "awq-w3g64" in str(e.value)
    assert time.perf_counter() - t0 < 30
    assert not (work["out"] / "smollm2-135m-instruct" / "gptq-w4g128").exists()


# -- bitsandbytes -------------------------------------------------------------------------------------
def test_bnb_nf4_round_trips_through_safetensors(work, base_logprobs):
    m, _ = make(work, QuantSpec.make("bnb", scheme="nf4"))
    info = check_variant(m, base_logprobs, (5.0, 8.0), min_top1=0.5)
    cfg = json.loads((m.folder / "config.json").read_text())
    assert cfg["quantization_config"]["bnb_4bit_quant_type"] == "nf4"
    assert "max logit drift 0.00%" in " ".join(m.notes), m.notes
    assert info["kl"] > 1e-3


@pytest.mark.parametrize("scheme,dq,bpw", [("nf4", True, (4.5, 7.5)), ("fp4", False, (5.0, 8.0)),
                                          ("int8", False, (8.0, 11.0))])
def test_bnb_other_schemes(work, base_logprobs, scheme, dq, bpw):
    spec = QuantSpec.make("bnb", scheme=scheme, **({"double_quant": True} if dq else {}))
    m, _ = make(work, spec)
    check_variant(m, base_logprobs, bpw, min_top1=0.9 if scheme == "int8" else 0.5)


def test_bnb_double_quant_is_smaller(work):
    plain, _ = make(work, QuantSpec.make("bnb", scheme="nf4"))
    dq, _ = make(work, QuantSpec.make("bnb", scheme="nf4", double_quant=True))
    assert dq.size_bytes < plain.size_bytes


# -- GPTQ ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_gptq_w4_g64_compressed_tensors(work, base_logprobs):
    m, _ = make(work, QuantSpec.make("gptq", 4, group_size=64, n_samples=16, seqlen=256))
    check_variant(m, base_logprobs, (4.5, 8.0), min_top1=0.5)
    cfg = json.loads((m.folder / "config.json").read_text())
    q = cfg["quantization_config"]
    assert q["quant_method"] == "compressed-tensors"
    w = next(iter(q["config_groups"].values()))["weights"]
    assert (w["num_bits"], w["group_size"], w["strategy"]) == (4, 64, "group")
    assert m.calibration["n_used"] == 16 and m.calibration["seqlen"] == 256
    assert "vllm" in m.runtime


@pytest.mark.slow
def test_gptq_w8_per_channel_act_order(work, base_logprobs):
    m, _ = make(work, QuantSpec.make("gptq", 8, group_size=-1, act_order=True, n_samples=16, seqlen=256))
    assert m.variant_id == "gptq-w8pc-ao"
    info = check_variant(m, base_logprobs, (7.0, 11.0), min_top1=0.9)
    w = next(iter(json.loads((m.folder / "config.json").read_text())["quantization_config"]["config_groups"]
                  .values()))["weights"]
    assert w["strategy"] == "channel" and w["actorder"] == "static"
    assert info["kl"] < 0.05


def test_gptq_calibrated_in_bfloat16(work, base_logprobs):
    """The low-RAM path for big models: load and calibrate in bf16 (half the memory)."""
    m, _ = make(work, QuantSpec.make("gptq", 4, group_size=64, n_samples=8, seqlen=128, dtype="bfloat16"))
    check_variant(m, base_logprobs, (4.5, 8.0), min_top1=0.5)


# -- AWQ -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_awq_w4_g64(work, base_logprobs):
    m, _ = make(work, QuantSpec.make("awq", 4, group_size=64, n_samples=8, seqlen=128, n_grid=5))
    check_variant(m, base_logprobs, (4.5, 8.0), min_top1=0.5)
    w = next(iter(json.loads((m.folder / "config.json").read_text())["quantization_config"]["config_groups"]
                  .values()))["weights"]
    assert (w["num_bits"], w["group_size"], w["symmetric"]) == (4, 64, False)
    assert any("AWQModifier" in n for n in m.notes)
