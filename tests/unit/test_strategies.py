"""Prompting strategies against the scripted fake model: prompts, parsing, voting, compute."""

from __future__ import annotations

import json

import pytest

from evalsuite.strategies import STRATEGIES, parse_strategy
from evalsuite.strategies.answer import maj_ks, vote
from evalsuite.strategies.lot import CONTEXT_HEADER, grounded, parse_extraction, parse_translation
from quantsuite.errors import UserError
from tests.fakes import FakeClient, FakeGenTask, FakeMCTask, gen_item, last_user, mc_item

MC = FakeMCTask()
GEN = FakeGenTask()


# -- registry and options ------------------------------------------------------------------
def test_all_strategies_registered_and_labelled():
    for name in ("direct", "cot", "sc", "rag", "rag+sc", "rag-xdoc", "rag-select", "lot", "anytime"):
        assert name in STRATEGIES
    assert parse_strategy("sc@16").label == "sc@16"
    assert parse_strategy("rag+sc@4").label == "rag+sc@4"
    assert parse_strategy("lot:answer=cot").label == "lot+cot"


@pytest.mark.parametrize("text", ["sc@0", "sc:temperature=0", "direct:bogus=1", "lot:answer=maybe",
                                  "rag:retriever=magic", "rag:mmr=1.5", "rag:docs=5,pool=2", "lot:translate=x",
                                  "rag-select:probe=sc"])
def test_bad_options_are_user_errors(text):
    with pytest.raises(UserError):
        parse_strategy(text)


# -- direct and CoT --------------------------------------------------------------------------
def test_direct_mc_prompt_extraction_and_compute():
    client = FakeClient(["B", "The answer is C."])
    items = [mc_item(0), mc_item(1, gold=2)]
    preds = parse_strategy("direct").run(items, client, MC)
    assert client.batches == [2]                                  # one batched call
    req = client.requests[0]
    assert req.temperature == 0.0 and req.n == 1 and req.max_tokens == 32
    assert "A. dog\nB. cat" in last_user(req) and "letter of the correct option only" in last_user(req)
    assert [p.parsed for p in preds] == [1, 2] and all(p.correct for p in preds)
    assert preds[0].calls == 1 and preds[0].tokens_out == 1 and preds[0].seconds == pytest.approx(0.5)
    assert preds[0].tokens_in == len(last_user(req).split())
    assert preds[0].raw == "B" and len(preds[0].scores["prompt_hash"]) == 16


def test_cot_uses_task_cot_prompt_and_last_explicit_answer():
    client = FakeClient(["A dog barks, a cat purrs: option A is wrong. Answer: B"])
    [p] = parse_strategy("cot").run([mc_item()], client, MC)
    assert "Think step by step" in last_user(client.requests[0]) and client.requests[0].max_tokens == 512
    assert p.parsed == 1 and p.correct


def test_generative_task_and_unparseable_answer():
    client = FakeClient(["2 + 3 = 5, so the answer is 5", "no idea"])
    preds = parse_strategy("cot").run([gen_item(0), gen_item(1)], client, GEN)
    assert "Think step by step" in last_user(client.requests[0])
    assert preds[0].parsed == "5" and preds[0].correct
    assert preds[1].parsed is None and not preds[1].correct


def test_system_prompt_and_max_tokens_options():
    client = FakeClient(["B"])
    parse_strategy("direct:max_tokens=5,system=Be brief").run([mc_item()], client, MC)
    assert client.requests[0].messages[0] == ("system", "Be brief") and client.requests[0].max_tokens == 5


# -- self-consistency ---------------------------------------------------------------------------
def test_sc_samples_share_one_prompt_and_vote():
    client = FakeClient(["Answer: A", "Answer: B", "garbage", "Answer: B"])
    [p] = parse_strategy("sc@4:temperature=0.5,top_p=0.9,top_k=20,seed=3").run([mc_item()], client, MC)
    [req] = client.requests
    assert (req.n, req.temperature, req.top_p, req.top_k, req.seed) == (4, 0.5, 0.9, 20, 3)
    assert p.parsed == 1 and p.correct
    assert p.scores["answers"] == [0, 1, None, 1] and p.scores["n_valid"] == 3
    assert p.scores["agreement"] == pytest.approx(2 / 3, abs=1e-4)
    assert (p.scores["maj@1"], p.scores["maj@2"], p.scores["maj@4"]) == (0.0, 0.0, 1.0)
    assert json.loads(p.raw)[2] == "garbage"
    assert p.calls == 1 and p.tokens_out == 7


def test_sc_tie_goes_to_first_seen_and_none_never_wins():
    client = FakeClient(["Answer: C", "Answer: B", "Answer: B", "Answer: C", "??", "??", "??", "??"])
    [p] = parse_strategy("sc@8").run([mc_item()], client, MC)
    assert p.parsed == 2 and not p.correct                         # C and B tie 2-2: C came first
    assert p.scores["maj@8"] == 0.0 and p.scores["maj@2"] == 0.0 and p.scores["maj@1"] == 0.0
    assert p.scores["n_valid"] == 4


