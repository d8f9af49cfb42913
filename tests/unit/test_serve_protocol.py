"""Request validation: what real OpenAI clients send passes, nonsense gets a precise 400."""

from __future__ import annotations

import pytest

from quantsuite.serve.protocol import ApiError, parse_chat, parse_completion, parse_json, sse


def test_accepts_what_openai_clients_send():
    r = parse_chat({"model": "m", "messages": [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None}],
        "max_completion_tokens": 7, "stop": "END", "user": "u1", "store": False, "metadata": {"k": "v"},
        "logit_bias": {"42": -100}, "seed": 3, "stream": True, "stream_options": {"include_usage": True},
        "response_format": {"type": "text"}}, max_tokens_limit=100)
    assert [m["role"] for m in r.messages] == ["system", "user", "assistant"]
    assert r.messages[1]["content"] == "ab" and r.messages[2]["content"] == ""
    p = r.params
    assert (p.max_tokens, p.stop, p.logit_bias, p.seed) == (7, ["END"], {42: -100.0}, 3)
    assert r.stream and r.include_usage


def test_defaults():
    r = parse_chat({"messages": [{"role": "user", "content": "x"}]}, max_tokens_limit=300)
    assert r.model is None and r.params.max_tokens == 300 and not r.stream
    assert (r.params.temperature, r.params.top_p, r.params.top_k) == (0.8, 0.95, 40)


@pytest.mark.parametrize("bad, param", [
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
    ({"messages": ["hi"]}, "messages[0]"),
    ({"messages": [{"role": "user", "content": "x"}], "top_p": "high"}, "top_p"),
    ({"messages": [{"role": "user", "content": "x"}], "logit_bias": {"a": 1}}, "logit_bias"),
    ({"messages": [{"role": "user", "content": "x"}], "logit_bias": {"1": 1000}}, "logit_bias"),
    ({"messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 9}, "stop"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
    ({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}},
     "response_format"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": float("nan")}, "temperature"),
])
def test_rejections_name_the_parameter(bad, param):
    with pytest.raises(ApiError) as e:
        parse_chat(bad, max_tokens_limit=100)
    assert e.value.status == 400 and e.value.param == param
    assert e.value.body()["error"]["type"] == "invalid_request_error"


def test_completion_prompts():
    assert parse_completion({"prompt": "hi"}, 10).prompt == "hi"
    assert parse_completion({"prompt": ["hi"]}, 10).prompt == "hi"
    assert parse_completion({"prompt": [1, 2, 3]}, 10).prompt == [1, 2, 3]
    for bad in ({"prompt": ""}, {"prompt": ["a", "b"]}, {"prompt": [1, -2]}, {}, {"prompt": "x", "logprobs": 2},
                {"prompt": "x", "suffix": "y"}):
        with pytest.raises(ApiError):
            parse_completion(bad, 10)


def test_parse_json_and_sse():
    assert parse_json(b'{"a": 1}') == {"a": 1}
    for bad in (b"", b"nul", b"\xff\xfe", b'"str"'):
        with pytest.raises(ApiError) as e:
            parse_json(bad)
        assert e.value.code == "invalid_json"
    assert sse({"a": "é"}) == 'data: {"a":"é"}\n\n'.encode()
    assert sse("[DONE]") == b"data: [DONE]\n\n"
