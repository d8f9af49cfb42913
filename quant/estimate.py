"""Dry-run planner: predict size, bits per weight and the memory needed to make each
variant, from a model's config.json alone, before downloading or loading anything.

Why: a 70B or 405B plan must be judged before hours of work start. Everything here is
arithmetic over the tensor shapes a Llama-style decoder has (q/k/v/o, gate/up/down,
norms, embeddings, LM head); no torch, no weights.

How each format is sized:
- GGUF: every tensor gets the ggml type llama.cpp's ``llama_tensor_get_type`` would give it
  (mixtures such as Q4_K_M: Q6_K for the output matrix and for half of attn_v/ffn_down),
  including the fallback for rows not divisible by 256 that K-quants cannot take. Checked
  against published Llama-3.1-8B files (Q4_K_M 4.58 GiB, Q8_0 7.95 GiB, F16 14.96 GiB) and
  byte for byte against SmolLM2-135M files made by our llama.cpp build (F16, Q8_0, Q4_K_M,
  Q2_K, and the bundled Q4_1), whose 576-wide rows exercise the fallbacks.
- GPTQ/AWQ (compressed-tensors): packed int weights + fp16 scales per group (+ packed zero
  points when asymmetric); embeddings, LM head and norms stay fp16.
- bitsandbytes: 4-bit codes + fp32 absmax per 64 weights (double quant: 8-bit absmax plus
  fp32 per 256 blocks), int8 + fp32 per-row scale; embeddings/LM head stay 16-bit.

Memory to quantize, layer by layer (llm-compressor's sequential pipeline): one decoder
layer plus its GPTQ Hessians, the calibration activations entering and leaving it, and
the embeddings; the whole model sits in CPU RAM in the precision it is loaded in (spec
parameter ``dtype``: float32 by default, bfloat16 halves it).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from quant.spec import QuantSpec
from quantsuite.errors import UserError

GiB = 1024 ** 3
# ggml block types: bits per weight (block bytes * 8 / block size)
GGML_BPW = {
    "f32": 32.0, "f16": 16.0, "bf16": 16.0, "q8_0": 8.5, "q4_0": 4.5, "q4_1": 5.0, "q5_0": 5.5, "q5_1": 6.0,
    "q2_k": 2.625, "q3_k": 3.4375, "q4_k": 4.5, "q5_k": 5.5, "q6_k": 6.5625, "iq4_nl": 4.5, "iq4_xs": 4.25,
    "iq3_s": 3.4375, "iq3_xxs": 3.0625, "iq2_xxs": 2.0625, "iq2_xs": 2.3125, "iq2_s": 2.5, "iq1_s": 1.5625,
    "iq1_m": 1.75,
}
# file type -> default tensor type (llama_model_quantize_impl)
GGUF_BASE_TYPE = {
    "f32": "f32", "f16": "f16", "bf16": "bf16", "q8_0": "q8_0", "q4_0": "q4_0", "q4_1": "q4_1", "q5_0": "q5_0",
    "q5_1": "q5_1", "q2_k": "q2_k", "q2_k_s": "q2_k", "q3_k_s": "q3_k", "q3_k_m": "q3_k", "q3_k_l": "q3_k",
    "q4_k_s": "q4_k", "q4_k_m": "q4_k", "q5_k_s": "q5_k", "q5_k_m": "q5_k", "q6_k": "q6_k", "iq4_nl": "iq4_nl",
    "iq4_xs": "iq4_xs", "iq3_m": "iq3_s", "iq3_s": "iq3_s", "iq3_xs": "iq3_xxs", "iq3_xxs": "iq3_xxs",
    "iq2_m": "iq2_s", "iq2_s": "iq2_xs", "iq2_xs": "iq2_xs", "iq2_xxs": "iq2_xxs", "iq1_m": "iq1_m", "iq1_s": "iq1_s",
}
# K-quant / i-quant types need rows divisible by 256; llama.cpp falls back to these
GGUF_FALLBACK = {"q2_k": "q4_0", "q3_k": "q4_0", "iq4_xs": "iq4_nl", "iq3_s": "iq4_nl", "iq3_xxs": "iq4_nl",
                 "iq2_xxs": "iq4_nl", "iq2_xs": "iq4_nl", "iq2_s": "iq4_nl", "iq1_s": "iq4_nl", "iq1_m": "iq4_nl",
                 "q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0"}
QK_K = 256
LOW_IQ = {"iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "iq1_s", "iq1_m", "iq3_xxs"}


@dataclass(frozen=True)
class Tensor:
    """One weight matrix (or vector) of the model: name, rows (out), columns (in), layer."""

    name: str        # gguf-style role: token_embd, output, attn_q, ..., norm
    rows: int
    cols: int
    layer: int = -1

    @property
    def numel(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class Arch:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    head_dim: int
    tied: bool

    @classmethod
    def from_config(cls, c: dict[str, Any]) -> "Arch":
        need = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
        missing = [k for k in need if not c.get(k)]
        if missing:
            raise UserError(f"config.json lacks {', '.join(missing)} (needed for a dry run)")
        h, nh = int(c["hidden_size"]), int(c["num_attention_heads"])
        return cls(hidden=h, intermediate=int(c["intermediate_size"]), layers=int(c["num_hidden_layers"]), heads=nh,
                   kv_heads=int(c.get("num_key_value_heads") or nh), vocab=int(c["vocab_size"]),
                   head_dim=int(c.get("head_dim") or h // nh), tied=bool(c.get("tie_word_embeddings", False)))

    def tensors(self) -> list[Tensor]:
        h, f, q, kv = self.hidden, self.intermediate, self.heads * self.head_dim, self.kv_heads * self.head_dim
        out = [Tensor("token_embd", self.vocab, h), Tensor("output_norm", 1, h)]
        if not self.tied:
            out.append(Tensor("output", self.vocab, h))
        for i in range(self.layers):
            out += [Tensor("attn_norm", 1, h, i), Tensor("ffn_norm", 1, h, i),
                    Tensor("attn_q", q, h, i), Tensor("attn_k", kv, h, i), Tensor("attn_v", kv, h, i),
                    Tensor("attn_output", h, q, i), Tensor("ffn_gate", f, h, i), Tensor("ffn_up", f, h, i),
                    Tensor("ffn_down", h, f, i)]
        return out

    @property
    def n_params(self) -> int:
        return sum(t.numel for t in self.tensors())

    def layer_params(self) -> int:
        return sum(t.numel for t in self.tensors() if t.layer == 0)

    @staticmethod
    def is_linear(t: Tensor) -> bool:
        return t.layer >= 0 and t.rows > 1


# -- GGUF ---------------------------------------------------------------------------------
def _more_bits(i: int, n: int) -> bool:
    """llama.cpp's use_more_bits: first and last eighth of layers, and every third between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def gguf_tensor_type(ftype: str, t: Tensor, a: Arch) -> str:
    """The ggml type llama-quantize gives tensor ``t`` for file type ``ftype`` (Llama arch)."""
    base = GGUF_BASE_TYPE[ftype]
    if t.rows == 1:
        return "f32"                                   # norms are never quantized
    if ftype in ("f32", "f16", "bf16"):
        return base
    n, i, gqa = a.layers, t.layer, a.heads // max(a.kv_heads, 1)
    typ = base
    if t.name == "output" or (t.name == "token_embd" and a.tied):
        typ = "q5_k" if ftype in LOW_IQ else ("q8_0" if base == "q8_0" else "q6_k")
    elif t.name == "token_embd":
        typ = "q2_k" if ftype in LOW_IQ else base
    elif t.name == "attn_v":
        if ftype == "q2_k":
            typ = "q4_k" if gqa >= 4 else "q3_k"
        elif ftype == "q2_k_s" and gqa >= 4:
            typ = "q4_k"
        elif ftype == "q3_k_m":
            typ = "q5_k" if i < 2 else "q4_k"
        elif ftype == "q3_k_l":
            typ = "q5_k"
        elif ftype in ("q4_k_m", "q5_k_m") and _more_bits(i, n):
            typ = "q6_k"
        elif ftype == "q4_k_s" and i < 4:
            typ = "q5_k"
        if n == 80 and typ in ("q3_k", "q4_k"):        # llama.cpp's 70B rule: attn_v is 8x smaller, use Q5_K
            typ = "q5_k"
    elif t.name == "ffn_down":
        if ftype == "q2_k":
            typ = "q3_k"
        elif ftype == "q2_k_s" and i < n // 8:
            typ = "q4_k"
        elif ftype == "q3_k_m":
            typ = "q5_k" if i < n // 16 else "q4_k"
        elif ftype == "q3_k_l":
            typ = "q5_k"
        elif ftype in ("q4_k_m", "q5_k_m") and _more_bits(i, n):
            typ = "q6_k"
        elif ftype in ("q4_k_s", "iq4_nl", "iq4_xs") and i < n // 8:
            typ = "q5_k"
    elif t.name == "attn_output":
        typ = {"q2_k": "q3_k", "q3_k_m": "q4_k", "q3_k_l": "q5_k"}.get(ftype, typ)
    if typ in GGUF_FALLBACK and t.cols % QK_K:
        typ = GGUF_FALLBACK[typ]
    return typ


