"""Read a GGUF file's key/value metadata without loading the model, and size its KV cache.

Why our own reader: ``pick`` has to size every candidate variant, and loading each model
with llama.cpp (or memory-mapping it with the ``gguf`` package, an optional extra) just to
read a few integers is slow and needs the very RAM we are budgeting. The header is a short
sequence of typed key/values at the start of the file; we stop before the tensor table.
Large arrays (the 50k-150k token vocabulary) are skipped unless asked for by name.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from quantsuite.errors import UserError

# GGUF value types (gguf spec): scalar struct formats, little endian
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_MAX_STRING = 64 << 20        # a chat template is a few KB; refuse absurd lengths early
_MAX_KV = 1 << 20

KV_CACHE_BYTES_PER_ELEMENT = 2  # llama.cpp's default KV cache type is f16


class _Skipped:
    """Placeholder for an array we did not materialise (keeps its length for callers)."""

    def __init__(self, n: int):
        self.n = n

    def __repr__(self) -> str:
        return f"<array of {self.n}>"


def read_metadata(path: str | Path, keep_arrays: tuple[str, ...] = ()) -> dict[str, Any]:
    """Key/value metadata of a GGUF file; arrays not named in ``keep_arrays`` are skipped."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"GGUF file not found: {p}")
    try:
        with open(p, "rb") as f:
            if f.read(4) != b"GGUF":
                raise UserError(f"{p} is not a GGUF file (bad magic)")
            (version,) = struct.unpack("<I", _read(f, 4))
            if version < 2:
                raise UserError(f"{p}: GGUF version {version} is too old (re-convert the model)")
            _n_tensors, n_kv = struct.unpack("<QQ", _read(f, 16))
            if n_kv > _MAX_KV:
                raise UserError(f"{p}: implausible metadata count {n_kv}")
            out: dict[str, Any] = {}
            for _ in range(n_kv):
                key = _read_str(f)
                (vtype,) = struct.unpack("<I", _read(f, 4))
                out[key] = _read_value(f, vtype, keep=key in keep_arrays)
            return out
    except (struct.error, EOFError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: truncated or corrupt GGUF header ({e})") from None


def _read(f: BinaryIO, n: int) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise EOFError("unexpected end of file")
    return b


def _read_str(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", _read(f, 8))
    if n > _MAX_STRING:
        raise EOFError(f"string of {n} bytes")
    return _read(f, n).decode("utf-8", errors="replace")


def _read_value(f: BinaryIO, vtype: int, keep: bool = True) -> Any:
    if vtype in _SCALARS:
        fmt = _SCALARS[vtype]
        return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]
    if vtype == _STRING:
        return _read_str(f)
    if vtype == _ARRAY:
        (itype,) = struct.unpack("<I", _read(f, 4))
        (n,) = struct.unpack("<Q", _read(f, 8))
        if itype in _SCALARS:
            size = struct.calcsize(_SCALARS[itype])
            if not keep:
                f.seek(n * size, 1)
                return _Skipped(n)
            raw = _read(f, n * size)
            return list(struct.unpack(f"<{n}{_SCALARS[itype][1]}", raw))
        if itype == _STRING:
            if not keep:
                for _ in range(n):
                    (ln,) = struct.unpack("<Q", _read(f, 8))
                    f.seek(ln, 1)
                return _Skipped(n)
            return [_read_str(f) for _ in range(n)]
        return [_read_value(f, itype, keep) for _ in range(n)] if keep else _Skipped(n)
    raise EOFError(f"unknown GGUF value type {vtype}")


@dataclass(frozen=True)
class ModelShape:
    """The numbers that size the KV cache, from ``<arch>.*`` metadata."""

    arch: str
    n_layer: int
    n_head: int
    n_head_kv: tuple[int, ...]   # per layer (some architectures vary it)
    head_dim_k: int
    head_dim_v: int
    n_ctx_train: int

    def kv_bytes_per_token(self) -> int:
        return sum(h * (self.head_dim_k + self.head_dim_v) for h in self.n_head_kv) * KV_CACHE_BYTES_PER_ELEMENT

    def kv_cache_bytes(self, n_ctx: int) -> int:
        """f16 K and V for every layer and position: llama.cpp allocates all of it up front."""
        return self.kv_bytes_per_token() * int(n_ctx)


def model_shape(meta: dict[str, Any], source: str = "model") -> ModelShape:
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise UserError(f"{source}: GGUF metadata lacks general.architecture")

    def get(name: str, default: Any = None) -> Any:
        v = meta.get(f"{arch}.{name}", default)
        if isinstance(v, _Skipped):
            raise UserError(f"{source}: {arch}.{name} was not read")
        return v

    n_layer, n_head, n_embd = get("block_count"), get("attention.head_count"), get("embedding_length")
    if not n_layer or not n_head or not n_embd:
        raise UserError(f"{source}: GGUF metadata lacks {arch}.block_count/attention.head_count/embedding_length")
    if isinstance(n_head, list):           # per-layer head counts: use the largest for head dim
        n_head = max(n_head)
    kv = get("attention.head_count_kv", n_head)
    kv_layers = tuple(int(x) for x in kv) if isinstance(kv, list) else (int(kv),) * int(n_layer)
    head_dim_k = int(get("attention.key_length", n_embd // n_head))
    head_dim_v = int(get("attention.value_length", head_dim_k))
    return ModelShape(arch, int(n_layer), int(n_head), kv_layers, head_dim_k, head_dim_v,
                      int(get("context_length", 0) or 0))


def token_text(meta: dict[str, Any], token_id: Any) -> str | None:
    """The vocabulary string of a token id (needs ``tokenizer.ggml.tokens`` kept)."""
    toks = meta.get("tokenizer.ggml.tokens")
    if not isinstance(toks, list) or not isinstance(token_id, int) or not 0 <= token_id < len(toks):
        return None
    return toks[token_id]