def test_sc_all_unparseable_gives_none():
    client = FakeClient(["hmm"] * 3)
    [p] = parse_strategy("sc@3").run([mc_item()], client, MC)
    assert p.parsed is None and not p.correct and p.scores["maj@3"] == 0.0


def test_maj_ks_and_vote_prefixes():
    assert maj_ks(8) == [1, 2, 4, 8] and maj_ks(5) == [1, 2, 4, 5] and maj_ks(1) == [1]
    winner, s = vote(GEN, gen_item(gold="5"), ["4", "5", "5", None, "4", "4"])
    assert winner == "4" and s["maj@2"] == 0.0 and s["maj@4"] == 1.0 and s["maj@6"] == 0.0


# -- Logic-of-Thought ---------------------------------------------------------------------------
EXTRACTION = """Sure! Here is the logic.
Propositions:
A: it rains
B: the grass is wet
C: the match is cancelled
Z is not a proposition line
Implications:
1. A -> B
- B -> C
A -> Q
If A then C
"""


def test_lot_parser_is_strict():
    x = parse_extraction(EXTRACTION)
    assert x.props == {"A": "it rains", "B": "the grass is wet", "C": "the match is cancelled"}
    assert [str(i) for i in x.implications] == ["A->B", "B->C"]          # A->Q: Q undefined; prose dropped


def test_lot_drops_propositions_not_in_the_text():
    copied = "Propositions:\nA: it rains\nB: the day is sunny\nImplications:\nA -> B"
    x = parse_extraction(copied, source="When it is raining, people stay in.")
    assert x.props == {"A": "it rains"} and x.implications == []          # B ungrounded, so is A -> B
    assert grounded("the grass is wet", "If the grass gets wet...") and not grounded("the day is sunny", "rain")


def test_translation_parser():
    assert parse_translation("1. If it rains, the match is off.\n2. A -> C", 2) == ["If it rains, the match is off.", None]
    assert parse_translation("First.\nSecond.", 2) == ["First.", "Second."]
    assert parse_translation("Here you go:\nFirst.\nSecond.", 2) == [None, None]


def test_lot_extends_translates_and_appends_to_context():
    client = FakeClient([EXTRACTION, "1. If it rains, the match is cancelled.", "Answer: B"])
    item = mc_item(context="If it rains the grass is wet. Wet grass cancels the match.")
    [p] = parse_strategy("lot").run([item], client, MC)
    extract_req, translate_req, answer_req = client.requests
    assert item.context in last_user(extract_req) and "Propositions:" in last_user(extract_req)
    assert "1. A -> C" in last_user(translate_req) and "A: it rains" in last_user(translate_req)
    final = last_user(answer_req)
    assert final.startswith(item.context)                                # original context kept, first
    assert f"{CONTEXT_HEADER}\nIf it rains, the match is cancelled." in final
    assert p.scores["derived"] == ["A->C"] and p.scores["translation"] == "model" and p.scores["augmented"]
    assert p.correct and p.calls == 3 and p.seconds == pytest.approx(1.5)


def test_lot_template_fallback_and_no_translation_call():
    client = FakeClient([EXTRACTION, "Answer: B"])
    ctx = "If it rains the grass is wet, and wet grass gets the match cancelled."
    [p] = parse_strategy("lot:translate=template").run([mc_item(context=ctx)], client, MC)
    assert len(client.requests) == 2
    assert "If it rains, then the match is cancelled." in last_user(client.requests[1])
    assert p.scores["translation"] == "template"


def test_lot_nothing_derived_leaves_prompt_unchanged():
    client = FakeClient(["Propositions:\nA: it rains\nB: it pours\nImplications:\nA -> B", "Answer: B"])
    item = mc_item(context="If it rains it pours.")
    [p] = parse_strategy("lot").run([item], client, MC)
    assert len(client.requests) == 2                                      # no translation call
    assert last_user(client.requests[1]) == MC.letter_prompt(item, cot=False)
    assert not p.scores["augmented"] and p.scores["derived"] == []
    assert p.scores["extraction"].startswith("Propositions:\nA: it rains")   # kept for diagnosis


def test_lot_with_self_consistency_and_gen_task_without_context():
    client = FakeClient([EXTRACTION, "1. Rain cancels the match.", "Answer: 5", "Answer: 5", "Answer: 4"])
    q = "Rain makes the grass wet and wet grass gets the match cancelled. It rains. What is 2 + 3?"
    [p] = parse_strategy("lot:answer=sc,k=3").run([gen_item(question=q)], client, GEN)
    assert q in last_user(client.requests[0])                           # no context: the question is the text
    ans = client.requests[2]
    assert ans.n == 3 and ans.temperature > 0 and "Rain cancels the match." in last_user(ans)
    assert p.parsed == "5" and p.correct and p.scores["maj@3"] == 1.0


