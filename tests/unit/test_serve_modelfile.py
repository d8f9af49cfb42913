"""Ollama Modelfile export: known chat families become Go templates, others are preserved."""

from __future__ import annotations

import re

import pytest

from quant.manifest import VariantManifest
from quantsuite.errors import UserError
from quantsuite.serve.fakellm import write_fake_gguf
from quantsuite.serve.modelfile import GO_TEMPLATES, write_modelfile

SMOL = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
        "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
BASE = {"general.architecture": "llama", "llama.context_length": 8192,
        "tokenizer.ggml.tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "</s>"]}


def gguf(tmp_path, **kv):
    p = tmp_path / "v" / "model.gguf"
    p.parent.mkdir(parents=True, exist_ok=True)
    write_fake_gguf(p, dict(BASE, **kv))
    return p


def test_chatml_model_gets_go_template_system_and_stops(tmp_path):
    p = gguf(tmp_path, **{"tokenizer.chat_template": SMOL, "tokenizer.ggml.eos_token_id": 2})
    out = write_modelfile(p)
    assert out == p.parent / "Modelfile"
    text = out.read_text()
    assert "FROM ./model.gguf\n" in text
    assert f'TEMPLATE """{GO_TEMPLATES["chatml"]}"""' in text
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in text
    assert re.findall(r'^PARAMETER stop "(.*)"$', text, re.M) == ["<|im_end|>", "<|im_start|>"]
    assert "PARAMETER num_ctx 4096" in text


def test_unknown_template_is_kept_as_comment_with_eos_stop(tmp_path):
    src = "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"
    p = gguf(tmp_path, **{"tokenizer.chat_template": src, "tokenizer.ggml.eos_token_id": 3})
    text = write_modelfile(p, tmp_path / "elsewhere" / "Modelfile", num_ctx=2048, temperature=0.2).read_text()
    assert "TEMPLATE" not in text and "#   " + src in text
    assert f"FROM {p}" in text                      # absolute when not next to the GGUF
    assert 'PARAMETER stop "</s>"' in text and "PARAMETER num_ctx 2048" in text
    assert "PARAMETER temperature 0.2" in text


def test_go_templates_are_balanced():
    for name, t in GO_TEMPLATES.items():
        actions = re.findall(r"\{\{-?\s*(\w+)", t)
        opens = sum(a in ("if", "range") for a in actions)
        assert opens == actions.count("end"), name
        assert t.count("{{") == t.count("}}"), name


def test_manifest_input_and_non_gguf_refused(tmp_path):
    p = gguf(tmp_path, **{"tokenizer.chat_template": SMOL})
    m = VariantManifest(variant_id="q4", model="tiny", base={}, spec={}, runtime=["llamacpp"], artifact=p.name,
                        files={}, size_bytes=1, bits_per_weight=4.0)
    m.write(p.parent)
    assert write_modelfile(p.parent).read_text().startswith("# Modelfile written by quantsuite for tiny/q4")
    hf = VariantManifest(variant_id="hf", model="tiny", base={}, spec={}, runtime=["hf"], artifact="x",
                         files={}, size_bytes=1, bits_per_weight=16.0)
    (tmp_path / "hf").mkdir()
    hf.write(tmp_path / "hf")
    with pytest.raises(UserError, match="only GGUF variants"):
        write_modelfile(tmp_path / "hf" / "manifest.json")
