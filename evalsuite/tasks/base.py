"""Task base classes: multiple choice (log-likelihood or letter), generative, perplexity."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Sequence

from evalsuite.types import Item, LLRequest
from quantsuite.errors import UserError
from quantsuite.paths import data_dir

LETTERS = "ABCDEFGHIJ"


class Task:
    name: ClassVar[str]
    version: ClassVar[str] = "1"
    kind: ClassVar[str] = "mc"            # mc | gen | ppl
    default_file: ClassVar[str] = ""      # relative to the shared data folder

    def __init__(self, path: str | Path | None = None, limit: int | None = None, **options: Any):
        self.path = Path(path) if path else None
        self.limit = limit
        self.options = options

    @property
    def data_path(self) -> Path:
        p = self.path or (data_dir() / self.default_file)
        if not p.exists():
            raise UserError(f"task {self.name}: data file not found: {p}")
        return p

    def load(self) -> list[Item]:
        items = self.read(self.data_path)
        if not items:
            raise UserError(f"task {self.name}: no items in {self.data_path}")
        return items[: self.limit] if self.limit else items

    def read(self, path: Path) -> list[Item]:
        raise NotImplementedError

    @property
    def version_key(self) -> str:
        """Version plus the options that change prompts or items (goes into run keys)."""
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.name}@{self.version}" + (f"[{opts}]" if opts else "")


class MultipleChoiceTask(Task):
    """Choices scored by log-likelihood (lm-eval style) or answered with a letter."""

    kind = "mc"
    target_delimiter: ClassVar[str] = " "

    def context(self, item: Item) -> str:
        return f"Question: {item.question}\nAnswer:"

    def ll_requests(self, item: Item) -> list[LLRequest]:
        ctx = self.context(item)
        return [LLRequest(ctx, self.target_delimiter + c) for c in item.choices]

    def letter_prompt(self, item: Item, cot: bool = False) -> str:
        opts = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices))
        pre = (f"{item.context}\n\n" if item.context else "")
        tail = ("Think step by step, then finish with 'Answer: <letter>'." if cot
                else "Answer with the letter of the correct option only.")
        return f"{pre}Question: {item.question}\n{opts}\n{tail}"

    def extract(self, text: str, item: Item) -> int | None:
        return extract_letter(text, len(item.choices))

    def is_correct(self, parsed: Any, item: Item) -> bool:
        return parsed is not None and int(parsed) == int(item.gold)


def extract_letter(text: str, n_choices: int) -> int | None:
    """Index of the answer letter: 'Answer: B' first, then a lone letter, else None."""
    valid = LETTERS[:n_choices]
    m = re.findall(rf"answer\s*(?:is)?\s*[:\-]?\s*\(?([{valid}])\b", text, flags=re.I)
    if m:
        return valid.index(m[-1].upper())
    m = re.findall(rf"(?:^|[\s(])([{valid}])(?:[).:\s]|$)", text.strip())
    return valid.index(m[0]) if m else None


def choose(scores: Sequence[float]) -> int:
    """argmax with ties broken towards the first choice (deterministic)."""
    best = max(scores)
    return next(i for i, s in enumerate(scores) if s == best)
