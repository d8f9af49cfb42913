"""Terminal chat with piped stdin, on the fake model (the real model runs in integration)."""

from __future__ import annotations

import io

from quantsuite.serve.chat import chat_loop
from quantsuite.serve.engine import Engine
from quantsuite.serve.fakellm import FakeLlama


def run(lines: str, llm: FakeLlama, **kw) -> tuple[str, int, FakeLlama]:
    engine = Engine(llm, model_id="fake", n_ctx=llm.n_ctx())
    out = io.StringIO()
    n = chat_loop(None, stdin=io.StringIO(lines), stdout=out, engine=engine, **kw)
    engine.stop()
    return out.getvalue(), n, llm


def prompts(llm: FakeLlama) -> list[str]:
    return [llm.detokenize(c["prompt"], special=True).decode() for c in llm.calls]


def test_piped_chat_streams_replies_and_keeps_history():
    out, n, llm = run("hello\n\nhow are you?\n/exit\nnever read\n", FakeLlama().enqueue("Hi!", "Fine."))
    assert out == "Hi!\nFine.\n" and n == 2
    last = prompts(llm)[-1]
    assert "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\nHi!<|im_end|>\n" in last
    assert last.endswith("<|im_start|>user\nhow are you?<|im_end|>\n<|im_start|>assistant\n")


def test_end_of_input_quits_and_reset_forgets():
    out, n, llm = run("one\n/reset\ntwo", FakeLlama().enqueue("A", "B"), system="Be terse.")
    assert out == "A\nB\n" and n == 2
    second = prompts(llm)[1]
    assert "one" not in second and second.startswith("<|im_start|>system\nBe terse.<|im_end|>")


def test_old_turns_are_dropped_when_context_overflows():
    llm = FakeLlama(n_ctx=160, default_reply="r" * 20)
    out, n, llm = run("a" * 40 + "\n" + "b" * 40 + "\n" + "c" * 40 + "\n", llm, max_tokens=20)
    assert n == 3
    assert "a" * 40 not in prompts(llm)[-1] and "c" * 40 in prompts(llm)[-1]
