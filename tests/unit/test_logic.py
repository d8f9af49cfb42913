"""Logic-of-Thought extension engine: golden cases from the issue, parser strictness, laws."""

from __future__ import annotations

import pytest

from evalsuite.logic import Implication, Literal, closure, extend, extend_text, parse, parse_many, try_parse
from quantsuite.errors import UserError


@pytest.mark.parametrize("given, expected", [
    ("¬A->¬B, ¬B->¬C", ["C->A"]),
    ("A->B, B->C, C->D", ["A->C", "A->D", "B->D"]),
    ("A->B, C->¬B", ["A->¬C"]),
    ("A->B", []),
    ("A->B, B->A", []),
])
def test_golden_extensions(given, expected):
    assert extend_text(given) == expected


def test_parser_spellings_and_double_negation():
    a, na, b = Literal("A"), Literal("A", True), Literal("B")
    assert parse("A->B") == Implication(a, b)
    assert parse(" ¬A  →  B ") == Implication(na, b)
    assert parse("~A => B") == Implication(na, b)
    assert parse("not A -> B") == Implication(na, b)
    assert parse("¬¬A -> B") == Implication(a, b)
    assert parse("!!!A -> ¬(B)") == Implication(na, Literal("B", True))


@pytest.mark.parametrize("bad", ["A", "A -> ", "A and B -> C", "A -> B -> C", "If A then B", "A <-> B", "not -> B"])
def test_parser_rejects_anything_else(bad):
    assert try_parse(bad) is None
    with pytest.raises(UserError):
        parse(bad)


def test_trivial_implications_never_returned():
    # A->B, B->¬A entails A->¬A (i.e. ¬A): trivial in the p->¬p sense, so nothing new
    assert extend_text("A->B, B->¬A") == []
    assert extend_text("¬A->B, B->A") == []        # ¬A->A


def test_contrapositive_of_input_is_not_new_but_chains_through_it():
    # ¬C->¬B is the contrapositive of B->C: A->B, ¬C->¬B still give A->C
    assert extend_text("A->B, ¬C->¬B") == ["A->C"]


def test_double_negation_inside_chains():
    assert extend_text("not not A -> B, B -> ¬¬C") == ["A->C"]
    assert extend_text("A->¬¬B, ¬C -> not B") == ["A->C"]


def test_closure_contains_contrapositives_and_transitive_steps():
    cl = closure(parse_many("A->B, B->C"))
    assert parse("A->C") in cl and parse("¬C->¬A") in cl and parse("¬B->¬A") in cl
    assert parse("C->A") not in cl


def test_result_is_sound_and_new():
    """Every returned implication is entailed (truth tables) and not equivalent to an input."""
    import itertools

    given = parse_many("A->B, B->¬C, ¬D->C, D->E")
    atoms = sorted({lit.atom for i in given for lit in (i.ante, i.cons)})

    def holds(imp, env):
        val = lambda lit: env[lit.atom] != lit.neg  # noqa: E731
        return (not val(imp.ante)) or val(imp.cons)

    new = extend(given)
    assert new, "this chain must derive something"
    for imp in new:
        for values in itertools.product([False, True], repeat=len(atoms)):
            env = dict(zip(atoms, values))
            if all(holds(g, env) for g in given):
                assert holds(imp, env), f"{imp} is not entailed"
        assert imp not in given and imp.contrapositive() not in given
        assert imp.ante.atom != imp.cons.atom


def test_parse_many_reports_the_bad_part():
    with pytest.raises(UserError, match="B C"):
        parse_many("A->B, B C")