def gguf_bytes(ftype: str, a: Arch) -> tuple[int, dict[str, int]]:
    """Total tensor bytes and bytes per ggml type."""
    by_type: dict[str, int] = {}
    for t in a.tensors():
        typ = gguf_tensor_type(ftype, t, a)
        by_type[typ] = by_type.get(typ, 0) + math.ceil(t.numel * GGML_BPW[typ] / 8)
    return sum(by_type.values()), by_type


# -- safetensors formats --------------------------------------------------------------------
def int_weight_only_bytes(a: Arch, bits: int, group: int, sym: bool) -> int:
    """compressed-tensors pack-quantized: int32-packed codes, fp16 scales, packed zero points."""
    total = 0
    for t in a.tensors():
        if not a.is_linear(t):
            total += 2 * t.numel
            continue
        groups = 1 if group == -1 else math.ceil(t.cols / group)
        total += t.rows * math.ceil(t.cols * bits / 32) * 4          # packed codes
        total += t.rows * groups * 2                                  # fp16 scales
        if not sym:
            total += math.ceil(t.rows * bits / 32) * 4 * groups       # packed zero points
    return total


def bnb_bytes(a: Arch, scheme: str, double_quant: bool) -> int:
    total = 0
    for t in a.tensors():
        if not a.is_linear(t):
            total += 2 * t.numel
        elif scheme == "int8":
            total += t.numel + 4 * t.rows                             # int8 codes + fp32 row scale
        else:
            blocks = math.ceil(t.numel / 64)
            absmax = blocks + 4 * math.ceil(blocks / 256) + 16 * 4 if double_quant else 4 * blocks
            total += math.ceil(t.numel / 2) + absmax + 64             # codes + absmax + quant map
    return total


