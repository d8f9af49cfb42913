"""GPTQ weight-only quantization through llm-compressor, saved as compressed-tensors.

Why llm-compressor: it is maintained, runs on CPU, and writes compressed-tensors
safetensors that transformers decompresses on load (our HF runtime) and vLLM serves.
Its W4A16 preset hard-codes group 128, which SmolLM2 (hidden 576) cannot take, so the
scheme is built explicitly from the spec (config_groups).

Memory: the *sequential* pipeline is requested explicitly. It traces the model into one
subgraph per decoder layer, runs calibration data through one layer at a time and keeps
only that layer's inputs (offloaded to CPU between layers); GPTQ's Hessians exist for one
layer at a time. With an accelerator, peak GPU memory is about one layer plus the
calibration activations; on CPU the whole model sits in RAM once (no copy) plus the same.

``format: gptq`` / ``auto_gptq`` (the old AutoGPTQ layout) is rejected before work starts:
auto-gptq is end-of-life (needs CUDA), and while GPTQModel 7.6.0 can write that layout on
CPU, transformers then needs GPTQModel + optimum to load it, whereas compressed-tensors
loads with what the HF runtime already has. GPU kernel layouts (marlin, exllama...) are
rejected on every machine here, with a message that says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quant.backends import BACKENDS, QuantBackend, QuantContext, QuantResult
from quant.backends._hf import group_problems, require
from quant.backends._llmcompressor import oneshot_compressed, param_problems, weight_args
from quant.spec import QuantSpec
from quantsuite.errors import UserError

GROUP_SIZES = (32, 64, 128, -1)
BITS = (4, 8)
FORMATS = ("compressed-tensors",)
# kernel-specific layouts some tools write; all need a CUDA GPU to pack and to run
GPU_FORMATS = ("marlin", "exllama", "exllamav2", "bitblas", "machete")
# sym=True is the default of published GPTQ checkpoints and vLLM's fast kernels. Measured on
# the dequantized-Q4_1 SmolLM2 base (w4 g64, 16x256 calibration, held-out WikiText ppl;
# base 31.7): GPTQ sym 50.0 vs round-to-nearest sym 47.9, GPTQ asym 40.2 vs RTN asym 41.9.
# That base's weights sit on Q4_1's asymmetric grid; set sym: false for it.
DEFAULTS = {"n_samples": 64, "seqlen": 512, "act_order": False, "sym": True, "dampening": 0.01, "block_size": 128,
            "dtype": "float32"}
# The scheme only quantizes the decoder's Linear layers: embeddings and the LM head stay
# at full precision, as in every GPTQ checkpoint published for vLLM.
IGNORE = ["lm_head"]


def gptq_params(spec: QuantSpec) -> dict[str, Any]:
    return {**DEFAULTS, **{k: v for k, v in spec.p.items() if k in DEFAULTS}}


@BACKENDS.register("gptq")
class GPTQBackend(QuantBackend):
    name = "gptq"
    needs_calibration = True

    def problems(self, spec: QuantSpec, model_config: dict[str, Any]) -> list[str]:
        out = []
        if spec.bits not in BITS:
            out.append(f"{spec.variant_id}: GPTQ supports {' or '.join(map(str, BITS))} bits here, not {spec.bits}")
        out += group_problems(spec, model_config, GROUP_SIZES)
        fmt = spec.p.get("format", "compressed-tensors")
        if fmt in ("gptq", "auto_gptq"):
            out.append(f"{spec.variant_id}: format '{fmt}' (the AutoGPTQ layout) is not produced: auto-gptq is "
                       "end-of-life and needs CUDA, and loading that layout in transformers needs GPTQModel + optimum; "
                       "use the default compressed-tensors, which transformers (CPU) and vLLM load")
        elif fmt in GPU_FORMATS:
            out.append(f"{spec.variant_id}: format '{fmt}' is a GPU kernel layout and cannot be made or run on a "
                       "machine without a CUDA GPU; use the default compressed-tensors")
        elif fmt not in FORMATS:
            out.append(f"{spec.variant_id}: unknown GPTQ format '{fmt}' (choose compressed-tensors)")
        out += param_problems(spec, "GPTQ", DEFAULTS)
        return out

    def quantize(self, spec: QuantSpec, ctx: QuantContext, out: Path) -> QuantResult:
        if spec.p.get("format", "compressed-tensors") != "compressed-tensors":
            raise UserError("; ".join(self.problems(spec, ctx.model_config)))
        return self._llmcompressor(spec, ctx, out)

    def _llmcompressor(self, spec: QuantSpec, ctx: QuantContext, out: Path) -> QuantResult:
        require("llmcompressor", "gptq")
        from compressed_tensors.quantization import QuantizationScheme
        from llmcompressor.modifiers.gptq import GPTQModifier

        p = gptq_params(spec)
        actorder = "static" if p["act_order"] else None
        modifier = GPTQModifier(
            config_groups={"group_0": QuantizationScheme(targets=["Linear"],
                                                         weights=weight_args(spec, bool(p["sym"]), actorder))},
            ignore=IGNORE, dampening_frac=float(p["dampening"]), block_size=int(p["block_size"]), actorder=actorder,
        )
        describe = lambda n_rows, secs: (  # noqa: E731
            f"llm-compressor GPTQModifier, sequential pipeline (one decoder layer calibrated at a time), "
            f"{n_rows} samples x <= {p['seqlen']} tokens, act_order={p['act_order']}, sym={p['sym']}, "
            f"dampening={p['dampening']}, calibrated in {p['dtype']}; calibration {secs:.1f}s")
        return oneshot_compressed(spec, ctx, out, p, modifier, describe)
