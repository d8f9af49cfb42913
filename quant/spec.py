"""QuantSpec: what to make, as data. Its ``variant_id`` names the output folder.

A spec is method + scheme + bits + group size + a few method parameters; it is frozen,
hashable and round-trips through JSON (``to_dict``/``from_dict``) with a version, so a
manifest written today can still be read when fields are added.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from quantsuite.errors import UserError

SPEC_VERSION = 1

# GGUF file types accepted by llama-quantize, with their nominal bits per weight (used only
# for size prediction; manifests measure bpw from the tensors). IQ types need an imatrix.
GGUF_TYPES: dict[str, float] = {
    "f32": 32.0, "f16": 16.0, "bf16": 16.0, "q8_0": 8.5,
    "q6_k": 6.5625, "q5_k_m": 5.69, "q5_k_s": 5.54, "q5_1": 6.0, "q5_0": 5.5,
    "q4_k_m": 4.89, "q4_k_s": 4.58, "q4_1": 5.0, "q4_0": 4.5, "iq4_nl": 4.5, "iq4_xs": 4.25,
    "q3_k_l": 4.27, "q3_k_m": 3.91, "q3_k_s": 3.5, "iq3_m": 3.66, "iq3_s": 3.44,
    "iq3_xs": 3.3, "iq3_xxs": 3.06, "q2_k": 3.0, "q2_k_s": 2.96, "iq2_m": 2.7,
    "iq2_s": 2.5, "iq2_xs": 2.31, "iq2_xxs": 2.06, "iq1_m": 1.75, "iq1_s": 1.56,
}
# Types for which llama-quantize refuses to run without an importance matrix.
GGUF_NEEDS_IMATRIX = {"iq2_xxs", "iq2_xs", "iq2_s", "iq1_s", "iq1_m"}
# Types for which an imatrix is strongly recommended (we compute one by default).
GGUF_WANTS_IMATRIX = GGUF_NEEDS_IMATRIX | {"iq3_xxs", "iq3_xs", "iq3_s", "iq3_m", "iq4_xs", "iq4_nl", "iq2_m"}
GGUF_DEFAULT_FOR_BITS = {16: "f16", 8: "q8_0", 6: "q6_k", 5: "q5_k_m", 4: "q4_k_m", 3: "q3_k_m", 2: "q2_k"}

BNB_SCHEMES = {"nf4": 4, "fp4": 4, "int8": 8}
METHODS = ("gguf", "gptq", "awq", "bnb", "autoround")


@dataclass(frozen=True)
class QuantSpec:
    method: str
    bits: int
    scheme: str = ""          # gguf type (q4_k_m), bnb type (nf4), or "" for w{bits}
    group_size: int = 0       # 0 = not applicable; -1 = per-channel
    params: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    version: int = SPEC_VERSION

    # -- construction ------------------------------------------------------------
    @classmethod
    def make(cls, method: str, bits: int | None = None, scheme: str | None = None,
             group_size: int | None = None, **params: Any) -> "QuantSpec":
        method = method.lower().strip()
        if method not in METHODS:
            raise UserError(f"unknown quantization method '{method}' (known: {', '.join(METHODS)})")
        scheme = (scheme or "").lower().strip()
        if method == "gguf":
            if not scheme:
                if bits not in GGUF_DEFAULT_FOR_BITS:
                    raise UserError(f"gguf: unsupported bit width {bits} (choose {sorted(GGUF_DEFAULT_FOR_BITS)} or a scheme like q4_k_m)")
                scheme = GGUF_DEFAULT_FOR_BITS[bits]
            if scheme not in GGUF_TYPES:
                raise UserError(f"gguf: unknown type '{scheme}' (known: {', '.join(GGUF_TYPES)})")
            bits = int(GGUF_TYPES[scheme]) if bits is None else bits
            group_size = 0
            if scheme in GGUF_WANTS_IMATRIX:
                params.setdefault("imatrix", True)
        elif method == "bnb":
            scheme = scheme or {4: "nf4", 8: "int8"}.get(bits or 4, "")
            if scheme not in BNB_SCHEMES:
                raise UserError(f"bnb: unsupported scheme/bits '{scheme or bits}' (choose nf4, fp4 or int8)")
            bits = BNB_SCHEMES[scheme]
            group_size = 64 if scheme != "int8" else -1
            if scheme != "int8":
                params.setdefault("double_quant", False)
        else:  # gptq, awq, autoround: integer weight-only
            if bits is None:
                raise UserError(f"{method}: --bits is required")
            group_size = 128 if group_size is None else int(group_size)
            scheme = scheme or f"w{bits}a16"
        if bits is None:
            raise UserError(f"{method}: --bits is required")
        clean = tuple(sorted((k, _freeze(v)) for k, v in params.items() if v is not None))
        return cls(method=method, bits=int(bits), scheme=scheme, group_size=int(group_size or 0), params=clean)

    # -- identity ------------------------------------------------------------------
    @property
    def p(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def variant_id(self) -> str:
        """Readable, stable folder name, e.g. gguf-q4_k_m, gptq-w4g64-ao, bnb-nf4-dq."""
        if self.method == "gguf":
            vid = f"gguf-{self.scheme}"
            if self.p.get("imatrix"):
                vid += "-imat"
            return vid
        if self.method == "bnb":
            return f"bnb-{self.scheme}" + ("-dq" if self.p.get("double_quant") else "")
        g = "pc" if self.group_size == -1 else f"g{self.group_size}"
        vid = f"{self.method}-w{self.bits}{g}"
        if self.p.get("act_order"):
            vid += "-ao"
        if self.p.get("sym") is False:
            vid += "-asym"
        if self.p.get("dtype") not in (None, "float32"):
            vid += f"-{self.p['dtype']}"
        if self.p.get("format") and self.p["format"] not in ("compressed-tensors", "gptq", "awq"):
            vid += f"-{self.p['format']}"
        return vid

    def key(self) -> str:
        """Hash of the full spec (all parameters), for resume and run keys."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    # -- (de)serialisation ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["params"] = {k: v for k, v in self.params}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "QuantSpec":
        version = int(d.get("version", 1))
        if version > SPEC_VERSION:
            raise UserError(f"spec version {version} is newer than this quantsuite understands ({SPEC_VERSION})")
        params = d.get("params") or {}
        return cls(method=d["method"], bits=int(d["bits"]), scheme=d.get("scheme", ""),
                   group_size=int(d.get("group_size", 0)),
                   params=tuple(sorted((k, _freeze(v)) for k, v in params.items())), version=SPEC_VERSION)


def _freeze(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(v)
    if isinstance(v, dict):
        return tuple(sorted(v.items()))
    return v
