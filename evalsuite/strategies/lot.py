"""Logic-of-Thought (Liu et al., arXiv 2409.17539): logic derived from the context, added back.

Three phases per item, the middle one in pure Python:

1. **Extraction** (model): the context (or the question, when the item has none) is
   turned into propositions ``A: ...`` and implications ``A -> ¬B``. A strict parser
   keeps only those two line shapes, and only implications whose symbols were defined;
   everything else the model says is dropped, and so are propositions that do not
   occur in the text (a small model copying the prompt's worked example).
2. **Extension** (``evalsuite.logic``): double negation, contraposition and the
   transitive law derive the implications the text entails but does not state; only the
   new, non-trivial ones are kept (at most ``max_new``).
3. **Translation** (model): the new implications become sentences, appended to the
   original context, which is always kept whole. A line the model fails to translate
   (missing, or still in symbols) is rendered from a template instead
   (``translate=template`` skips the model altogether).

When nothing is extracted or nothing new follows, the context is unchanged and no
translation call is made: LoT then costs one extraction call on top of the answer.
The answer is produced with ``answer=direct`` (default), ``cot`` or ``sc`` (k samples).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from evalsuite.logic import Implication, Literal, extend, try_parse
from evalsuite.strategies import STRATEGIES, Strategy
from evalsuite.strategies.answer import (ANSWER_DEFAULTS, AnswerConfig, Meter, answer_items, check_task,
                                         generate_metered, prompt_with_context)
from evalsuite.types import GenRequest, InferenceClient, Item, Prediction
from quantsuite.errors import UserError

EXTRACT_PROMPT = """Write down the logic of the text below in symbols.
First list the simple propositions it talks about, one per line, as "<letter>: <proposition>". \
State each proposition positively (no "not"); use ¬ for negation in the implications instead.
Then list every conditional statement the text asserts ("if X then Y", "all X are Y", "X only if Y", \
"X implies Y"...) as "<letter> -> <letter>", optionally with ¬ before a letter.
Use exactly this format and write nothing else:
Propositions:
A: <proposition>
B: <proposition>
Implications:
A -> B

Example
Text: If it rains, the grass gets wet. When the grass is wet, the match is cancelled. Sunny days are never cold.
Propositions:
A: it rains
B: the grass is wet
C: the match is cancelled
D: the day is sunny
E: the day is cold
Implications:
A -> B
B -> C
D -> ¬E

Text: {text}
"""

TRANSLATE_PROMPT = """Propositions:
{props}

Rewrite each logical statement below as one plain English sentence using the propositions \
("->" means "if ... then ...", "¬" means "not"). Write one numbered sentence per statement, \
in the same order, and nothing else.
{lines}
"""

CONTEXT_HEADER = "Further facts that follow logically from the text:"

_SYMBOL = r"[A-Z][A-Z]?\d*"
_BULLET = r"(?:[-*•]\s*|\d+[.)]\s+)?"
_PROP_RE = re.compile(rf"^\s*{_BULLET}({_SYMBOL})\s*:\s*(\S.*?)\s*$")


@dataclass
class Extraction:
    props: dict[str, str] = field(default_factory=dict)
    implications: list[Implication] = field(default_factory=list)


_STOP = frozenset("the and are for not but its was has had have with that this then than all any can does did "
                  "someone something they them their there when who which will would".split())


def _content(text: str) -> list[str]:
    return [w[:4] for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 3 and w not in _STOP]


def grounded(prop: str, source: str) -> bool:
    """At least half of the proposition's content words occur in the source (4-letter
    stems, so "rains"/"raining" match): small models copy the prompt's worked example,
    and an ungrounded proposition would inject the example's logic into the context."""
    words = _content(prop)
    have = set(_content(source))
    return bool(words) and 2 * sum(w in have for w in words) >= len(words)


def parse_extraction(text: str, source: str | None = None) -> Extraction:
    """Strict parse: ``X: proposition`` and ``P -> Q`` lines over defined symbols, nothing
    else; with ``source``, propositions not grounded in it are dropped too."""
    out = Extraction()
    pending: list[Implication] = []
    for line in text.splitlines():
        body = re.sub(rf"^\s*{_BULLET}", "", line).strip()
        imp = try_parse(body) if body else None
        if imp is not None:
            pending.append(imp)
            continue
        m = _PROP_RE.match(line)
        if m and m.group(1) not in out.props and (source is None or grounded(m.group(2), source)):
            out.props[m.group(1)] = m.group(2).rstrip(" .")
    seen = set()
    for imp in pending:
        if imp.ante.atom in out.props and imp.cons.atom in out.props and imp not in seen:
            seen.add(imp)
            out.implications.append(imp)
    return out


def _phrase(lit: Literal, props: dict[str, str]) -> str:
    return f"it is not the case that {props[lit.atom]}" if lit.neg else props[lit.atom]