# -- machines and memory -------------------------------------------------------------------------
@dataclass(frozen=True)
class Machine:
    ram_bytes: int
    gpu_bytes: int = 0          # 0 = no accelerator
    disk_free_bytes: int = 0    # 0 = unknown / not checked
    name: str = "this machine"

    @classmethod
    def detect(cls, path: str = ".") -> "Machine":
        """RAM from psutil, GPU memory from nvidia-smi if present (no torch import), free disk."""
        import psutil

        gpu = 0
        if shutil.which("nvidia-smi"):
            try:
                r = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                                   capture_output=True, text=True, timeout=10)
                gpu = max((int(x) for x in r.stdout.split() if x.strip().isdigit()), default=0) * 1024 ** 2
            except (OSError, subprocess.SubprocessError, ValueError):
                gpu = 0
        disk = shutil.disk_usage(path if os.path.exists(path) else "/").free
        return cls(ram_bytes=psutil.virtual_memory().total, gpu_bytes=gpu, disk_free_bytes=disk)


@dataclass
class Estimate:
    model: str
    variant_id: str
    method: str
    size_bytes: int
    bits_per_weight: float
    n_params: int
    peak_ram_bytes: int
    peak_gpu_bytes: int          # 0 = done on CPU
    fits: bool
    reasons: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def size_gib(self) -> float:
        return self.size_bytes / GiB


