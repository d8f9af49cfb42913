"""A scripted stand-in for ``llama_cpp.Llama`` so the server can be tested in milliseconds.

It implements only what ``Engine`` calls (tokenize, detokenize, create_completion with
streaming and stopping criteria, metadata) with a toy vocabulary: one token per character
plus a few special tokens. Replies are queued with ``enqueue(text)`` (as simonw/llm's mock
model does); with nothing queued it echoes ``reply`` or the default text. ``delay`` slows
each token down to make concurrency observable, and ``calls`` records every request.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Iterator

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


class FakeLlama:
    def __init__(self, chat_template: str | None = CHATML, n_ctx: int = 256, delay: float = 0.0,
                 default_reply: str = "Hello there!"):
        self.metadata: dict[str, Any] = {"general.architecture": "llama", "tokenizer.ggml.bos_token_id": "1",
                                         "tokenizer.ggml.eos_token_id": "2", "tokenizer.ggml.add_bos_token": "false"}
        if chat_template is not None:
            self.metadata["tokenizer.chat_template"] = chat_template
        self._n_ctx, self.delay, self.default_reply = n_ctx, delay, default_reply
        self.queue: deque[str] = deque()
        self.calls: list[dict[str, Any]] = []
        self.active = 0                    # generations running right now (must never exceed 1)
        self.max_active = 0
        self._lock = threading.Lock()
        self.closed = False

    # -- vocabulary: 0-2 special, then 3 + ord(char) ---------------------------------------
    def n_vocab(self) -> int:
        return 3 + 0x110000

    def n_ctx(self) -> int:
        return self._n_ctx

    def token_bos(self) -> int:
        return 1

    def token_eos(self) -> int:
        return 2

    def tokenize(self, text: bytes, add_bos: bool = False, special: bool = False) -> list[int]:
        s, out, i = text.decode("utf-8"), [1] if add_bos else [], 0
        while i < len(s):
            for k, sp in enumerate(SPECIAL):
                if special and s.startswith(sp, i):
                    out.append(k)
                    i += len(sp)
                    break
            else:
                out.append(3 + ord(s[i]))
                i += 1
        return out

    def detokenize(self, tokens: list[int], prev_tokens: Any = None, special: bool = False) -> bytes:
        return "".join(SPECIAL[t] if t < 3 else chr(t - 3) for t in tokens if t >= 3 or special).encode()

    def enqueue(self, *texts: str) -> "FakeLlama":
        self.queue.extend(texts)
        return self

    # -- generation ------------------------------------------------------------------------
    def create_completion(self, prompt: list[int], stream: bool = False, max_tokens: int = 16,
                          stop: list[str] | None = None, stopping_criteria: Any = None, **kw: Any):
        with self._lock:
            self.calls.append(dict(kw, prompt=list(prompt), max_tokens=max_tokens, stop=stop, stream=stream))
            reply = self.queue.popleft() if self.queue else self.default_reply
        gen = self._gen(list(prompt), reply, max_tokens, stop or [], stopping_criteria)
        if stream:
            return gen
        text, finish = "", "stop"
        for chunk in gen:
            text += chunk["choices"][0]["text"]
            finish = chunk["choices"][0]["finish_reason"] or finish
        return {"choices": [{"text": text, "finish_reason": finish, "index": 0}],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": self._last_n,
                          "total_tokens": len(prompt) + self._last_n}}

    def _gen(self, prompt: list[int], reply: str, max_tokens: int, stop: list[str], crit: Any) -> Iterator[dict]:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            text, finish, n = "", "stop", 0
            for ch in reply:
                if self.delay:
                    time.sleep(self.delay)
                if crit is not None and crit(prompt, None):
                    break
                n += 1
                text += ch
                hit = next((s for s in stop if s in text), None)
                if hit:
                    break
                yield {"choices": [{"text": ch, "finish_reason": None, "index": 0}]}
                if n >= max_tokens:
                    finish = "length"
                    break
            else:
                if crit is not None:
                    crit(prompt, None)   # the end-of-generation token is sampled, then dropped
            if crit is not None:
                crit(prompt, None)       # llama-cpp-python checks once more after the loop
            self._last_n = n
            yield {"choices": [{"text": "", "finish_reason": finish, "index": 0}]}
        finally:
            with self._lock:
                self.active -= 1

    def close(self) -> None:
        self.closed = True


def write_fake_gguf(path: Any, kv: dict[str, Any], pad_bytes: int = 0) -> None:
    """Write a header-only GGUF (v3, no tensors) with ``kv`` metadata, for tests of readers.

    Value types follow Python types: bool, int (u32, or i64 if it does not fit / negative),
    float (f32), str, and lists of str or int.
    """
    import struct

    def s(x: str) -> bytes:
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    def val(v: Any) -> bytes:
        if isinstance(v, bool):
            return struct.pack("<I?", 7, v)
        if isinstance(v, int):
            return struct.pack("<II", 4, v) if 0 <= v < 2 ** 32 else struct.pack("<Iq", 11, v)
        if isinstance(v, float):
            return struct.pack("<If", 6, v)
        if isinstance(v, str):
            return struct.pack("<I", 8) + s(v)
        if isinstance(v, list):
            if all(isinstance(x, str) for x in v):
                return struct.pack("<IIQ", 9, 8, len(v)) + b"".join(s(x) for x in v)
            return struct.pack("<IIQ", 9, 5, len(v)) + b"".join(struct.pack("<i", x) for x in v)
        raise TypeError(f"unsupported GGUF value {v!r}")

    blob = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + b"".join(s(k) + val(v) for k, v in kv.items())
    with open(path, "wb") as f:
        f.write(blob + b"\0" * pad_bytes)
