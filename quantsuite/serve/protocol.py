"""OpenAI wire format: validate request bodies into plain dataclasses, build response bodies.

Why hand-written instead of pydantic models: every rejection must come back as an
OpenAI-style ``{"error": {...}}`` body with a precise message and ``param``, unknown fields
that real clients send (``user``, ``store``, ``metadata``...) must pass, and the whole module
stays importable without FastAPI so it is unit-tested in milliseconds.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

MAX_MESSAGES = 1024
MAX_STOP = 8
MAX_STOP_CHARS = 256


class ApiError(Exception):
    """An error returned to the client as OpenAI-style JSON with an HTTP status."""

    def __init__(self, status: int, message: str, *, type: str | None = None, param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or ("invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


@dataclass
class GenParams:
    """Sampling settings for one request (llama.cpp defaults where OpenAI has none)."""

    max_tokens: int
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    logit_bias: dict[int, float] | None = None


@dataclass
class ChatRequest:
    model: str | None
    messages: list[dict[str, str]]
    params: GenParams
    stream: bool = False
    include_usage: bool = False


@dataclass
class CompletionRequest:
    model: str | None
    prompt: str | list[int]
    params: GenParams
    stream: bool = False
    include_usage: bool = False
    echo: bool = False


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(f"request body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad("request body must be a JSON object", code="invalid_json")
    return data


# -- field validators -------------------------------------------------------------------
def _num(d: dict, name: str, default: float, lo: float, hi: float) -> float:
    v = d.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise bad(f"'{name}' must be a number between {lo} and {hi}", param=name)
    return float(v)


def _int(d: dict, name: str, default: int | None, lo: int, hi: int) -> int | None:
    v = d.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise bad(f"'{name}' must be an integer between {lo} and {hi}", param=name)
    return v


def _bool(d: dict, name: str) -> bool:
    v = d.get(name, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise bad(f"'{name}' must be true or false", param=name)
    return v


def _model(d: dict) -> str | None:
    v = d.get("model")
    if v is not None and not isinstance(v, str):
        raise bad("'model' must be a string", param="model")
    return v


def _stop(d: dict) -> list[str]:
    v = d.get("stop")
    if v is None:
        return []
    stops = [v] if isinstance(v, str) else v
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise bad("'stop' must be a non-empty string or a list of them", param="stop")
    if len(stops) > MAX_STOP or any(len(s) > MAX_STOP_CHARS for s in stops):
        raise bad(f"'stop' allows at most {MAX_STOP} strings of {MAX_STOP_CHARS} characters", param="stop")
    return list(stops)


def _logit_bias(d: dict) -> dict[int, float] | None:
    v = d.get("logit_bias")
    if v is None:
        return None
    if not isinstance(v, dict) or len(v) > 1024:
        raise bad("'logit_bias' must be an object of at most 1024 token ids", param="logit_bias")
    out = {}
    for k, b in v.items():
        try:
            tid = int(k)
        except (TypeError, ValueError):
            raise bad(f"'logit_bias' key {k!r} is not a token id", param="logit_bias") from None
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not -100 <= b <= 100:
            raise bad("'logit_bias' values must be numbers between -100 and 100", param="logit_bias")
        out[tid] = float(b)
    return out


def _unsupported(d: dict, names: tuple[str, ...]) -> None:
    for n in names:
        v = d.get(n)
        if v not in (None, [], {}, False):
            raise bad(f"'{n}' is not supported by this server", param=n, code="unsupported_parameter")


def _params(d: dict, max_tokens_limit: int) -> GenParams:
    n = _int(d, "n", 1, 1, 1_000_000)
    if n != 1:
        raise bad("only n=1 is supported", param="n", code="unsupported_parameter")
    mt_name = "max_completion_tokens" if d.get("max_completion_tokens") is not None else "max_tokens"
    mt = d.get(mt_name)
    if mt is not None and (isinstance(mt, bool) or not isinstance(mt, int) or mt < 1):
        raise bad(f"'{mt_name}' must be a positive integer", param=mt_name)
    if mt is not None and mt > max_tokens_limit:
        raise bad(f"'{mt_name}' is {mt}, above this server's limit of {max_tokens_limit}", param=mt_name,
                  code="max_tokens_exceeded")
    return GenParams(
        max_tokens=mt or max_tokens_limit,
        temperature=_num(d, "temperature", 0.8, 0.0, 2.0),
        top_p=_num(d, "top_p", 0.95, 0.0, 1.0),
        top_k=int(_int(d, "top_k", 40, 0, 1_000_000)),
        min_p=_num(d, "min_p", 0.05, 0.0, 1.0),
        stop=_stop(d),
        seed=_int(d, "seed", None, -(2 ** 63), 2 ** 64 - 1),
        presence_penalty=_num(d, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_num(d, "frequency_penalty", 0.0, -2.0, 2.0),
        repeat_penalty=_num(d, "repeat_penalty", 1.0, 0.0, 10.0),
        logit_bias=_logit_bias(d),
    )


def _stream_opts(d: dict) -> bool:
    so = d.get("stream_options")
    if so is None:
        return False
    if not isinstance(so, dict):
        raise bad("'stream_options' must be an object", param="stream_options")
    return bool(so.get("include_usage"))


def _content(m: dict, i: int) -> str:
    c = m.get("content")
    if c is None:
        return ""
    if isinstance(c, str):
        return c
    if isinstance(c, list):  # content parts: only text can be served by a text model
        parts = []
        for p in c:
            if not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str):
                raise bad(f"messages[{i}].content: only text parts are supported", param=f"messages[{i}].content")
            parts.append(p["text"])
        return "".join(parts)
    raise bad(f"messages[{i}].content must be a string or a list of text parts", param=f"messages[{i}].content")


def parse_chat(d: dict[str, Any], max_tokens_limit: int) -> ChatRequest:
    msgs = d.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise bad("'messages' must be a non-empty list", param="messages")
    if len(msgs) > MAX_MESSAGES:
        raise bad(f"at most {MAX_MESSAGES} messages are allowed", param="messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise bad(f"messages[{i}] must be an object", param=f"messages[{i}]")
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant"):
            raise bad(f"messages[{i}].role must be system, user or assistant (got {role!r})",
                      param=f"messages[{i}].role")
        out.append({"role": "system" if role == "developer" else role, "content": _content(m, i)})
    _unsupported(d, ("tools", "functions", "tool_choice", "function_call", "logprobs", "top_logprobs", "audio"))
    rf = d.get("response_format")
    if rf is not None and (not isinstance(rf, dict) or rf.get("type") not in (None, "text")):
        raise bad("only response_format {'type': 'text'} is supported", param="response_format",
                  code="unsupported_parameter")
    return ChatRequest(_model(d), out, _params(d, max_tokens_limit), _bool(d, "stream"), _stream_opts(d))


def parse_completion(d: dict[str, Any], max_tokens_limit: int) -> CompletionRequest:
    p = d.get("prompt")
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], (str, list)):
        p = p[0]  # a batch of one
    if isinstance(p, list):
        if not p or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in p):
            raise bad("'prompt' must be a string, or a list of token ids (batches are not supported)",
                      param="prompt")
    elif not isinstance(p, str) or not p:
        raise bad("'prompt' must be a non-empty string", param="prompt")
    _unsupported(d, ("logprobs", "suffix", "best_of"))
    return CompletionRequest(_model(d), p, _params(d, max_tokens_limit), _bool(d, "stream"), _stream_opts(d),
                             _bool(d, "echo"))


# -- responses ----------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_response(rid: str, model: str, text: str, finish: str, use: dict) -> dict:
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": finish}], "usage": use}


def chat_chunk(rid: str, model: str, created: int, delta: dict, finish: str | None = None) -> dict:
    return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def completion_response(rid: str, model: str, text: str, finish: str, use: dict) -> dict:
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}], "usage": use}


def completion_chunk(rid: str, model: str, created: int, text: str, finish: str | None = None) -> dict:
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}


def usage_chunk(rid: str, model: str, created: int, obj: str, use: dict) -> dict:
    return {"id": rid, "object": obj, "created": created, "model": model, "choices": [], "usage": use}


def model_card(model_id: str, created: int) -> dict:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "quantsuite"}


def sse(obj: dict | str) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n".encode()
