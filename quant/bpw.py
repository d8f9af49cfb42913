"""Bits per weight of safetensors variants, measured from the tensors themselves.

bpw = 8 * (bytes of tensor data in the variant) / (number of logical weights of the base).

The denominator is the *base* model's weight count, not the variant's element count: a
GPTQ file stores eight 4-bit weights in one int32 plus scales and zero points, so counting
the variant's elements would give nonsense. The numerator is tensor data only (no JSON
header, no tokenizer), so the figure compares across formats: packed weights, scales,
zero points, unquantized embeddings and norms all count, as they cost memory at run time.

Only the safetensors header is read (8-byte length + JSON), never the data, so this is
instant even for a 405B checkpoint and needs neither torch nor safetensors installed.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from quantsuite.errors import UserError

# bytes per element for safetensors dtypes (sub-byte types are packed by their producers
# into U8/I32 tensors, so they never appear here)
DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
               "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def read_header(path: Path) -> list[TensorInfo]:
    """Tensor table of one .safetensors file (names, dtypes, shapes, byte sizes)."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100_000_000:
                raise ValueError("header too large")
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as e:
        raise UserError(f"{path}: not a readable safetensors file ({e})") from None
    out = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out.append(TensorInfo(name, info["dtype"], tuple(info["shape"]), int(end) - int(start)))
    return out


def safetensors_files(folder_or_files: Path | Iterable[Path]) -> list[Path]:
    if isinstance(folder_or_files, Path):
        if folder_or_files.is_file():
            return [folder_or_files]
        files = sorted(folder_or_files.glob("*.safetensors"))
        if not files:
            raise UserError(f"{folder_or_files}: no .safetensors files")
        return files
    return [Path(p) for p in folder_or_files]


def tensors(folder_or_files: Path | Iterable[Path]) -> list[TensorInfo]:
    return [t for f in safetensors_files(folder_or_files) for t in read_header(f)]


def tensor_bytes(folder_or_files: Path | Iterable[Path]) -> int:
    """Bytes of tensor data (headers excluded) in a folder's safetensors files."""
    return sum(t.nbytes for t in tensors(folder_or_files))


def n_weights(folder_or_files: Path | Iterable[Path]) -> int:
    """Number of elements in an unquantized checkpoint = its logical weight count."""
    return sum(t.numel for t in tensors(folder_or_files))


def bits_per_weight(variant: Path | Iterable[Path], base: Path | int) -> tuple[float, int]:
    """(bpw, number of base weights): ``base`` is the base folder or its weight count."""
    n = base if isinstance(base, int) else n_weights(base)
    if n <= 0:
        raise UserError("base model has no weights to count")
    return 8.0 * tensor_bytes(variant) / n, n


def bytes_by_kind(folder_or_files: Path | Iterable[Path]) -> dict[str, int]:
    """Tensor bytes split into packed weights / scales+zeros / other (embeddings, norms).

    Used in manifest notes so a reader sees where a variant's bits go.
    """
    out = {"weights": 0, "scales_zeros": 0, "other": 0}
    for t in tensors(folder_or_files):
        leaf = t.name.rsplit(".", 1)[-1]
        if any(k in t.name for k in ("scale", "zero_point", "qzeros", "absmax", "quant_map", "quant_state", "SCB",
                                     "g_idx", "weight_shape")):
            out["scales_zeros"] += t.nbytes
        elif leaf in ("weight_packed", "qweight") or (leaf == "weight" and t.dtype in ("I32", "U8", "I8", "U32")):
            out["weights"] += t.nbytes
        else:
            out["other"] += t.nbytes
    return out
