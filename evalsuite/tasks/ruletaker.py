"""RuleTaker depth-5 subset used by Logic-of-Thought: context + conclusion -> True/False.

The file ({Qid, context, conclusion, answer}) stores answers as 1 (the conclusion follows,
True) and 0 (False); checked on the data: every conclusion stated verbatim in its context
has answer 1, every one whose negation is stated has 0. No train split: k-shot examples
come from the same file (leave-one-out) unless ``fewshot_path`` is given.
"""

from __future__ import annotations

from pathlib import Path

from evalsuite.tasks import TASKS
from evalsuite.tasks.logic_common import TF, LabelTask, read_json_rows
from evalsuite.types import Item


@TASKS.register("ruletaker")
class RuleTaker(LabelTask):
    name = "ruletaker"
    version = "1"
    labels = TF
    default_file = "logic/ruletaker/val.json"

    def read(self, path: Path) -> list[Item]:
        rows = read_json_rows(path, self.name)
        return self.make_items(rows, path, id_key="Qid", ctx_key="context",
                               concl_key="conclusion", label_key="answer")
