"""Task base classes: multiple choice (log-likelihood or letter), generative, perplexity.

Strategies are written against a small duck-typed surface and nothing else:

* every task: ``kind`` ("mc" | "gen" | "ppl"), ``load()``, ``version_key``;
* ``mc`` tasks: ``ll_requests(item)`` (log-likelihood mode), ``letter_prompt(item, cot)`` /
  ``prompt(item, cot)`` + ``extract(text, item)`` -> choice index + ``is_correct``;
* ``gen`` tasks: ``prompt(item, cot)``, ``extract(text, item)``, ``is_correct(parsed, item)``.

Options that change prompts or items (k-shot, subjects...) are declared per class in
``option_defaults``; only values that differ from the default are kept in ``options``, so
they reach ``version_key`` (and so run keys) while the default keeps the short key.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ClassVar, Sequence

from evalsuite.tasks.fewshot import FewShotSampler
from evalsuite.types import Item, LLRequest
from quantsuite.errors import UserError
from quantsuite.paths import data_dir

LETTERS = "ABCDEFGHIJ"

# k-shot options every mc/gen task accepts (see fewshot.py for how shots are drawn)
FEWSHOT_OPTIONS: dict[str, Any] = {"k_shot": 0, "fewshot_seed": 1234, "fewshot_path": None}


class Task:
    name: ClassVar[str]
    version: ClassVar[str] = "1"
    kind: ClassVar[str] = "mc"            # mc | gen | ppl
    default_file: ClassVar[str] = ""      # relative to the shared data folder
    option_defaults: ClassVar[dict[str, Any]] = {}
    # split the k-shot examples come from, for tasks that have a ``split`` attribute;
    # tasks without one (or with None here) draw them from the evaluated file, leave-one-out
    fewshot_split: ClassVar[str | None] = "train"

    def __init__(self, path: str | Path | None = None, limit: int | None = None, **options: Any):
        self.path = Path(path) if path else None
        self.limit = int(limit) if limit else None
        self.options = self._check_options(options)
        self.report: dict[str, Any] = {}
        self._pool: list[Item] | None = None
        self._sampler: FewShotSampler | None = None
        self._fingerprints: dict[str, str] = {}

    # -- options -------------------------------------------------------------------------
    def _check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Reject unknown options (a typo must not silently run the default) and keep only
        values that differ from the default, coerced to the default's type (CLI gives str)."""
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            known = ", ".join(sorted(self.option_defaults)) or "none"
            raise UserError(f"task {self.name}: unknown option(s) {', '.join(unknown)} (known: {known})")
        out = {}
        for k, v in options.items():
            v = _coerce_option(self.name, k, v, self.option_defaults[k])
            if v != self.option_defaults[k]:
                out[k] = v
        return out

    def opt(self, key: str) -> Any:
        return self.options.get(key, self.option_defaults.get(key))

    # -- data ----------------------------------------------------------------------------
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
        self.report["items"] = len(items)
        return items[: self.limit] if self.limit else items

    def read(self, path: Path) -> list[Item]:
        raise NotImplementedError

    def load_report(self) -> dict[str, Any]:
        """What the last ``load()`` read: item count plus loader notes (skipped rows...)."""
        return dict(self.report)

    @property
    def version_key(self) -> str:
        """Version plus the options that change prompts or items (goes into run keys).

        A non-default ``split`` and any user-supplied file (``path``, ``*_path`` options)
        are included, the files as a content hash: two different files must never share
        stored results, and a moved but unchanged file should keep them.
        """
        opts = dict(self.options)
        for k, v in opts.items():
            if k.endswith("_path") and v:
                opts[k] = self._fingerprint(Path(v))
        split = getattr(self, "split", None)
        if split is not None and split != _init_default(type(self), "split"):
            opts["split"] = split
        if self.path is not None:
            opts["data"] = self._fingerprint(self.data_path)
        s = ",".join(f"{k}={v}" for k, v in sorted(opts.items()))
        return f"{self.name}@{self.version}" + (f"[{s}]" if s else "")

    def _fingerprint(self, p: Path) -> str:
        key = str(p)
        if key not in self._fingerprints:
            self._fingerprints[key] = fingerprint(p, self.name)
        return self._fingerprints[key]

    # -- k-shot --------------------------------------------------------------------------
    def fewshot_pool(self) -> list[Item]:
        """Items the shots are drawn from: ``fewshot_path``, else the task's train split
        (``fewshot_split``), else the evaluated file (each item then skips itself)."""
        if self._pool is None:
            twin = copy.copy(self)          # a twin, so reading the pool never touches self.report
            twin.report, twin.limit = {}, None
            fp = self.opt("fewshot_path")
            if fp:
                path = Path(fp)
                if not path.exists():
                    raise UserError(f"task {self.name}: few-shot file not found: {path}")
            elif self.fewshot_split is not None and hasattr(self, "split"):
                twin.split, twin.path = self.fewshot_split, None
                path = data_dir() / twin.default_file
                if not path.exists():
                    raise UserError(f"task {self.name}: k-shot examples come from its "
                                    f"{self.fewshot_split} split, but {path} is missing; "
                                    "pass fewshot_path=")
            else:
                path = twin.data_path
            self._pool = twin.read(path)
        return self._pool

    def shots(self, item: Item) -> list[Item]:
        """The k solved examples shown before ``item`` (same for every item, see fewshot.py)."""
        k = int(self.opt("k_shot") or 0)
        if k <= 0:
            return []
        if self._sampler is None:
            self._sampler = FewShotSampler(self.fewshot_pool(), k, int(self.opt("fewshot_seed")),
                                           task=self.name)
        return self._sampler.for_item(item)