# -- RAG ---------------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTSUITE_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "docs"
    d.mkdir()
    (d / "animals.txt").write_text(
        "Cats purr when they are content and they are small felines.\n\n"
        "Dogs bark at strangers and wag their tails.\n\n"
        "Fish swim in water and breathe through gills.\n")
    (d / "leak.jsonl").write_text(json.dumps({"text": "Which planet is red? The answer is Mars, of course."}) + "\n")
    return str(d)


def _rag(name, store, extra=""):
    return parse_strategy(f"{name}:datastore={store},retriever=bm25,chunk_words=12,chunk_overlap=2{extra}")


def test_rag_puts_documents_before_the_question(store):
    client = FakeClient(["Answer: B"])
    [p] = _rag("rag", store, ",docs=2").run([mc_item(question="Which animal purrs when content?")], client, MC)
    prompt = last_user(client.requests[0])
    assert prompt.index("[1] Cats purr") < prompt.index("Question: Which animal purrs")
    assert "[2]" in prompt and "[3]" not in prompt
    assert p.correct and p.scores["docs"][0].startswith("animals.txt") and p.scores["retrieval_cached"] is False


def test_rag_retrieval_is_cached_across_variants_and_strategies(store):
    items = [mc_item(0, question="Which animal purrs when content?"), mc_item(1, question="What do dogs bark at?")]
    first = _rag("rag", store)
    first.run(items, FakeClient(default="Answer: B"), MC)
    assert first.stats["misses"] == 2 and first.stats["hits"] == 0
    again = _rag("rag", store)                                   # another variant, new process state
    preds = again.run(items, FakeClient(default="Answer: B"), MC)
    assert again.stats == {"hits": 2, "misses": 0, "dropped": again.stats["dropped"]}
    assert all(p.scores["retrieval_cached"] for p in preds)
    for other in ("rag+sc@2", "rag-xdoc@2", "rag-select:docs=2,probe=direct,answer=direct"):
        name, _, opts = other.partition(":")
        strat = _rag(name, store, "," + opts if opts else "")       # same search settings: same cache
        strat.run(items, FakeClient(default="Answer: B"), MC)
        assert strat.stats == {"hits": 2, "misses": 0, "dropped": 0}, other


def test_rag_decontamination_drops_the_leaked_item(store):
    item = mc_item(question="Which planet is red?", choices=("Venus", "Mars"))
    # the question is shorter than 13 words: a document containing all of it is a leak
    off = _rag("rag", store, ",decontam=0,docs=3").run([item], FakeClient(["B"]), MC)[0]
    on = _rag("rag", store, ",docs=3").run([item], FakeClient(["B"]), MC)[0]
    assert off.scores["docs"][0].startswith("leak.jsonl")
    assert any(s.startswith("leak.jsonl") for s in off.scores["docs"])
    assert not any(s.startswith("leak.jsonl") for s in on.scores["docs"])
    assert on.scores["decontam_dropped"] == 1 and off.scores["decontam_dropped"] == 0


def test_rag_sc_votes_over_k_samples_with_documents(store):
    client = FakeClient(["Answer: A", "Answer: B", "Answer: B"])
    [p] = _rag("rag+sc@3", store).run([mc_item(question="Which animal purrs when content?")], client, MC)
    [req] = client.requests
    assert req.n == 3 and req.temperature == 0.7 and "[1] Cats purr" in last_user(req)
    assert "Think step by step" in last_user(req)
    assert p.parsed == 1 and p.scores["maj@3"] == 1.0 and p.scores["maj@2"] == 0.0 and p.scores["maj@1"] == 0.0


def test_rag_xdoc_conditions_each_sample_on_its_own_document(store):
    client = FakeClient(responder=lambda req, i: "Answer: B" if "Cats" in last_user(req) else "Answer: C")
    [p] = _rag("rag-xdoc@4", store, ",docs=2").run([mc_item(question="Which animal purrs? Do dogs bark?")],
                                                     client, MC)
    assert len(client.requests) == 2 and [r.n for r in client.requests] == [2, 2]
    for r in client.requests:
        assert last_user(r).count("[1]") == 1 and "[2]" not in last_user(r)
    assert p.scores["sample_doc"] == [0, 1, 0, 1]
    # tie 2-2: the answer of sample 0 (top document) wins
    assert p.scores["answers"][0] == p.parsed and p.scores["n_valid"] == 4
    assert p.calls == 2


def test_rag_select_keeps_consistent_documents(store):
    def respond(req, i):
        text = last_user(req)
        if "wag their tails" in text and "Cats purr" not in text:
            return "Answer: A"                                     # the outlier document
        return "Answer: B"

    client = FakeClient(responder=respond)
    [p] = _rag("rag-select", store, ",docs=3,probe=direct,answer=direct,decontam=0").run(
        [mc_item(question="Which animal purrs when content, barks at strangers or swims in water?")], client, MC)
    probes, final = client.requests[:-1], client.requests[-1]
    assert len(probes) == 3 and all(r.max_tokens == 32 for r in probes)
    assert "wag their tails" not in last_user(final) and p.scores["consistency"] == pytest.approx(2 / 3, abs=1e-4)
    assert len(p.scores["selected"]) == 2 and p.correct and p.calls == 4
