"""Plain data passed between tasks, strategies and runtimes.

Runtimes are batch-first (like lm-eval's ``LM``): strategies hand them whole lists of
requests so batching and prefix sharing happen inside the runtime, where they pay off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Item:
    """One benchmark question. ``gold`` is a choice index, a label string or a number string."""

    id: str
    question: str
    gold: Any
    choices: tuple[str, ...] = ()
    context: str = ""                     # passage / premises (logic tasks, LogiQA)
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class LLRequest:
    """Score ``continuation`` given ``context`` (both raw text, no template applied)."""

    context: str
    continuation: str


@dataclass
class LLResult:
    logprob: float            # sum of log-probabilities of the continuation tokens
    is_greedy: bool           # every continuation token was the argmax
    n_tokens: int             # continuation tokens
    tokens_in: int = 0        # tokens actually evaluated for this request (after prefix sharing)
    seconds: float = 0.0


@dataclass(frozen=True)
class GenRequest:
    """A generation request. ``messages`` get the model's chat template; ``prompt`` is raw."""

    messages: tuple[tuple[str, str], ...] = ()   # ((role, content), ...)
    prompt: str = ""
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    seed: int = 0
    n: int = 1                                   # samples sharing one prompt evaluation

    @staticmethod
    def chat(user: str, system: str = "", **kw: Any) -> "GenRequest":
        msgs = ((("system", system),) if system else ()) + (("user", user),)
        return GenRequest(messages=msgs, **kw)


@dataclass
class Generation:
    texts: list[str]                  # n samples
    tokens_in: int = 0
    tokens_out: int = 0               # summed over samples
    seconds: float = 0.0
    finish_reasons: list[str] = field(default_factory=list)


@dataclass
class Prediction:
    """A strategy's answer to one item, with the compute it cost."""

    item_id: str
    parsed: Any                        # extracted answer (None = unparseable)
    correct: bool
    raw: str = ""
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    scores: dict[str, Any] = field(default_factory=dict)   # extra per-item metrics (acc_norm, maj@k...)


@runtime_checkable
class InferenceClient(Protocol):
    """What every runtime offers. Methods a runtime cannot do raise BackendUnavailable."""

    name: str

    def loglikelihood(self, reqs: Sequence[LLRequest]) -> list[LLResult]: ...

    def generate(self, reqs: Sequence[GenRequest]) -> list[Generation]: ...

    def tokenize(self, text: str, add_bos: bool = False) -> list[int]: ...

    def token_logprobs(self, tokens: Sequence[int]) -> np.ndarray:
        """Log-softmax over the vocabulary at every position: shape [len(tokens), n_vocab]."""
        ...

    @property
    def bos_id(self) -> int | None: ...

    def close(self) -> None: ...