class MultipleChoiceTask(Task):
    """Choices scored by log-likelihood (lm-eval style) or answered with a letter."""

    kind = "mc"
    target_delimiter: ClassVar[str] = " "
    fewshot_delimiter: ClassVar[str] = "\n\n"
    option_defaults = dict(FEWSHOT_OPTIONS)

    def context(self, item: Item) -> str:
        """The zero-shot scoring context of one item (no description, no shots)."""
        return f"Question: {item.question}\nAnswer:"

    def description(self, item: Item) -> str:
        """Text put before the shots and the item in log-likelihood mode (lm-eval's
        ``description``, e.g. MMLU's subject line)."""
        return ""

    def continuations(self, item: Item) -> list[str]:
        """The strings scored after the context, one per choice."""
        return [self.target_delimiter + c for c in item.choices]

    def ll_context(self, item: Item) -> str:
        shots = "".join(self.context(s) + self.continuations(s)[int(s.gold)] + self.fewshot_delimiter
                        for s in self.shots(item))
        return self.description(item) + shots + self.context(item)

    def ll_requests(self, item: Item) -> list[LLRequest]:
        ctx = self.ll_context(item)
        return [LLRequest(ctx, c) for c in self.continuations(item)]

    # -- generative letter mode ----------------------------------------------------------
    def question_block(self, item: Item) -> str:
        """Passage, question and lettered options, without the answer instruction."""
        opts = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices))
        pre = (f"{item.context}\n\n" if item.context else "")
        return f"{pre}Question: {item.question}\n{opts}"

    def instruction(self, item: Item, cot: bool) -> str:
        return ("Think step by step, then finish with 'Answer: <letter>'." if cot
                else "Answer with the letter of the correct option only.")

    def answer_text(self, item: Item) -> str:
        """How a solved example states its answer in a k-shot letter prompt."""
        return LETTERS[int(item.gold)]

    def letter_prompt(self, item: Item, cot: bool = False) -> str:
        shots = "".join(f"{self.question_block(s)}\nAnswer: {self.answer_text(s)}\n\n"
                        for s in self.shots(item))
        return f"{shots}{self.question_block(item)}\n{self.instruction(item, cot)}"

    def prompt(self, item: Item, cot: bool = False) -> str:
        """Every task has ``prompt``; for multiple choice it is the letter prompt."""
        return self.letter_prompt(item, cot)

    def extract(self, text: str, item: Item) -> int | None:
        return extract_letter(text, len(item.choices))

    def is_correct(self, parsed: Any, item: Item) -> bool:
        return parsed is not None and int(parsed) == int(item.gold)


