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
from pathlib import Path
from typing import Any, Iterator

from quant.backends import BACKENDS, QuantBackend, QuantContext, QuantResult
from quant.backends._hf import group_problems, require
from quant.backends._llmcompressor import oneshot_compressed, param_problems, weight_args
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
        out += param_problems(spec, "AWQ", DEFAULTS)
        return out

    def quantize(self, spec: QuantSpec, ctx: QuantContext, out: Path) -> QuantResult:
        require("llmcompressor", "awq")
        from compressed_tensors.quantization import QuantizationScheme
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.transform.awq import AWQModifier

        p = {**DEFAULTS, **{k: v for k, v in spec.p.items() if k in DEFAULTS}}
        weights = weight_args(spec, symmetric=bool(p["sym"]))
        recipe = [
            AWQModifier(n_grid=int(p["n_grid"]), duo_scaling=p["duo_scaling"]),
            QuantizationModifier(config_groups={"group_0": QuantizationScheme(targets=["Linear"], weights=weights)},
                                 ignore=["lm_head"]),
        ]
        describe = lambda n_rows, secs: (  # noqa: E731
            f"llm-compressor AWQModifier (n_grid={p['n_grid']}, duo_scaling={p['duo_scaling']}) + round-to-nearest "
            f"{'symmetric' if p['sym'] else 'asymmetric'} int{spec.bits}, sequential pipeline (one decoder layer at "
            f"a time), {n_rows} samples x <= {p['seqlen']} tokens, calibrated in {p['dtype']}; calibration {secs:.1f}s")
        return oneshot_compressed(spec, ctx, out, p, recipe, describe,
                                  cpu_note="no (CPU; activation pinning disabled)", guard=_no_pinning_on_cpu)
