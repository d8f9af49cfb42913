"""Shared label logic for deductive-reasoning tasks (FOLIO, ProofWriter, RuleTaker).

These are modelled as multiple choice over label words (``("True", "False")`` or
``("True", "False", "Uncertain")``), so the same item runs in log-likelihood mode
(continuations " True", " False"...) and in generative mode, where the reply may give the
word or its letter (A = True, B = False, C = Uncertain, the order Logic-LM and LoT use).
``item.gold`` is the label's index, like every multiple-choice task.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

from evalsuite.tasks.base import LETTERS, MultipleChoiceTask, unique_ids
from evalsuite.types import Item
from quantsuite.errors import UserError

TF = ("True", "False")
TFU = ("True", "False", "Uncertain")

# other spellings of each label a model (or a dataset) may use, lower-case
SYNONYMS: dict[str, tuple[str, ...]] = {
    "True": ("true", "yes", "entailed", "entailment", "correct"),
    "False": ("false", "no", "contradiction", "contradicted", "incorrect"),
    "Uncertain": ("uncertain", "unknown", "undetermined", "cannot be determined",
                  "can't be determined", "cannot be known", "neither", "not enough information"),
}


def parse_label(value: Any, labels: tuple[str, ...]) -> int | None:
    """Gold label index from a dataset value: bool, 1/0 (truth values, as RuleTaker),
    a label word or synonym, or a letter (A = first label). None if unrecognized."""
    if isinstance(value, bool):
        return labels.index("True" if value else "False")
    if isinstance(value, int):
        return labels.index("True" if value == 1 else "False") if value in (0, 1) else None
    if not isinstance(value, str):
        return None
    v = value.strip().strip(".").strip()
    if v in ("1", "0"):
        return labels.index("True" if v == "1" else "False")
    if len(v) == 1 and v.upper() in LETTERS[: len(labels)]:
        return LETTERS.index(v.upper())
    low = v.lower()
    for i, lab in enumerate(labels):
        if low == lab.lower() or low in SYNONYMS.get(lab, ()):
            return i
    return None


def _label_words(labels: tuple[str, ...]) -> tuple[str, dict[str, int]]:
    """Regex alternation of every label word and synonym (longest first) -> index map."""
    words: dict[str, int] = {}
    for i, lab in enumerate(labels):
        for w in (lab.lower(),) + SYNONYMS.get(lab, ()):
            words.setdefault(w, i)
    alts = "|".join(sorted((re.escape(w) for w in words), key=len, reverse=True))
    return alts, words


_WEAK = ("yes", "no", "neither", "correct", "incorrect")


def extract_label(text: str, labels: tuple[str, ...]) -> int | None:
    """Index of the label a reply gives, else None.

    Order: the last explicit marker ('Answer: False', 'the answer is (B)', 'the statement
    is uncertain'); a reply that starts with a label word or is a lone letter; the last
    label word in the text (a chain of thought ends with its conclusion). Yes/no synonyms
    are only trusted after a marker or at the start, never in running prose.
    """
    alts, words = _label_words(labels)
    letters = LETTERS[: len(labels)]
    t = text.strip()
    marker = r"(?i:answer|conclusion|statement|label)\s*(?:(?i:is)\s*:?|:)\s*[\"'*(\[]*\s*"
    hits = [(m.start(), words[m.group(1).lower()])
            for m in re.finditer(marker + rf"({alts})\b", t, flags=re.I)]
    hits += [(m.start(), LETTERS.index(m.group(1)))
             for m in re.finditer(marker + rf"([{letters}])\b(?![a-z'])", t)]
    if hits:
        return max(hits)[1]
    lead = re.match(rf"[\s*\"'(\[]*({alts})\b", t, flags=re.I)
    if lead:
        return words[lead.group(1).lower()]
    lone = re.fullmatch(rf"\(?([{letters}])\)?[.:)]?", t.strip("*").strip())
    if lone:
        return LETTERS.index(lone.group(1))
    last = [m.group(1).lower() for m in re.finditer(rf"\b({alts})\b", t, flags=re.I)
            if m.group(1).lower() not in _WEAK]
    return words[last[-1]] if last else None


class LabelTask(MultipleChoiceTask):
    """Premises + statement -> label; subclasses implement ``read`` with ``make_items``."""

    labels: ClassVar[tuple[str, ...]] = TF

    def question_text(self) -> str:
        words = [w.lower() for w in self.labels]
        return ("Based on the information above, is the following statement "
                f"{', '.join(words[:-1])} or {words[-1]}?")

    def context(self, item: Item) -> str:
        return f"{item.context}\nQuestion: {self.question_text()}\nStatement: {item.question}\nAnswer:"

    def question_block(self, item: Item) -> str:
        return f"{item.context}\n\nQuestion: {self.question_text()}\nStatement: {item.question}"

    def instruction(self, item: Item, cot: bool) -> str:
        opts = ", ".join(self.labels[:-1]) + f" or {self.labels[-1]}"
        if cot:
            return f"Think step by step, then finish with 'Answer: <label>' where the label is {opts}."
        return f"Answer with one word: {opts}."

    def answer_text(self, item: Item) -> str:
        return self.labels[int(item.gold)]

    def extract(self, text: str, item: Item) -> int | None:
        return extract_label(text, tuple(item.choices) or self.labels)

    # -- reading -------------------------------------------------------------------------
    def make_items(self, rows: list[dict], path: Path, id_key: str | None, ctx_key: str,
                   concl_key: str, label_key: str) -> list[Item]:
        """Items from dict rows; a missing field or an unknown label is a one-line UserError."""
        items, ids = [], []
        for n, r in enumerate(rows):
            where = f"{self.name}: {path} item {n + 1}"
            if not isinstance(r, dict):
                raise UserError(f"{where} is not an object")
            try:
                ctx, concl, raw = r[ctx_key], r[concl_key], r[label_key]
            except KeyError as e:
                raise UserError(f"{where} has no field {e.args[0]!r}") from None
            if isinstance(ctx, list):
                ctx = "\n".join(str(p).strip() for p in ctx)
            gold = parse_label(raw, self.labels)
            if gold is None:
                raise UserError(f"{where}: label {raw!r} is not one of {', '.join(self.labels)}")
            ids.append(str(r.get(id_key) or f"{self.name}-{n}") if id_key else f"{self.name}-{n}")
            items.append((str(ctx).strip(), str(concl).strip(), gold, raw))
        ids = unique_ids(ids)
        self.report["duplicate_ids"] = sum(1 for i in ids if "#" in i)
        return [Item(id=i, question=concl, context=ctx, choices=self.labels, gold=gold,
                     meta={"raw_label": raw}) for i, (ctx, concl, gold, raw) in zip(ids, items)]


def read_json_rows(path: Path, task: str) -> list[dict]:
    """A JSON list or JSON Lines file -> list of rows (either format accepted anywhere)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{task}: cannot read {path} ({getattr(e, 'strerror', None) or e})") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{task}: {path} is not valid JSON ({e.msg}, line {e.lineno})") from None
        return rows
    rows = []
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 may sit in strings
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise UserError(f"{task}: {path} line {n} is not valid JSON ({e.msg})") from None
    return rows
