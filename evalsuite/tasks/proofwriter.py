"""ProofWriter depth-5 subset used by Logic-of-Thought: context + conclusion -> True/False.

The file ({id, context, conclusion, answer}) stores answers as JSON booleans; letters and
label words are accepted too (see ``parse_label``). Its 100 rows hold 14 exact repeats of
an id; they are kept, as the published benchmark scores them, with ids made unique
('id#2'). No train split: k-shot examples come from the same file (leave-one-out).
"""

from __future__ import annotations

from pathlib import Path

from evalsuite.tasks import TASKS
from evalsuite.tasks.logic_common import TF, LabelTask, read_json_rows
from evalsuite.types import Item


@TASKS.register("proofwriter")
class ProofWriter(LabelTask):
    name = "proofwriter"
    version = "1"
    labels = TF
    default_file = "logic/proofwriter/dev100.json"

    def read(self, path: Path) -> list[Item]:
        rows = read_json_rows(path, self.name)
        return self.make_items(rows, path, id_key="id", ctx_key="context",
                               concl_key="conclusion", label_key="answer")
