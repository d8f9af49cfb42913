"""Export a GGUF variant for Ollama: a ``Modelfile`` next to the GGUF.

Ollama templates are Go templates, GGUF templates are Jinja; translating arbitrary Jinja is
not feasible, so for the prompt formats we recognise (ChatML - which SmolLM2 and Qwen use -,
Llama 3, Gemma) we write an equivalent Go ``TEMPLATE``, plus the default system prompt the
Jinja template injects (as ``SYSTEM``) and the turn-end ``stop`` strings. For any other
template we write the Jinja source as comments (so nothing is lost, and a human can port
it) plus the stop tokens, and Ollama falls back to its own detection. ``num_ctx`` is the
context ``quantsuite serve`` would use.

Build and run with: ``ollama create NAME -f Modelfile && ollama run NAME``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quantsuite.errors import UserError
from quantsuite.serve.config import DEFAULT_MAX_CTX, resolve_target

# Go templates: a .Messages branch for /api/chat, a .Prompt branch for /api/generate.
GO_TEMPLATES = {
    "chatml": (
        "{{- if .Messages }}\n"
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
        "{{ .Content }}<|im_end|>\n"
        "{{ end }}<|im_start|>assistant\n"
        "{{ else }}\n"
        "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
        "{{- if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"
        "{{- end }}"
    ),
    "llama3": (
        "{{- if .Messages }}\n"
        "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
        "{{ .Content }}<|eot_id|>\n"
        "{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
        "{{ else }}\n"
        "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
        "{{- if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
        "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>\n"
        "{{- end }}"
    ),
    "gemma": (   # no system role: the system text opens the first user turn, as Gemma's Jinja does
        "{{- if .Messages }}\n"
        "{{- $system := .System }}\n"
        "{{- range .Messages }}{{ if eq .Role \"system\" }}{{ continue }}{{ end }}<start_of_turn>"
        "{{ if eq .Role \"assistant\" }}model{{ else }}user{{ end }}\n"
        "{{ if $system }}{{ $system }}\n\n{{ $system = \"\" }}{{ end }}{{ .Content }}<end_of_turn>\n"
        "{{ end }}<start_of_turn>model\n"
        "{{ else }}\n"
        "<start_of_turn>user\n{{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}<end_of_turn>\n"
        "<start_of_turn>model\n{{ .Response }}<end_of_turn>\n"
        "{{- end }}"
    ),
}


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _triple(s: str) -> str:
    if '"""' in s:
        raise UserError('cannot write a Modelfile block containing """')
    return f'"""{s}"""'


def modelfile_text(out: Path, meta: dict[str, Any], *, from_ref: str, title: str,
                   num_ctx: int | None = None, temperature: float | None = None) -> str:
    """The Modelfile for a GGUF whose metadata is ``meta`` (``tokenizer.ggml.tokens`` kept)."""
    from quantsuite.ggufmeta import token_text
    from quantsuite.serve.template import FAMILY_STOPS, default_system_prompt, detect_family

    src = meta.get("tokenizer.chat_template")
    src = src if isinstance(src, str) else ""
    family = detect_family(src) if src else None
    arch = meta.get("general.architecture", "")
    train_ctx = int(meta.get(f"{arch}.context_length", 0) or 0)
    ctx = num_ctx or (min(train_ctx, DEFAULT_MAX_CTX) if train_ctx else DEFAULT_MAX_CTX)

    stops = list(FAMILY_STOPS.get(family or "", []))
    for key in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"):
        t = token_text(meta, meta.get(key))
        if t and t not in stops:
            stops.append(t)

    lines = [f"# Modelfile written by quantsuite for {title}",
             f"# build: ollama create <name> -f {out}", f"FROM {from_ref}", ""]
    if family:
        lines += [f"# chat format: {family} (Go template equivalent of the GGUF's Jinja chat template)",
                  f"TEMPLATE {_triple(GO_TEMPLATES[family])}"]
        system = default_system_prompt(src) if family == "chatml" else None
        if system:
            lines.append(f"SYSTEM {_triple(system)}")
    elif src:
        lines += ["# The GGUF's chat template is not a format quantsuite can translate to a Go template.",
                  "# Its Jinja source follows for reference; Ollama will use its own detection.",
                  *("#   " + ln for ln in src.splitlines())]
    else:
        lines.append("# The GGUF has no chat template: this is a plain completion model.")
    lines.append("")
    lines += [f"PARAMETER stop {_quote(s)}" for s in stops]
    lines.append(f"PARAMETER num_ctx {ctx}")
    if temperature is not None:
        lines.append(f"PARAMETER temperature {temperature:g}")
    return "\n".join(lines) + "\n"


def write_modelfile(manifest_or_gguf: str | Path, out_path: str | Path | None = None, *,
                    num_ctx: int | None = None, temperature: float | None = None) -> Path:
    """Write the Modelfile (default: ``Modelfile`` beside the GGUF) and return its path."""
    from quantsuite.ggufmeta import read_metadata

    target = resolve_target(manifest_or_gguf)
    out = Path(out_path) if out_path else target.gguf.parent / "Modelfile"
    if out.is_dir():
        out = out / "Modelfile"
    meta = read_metadata(target.gguf, keep_arrays=("tokenizer.ggml.tokens",))
    # Ollama resolves a relative FROM against the Modelfile's folder
    if out.absolute().parent == target.gguf.absolute().parent:
        from_ref = "./" + target.gguf.name
    else:
        from_ref = str(target.gguf.absolute())
    text = modelfile_text(out, meta, from_ref=from_ref, title=target.model_id, num_ctx=num_ctx,
                          temperature=temperature)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    return out
