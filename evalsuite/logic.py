"""Propositional logic for Logic-of-Thought (arXiv 2409.17539): parse and extend implications.

LoT lets the model *extract* propositions and implications from a text, extends them
here in pure Python, and lets the model *translate* the new ones back into sentences. The
extension is deterministic and independent of the model, so it is exact, testable and
cached (one extraction always gives the same extension).

Formulas are implications between literals: ``A->B``, ``¬A -> ¬B``. Accepted spellings:
negation ``¬ ~ ! not``, arrow ``-> → => ⇒``; atoms are identifiers (``A``, ``B2``,
``rains``); any number of negations collapses by double negation (``¬¬A`` is ``A``).

What ``extend`` returns (the precise contract the golden tests pin down):

* the closure of the input under contraposition (``p->q`` gives ``¬q->¬p``) and the
  transitive law (``p->q, q->r`` give ``p->r``), with double negation applied throughout;
* minus every implication equivalent to an input one (an implication and its
  contrapositive are the same statement, so ``A->B`` never yields ``¬B->¬A`` as "new");
* minus trivial ones: ``p->p``, ``p->¬p`` and ``¬p->p``;
* one representative per contrapositive pair: the form with fewer negated literals, and
  on a tie the one whose antecedent atom appears first in the input (so ``¬A->¬C`` is
  reported as ``C->A`` and ``A->B, C->¬B`` gives ``A->¬C``, not ``C->¬A``);
* sorted by (antecedent atom, its sign, consequent atom, its sign) in input order.

So ``A->B, B->C, C->D`` gives exactly ``A->C, A->D, B->D``: their contrapositives
(``¬D->¬A``...) state the same thing and are not repeated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

from quantsuite.errors import UserError

_NEG = r"(?:¬|~|!|not\s+)"
_ATOM = r"[A-Za-z][A-Za-z0-9_]*"
_LIT = rf"\s*((?:{_NEG}\s*)*)\(?\s*({_ATOM})\s*\)?\s*"
_ARROW = r"(?:->|→|=>|⇒)"
_IMPL_RE = re.compile(rf"^{_LIT}{_ARROW}{_LIT}$", re.IGNORECASE)
_NEG_RE = re.compile(_NEG, re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Literal:
    atom: str
    neg: bool = False

    def __invert__(self) -> "Literal":
        return Literal(self.atom, not self.neg)

    def __str__(self) -> str:
        return ("¬" if self.neg else "") + self.atom


@dataclass(frozen=True, order=True)
class Implication:
    ante: Literal
    cons: Literal

    def contrapositive(self) -> "Implication":
        return Implication(~self.cons, ~self.ante)

    @property
    def trivial(self) -> bool:
        """p->p, p->¬p and ¬p->p: true of any p or only a disguised fact, never an inference."""
        return self.ante.atom == self.cons.atom

    def __str__(self) -> str:
        return f"{self.ante}->{self.cons}"


def _literal(negs: str, atom: str) -> Literal:
    if atom.lower() == "not":
        raise ValueError("'not' is not an atom")
    return Literal(atom, len(_NEG_RE.findall(negs or "")) % 2 == 1)


def try_parse(text: str) -> Implication | None:
    """The implication written in ``text``, or None if the text is anything else."""
    m = _IMPL_RE.match(text.strip())
    if not m:
        return None
    try:
        return Implication(_literal(m.group(1), m.group(2)), _literal(m.group(3), m.group(4)))
    except ValueError:
        return None


def parse(text: str) -> Implication:
    imp = try_parse(text)
    if imp is None:
        raise UserError(f"not an implication: '{text}' (expected e.g. 'A->B' or '¬A -> ¬B')")
    return imp


def parse_many(text: str | Iterable[str]) -> list[Implication]:
    """'A->B, ¬B->C' or a list of strings -> implications (every part must parse)."""
    parts = re.split(r"[,;\n]", text) if isinstance(text, str) else list(text)
    return [parse(p) for p in parts if p.strip()]


def _atom_order(imps: Sequence[Implication]) -> dict[str, int]:
    order: dict[str, int] = {}
    for imp in imps:
        for lit in (imp.ante, imp.cons):
            order.setdefault(lit.atom, len(order))
    return order


def _canonical(imp: Implication, order: dict[str, int]) -> Implication:
    """The representative of {imp, contrapositive}: fewer negations, then earlier antecedent."""
    alt = imp.contrapositive()

    def key(i: Implication):
        return (i.ante.neg + i.cons.neg, i.ante.neg, order[i.ante.atom], order[i.cons.atom])

    return min(imp, alt, key=key)


def closure(imps: Iterable[Implication]) -> set[Implication]:
    """Every implication between literals derivable by contraposition and transitivity.

    The implication graph has an edge p->q and ¬q->¬p for each input; a literal implies
    everything reachable from it (a depth-first search per literal: O(L * E)).
    """
    edges: dict[Literal, set[Literal]] = {}
    for imp in imps:
        for a, b in ((imp.ante, imp.cons), (~imp.cons, ~imp.ante)):
            edges.setdefault(a, set()).add(b)
            edges.setdefault(b, set())
    out: set[Implication] = set()
    for start in edges:
        seen: set[Literal] = set()
        stack = list(edges[start])
        while stack:
            lit = stack.pop()
            if lit in seen:
                continue
            seen.add(lit)
            stack.extend(edges[lit] - seen)
        out.update(Implication(start, lit) for lit in seen)
    return out


def extend(imps: Iterable[Implication]) -> list[Implication]:
    """Only the NEW, non-trivial implications derivable from ``imps`` (see module docstring)."""
    return list(_extend_cached(tuple(imps)))


@lru_cache(maxsize=4096)
def _extend_cached(imps: tuple[Implication, ...]) -> tuple[Implication, ...]:
    if not imps:
        return ()
    order = _atom_order(imps)
    given = {_canonical(i, order) for i in imps}
    new = {_canonical(i, order) for i in closure(imps) if not i.trivial}
    new -= given
    return tuple(sorted(new, key=lambda i: (order[i.ante.atom], i.ante.neg, order[i.cons.atom], i.cons.neg)))


def extend_text(text: str) -> list[str]:
    """Convenience for humans and tests: 'A->B, B->C' -> ['A->C']."""
    return [str(i) for i in extend(parse_many(text))]
