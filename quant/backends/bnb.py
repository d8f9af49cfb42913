"""bitsandbytes variants (nf4, fp4, each with or without double quant; int8), saved as
serialized safetensors that transformers reloads without quantizing again.

bitsandbytes quantizes while a model loads (``BitsAndBytesConfig``); no calibration.

The CPU round-trip trap, and the fix: on a CPU with AVX512-BF16, bitsandbytes 0.50.2
repacks each 4-bit weight into a CPU-kernel layout on its *first forward pass* (absmax
transposed to [blocks, rows] and cast to bf16). Saving afterwards runs the inverse
(``_convert_weight_packed_for_cpu_inverse``), which restores the codes but leaves a
non-nested absmax transposed, so the saved file reloads as garbage (the "4-bit
save -> reload gives garbage on CPU" seen earlier); with double quant it re-quantizes the
absmax, which is lossy. So the folder is written right after loading, before any forward
pass, and only then is the in-memory model run for the reference logits the reload must
reproduce (measured: identical logits for nf4, nf4+dq, fp4 and int8).

Unquantized tensors (embeddings, norms, LM head) are stored in fp16 like our GPTQ/AWQ
variants, so sizes compare fairly; the LM head stays unquantized (bitsandbytes default).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from quant.backends import BACKENDS, QuantBackend, QuantContext, QuantResult
from quant.backends._hf import (check_reload, copy_tokenizer, folder_files, greedy_probe, has_accelerator,
                                reload_note, require, set_threads)
from quant.bpw import bits_per_weight, bytes_by_kind
from quant.manifest import tool_versions
from quant.spec import BNB_SCHEMES, QuantSpec

KNOWN_PARAMS = {"double_quant", "storage_dtype"}


def bnb_config(spec: QuantSpec):
    import torch
    from transformers import BitsAndBytesConfig

    if spec.scheme == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=spec.scheme,
                              bnb_4bit_use_double_quant=bool(spec.p.get("double_quant")),
                              bnb_4bit_compute_dtype=torch.float32)


def cast_unquantized(model, dtype) -> int:
    """Cast parameters outside bitsandbytes layers (embeddings, norms, LM head); return count."""
    import bitsandbytes as bnb

    skip = (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    seen, n = set(), 0
    for module in model.modules():
        if isinstance(module, skip):
            continue
        for p in module.parameters(recurse=False):
            if id(p) in seen or not p.is_floating_point():
                continue
            seen.add(id(p))
            p.data = p.data.to(dtype)
            n += 1
    return n


@BACKENDS.register("bnb")
class BnBBackend(QuantBackend):
    name = "bnb"

    def problems(self, spec: QuantSpec, model_config: dict[str, Any]) -> list[str]:
        out = []
        if spec.scheme not in BNB_SCHEMES:
            out.append(f"{spec.variant_id}: bitsandbytes scheme '{spec.scheme}' unknown (nf4, fp4, int8)")
        if spec.scheme == "int8" and spec.p.get("double_quant"):
            out.append(f"{spec.variant_id}: double_quant applies to nf4/fp4 only, not int8")
        if spec.p.get("storage_dtype", "float16") not in ("float16", "bfloat16", "float32"):
            out.append(f"{spec.variant_id}: storage_dtype must be float16, bfloat16 or float32")
        unknown = set(spec.p) - KNOWN_PARAMS
        if unknown:
            out.append(f"{spec.variant_id}: unknown bitsandbytes parameter(s) {', '.join(sorted(unknown))} "
                       f"(known: {', '.join(sorted(KNOWN_PARAMS))})")
        return out

    def quantize(self, spec: QuantSpec, ctx: QuantContext, out: Path) -> QuantResult:
        require("bitsandbytes", "bnb")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        threads = set_threads(ctx.threads)
        storage = spec.p.get("storage_dtype", "float16")
        t0 = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(ctx.base.path, dtype=torch.float32, use_safetensors=True,
                                                     quantization_config=bnb_config(spec), device_map="cpu")
        load_s = time.perf_counter() - t0
        footprint = int(model.get_memory_footprint())
        # write BEFORE any forward pass: see the module docstring (CPU repacking bug)
        cast_unquantized(model, getattr(torch, storage))
        model.save_pretrained(out, safe_serialization=True)
        copy_tokenizer(ctx.base.path, out)
        cast_unquantized(model, torch.float32)
        model.eval()
        _, ref_logits = greedy_probe(model, AutoTokenizer.from_pretrained(ctx.base.path))
        del model
        probe = check_reload(out, ref_logits, what=spec.variant_id, load_kwargs={"device_map": "cpu"})
        bpw, n = bits_per_weight(out, ctx.base.path)
        kinds = bytes_by_kind(out)
        dq = " with double quant" if spec.p.get("double_quant") else ""
        notes = [
            f"bitsandbytes {spec.scheme}{dq}, quantized while loading ({load_s:.1f}s); serialized safetensors "
            "(reload does not re-quantize); LM head and embeddings unquantized, stored " + storage,
            f"in-memory footprint right after quantization (fp32 unquantized parts): {footprint} bytes",
            f"saved before the first forward pass (bitsandbytes 0.50.2 CPU repacking corrupts later saves); "
            f"torch threads={threads}; accelerator={'yes' if has_accelerator() else 'no (CPU)'}",
            f"tensor bytes: codes {kinds['weights']}, absmax/scales {kinds['scales_zeros']}, unquantized {kinds['other']}",
            reload_note(probe),
        ]
        return QuantResult(
            artifact=".", files=folder_files(out), runtime=["hf"], bits_per_weight=bpw, n_params=n,
            tool_versions=tool_versions("bitsandbytes", "transformers", "torch"), notes=notes,
        )
