"""Chat templates from GGUF metadata, rendered in a sandbox; chat-family detection.

Why we render ourselves: a GGUF file carries its chat template as Jinja source, i.e. code
written by whoever made the file. llama-cpp-python < 0.2.72 rendered it in a plain Jinja
environment, so a crafted template could run shell commands when a chat request arrived
(CVE-2024-34359). We render with ``jinja2.sandbox.ImmutableSandboxedEnvironment``: attribute
access to dunders (``__class__``, ``__globals__``...) raises ``SecurityError`` and lists/dicts
cannot be mutated. The rendered string is passed to ``create_completion``, so
llama-cpp-python's own chat path is never used.

Limits: the sandbox stops code execution, not wasted CPU; rendering output is capped at
``MAX_RENDER_CHARS`` so a template cannot grow a prompt without bound.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from quantsuite.errors import UserError

MAX_RENDER_CHARS = 4_000_000

# Used when a GGUF file has no chat template: ChatML is what most small instruct models use.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class TemplateRejected(UserError):
    """The template tried something the sandbox forbids, or does not compile: never run it."""


class TemplateInputError(ValueError):
    """The template refused these messages (its own ``raise_exception``): the client's fault."""


def _raise_exception(message: str) -> None:
    raise TemplateInputError(str(message))


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    # Hugging Face renders tojson without HTML escaping (Jinja's default escapes <, >, &)
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(str(fmt))


def sandbox():
    """The Jinja environment every GGUF template is compiled in (mirrors Hugging Face's options)."""
    from jinja2 import BaseLoader
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(loader=BaseLoader(), trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols], autoescape=False)
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


class ChatTemplate:
    """A compiled, sandboxed chat template plus the special-token strings it may reference."""

    def __init__(self, source: str, bos_token: str = "", eos_token: str = "", origin: str = "GGUF metadata"):
        from jinja2 import TemplateError

        self.source, self.bos_token, self.eos_token, self.origin = source, bos_token, eos_token, origin
        try:
            self._tpl = sandbox().from_string(source)
        except TemplateError as e:
            raise TemplateRejected(f"chat template from {origin} does not compile: {e}") from None

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **extra: Any) -> str:
        """Render to a prompt string; ``TemplateRejected`` if the sandbox had to intervene."""
        from jinja2 import TemplateError
        from jinja2.exceptions import SecurityError

        ctx = dict(extra, messages=messages, add_generation_prompt=add_generation_prompt,
                   bos_token=self.bos_token, eos_token=self.eos_token)
        out, size = [], 0
        try:
            for piece in self._tpl.generate(**ctx):
                size += len(piece)
                if size > MAX_RENDER_CHARS:
                    raise TemplateRejected(f"chat template from {self.origin} produced more than "
                                           f"{MAX_RENDER_CHARS} characters")
                out.append(piece)
        except SecurityError as e:
            raise TemplateRejected(f"chat template from {self.origin} was stopped by the sandbox: {e}") from None
        except TemplateInputError:
            raise
        except TemplateError as e:
            raise TemplateRejected(f"chat template from {self.origin} failed: {e}") from None
        except (TypeError, AttributeError, KeyError, IndexError, ValueError, ZeroDivisionError) as e:
            raise TemplateInputError(f"chat template cannot render these messages: {e}") from None
        return "".join(out)

    @property
    def family(self) -> str | None:
        return detect_family(self.source)


def detect_family(source: str) -> str | None:
    """Name of a well-known prompt format the template produces (by its special markers)."""
    if "<|im_start|>" in source and "<|im_end|>" in source:
        return "chatml"
    if "<|start_header_id|>" in source and "<|eot_id|>" in source:
        return "llama3"
    if "<start_of_turn>" in source and "<end_of_turn>" in source:
        return "gemma"
    return None


FAMILY_STOPS = {
    "chatml": ["<|im_end|>", "<|im_start|>"],
    "llama3": ["<|eot_id|>", "<|start_header_id|>"],
    "gemma": ["<end_of_turn>", "<start_of_turn>"],
}


def default_system_prompt(source: str) -> str | None:
    """The system message a ChatML template inserts when the conversation has none."""
    m = re.search(r"<\|im_start\|>system\\n(.*?)<\|im_end\|>", source) or \
        re.search(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", source, re.S)
    return m.group(1) if m else None


@dataclass
class TemplateInfo:
    template: ChatTemplate
    stops: list[str]          # strings that end an assistant turn (beyond the model's EOG tokens)


def from_metadata(meta: dict[str, Any], token_text=None, override: str | None = None,
                  origin: str = "GGUF metadata") -> TemplateInfo:
    """Build the chat template of a model from its metadata (or an override file's text).

    ``token_text(id) -> str`` maps the BOS/EOS ids to strings for templates that use them.
    """
    src = override if override is not None else meta.get("tokenizer.chat_template")
    if override is not None:
        origin = "--chat-template file"
    if not isinstance(src, str) or not src.strip():
        src, origin = CHATML_TEMPLATE, "built-in ChatML fallback (the GGUF has no chat template)"

    def tok(key: str) -> str:
        tid = meta.get(key)
        try:
            tid = int(tid)
        except (TypeError, ValueError):
            return ""
        return (token_text(tid) if token_text else None) or ""

    bos, eos = tok("tokenizer.ggml.bos_token_id"), tok("tokenizer.ggml.eos_token_id")
    tpl = ChatTemplate(src, bos_token=bos, eos_token=eos, origin=origin)
    stops = list(FAMILY_STOPS.get(tpl.family or "", []))
    if eos and eos not in stops:
        stops.append(eos)
    # probe once with a harmless conversation: a template that trips the sandbox on ordinary
    # input is rejected at start-up instead of on the first request
    try:
        tpl.render([{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                    {"role": "assistant", "content": "a"}, {"role": "user", "content": "u"}])
    except TemplateInputError:
        pass  # e.g. "system role not supported": a property of the format, not an attack
    return TemplateInfo(tpl, stops)