def template_sentence(imp: Implication, props: dict[str, str]) -> str:
    s = f"If {_phrase(imp.ante, props)}, then {_phrase(imp.cons, props)}."
    return s[0].upper() + s[1:]


def parse_translation(text: str, n: int) -> list[str | None]:
    """Sentence i (or None) for each of n statements: numbered lines, or exactly n lines."""
    out: list[str | None] = [None] * n
    numbered = re.findall(r"^\s*(\d+)[.)]\s*(.+?)\s*$", text, flags=re.M)
    if numbered:
        for num, s in numbered:
            i = int(num) - 1
            if 0 <= i < n and out[i] is None:
                out[i] = s
    else:
        lines = [ln.strip(" -*•\t") for ln in text.splitlines() if ln.strip()]
        if len(lines) == n:
            out = list(lines)
    # still in symbols: not a translation
    return [None if s is None or re.search(r"->|→|=>|¬", s) else s for s in out]


@STRATEGIES.register("lot")
class LogicOfThought(Strategy):
    name = "lot"
    defaults = {**ANSWER_DEFAULTS, "answer": "direct", "translate": "model", "extract_tokens": 256,
                "max_new": 8}

    def __init__(self, **params: Any):
        super().__init__(**params)
        if self.params["translate"] not in ("model", "template"):
            raise UserError(f"lot: translate must be 'model' or 'template', got '{self.params['translate']}'")
        if int(self.params["max_new"]) < 1:
            raise UserError(f"lot: max_new must be >= 1, got {self.params['max_new']}")
        self.answer_config()

    def answer_config(self) -> AnswerConfig:
        return AnswerConfig.from_params(self.params, mode=str(self.params["answer"]))

    @property
    def label(self) -> str:
        mode = self.params["answer"]
        return "lot" if mode == "direct" else f"lot+sc@{self.params['k']}" if mode == "sc" else f"lot+{mode}"

    def _greedy(self, prompt: str, max_tokens: int) -> GenRequest:
        return GenRequest.chat(prompt, system=str(self.params["system"]), max_tokens=max_tokens,
                               temperature=0.0, seed=int(self.params["seed"]))

    def run(self, items: Sequence[Item], client: InferenceClient, task) -> list[Prediction]:
        check_task(task)
        meters = [Meter() for _ in items]
        # 1. extraction
        sources = [it.context.strip() or it.question for it in items]
        gens = generate_metered(client, [self._greedy(EXTRACT_PROMPT.format(text=s), int(self.params["extract_tokens"]))
                                         for s in sources], meters)
        found = [parse_extraction(g.texts[0] if g.texts else "", src) for g, src in zip(gens, sources)]
        # 2. extension
        new = [extend(x.implications)[: int(self.params["max_new"])] for x in found]
        # 3. translation
        sentences: list[list[str]] = [[template_sentence(i, x.props) for i in imps] for x, imps in zip(found, new)]
        how = ["template" if imps else "" for imps in new]
        todo = [i for i, imps in enumerate(new) if imps]
        if self.params["translate"] == "model" and todo:
            reqs = [self._greedy(self._translate_prompt(found[i], new[i]), 48 * len(new[i]) + 32) for i in todo]
            for i, g in zip(todo, generate_metered(client, reqs, [meters[i] for i in todo])):
                parsed = parse_translation(g.texts[0] if g.texts else "", len(new[i]))
                sentences[i] = [s or t for s, t in zip(parsed, sentences[i])]
                ok = sum(s is not None for s in parsed)
                how[i] = "model" if ok == len(parsed) else "mixed" if ok else "template"
        extras = {it.id: (f"{CONTEXT_HEADER}\n" + "\n".join(s)) if s else "" for it, s in zip(items, sentences)}
        scores = [{"propositions": len(x.props), "implications": [str(i) for i in x.implications],
                   "derived": [str(i) for i in imps], "sentences": s, "augmented": bool(s), "translation": h,
                   # what the model wrote, so a report shows why nothing was extracted
                   "extraction": (g.texts[0] if g.texts else "")[:600]}
                  for x, imps, s, h, g in zip(found, new, sentences, how, gens)]
        return answer_items(client, task, items, lambda it, cot: prompt_with_context(task, it, extras[it.id], cot),
                            self.answer_config(), meters=meters, extra_scores=scores)

    @staticmethod
    def _translate_prompt(x: Extraction, imps: list[Implication]) -> str:
        atoms = sorted({a for i in imps for a in (i.ante.atom, i.cons.atom)})
        props = "\n".join(f"{a}: {x.props[a]}" for a in atoms)
        lines = "\n".join(f"{n}. {i.ante} -> {i.cons}" for n, i in enumerate(imps, 1))
        return TRANSLATE_PROMPT.format(props=props, lines=lines)
