"""MMLU-Redux: MMLU re-annotated, 43 subjects x 100 questions, one CSV per subject.

The files are not uniform, so the reader checks rather than assumes:

* 35 are comma- and 8 semicolon-separated: the delimiter is taken from the header line;
* column order varies (one file has two extra empty columns): columns are read by name;
* CRLF, LF and stray NEL characters occur, and quoted fields span lines: the csv module
  reads the raw text with ``newline=""``;
* ``choices`` is a Python list literal (``ast.literal_eval``, never ``eval``);
* ``error_type`` is 'ok' in four spellings ('ok', 'OK', 'Ok', 'OK '): compared stripped
  and case-folded.

By default only clean ('ok') items are kept and the rest counted in ``load_report()``
(``skipped``, ``skipped_by_type``); ``include_errors=true`` keeps them all. The gold is
always the ``answer`` column (0-based index): for clean rows it is right by definition
(two clean rows carry a stray, different ``correct_answer``); for flagged rows it is the
original MMLU label, and ``correct_answer`` and ``error_type`` stay in ``item.meta``.

Prompt follows lm-evaluation-harness's ``mmlu`` task: the subject description, then
"{question}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:" scored with " A".." D".
MMLU-Redux has no dev split: k-shot examples come from ``fewshot_path`` (a CSV file or
folder in this format) if given, else from the evaluated items (never an item itself).
"""

from __future__ import annotations

import ast
import csv
import io
from collections import Counter
from pathlib import Path
from typing import Any

from evalsuite.tasks import TASKS
from evalsuite.tasks.base import FEWSHOT_OPTIONS, LETTERS, MultipleChoiceTask, split_list
from evalsuite.types import Item
from quantsuite.errors import UserError

REQUIRED = ("question", "choices", "answer")


def subject_of(path: Path) -> str:
    """'mmlu_high_school_physics.csv' -> 'high_school_physics'."""
    stem = path.stem
    return stem[len("mmlu_"):] if stem.startswith("mmlu_") else stem


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Rows of one MMLU-Redux CSV as dicts, whatever its delimiter and line endings."""
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise UserError(f"mmlu_redux: cannot read {path} ({e.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"mmlu_redux: {path} is not UTF-8 text") from None
    header = raw.split("\n", 1)[0]
    delim = ";" if header.count(";") > header.count(",") else ","
    try:
        reader = csv.DictReader(io.StringIO(raw, newline=""), delimiter=delim)
        rows = list(reader)
    except csv.Error as e:
        raise UserError(f"mmlu_redux: {path} is not a valid CSV ({e})") from None
    fields = [f.strip() for f in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in fields]
    if missing:
        raise UserError(f"mmlu_redux: {path} has no column(s) {', '.join(missing)} "
                        f"(header: {header.strip()[:80]!r})")
    return [{(k or "").strip(): (v if isinstance(v, str) else "") for k, v in r.items()} for r in rows]


@TASKS.register("mmlu_redux")
class MMLURedux(MultipleChoiceTask):
    name = "mmlu_redux"
    version = "1"
    default_file = "mmlu_redux"         # a folder of CSVs; path= may be a folder or one CSV
    option_defaults = {**FEWSHOT_OPTIONS, "subjects": "all", "include_errors": False}

    def __init__(self, path=None, limit=None, **options: Any):
        if "subjects" in options:       # canonical text, so the same set gives the same key
            subj = split_list(options["subjects"])
            options["subjects"] = "all" if not subj or "all" in subj else "+".join(sorted(set(subj)))
        super().__init__(path, limit, **options)

    @property
    def skipped(self) -> int:
        """Flagged rows left out by the last ``load()`` (details in ``load_report()``)."""
        return int(self.report.get("skipped", 0))

    @property
    def subjects(self) -> list[str] | None:
        s = self.opt("subjects")
        return None if s == "all" else s.split("+")

    def files(self, path: Path) -> list[Path]:
        files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
        if not files:
            raise UserError(f"mmlu_redux: no .csv files in {path}")
        wanted = self.subjects
        if wanted is None:
            return files
        by_subject = {subject_of(f): f for f in files}
        unknown = [s for s in wanted if s not in by_subject]
        if unknown:
            raise UserError(f"mmlu_redux: unknown subject(s) {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(by_subject))})")
        return [by_subject[s] for s in wanted]

    def read(self, path: Path) -> list[Item]:
        include = bool(self.opt("include_errors"))
        items: list[Item] = []
        rows_total, skipped = 0, Counter()
        for f in self.files(path):
            subject = subject_of(f)
            for n, r in enumerate(read_csv_rows(f)):
                rows_total += 1
                err = r.get("error_type", "ok").strip() or "ok"
                if err.lower() != "ok" and not include:
                    skipped[err.lower().replace("_", " ")] += 1
                    continue
                items.append(self._item(r, f, subject, n, err))
        self.report.update(rows=rows_total, skipped=sum(skipped.values()),
                           skipped_by_type=dict(sorted(skipped.items())))
        return items

    def _item(self, r: dict[str, str], f: Path, subject: str, n: int, err: str) -> Item:
        where = f"mmlu_redux: {f} row {n + 2}"          # +1 header, +1 one-based
        try:
            choices = ast.literal_eval(r["choices"].strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise UserError(f"{where}: choices is not a Python list literal") from None
        if not isinstance(choices, (list, tuple)) or not 2 <= len(choices) <= len(LETTERS):
            raise UserError(f"{where}: choices must be a list of 2-{len(LETTERS)} options")
        try:
            gold = int(r["answer"].strip())
        except ValueError:
            raise UserError(f"{where}: answer {r['answer']!r} is not a 0-based index") from None
        if not 0 <= gold < len(choices):
            raise UserError(f"{where}: answer {gold} is outside the {len(choices)} choices")
        return Item(id=f"{subject}-{n}", question=r["question"].strip(), gold=gold,
                    choices=tuple(str(c) for c in choices),
                    meta={"subject": subject, "error_type": err,
                          "correct_answer": r.get("correct_answer", "").strip()})

    # -- prompts (lm-eval mmlu) ------------------------------------------------------------
    def description(self, item: Item) -> str:
        subject = item.meta.get("subject", "").replace("_", " ")
        return f"The following are multiple choice questions (with answers) about {subject}.\n\n"

    def context(self, item: Item) -> str:
        opts = "".join(f"\n{LETTERS[i]}. {c}" for i, c in enumerate(item.choices))
        return f"{item.question}{opts}\nAnswer:"

    def continuations(self, item: Item) -> list[str]:
        return [self.target_delimiter + LETTERS[i] for i in range(len(item.choices))]
