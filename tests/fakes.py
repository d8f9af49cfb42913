"""Test doubles: a scripted model (``FakeClient``) and two tiny tasks (letter MC, numeric gen).

Like simonw/llm's mock model: tests decide exactly what the "model" says, then check
what the code under test asked for. ``FakeClient`` implements ``InferenceClient``
faithfully where it matters to callers:

* ``generate`` answers every sample of every request from, in order of precedence, the
  queue (``enqueue``), a ``responder(request, sample_index)`` function, or ``default``;
  with nothing to say it fails loudly, so a test never passes on an unplanned call;
* outputs are cut at ``stop`` strings and at ``max_tokens`` (finish reason "length"),
  like a real runtime; tokens are whitespace-separated words, so counts are predictable;
* every request is recorded (``requests``), and each batch call too (``batches``), so
  tests can assert on prompts, sampling settings and batching;
* each call "takes" ``seconds_per_call`` so compute accounting is checkable.
"""

from __future__ import annotations

import math
import re
from collections import deque
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from evalsuite.tasks.base import MultipleChoiceTask
from evalsuite.types import Generation, GenRequest, Item, LLRequest, LLResult

Responder = Callable[[GenRequest, int], str]


def prompt_text(req: GenRequest) -> str:
    """Everything the model would read: the raw prompt or all message contents."""
    return req.prompt if not req.messages else "\n\n".join(c for _, c in req.messages)


def last_user(req: GenRequest) -> str:
    return next((c for r, c in reversed(req.messages) if r == "user"), req.prompt)


class FakeClient:
    name = "fake"

    def __init__(self, responses: Iterable[str] = (), *, responder: Responder | None = None,
                 default: str | None = None, seconds_per_call: float = 0.5,
                 ll_scorer: Callable[[LLRequest], float] | None = None, n_vocab: int = 64):
        self.queue: deque[str] = deque(responses)
        self.responder = responder
        self.default = default
        self.seconds_per_call = seconds_per_call
        self.ll_scorer = ll_scorer
        self.n_vocab = n_vocab
        self.requests: list[GenRequest] = []
        self.ll_requests: list[LLRequest] = []
        self.batches: list[int] = []          # size of each generate() call
        self.closed = False
        self._vocab: dict[str, int] = {}

    # -- scripting -------------------------------------------------------------------------
    def enqueue(self, *texts: str) -> "FakeClient":
        """Answers for the next samples, consumed in order (one per sample, n per request)."""
        self.queue.extend(texts)
        return self

    @property
    def prompts(self) -> list[str]:
        return [prompt_text(r) for r in self.requests]

    # -- InferenceClient -------------------------------------------------------------------
    def generate(self, reqs: Sequence[GenRequest]) -> list[Generation]:
        self.batches.append(len(reqs))
        out = []
        for r in reqs:
            self.requests.append(r)
            texts, reasons, n_out = [], [], 0
            for i in range(r.n):
                text, reason = self._finish(self._next(r, i), r)
                texts.append(text)
                reasons.append(reason)
                n_out += len(self._words(text))
            out.append(Generation(texts, tokens_in=len(self._words(prompt_text(r))), tokens_out=n_out,
                                  seconds=self.seconds_per_call, finish_reasons=reasons))
        return out

    def loglikelihood(self, reqs: Sequence[LLRequest]) -> list[LLResult]:
        self.ll_requests.extend(reqs)
        score = self.ll_scorer or (lambda q: -float(len(q.continuation)))
        return [LLResult(score(q), False, len(self._words(q.continuation)),
                         tokens_in=len(self._words(q.context + q.continuation)),
                         seconds=self.seconds_per_call) for q in reqs]

    def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        ids = [self._vocab.setdefault(w, 2 + len(self._vocab)) for w in self._words(text)]
        return ([1] if add_bos else []) + ids

    def token_logprobs(self, tokens: Sequence[int]) -> np.ndarray:
        return np.full((len(tokens), self.n_vocab), -math.log(self.n_vocab), dtype=np.float32)

    @property
    def bos_id(self) -> int | None:
        return 1

    def close(self) -> None:
        self.closed = True

    # -- internals -------------------------------------------------------------------------
    @staticmethod
    def _words(text: str) -> list[str]:
        return re.findall(r"\S+", text)

    def _next(self, req: GenRequest, i: int) -> str:
        if self.queue:
            return self.queue.popleft()
        if self.responder is not None:
            return self.responder(req, i)
        if self.default is not None:
            return self.default
        raise AssertionError(f"FakeClient: no response scripted for prompt {prompt_text(req)[:120]!r}")

    def _finish(self, text: str, req: GenRequest) -> tuple[str, str]:
        reason = "stop"
        for s in req.stop:
            if s and s in text:
                text = text[: text.index(s)]
        words = list(re.finditer(r"\S+", text))
        if len(words) > req.max_tokens:
            text = text[: words[req.max_tokens - 1].end()] if req.max_tokens > 0 else ""
            reason = "length"
        return text, reason


# -- tiny tasks ------------------------------------------------------------------------------
class FakeMCTask(MultipleChoiceTask):
    """Letter-answer multiple choice over in-memory items (MultipleChoiceTask's prompts)."""

    name = "fake_mc"

    def __init__(self, items: Sequence[Item] = (), **options: Any):
        super().__init__(None, None, **options)
        self.items = list(items)

    def load(self) -> list[Item]:
        return list(self.items)


class FakeGenTask:
    """A GSM8K-like generative task: the answer is the last number in the text."""

    name = "fake_gen"
    version = "1"
    kind = "gen"

    def __init__(self, items: Sequence[Item] = ()):
        self.items = list(items)

    def load(self) -> list[Item]:
        return list(self.items)

    def prompt(self, item: Item, cot: bool = False) -> str:
        pre = f"{item.context}\n\n" if item.context else ""
        tail = ("Think step by step, then finish with 'Answer: <number>'." if cot
                else "Reply with the number only.")
        return f"{pre}Question: {item.question}\n{tail}"

    def extract(self, text: str, item: Item) -> str | None:
        nums = re.findall(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
        if not nums:
            return None
        x = float(nums[-1])
        return str(int(x)) if x.is_integer() else str(x)

    def is_correct(self, parsed: Any, item: Item) -> bool:
        return parsed is not None and float(parsed) == float(item.gold)


def mc_item(i: int = 0, question: str = "Which animal purrs?", gold: int = 1,
            choices: tuple[str, ...] = ("dog", "cat", "fish", "bird"), context: str = "") -> Item:
    return Item(id=f"mc{i}", question=question, gold=gold, choices=choices, context=context)


def gen_item(i: int = 0, question: str = "What is 2 + 3?", gold: str = "5", context: str = "") -> Item:
    return Item(id=f"gen{i}", question=question, gold=gold, context=context)
