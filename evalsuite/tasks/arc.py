"""ARC-Easy (AI2 Reasoning Challenge), in the JSON-list export of allenai/ai2_arc.

Prompt and scoring follow lm-evaluation-harness's ``arc_easy`` task
("Question: ...\\nAnswer:" + " <choice>", acc and length-normalized acc_norm).
"""

from __future__ import annotations

import json
from pathlib import Path

from evalsuite.tasks import TASKS
from evalsuite.tasks.base import MultipleChoiceTask
from evalsuite.types import Item
from quantsuite.errors import UserError


@TASKS.register("arc_easy")
class ArcEasy(MultipleChoiceTask):
    name = "arc_easy"
    version = "1"

    def __init__(self, path=None, limit=None, split: str = "validation", **options):
        super().__init__(path, limit, **options)
        self.split = split

    @property
    def default_file(self) -> str:  # type: ignore[override]
        return f"arc_easy/{self.split}.json"

    def read(self, path: Path) -> list[Item]:
        try:
            rows = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"arc_easy: {path} is not valid JSON ({e.msg})") from None
        items = []
        for r in rows:
            labels, texts = r["choices"]["label"], r["choices"]["text"]
            if r["answerKey"] not in labels:
                continue
            items.append(Item(id=r["id"], question=r["question"], choices=tuple(texts),
                              gold=labels.index(r["answerKey"])))
        return items
