"""LogiQA (English test set) in the plain-text release used by Logic-of-Thought.

Blocks are separated by blank lines: the answer letter (lower case), the passage, the
question, then four options. The passage may span several lines (everything between the
answer line and the last five lines). Options in the shared file are irregular, so they
are read by their labels, not their position:

* 'A.x', 'A x' and 'A?x' all occur (the '?' is a mistranslated full-width stop);
* 19 blocks list them as A, C, B, D: they are put back in A-D order, since the answer
  letter refers to the label;
* 2 blocks lost a label in translation ('When the land in City A.B ...'): if the labels
  do not give A-D exactly once, the lines are taken in order.

Prompt and scoring follow lm-evaluation-harness's ``logiqa`` task: "Passage: ...\\n
Question: ...\\nChoices:\\nA. ...\\nAnswer:" scored with " <option text>".
"""

from __future__ import annotations

import re
from pathlib import Path

from evalsuite.tasks import TASKS
from evalsuite.tasks.base import LETTERS, MultipleChoiceTask
from evalsuite.types import Item
from quantsuite.errors import UserError

# a label is a letter followed by a separator or a space, never by another letter ('All ...')
_OPT = re.compile(r"^\s*([A-D])(?:\s*[.?:\uff0e\u3001)]\s*|\s+)(.*)$")


def parse_options(lines: list[str]) -> tuple[list[str], bool]:
    """Four option lines -> texts in A-D order, and whether their labels were usable."""
    found = [(m.group(1), m.group(2).strip()) for m in map(_OPT.match, lines) if m]
    if len(found) == len(lines) and sorted(lab for lab, _ in found) == list("ABCD"[: len(lines)]):
        return [t for _, t in sorted(found)], True
    texts = []
    for i, ln in enumerate(lines):      # positional: strip a label only if it is the expected one
        m = _OPT.match(ln)
        texts.append(m.group(2).strip() if m and m.group(1) == LETTERS[i] else ln.strip())
    return texts, False


@TASKS.register("logiqa")
class LogiQA(MultipleChoiceTask):
    name = "logiqa"
    version = "1"
    default_file = "logic/logiqa/test.txt"

    def context(self, item: Item) -> str:
        opts = "".join(f"{LETTERS[i]}. {c}\n" for i, c in enumerate(item.choices))
        return f"Passage: {item.context}\nQuestion: {item.question}\nChoices:\n{opts}Answer:"

    def read(self, path: Path) -> list[Item]:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"logiqa: cannot read {path} ({getattr(e, 'strerror', None) or e})") from None
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        blocks = [b for b in re.split(r"\n[ \t]*\n", text) if b.strip()]
        items, positional = [], 0
        for n, block in enumerate(blocks):
            lines = [ln for ln in block.strip("\n").split("\n") if ln.strip()]
            if len(lines) < 7:
                raise UserError(f"logiqa: {path} block {n + 1} has {len(lines)} lines; expected "
                                "answer letter, passage, question and 4 options")
            ans = lines[0].strip().upper()
            if len(ans) != 1 or ans not in "ABCD":
                raise UserError(f"logiqa: {path} block {n + 1} starts with {lines[0].strip()[:20]!r}, "
                                "not an answer letter a-d")
            options, by_label = parse_options(lines[-4:])
            positional += not by_label
            items.append(Item(id=f"logiqa-{n}", question=lines[-5].strip(),
                              context="\n".join(ln.strip() for ln in lines[1:-5]),
                              choices=tuple(options), gold="ABCD".index(ans)))
        self.report["options_by_position"] = positional
        return items
