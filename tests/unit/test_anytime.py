"""Anytime Index golden values, budget parsing, chain truncation and the anytime strategy."""

from __future__ import annotations

import pytest

from evalsuite.strategies import parse_strategy
from evalsuite.strategies.anytime import anytime_index, best_so_far, parse_budgets, summarize, truncate
from quantsuite.errors import UserError
from tests.fakes import FakeClient, FakeGenTask, FakeMCTask, gen_item, mc_item


@pytest.mark.parametrize("budgets, quality, expected", [
    ([0, 1000, 2000, 4000], [0, .5, .4, 1], 0.5625),
    ([0, 1000, 2000, 4000], [1, 1, 1, 1], 1.0),
    ([512, 1024, 2048, 4096], [0, 0, 0, 1], 0.2857),
])
def test_anytime_index_golden(budgets, quality, expected):
    assert anytime_index(budgets, quality) == pytest.approx(expected, abs=5e-5)


def test_anytime_index_uses_best_so_far_and_rewards_early_quality():
    assert best_so_far([0, .5, .4, 1]) == [0, .5, .5, 1]
    early = anytime_index([0, 1, 2], [1, 0, 0])      # good at once, then forgets: still 1
    late = anytime_index([0, 1, 2], [0, 0, 1])
    assert early == 1.0 and late == 0.25
    assert anytime_index([100], [0.7]) == 0.7


@pytest.mark.parametrize("budgets, quality", [([0, 0, 1], [0, 0, 0]), ([0, 1], [0]), ([0, 1], [0, 1.5]), ([], [])])
def test_anytime_index_rejects_bad_input(budgets, quality):
    with pytest.raises(UserError):
        anytime_index(budgets, quality)


def test_parse_budgets():
    assert parse_budgets("0/256/512") == [0, 256, 512]
    assert parse_budgets([0, 64]) == [0, 64]
    assert parse_budgets(128) == [128]
    for bad in ("0/x", "512/256", "-1/5", ""):
        with pytest.raises(UserError):
            parse_budgets(bad)
    # canonical run-key form whatever the spelling
    assert parse_strategy("anytime:budgets=0 64 128").params["budgets"] == "0/64/128"


def test_truncate_by_tokens():
    tok = FakeClient().tokenize
    text = "one two three four five"
    assert truncate(text, 2, tok).split() == ["one", "two"]
    assert truncate(text, 0, tok) == ""
    assert truncate(text, 5, tok) == text
    assert truncate(text, 99, tok) == text


def _forcing(req) -> bool:
    return req.messages[-1][1].endswith("Final answer:")


CHAIN = "s1 s2 s3 s4 s5 s6 s7 s8 s9 s10 Answer: B"


def _mc_responder(req, i):
    """Long enough reasoning (>= 8 words) lets the fake model find B; less gives A."""
    if not _forcing(req):                             # the chain itself
        return CHAIN
    reasoning = next((c for r, c in req.messages if r == "assistant"), "")
    return "B" if len(reasoning.split()) >= 8 else "A"


def test_anytime_strategy_truncates_forces_and_scores():
    client = FakeClient(responder=_mc_responder)
    strat = parse_strategy("anytime:budgets=0/4/8")
    [p] = strat.run([mc_item()], client, FakeMCTask())
    chain_req = client.requests[0]
    assert chain_req.max_tokens == 8 and chain_req.temperature == 0.0
    forced = client.requests[1:]
    assert len(forced) == 3
    assert len(forced[0].messages) == 1 and "Final answer:" in forced[0].messages[0][1]   # budget 0: no reasoning
    assert forced[1].messages[1] == ("assistant", "s1 s2 s3 s4 ")                        # cut at 4 tokens
    assert forced[2].messages[1][1].split() == CHAIN.split()[:8]                           # chain stopped at 8
    assert forced[1].messages[-1][1].endswith("Final answer:")
    assert p.scores["quality"] == [0.0, 0.0, 1.0] and p.scores["forced"] == [True, True, True]
    assert p.scores["anytime_index"] == pytest.approx(0.25)
    assert p.parsed == 1 and p.correct
    assert p.calls == 4 and p.seconds == pytest.approx(2.0)


def test_anytime_reuses_the_answer_of_a_chain_that_finished():
    client = FakeClient(responder=lambda req, i: "Answer: 3" if _forcing(req) else "7 Answer: 5")
    [p] = parse_strategy("anytime:budgets=0/4/8").run([gen_item(gold="5")], client, FakeGenTask())
    assert p.scores["forced"] == [True, False, False]
    assert p.scores["quality"] == [0.0, 1.0, 1.0]
    assert p.scores["anytime_index"] == pytest.approx(0.75)
    assert p.calls == 2


def test_summarize_uses_the_accuracy_curve():
    client = FakeClient(responder=_mc_responder)
    strat = parse_strategy("anytime:budgets=0/4/8")
    preds = strat.run([mc_item(0), mc_item(1, gold=0)], client, FakeMCTask())
    s = summarize(preds)
    assert s["acc@0"] == 0.5 and s["acc@8"] == 0.5      # item 2 (gold A) is right until the answer flips
    assert s["anytime_index"] == pytest.approx(0.5)


def test_summarize_accepts_stored_rows():
    rows = [{"scores": {"budgets": [0, 10], "quality": [0.0, 1.0]}}, {"scores": {"budgets": [0, 10], "quality": [1.0, 1.0]}}]
    s = summarize(rows)
    assert s == {"acc@0": 0.5, "acc@10": 1.0, "anytime_index": pytest.approx(0.75)}
    assert summarize([{"scores": {}}]) == {}