class GenerativeTask(Task):
    """Free-text answers: ``prompt`` -> model text -> ``extract`` -> ``is_correct``.

    ``item.gold`` is the normalized answer string. Subclasses set ``instruction`` and may
    override ``solution`` (how a solved k-shot example is shown, with reasoning for CoT).
    """

    kind = "gen"
    option_defaults = dict(FEWSHOT_OPTIONS)

    def question_block(self, item: Item) -> str:
        pre = (f"{item.context}\n\n" if item.context else "")
        return f"{pre}Question: {item.question}"

    def instruction(self, item: Item, cot: bool) -> str:
        return ("Think step by step, then finish with 'The answer is <answer>.'" if cot
                else "Reply with the answer only, as 'The answer is <answer>.'")

    def solution(self, item: Item, cot: bool) -> str:
        return f"The answer is {item.gold}."

    def prompt(self, item: Item, cot: bool = False) -> str:
        shots = "".join(f"{self.question_block(s)}\nAnswer: {self.solution(s, cot)}\n\n"
                        for s in self.shots(item))
        return f"{shots}{self.question_block(item)}\n{self.instruction(item, cot)}"

    def extract(self, text: str, item: Item) -> str | None:
        raise NotImplementedError

    def is_correct(self, parsed: Any, item: Item) -> bool:
        return parsed is not None and str(parsed) == str(item.gold)


# -- answer extraction ---------------------------------------------------------------------

def extract_letter(text: str, n_choices: int) -> int | None:
    """Index of the answer letter, else None.

    An explicit marker wins ('Answer: B', 'the answer is (C)', 'correct option is D'; the
    last one, as CoT restates options before concluding); then a reply that is just a
    letter; then the first lone capital letter. The letter itself must be a capital (or in
    brackets) so prose like 'the answer is a bit unclear' is not read as A.
    """
    valid = LETTERS[:n_choices]
    lower = valid.lower()
    letter = rf"\s*\**\s*(?:\(([{valid}{lower}])\)|([{valid}])\b)"
    for marker in (r"(?i:answer)(?:\s+is)?\s*[:\-]?", r"(?i:option|choice)\s+is\s*:?"):
        m = re.findall(marker + letter, text)
        if m:
            return valid.index("".join(m[-1]).upper())
    t = text.strip().strip("*").strip()
    m1 = re.fullmatch(rf"\(?([{valid}{lower}])\)?[.:)]?", t)
    if m1:
        return valid.index(m1.group(1).upper())
    m = re.findall(rf"(?:^|[\s(*])([{valid}])(?:[).:*\s]|$)", t)
    return valid.index(m[0]) if m else None


# a number: optional minus (not a range's hyphen, '3-4'), optional '$', thousands commas
_NUM = r"(?<![\d.])-?(?:\$\s?)?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"


def normalize_number(s: str) -> str | None:
    """Canonical text of a number ('$1,234.50' -> '1234.5', '-3.0' -> '-3'), else None.

    Exact match on this form makes 18, 18.0 and $18 equal while never rounding 0.1 + 0.2.
    """
    t = s.strip().replace("\u2212", "-").replace("$", "").replace(",", "").replace(" ", "")
    t = t.rstrip(".%")
    try:
        d = Decimal(t)
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    if d == 0:
        return "0"
    if d == d.to_integral_value():
        return str(int(d))          # exact at any length (quantize fails past 28 digits)
    return format(d.normalize(), "f")


_STRICT = [
    r"answer\s+is\s*:?\s*\**\s*(" + _NUM + r")",          # lm-eval gsm8k-cot strict-match
    r"####\s*(" + _NUM + r")",                             # GSM8K's own solution format
    r"\\boxed\{\s*(" + _NUM + r")\s*\}",
    r"answer\s*\**\s*:\s*\**\s*(" + _NUM + r")",          # 'Answer: 42', '**Final answer:** 42'
]