def _calib(spec: QuantSpec) -> tuple[int, int]:
    p = spec.p
    return int(p.get("n_samples", 64)), int(p.get("seqlen", 512))


def quantize_memory(a: Arch, spec: QuantSpec, size: int, machine: Machine) -> tuple[int, int, list[str]]:
    """(peak RAM, peak GPU memory, notes) to make ``spec`` on ``machine``."""
    gpu = machine.gpu_bytes > 0
    h, f = a.hidden, a.intermediate
    embed = a.vocab * h * (1 if a.tied else 2)
    notes: list[str] = []
    if spec.method == "gguf":
        largest = max(t.numel for t in a.tensors())
        # convert_hf_to_gguf and llama-quantize stream tensor by tensor: a few copies of the
        # largest tensor in f32; the imatrix pass runs the F16 model (mmapped) on the CPU
        ram = 2 * 4 * largest + GiB // 2
        if spec.p.get("imatrix"):
            ram = max(ram, 2 * a.n_params + 2 * GiB)
            notes.append("imatrix runs the whole F16 model on the CPU")
        return ram, 0, notes
    if spec.method == "bnb":
        # load-time quantization: shards stream in, each Linear is quantized as it arrives
        work = 2 * max(t.numel for t in a.tensors()) * 4
        return (size + work + GiB, size + work if gpu else 0,
                ["bitsandbytes quantizes while loading; the result must fit in memory at once"])
    # GPTQ / AWQ / AutoRound, layer by layer
    n, seq = _calib(spec)
    act_bytes = 4 if spec.p.get("dtype", "float32") == "float32" else 2   # backends load in spec dtype
    model_bytes = a.n_params * act_bytes
    layer = a.layer_params() * act_bytes
    hessians = 4 * (4 * h * h + f * f)                          # q, k, v, gate/up share h x h inputs; down f x f
    if spec.method != "gptq":
        hessians = 0
    acts = 2 * n * seq * h * act_bytes                          # inputs and outputs of the current layer
    work = seq * max(f, a.heads * seq) * 4 * 4                  # one sample's MLP / attention scores, fp32
    per_layer = layer + hessians + acts + work
    notes.append(f"sequential pipeline: {n} samples x {seq} tokens; one layer {layer / GiB:.2f} GiB + "
                 f"activations {acts / GiB:.2f} GiB" + (f" + Hessians {hessians / GiB:.2f} GiB" if hessians else ""))
    if gpu:
        return model_bytes + acts + size + GiB, per_layer + embed * 2, notes
    notes.append("no accelerator: computed on the CPU (slow for large models)")
    return model_bytes + per_layer + size + GiB, 0, notes


def spec_problems(spec: QuantSpec, config: dict[str, Any]) -> list[str]:
    """The backend's own validation (group sizes, bits, formats), so a dry run shows it too."""
    from quant.backends import BACKENDS

    try:
        return BACKENDS.get(spec.method)().problems(spec, config)
    except UserError as e:
        return [str(e)]


