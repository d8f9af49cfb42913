"""AWQ 4-bit weight-only quantization through llm-compressor, saved as compressed-tensors.

Why llm-compressor rather than GPTQModel or AutoAWQ: its output is the same
compressed-tensors layout as our GPTQ variants, which transformers decompresses on CPU
and vLLM serves, so the evaluator needs no extra package. AutoAWQ is deprecated and its
CPU path needs IPEX, which refuses torch 2.13.

CPU fix: llm-compressor 0.14's AWQ smoothing step pins its cached activations
(``IntermediatesCache.pin_memory``) to speed host-to-GPU copies; without an accelerator
``pin_memory`` raises "Cannot access accelerator device". Pinning only affects transfer
speed, never values, so while an AWQ run is in progress on a machine with no accelerator
that one method is replaced by a no-op (``_no_pinning_on_cpu``) and restored afterwards.

Recipe: AWQModifier (activation-aware channel scaling, searched per layer on a grid) then
QuantizationModifier (round-to-nearest with the scheme from the spec, asymmetric by
default as in the AWQ paper), run through the sequential pipeline: one decoder layer at a
time, so peak memory is about one layer plus the calibration activations.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Iterator

from quant.backends import BACKENDS, QuantBackend, QuantContext, QuantResult
from quant.backends._hf import (DTYPES, calibration_rows, check_reload, folder_files, group_problems, has_accelerator,
                                reload_note, require, save_compressed, set_threads, work_dtype)
from quant.bpw import bits_per_weight, bytes_by_kind
from quant.manifest import tool_versions
from quant.spec import QuantSpec

GROUP_SIZES = (32, 64, 128, -1)
BITS = (4,)
DEFAULTS = {"n_samples": 64, "seqlen": 512, "sym": False, "n_grid": 20, "duo_scaling": True, "dtype": "float32"}
FORMATS = ("compressed-tensors",)


@contextlib.contextmanager
def _no_pinning_on_cpu() -> Iterator[None]:
    """Make llm-compressor's activation pinning a no-op when there is no accelerator."""
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if torch.accelerator.is_available():
        yield
        return
    original = IntermediatesCache.pin_memory
    IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original  # type: ignore[method-assign]


@BACKENDS.register("awq")
class AWQBackend(QuantBackend):
    name = "awq"
    needs_calibration = True

    def problems(self, spec: QuantSpec, model_config: dict[str, Any]) -> list[str]:
        out = []
        if spec.bits not in BITS:
            out.append(f"{spec.variant_id}: AWQ here is 4-bit only, not {spec.bits}-bit "
                       "(use gptq or gguf for other widths)")
        out += group_problems(spec, model_config, GROUP_SIZES)
        fmt = spec.p.get("format", "compressed-tensors")
        if fmt not in FORMATS + ("awq",):
            out.append(f"{spec.variant_id}: unknown AWQ format '{fmt}' (choose compressed-tensors)")
        elif fmt == "awq":
            out.append(f"{spec.variant_id}: format 'awq' (AutoAWQ GEMM layout) is not produced: AutoAWQ is "
                       "deprecated and its kernels need a GPU or IPEX; use the default compressed-tensors")
        if int(spec.p.get("n_grid", DEFAULTS["n_grid"])) < 3:
            out.append(f"{spec.variant_id}: n_grid must be at least 3 (llm-compressor divides by n_grid - 2)")
        if spec.p.get("dtype", "float32") not in DTYPES:
            out.append(f"{spec.variant_id}: dtype must be one of {', '.join(DTYPES)} (the precision the model is "
                       "loaded and calibrated in)")
        unknown = set(spec.p) - set(DEFAULTS) - {"format"}
        if unknown:
            out.append(f"{spec.variant_id}: unknown AWQ parameter(s) {', '.join(sorted(unknown))} "
                       f"(known: {', '.join(sorted(DEFAULTS))})")
        return out

    def quantize(self, spec: QuantSpec, ctx: QuantContext, out: Path) -> QuantResult:
        require("llmcompressor", "awq")
        import torch
        from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
        from datasets import Dataset
        from llmcompressor import oneshot
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.transform.awq import AWQModifier
        from transformers import AutoModelForCausalLM, AutoTokenizer

        p = {**DEFAULTS, **{k: v for k, v in spec.p.items() if k in DEFAULTS}}
        threads = set_threads(ctx.threads)
        tok = AutoTokenizer.from_pretrained(ctx.base.path)
        model = AutoModelForCausalLM.from_pretrained(ctx.base.path, dtype=work_dtype(p["dtype"]),
                                                     use_safetensors=True)
        rows = calibration_rows(ctx.calibration, tok, int(p["n_samples"]), int(p["seqlen"]))
        ds = Dataset.from_dict({"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]})
        g = spec.group_size
        weights = QuantizationArgs(num_bits=spec.bits, type="int", symmetric=bool(p["sym"]),
                                   strategy="channel" if g == -1 else "group", group_size=None if g == -1 else g)
        recipe = [
            AWQModifier(n_grid=int(p["n_grid"]), duo_scaling=p["duo_scaling"]),
            QuantizationModifier(config_groups={"group_0": QuantizationScheme(targets=["Linear"], weights=weights)},
                                 ignore=["lm_head"]),
        ]
        t0 = time.perf_counter()
        with _no_pinning_on_cpu():
            oneshot(model=model, dataset=ds, recipe=recipe, pipeline="sequential", sequential_offload_device="cpu",
                    num_calibration_samples=len(rows), max_seq_length=int(p["seqlen"]),
                    shuffle_calibration_samples=False)
        calib_s = time.perf_counter() - t0
        ref_logits = save_compressed(model, ctx.base.path, out)
        del model
        probe = check_reload(out, ref_logits, what=spec.variant_id)
        bpw, n = bits_per_weight(out, ctx.base.path)
        kinds = bytes_by_kind(out)
        notes = [
            f"llm-compressor AWQModifier (n_grid={p['n_grid']}, duo_scaling={p['duo_scaling']}) + round-to-nearest "
            f"{'symmetric' if p['sym'] else 'asymmetric'} int{spec.bits}, sequential pipeline (one decoder layer at "
            f"a time), {len(rows)} samples x <= {p['seqlen']} tokens, calibrated in {p['dtype']}; calibration {calib_s:.1f}s",
            f"torch threads={threads}; accelerator={'yes' if has_accelerator() else 'no (CPU; activation pinning disabled)'}",
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
