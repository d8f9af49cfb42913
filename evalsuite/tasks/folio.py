"""FOLIO (first-order-logic NLI): premises + conclusion -> True / False / Uncertain.

Reads the JSONL release ({premises, premises-FOL, conclusion, conclusion-FOL, label});
``premises`` may be a list (joined one per line) or a string. "Unknown" (FOLIO v1) is read
as "Uncertain". Only a validation split exists, so k-shot examples come from the same file
(leave-one-out) unless ``fewshot_path`` is given.
"""

from __future__ import annotations

from pathlib import Path

from evalsuite.tasks import TASKS
from evalsuite.tasks.logic_common import TFU, LabelTask, read_json_rows
from evalsuite.types import Item


@TASKS.register("folio")
class Folio(LabelTask):
    name = "folio"
    version = "1"
    labels = TFU
    default_file = "logic/folio/validation.jsonl"

    def read(self, path: Path) -> list[Item]:
        rows = read_json_rows(path, self.name)
        return self.make_items(rows, path, id_key="id", ctx_key="premises",
                               concl_key="conclusion", label_key="label")
