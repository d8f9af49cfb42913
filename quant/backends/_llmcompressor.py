"""The llm-compressor run shared by the GPTQ and AWQ backends.

Both load the base in the calibration dtype, tokenize the calibration rows, run
``oneshot`` through the sequential pipeline (one decoder layer on the device at a time,
the rest offloaded to CPU, so peak memory is about one layer plus the calibration
activations), save compressed-tensors, reload the folder and compare it with the model in
memory, and describe the result. Only the recipe and the wording differ.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, ContextManager

from quant.backends import QuantContext, QuantResult
from quant.backends._hf import (calibration_rows, check_reload, folder_files, has_accelerator, reload_note,
                                save_compressed, set_threads, work_dtype)
from quant.bpw import bits_per_weight, bytes_by_kind
from quant.manifest import tool_versions
from quant.spec import QuantSpec


def param_problems(spec: QuantSpec, method: str, defaults: dict[str, Any]) -> list[str]:
    """Checks every llm-compressor method shares: the calibration dtype, unknown parameters."""
    from quant.backends._hf import DTYPES

    out = []
    if spec.p.get("dtype", "float32") not in DTYPES:
        out.append(f"{spec.variant_id}: dtype must be one of {', '.join(DTYPES)} (the precision the model is "
                   "loaded and calibrated in)")
    unknown = set(spec.p) - set(defaults) - {"format"}
    if unknown:
        out.append(f"{spec.variant_id}: unknown {method} parameter(s) {', '.join(sorted(unknown))} "
                   f"(known: {', '.join(sorted(defaults))}, format)")
    return out


def weight_args(spec: QuantSpec, symmetric: bool, actorder: str | None = None):
    """compressed-tensors QuantizationArgs for int weights, per group or per channel (-1)."""
    from compressed_tensors.quantization import QuantizationArgs

    g = spec.group_size
    return QuantizationArgs(num_bits=spec.bits, type="int", symmetric=symmetric,
                            strategy="channel" if g == -1 else "group", group_size=None if g == -1 else g,
                            actorder=actorder)


def oneshot_compressed(spec: QuantSpec, ctx: QuantContext, out: Path, p: dict[str, Any], recipe: Any,
                       describe: Callable[[int, float], str], cpu_note: str = "no (CPU)",
                       guard: Callable[[], ContextManager[None]] = contextlib.nullcontext) -> QuantResult:
    """Calibrate, save, verify and describe one llm-compressor variant.

    ``describe(n_rows, calib_seconds)`` writes the method's first note; ``guard`` wraps the
    oneshot call (AWQ uses it for its CPU work-around)."""
    from datasets import Dataset
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    threads = set_threads(ctx.threads)
    tok = AutoTokenizer.from_pretrained(ctx.base.path)
    model = AutoModelForCausalLM.from_pretrained(ctx.base.path, dtype=work_dtype(p["dtype"]), use_safetensors=True)
    rows = calibration_rows(ctx.calibration, tok, int(p["n_samples"]), int(p["seqlen"]))
    ds = Dataset.from_dict({"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]})
    t0 = time.perf_counter()
    with guard():
        oneshot(model=model, dataset=ds, recipe=recipe, pipeline="sequential", sequential_offload_device="cpu",
                num_calibration_samples=len(rows), max_seq_length=int(p["seqlen"]), shuffle_calibration_samples=False)
    calib_s = time.perf_counter() - t0
    # reference logits come from the quantized model in memory; the reloaded folder must match
    ref_logits = save_compressed(model, ctx.base.path, out)
    del model
    probe = check_reload(out, ref_logits, what=spec.variant_id)
    bpw, n = bits_per_weight(out, ctx.base.path)
    kinds = bytes_by_kind(out)
    notes = [
        describe(len(rows), calib_s),
        f"torch threads={threads}; accelerator={'yes' if has_accelerator() else cpu_note}",
        f"tensor bytes: packed weights {kinds['weights']}, scales/zeros {kinds['scales_zeros']}, "
        f"unquantized (embeddings, norms; stored fp16) {kinds['other']}",
        reload_note(probe),
    ]
    return QuantResult(
        artifact=".", files=folder_files(out), runtime=["hf", "vllm"], bits_per_weight=bpw, n_params=n,
        tool_versions=tool_versions("llmcompressor", "compressed-tensors", "transformers", "torch"),
        calibration={**ctx.calibration.describe(), "n_used": len(rows), "seqlen": int(p["seqlen"])},
        notes=notes,
    )
