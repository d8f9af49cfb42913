"""User-supplied tasks from one JSONL file (format documented in docs/tasks.md).

``--tasks user:path/to/file.jsonl`` (task name ``jsonl`` with ``path=``). Each line is
{"id", "question", "choices" (optional), "answer", "context" (optional)}. The kind is
inferred from the file: every row has ``choices`` -> multiple choice (log-likelihood and
letter modes, like the built-in tasks); no row has them -> generative, exact match after
normalization (numbers compared as numbers, text case/punctuation/article-insensitive).
A file that mixes both is refused rather than guessed.

The task's name is ``user:<file stem>`` and its version key holds a hash of the file, so
two different files, or an edited one, never share stored results.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

from evalsuite.tasks import TASKS
from evalsuite.tasks.base import (FEWSHOT_OPTIONS, LETTERS, GenerativeTask, MultipleChoiceTask, Task,
                                  extract_number, normalize_number)
from evalsuite.tasks.logic_common import read_json_rows
from evalsuite.types import Item
from quantsuite.errors import UserError


def _rows(path: Any) -> tuple[Path, list[dict]]:
    if not path:
        raise UserError("task jsonl needs a file: --tasks user:path/to/file.jsonl")
    p = Path(path)
    if not p.is_file():
        raise UserError(f"task jsonl: data file not found: {p}")
    rows = read_json_rows(p, "jsonl")
    if not rows:
        raise UserError(f"task jsonl: no items in {p}")
    for n, r in enumerate(rows, 1):
        if not isinstance(r, dict):
            raise UserError(f"task jsonl: {p} item {n} is not a JSON object")
    return p, rows


def infer_kind(rows: list[dict], path: Path) -> str:
    with_choices = sum(1 for r in rows if r.get("choices") is not None)
    if with_choices == len(rows):
        return "mc"
    if with_choices == 0:
        return "gen"
    raise UserError(f"task jsonl: {path} mixes items with and without 'choices' "
                    f"({with_choices} of {len(rows)} have them); split it into two files")


def mc_gold(answer: Any, choices: tuple[str, ...], where: str) -> int:
    """Choice index from an int index, a choice's exact text, or a letter (in that order)."""
    if isinstance(answer, int) and not isinstance(answer, bool):
        if 0 <= answer < len(choices):
            return answer
        raise UserError(f"{where}: answer index {answer} is outside the {len(choices)} choices")
    if isinstance(answer, str):
        a = answer.strip()
        for i, c in enumerate(choices):
            if a == c.strip():
                return i
        if len(a) == 1 and a.upper() in LETTERS[: len(choices)]:
            return LETTERS.index(a.upper())
    raise UserError(f"{where}: answer {answer!r} is not a choice index, letter or choice text")


_NO_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_text(s: str) -> str:
    """SQuAD-style: lower case, no punctuation, no articles, single spaces."""
    s = s.lower().translate(_NO_PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def extract_text_answer(text: str) -> str | None:
    """The answer phrase of a reply: after the last 'the answer is' / 'Answer:' marker
    (to the end of that line), else the last non-empty line."""
    marks = list(re.finditer(r"(?:answer\s+is|answer\s*:)\s*\**\s*(.+)", text, flags=re.I))
    if marks:
        ans = marks[-1].group(1)
    else:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        if not lines:
            return None
        ans = lines[-1]
    ans = ans.strip().strip("*").strip().rstrip(".").strip()
    return ans or None


@TASKS.register("jsonl")
class UserJsonl(Task):
    """Dispatches to the multiple-choice or generative variant by looking at the file."""

    name = "jsonl"
    version = "1"

    def __new__(cls, path=None, limit=None, **options: Any):
        if cls is UserJsonl:
            p, rows = _rows(path)
            cls = UserJsonlMC if infer_kind(rows, p) == "mc" else UserJsonlGen
        return super().__new__(cls)

    def __init__(self, path=None, limit=None, **options: Any):
        if not path or not Path(path).is_file():
            _rows(path)                               # raises the one-line UserError
        super().__init__(path, limit, **options)
        assert self.path is not None
        self.name = f"user:{self.path.stem}"          # type: ignore[misc]

    def read(self, path: Path) -> list[Item]:
        p, rows = _rows(path)
        kind = infer_kind(rows, p)
        if kind != self.kind:
            raise UserError(f"task jsonl: {p} holds {kind} items, this task reads {self.kind}")
        items, seen = [], set()
        for n, r in enumerate(rows):
            where = f"task jsonl: {p} item {n + 1}"
            if not isinstance(r.get("question"), str) or not r["question"].strip():
                raise UserError(f"{where} needs a non-empty string 'question'")
            if "answer" not in r or r["answer"] is None:
                raise UserError(f"{where} needs an 'answer'")
            iid = str(r["id"]) if r.get("id") is not None else f"item-{n}"
            if iid in seen:
                raise UserError(f"{where}: id {iid!r} is repeated; results are stored per id")
            seen.add(iid)
            ctx = r.get("context") or ""
            if not isinstance(ctx, str):
                raise UserError(f"{where}: 'context' must be a string")
            items.append(self.make_item(r, iid, ctx.strip(), where))
        return items

    def make_item(self, r: dict, iid: str, ctx: str, where: str) -> Item:
        raise NotImplementedError


class UserJsonlMC(UserJsonl, MultipleChoiceTask):
    kind = "mc"
    option_defaults = dict(FEWSHOT_OPTIONS)

    def make_item(self, r: dict, iid: str, ctx: str, where: str) -> Item:
        ch = r["choices"]
        if not isinstance(ch, list) or not 2 <= len(ch) <= len(LETTERS) \
                or not all(isinstance(c, (str, int, float)) for c in ch):
            raise UserError(f"{where}: 'choices' must be a list of 2-{len(LETTERS)} strings")
        choices = tuple(str(c) for c in ch)
        return Item(id=iid, question=r["question"].strip(), context=ctx, choices=choices,
                    gold=mc_gold(r["answer"], choices, where))


class UserJsonlGen(UserJsonl, GenerativeTask):
    """Gold is a number (compared numerically, like GSM8K) or text (normalized); a list of
    accepted answers is allowed, the first one shown in k-shot examples."""

    kind = "gen"
    option_defaults = {**FEWSHOT_OPTIONS, "match": "flexible"}

    def make_item(self, r: dict, iid: str, ctx: str, where: str) -> Item:
        ans = r["answer"]
        accepted = ans if isinstance(ans, list) else [ans]
        if not accepted or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool)
                                   for a in accepted):
            raise UserError(f"{where}: 'answer' must be a string, a number or a list of them")
        nums = [normalize_number(str(a)) for a in accepted]
        numeric = all(x is not None for x in nums)
        forms = tuple(nums) if numeric else tuple(normalize_text(str(a)) for a in accepted)
        gold = nums[0] if numeric else str(accepted[0]).strip()
        return Item(id=iid, question=r["question"].strip(), context=ctx, gold=gold,
                    meta={"numeric": numeric, "accepted": forms})

    def extract(self, text: str, item: Item) -> str | None:
        if item.meta.get("numeric"):
            return extract_number(text, self.opt("match"))
        return extract_text_answer(text)

    def is_correct(self, parsed: Any, item: Item) -> bool:
        if parsed is None:
            return False
        if item.meta.get("numeric"):
            return normalize_number(str(parsed)) in item.meta["accepted"]
        return normalize_text(str(parsed)) in item.meta["accepted"]
