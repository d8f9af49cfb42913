"""GSM8K grade-school math: generative, exact match on the final number.

Data: JSONL {question, answer}; the reference solution ends with '#### N' (N may carry
thousands commas or a minus sign). ``item.gold`` is N normalized ('1,450,000' ->
'1450000'); ``meta['solution']`` keeps the worked solution for chain-of-thought shots,
with the calculator annotations ('<<3*4=12>>') removed as they are not natural text.

Extraction mirrors lm-eval's gsm8k-cot filters: ``match=strict`` accepts only an explicit
answer ('The answer is N', '#### N', '\\boxed{N}', 'Answer: N'); ``match=flexible`` (the
default) falls back to the last number in the reply. The mode is an option, so it is part
of ``version_key``: stored correctness always says how it was judged.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from evalsuite.tasks import TASKS
from evalsuite.tasks.base import FEWSHOT_OPTIONS, GenerativeTask, extract_number, normalize_number
from evalsuite.tasks.logic_common import read_json_rows
from evalsuite.types import Item
from quantsuite.errors import UserError

MATCH_MODES = ("flexible", "strict")


def gold_answer(solution: str) -> str | None:
    """The normalized number after the last '####' of a reference solution."""
    m = re.findall(r"####\s*(.+?)\s*$", solution.strip(), flags=re.M)
    return normalize_number(m[-1]) if m else None


def clean_solution(solution: str) -> str:
    """Reasoning text of a reference solution, without calculator annotations and '####'."""
    body = solution.rsplit("####", 1)[0]
    body = re.sub(r"<<[^<>]*>>", "", body)
    return "\n".join(line.strip() for line in body.strip().splitlines() if line.strip())


@TASKS.register("gsm8k")
class GSM8K(GenerativeTask):
    name = "gsm8k"
    version = "1"
    option_defaults = {**FEWSHOT_OPTIONS, "match": "flexible"}

    def __init__(self, path=None, limit=None, split: str = "test", **options: Any):
        super().__init__(path, limit, **options)
        self.split = split
        if self.opt("match") not in MATCH_MODES:
            raise UserError(f"gsm8k: match must be one of {', '.join(MATCH_MODES)}, "
                            f"not '{self.opt('match')}'")

    @property
    def default_file(self) -> str:  # type: ignore[override]
        return f"gsm8k/{self.split}.jsonl"

    def read(self, path: Path) -> list[Item]:
        items = []
        for n, r in enumerate(read_json_rows(path, self.name)):
            where = f"gsm8k: {path} item {n + 1}"
            if not isinstance(r, dict) or "question" not in r or "answer" not in r:
                raise UserError(f"{where} needs fields 'question' and 'answer'")
            sol = str(r["answer"])
            gold = gold_answer(sol)
            if gold is None:
                raise UserError(f"{where}: answer does not end with '#### <number>'")
            items.append(Item(id=str(r.get("id") or f"gsm8k-{self.split}-{n}"),
                              question=str(r["question"]).strip(), gold=gold,
                              meta={"solution": clean_solution(sol)}))
        return items

    # -- prompts -------------------------------------------------------------------------
    def instruction(self, item: Item, cot: bool) -> str:
        if cot:
            return ("Solve the problem step by step, then finish with 'The answer is N.' "
                    "where N is the final number.")
        return "Reply with the final number only, as 'The answer is N.'"

    def solution(self, item: Item, cot: bool) -> str:
        reasoning = item.meta.get("solution", "") if cot else ""
        return (f"{reasoning}\n" if reasoning else "") + f"The answer is {item.gold}."

    # -- scoring -------------------------------------------------------------------------
    def extract(self, text: str, item: Item | None = None) -> str | None:
        return extract_number(text, self.opt("match"))

    def is_correct(self, parsed: Any, item: Item) -> bool:
        if parsed is None:
            return False
        return normalize_number(str(parsed)) == str(item.gold)