def extract_number(text: str, mode: str = "flexible") -> str | None:
    """Final number of a generated answer, normalized (see ``normalize_number``).

    ``strict``: only an explicit answer marker ('The answer is N', '#### N', '\\boxed{N}',
    'Answer: N'), the last one in the text (like lm-eval's gsm8k strict-match).
    ``flexible``: the strict answer if any, else the last number in the text (lm-eval's
    flexible-extract takes the last number only; the marker first avoids taking a number
    from a check written after the answer).
    """
    text = text.replace("\u2212", "-")
    best: tuple[int, str] | None = None
    for pat in _STRICT:
        for m in re.finditer(pat, text, flags=re.I):
            if best is None or m.start() > best[0]:
                best = (m.start(), m.group(1))
    if best is not None:
        return normalize_number(best[1])
    if mode == "strict":
        return None
    nums = re.findall(_NUM, text)
    return normalize_number(nums[-1]) if nums else None


def choose(scores: Sequence[float]) -> int:
    """argmax with ties broken towards the first choice (deterministic)."""
    best = max(scores)
    return next(i for i, s in enumerate(scores) if s == best)


# -- helpers -------------------------------------------------------------------------------

def fingerprint(p: Path, task: str = "task") -> str:
    """Short content hash of a file, or of every file under a folder (names included)."""
    h = hashlib.sha256()
    try:
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(p) if p.is_dir() else "").encode() + b"\0")
            h.update(f.read_bytes())
    except OSError as e:
        raise UserError(f"task {task}: cannot read {p} ({e.strerror})") from None
    return h.hexdigest()[:12]


def unique_ids(ids: list[str]) -> list[str]:
    """Make repeated ids unique ('x', 'x#2', ...): published subsets repeat items (the LoT
    ProofWriter file holds 14 exact duplicates) and results are stored per item id."""
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
        out.append(i if seen[i] == 1 else f"{i}#{seen[i]}")
    return out


def split_list(v: Any) -> list[str]:
    """A list option from the CLI ('a+b', 'a|b', 'a b') or from Python (list/tuple)."""
    if isinstance(v, (list, tuple)):
        return [str(x).strip() for x in v if str(x).strip()]
    return [x for x in re.split(r"[+|;,\s]+", str(v)) if x]


def _coerce_option(task: str, key: str, v: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(v, str):
            low = v.strip().lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise UserError(f"task {task}: option {key} must be true or false, not '{v}'")
            return low in ("true", "1", "yes")
        return bool(v)
    if isinstance(default, int) and not isinstance(v, bool):
        try:
            return int(v)
        except (TypeError, ValueError):
            raise UserError(f"task {task}: option {key} must be an integer, not '{v}'") from None
    if default is None and isinstance(v, Path):
        return str(v)
    return v


def _init_default(cls: type, param: str) -> Any:
    try:
        p = inspect.signature(cls.__init__).parameters.get(param)
    except (TypeError, ValueError):
        return None
    return p.default if p is not None else None


def parse_task_spec(text: str) -> tuple[str, dict[str, Any]]:
    """'gsm8k:k_shot=5,split=train' -> ('gsm8k', {...}); 'user:my.jsonl' -> ('jsonl', {path}).

    Values stay strings; each task coerces them to its option types. A list value uses
    '+' ('mmlu_redux:subjects=anatomy+virology') since ',' separates options.
    """
    text = text.strip()
    name, _, rest = text.partition(":")
    name = name.strip()
    if name in ("user", "jsonl") and rest and "=" not in rest.split(",")[0]:
        path, _, rest = rest.partition(",")
        opts: dict[str, Any] = {"path": path.strip()}
        name = "jsonl"
    else:
        opts = {}
    for kv in filter(None, (x.strip() for x in rest.split(","))):
        if "=" not in kv:
            raise UserError(f"task '{text}': option '{kv}' is not key=value")
        k, v = kv.split("=", 1)
        opts[k.strip()] = v.strip()
    return name, opts
