"""The dequantized bundled bases keep their GGUF's tokenizer exactly.

For each bundled model the HF folder that resolve_base builds must
- tokenize like llama.cpp on the original GGUF (100k characters of wikitext-2 test, BOS
  included): HF with ``split_special_tokens=True`` == llama.cpp ``special=False`` (plain
  text; wikitext contains literal "<unk>", which is Gemma's unknown token), and the HF
  default (control tokens parsed) == llama.cpp ``special=True``;
- survive convert_hf_to_gguf (as quant/backends/gguf.py runs it): the new GGUF's
  tokenizer.* metadata equals the original's and it tokenizes the same;
- generate like llama.cpp does on that converted f16 GGUF (greedy, first tokens).
SmolLM2 (GPT-2 BPE) is cheap; Gemma 3 (SentencePiece, 262k vocab) is slow: dequantizing
takes ~3 min on 2 cores, converting ~25 s, the greedy check ~90 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")
pytest.importorskip("llama_cpp")

THREADS = int(os.environ.get("QUANTSUITE_THREADS", "2"))
MODELS = ["smollm2-135m-instruct", pytest.param("gemma3-270m", marks=pytest.mark.slow)]
PROBES = [
    "Hello world", " leading space", "a  b   c\t\td\n\n\ne", "naïve café 日本語 🤖 \x01", "   ", "x",
    "<table><tr>x</tr></table>", "12345 67,890.12", "x" * 40 + " " * 70 + "y", "\u2581foo",
    "<start_of_turn>user\nhi<end_of_turn>", "<|im_start|>user\nhi<|im_end|>", " = Robert <unk> = \n",
]


@pytest.fixture(scope="module")
def wikitext() -> str:
    from quantsuite.paths import data_dir

    return (data_dir() / "wikitext2" / "test.txt").read_text()[:100_000]


@pytest.fixture(scope="module")
def built(models_dir, tmp_path_factory):
    """name -> (base, original gguf); and name -> converted f16 gguf, made on demand."""
    return {"bases": {}, "f16": {}, "tmp": tmp_path_factory.mktemp("roundtrip"), "models_dir": models_dir}


def _base(built, name):
    from quant.base_model import bundled_gguf, resolve_base

    if name not in built["bases"]:
        built["bases"][name] = (resolve_base(name, built["models_dir"]), bundled_gguf(name))
    return built["bases"][name]


def _f16(built, name) -> Path:
    from quantsuite.errors import UserError
    from quantsuite.paths import llama_cpp_root

    if name not in built["f16"]:
        base, _ = _base(built, name)
        try:
            src = llama_cpp_root() / "src" / "vendor" / "llama.cpp"
        except UserError as e:
            pytest.skip(str(e))
        out = built["tmp"] / f"{name}-f16.gguf"
        proc = subprocess.run([sys.executable, str(src / "convert_hf_to_gguf.py"), str(base.path), "--outtype", "f16",
                               "--outfile", str(out)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(src / "gguf-py"), "NO_LOCAL_GGUF": ""})
        assert proc.returncode == 0, f"convert_hf_to_gguf failed:\n{proc.stderr[-3000:]}"
        built["f16"][name] = out
    return built["f16"][name]


def _vocab(path: Path):
    from llama_cpp import Llama

    return Llama(str(path), vocab_only=True, verbose=False)


def _tokenizer_metadata(path: Path) -> dict:
    from gguf import GGUFReader

    out = {}
    for key, f in GGUFReader(str(path)).fields.items():
        if not key.startswith("tokenizer."):
            continue
        if f.types[0].name == "ARRAY":
            out[key] = [bytes(f.parts[i]) if f.types[-1].name == "STRING" else f.parts[i].tolist()[0] for i in f.data]
        else:
            v = f.parts[f.data[0]]
            out[key] = bytes(v) if f.types[0].name == "STRING" else v.tolist()[0]
    return out


def _first_diff(a: list[int], b: list[int]) -> str:
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"{len(a)} vs {len(b)} tokens, first difference at {i}: {a[i:i + 5]} vs {b[i:i + 5]}"


@pytest.mark.parametrize("name", MODELS)
def test_tokenizer_matches_gguf(built, name, wikitext):
    from transformers import AutoTokenizer

    base, gguf = _base(built, name)
    tok = AutoTokenizer.from_pretrained(base.path)
    llm = _vocab(gguf)
    adds_bos = bool(_tokenizer_metadata(gguf).get("tokenizer.ggml.add_bos_token"))

    hf = tok(wikitext, split_special_tokens=True)["input_ids"]
    ll = llm.tokenize(wikitext.encode(), add_bos=True, special=False)
    assert hf == ll, _first_diff(hf, ll)
    assert (hf[0] == llm.token_bos()) == adds_bos
    hf = tok(wikitext)["input_ids"]
    ll = llm.tokenize(wikitext.encode(), add_bos=True, special=True)
    assert hf == ll, _first_diff(hf, ll)
    plain = tok(wikitext, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert plain == llm.tokenize(wikitext.encode(), add_bos=False, special=False)
    assert tok.decode(plain) == wikitext
    for s in PROBES:
        assert tok(s, split_special_tokens=True)["input_ids"] == llm.tokenize(s.encode(), add_bos=True, special=False), s
        assert tok(s)["input_ids"] == llm.tokenize(s.encode(), add_bos=True, special=True), s


@pytest.mark.parametrize("name", MODELS)
def test_convert_hf_to_gguf_keeps_tokenizer(built, name, wikitext):
    _, gguf = _base(built, name)
    f16 = _f16(built, name)
    want, got = _tokenizer_metadata(gguf), _tokenizer_metadata(f16)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], key
    text = wikitext[:20_000]
    assert (_vocab(f16).tokenize(text.encode(), add_bos=True, special=False)
            == _vocab(gguf).tokenize(text.encode(), add_bos=True, special=False))


@pytest.mark.parametrize("name", MODELS)
def test_greedy_matches_llamacpp_on_converted(built, name):
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, _ = _base(built, name)
    f16 = _f16(built, name)
    torch.set_num_threads(THREADS)
    tok = AutoTokenizer.from_pretrained(base.path)
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32).eval()
    llm = Llama(str(f16), n_ctx=128, n_threads=THREADS, verbose=False)
    n = 6
    ids = tok("The capital of France is")["input_ids"]
    with torch.inference_mode():
        hf = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False)[0, len(ids):].tolist()
    ll = []
    for t in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
        ll.append(t)
        if len(ll) == n:
            break
    assert hf == ll, f"HF {tok.decode(hf)!r} vs llama.cpp {tok.decode(ll)!r}"