def estimate_spec(a: Arch, spec: QuantSpec, machine: Machine, model: str = "model",
                  config: dict[str, Any] | None = None) -> Estimate:
    n = a.n_params
    detail: dict[str, Any] = {}
    if spec.method == "gguf":
        size, by_type = gguf_bytes(spec.scheme, a)
        detail["by_type_gib"] = {k: round(v / GiB, 3) for k, v in sorted(by_type.items())}
    elif spec.method in ("gptq", "awq", "autoround"):
        sym = bool(spec.p.get("sym", spec.method != "awq"))
        size = int_weight_only_bytes(a, spec.bits, spec.group_size, sym)
    elif spec.method == "bnb":
        size = bnb_bytes(a, spec.scheme, bool(spec.p.get("double_quant")))
    else:
        raise UserError(f"dry run: no size model for method '{spec.method}'")
    ram, gpu, notes = quantize_memory(a, spec, size, machine)
    reasons = list(spec_problems(spec, config)) if config else []
    if ram > 0.9 * machine.ram_bytes:
        reasons.append(f"needs ~{ram / GiB:.1f} GiB RAM, {machine.name} has {machine.ram_bytes / GiB:.1f} GiB")
    if gpu and gpu > 0.9 * machine.gpu_bytes:
        reasons.append(f"needs ~{gpu / GiB:.1f} GiB GPU memory, {machine.name} has {machine.gpu_bytes / GiB:.1f} GiB")
    disk_need = size + (2 * n if spec.method == "gguf" else 0)   # GGUF keeps an F16 intermediate
    if machine.disk_free_bytes and disk_need > machine.disk_free_bytes:
        reasons.append(f"needs ~{disk_need / GiB:.1f} GiB disk, {machine.disk_free_bytes / GiB:.1f} GiB free")
    detail["notes"] = notes
    return Estimate(model=model, variant_id=spec.variant_id, method=spec.method, size_bytes=size,
                    bits_per_weight=8.0 * size / n, n_params=n, peak_ram_bytes=ram, peak_gpu_bytes=gpu,
                    fits=not reasons, reasons=reasons, detail=detail)


def estimate_plan(config: dict[str, Any], specs: Iterable[QuantSpec], machine: Machine | None = None,
                  model: str | None = None) -> list[Estimate]:
    """One Estimate per spec for the model described by ``config`` (a config.json dict)."""
    a = Arch.from_config(config)
    m = machine or Machine.detect()
    name = model or config.get("_name_or_path") or config.get("model_type", "model")
    return [estimate_spec(a, s, m, str(name), config) for s in specs]


def format_estimates(model: str, estimates: Sequence[Estimate], machine: Machine | None = None) -> str:
    """Plain-text table for the CLI: a title, one row per variant, reasons under rows that do not fit."""
    head = f"{'model':<24} {'variant':<20} {'size GiB':>9} {'bpw':>6} {'RAM GiB':>8} {'GPU GiB':>8}  fits"
    title = f"dry run for {model}" + (f" ({estimates[0].n_params / 1e9:.2f}B weights)" if estimates else "")
    lines = [title, head, "-" * len(head)]
    for e in estimates:
        gpu = f"{e.peak_gpu_bytes / GiB:8.1f}" if e.peak_gpu_bytes else f"{'cpu':>8}"
        lines.append(f"{e.model[:24]:<24} {e.variant_id[:20]:<20} {e.size_gib:9.2f} {e.bits_per_weight:6.2f} "
                     f"{e.peak_ram_bytes / GiB:8.1f} {gpu}  {'yes' if e.fits else 'NO'}")
        lines += [f"{'':<24}   - {r}" for r in e.reasons]
    if machine is not None:
        lines.append(f"machine: {machine.ram_bytes / GiB:.1f} GiB RAM, "
                     + (f"{machine.gpu_bytes / GiB:.0f} GiB GPU" if machine.gpu_bytes else "no GPU"))
    return "\n".join(lines)
