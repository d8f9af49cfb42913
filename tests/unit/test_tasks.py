"""Benchmark loaders against the real shared files, golden answer-extraction cases,
k-shot determinism, the user JSONL format and one-line errors for bad files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from evalsuite.tasks import TASKS, get_task
from evalsuite.tasks.base import (FEWSHOT_OPTIONS, extract_letter, extract_number, normalize_number,
                                  parse_task_spec)
from evalsuite.tasks.fewshot import FewShotSampler
from evalsuite.tasks.logic_common import TF, TFU, extract_label, parse_label
from evalsuite.types import Item
from quantsuite.errors import UserError

try:
    from quantsuite.paths import data_dir
    DATA = data_dir()
except UserError:                                   # pragma: no cover - data missing
    DATA = None

needs_data = pytest.mark.skipif(DATA is None, reason="shared benchmark data not found")

_cache: dict[tuple, tuple] = {}


def loaded(name: str, **opts):
    """(task, items) loaded once per option set: the files are read-only inputs."""
    key = (name, tuple(sorted(opts.items())))
    if key not in _cache:
        t = get_task(name, **opts)
        _cache[key] = (t, t.load())
    return _cache[key]


# -- counts against the real files -------------------------------------------------------

@needs_data
@pytest.mark.parametrize("name,opts,n", [
    ("arc_easy", {}, 570),
    ("arc_easy", {"split": "train"}, 2251),
    ("gsm8k", {}, 1319),
    ("gsm8k", {"split": "train"}, 7473),
    ("logiqa", {}, 651),
    ("folio", {}, 204),
    ("proofwriter", {}, 100),
    ("ruletaker", {}, 967),
    ("mmlu_redux", {}, 4041),
    ("mmlu_redux", {"include_errors": True}, 4300),
])
def test_item_counts(name, opts, n):
    t, items = loaded(name, **opts)
    assert len(items) == n
    assert len({it.id for it in items}) == n, "item ids must be unique"
    assert t.kind in ("mc", "gen")


@needs_data
def test_mmlu_redux_skips_flagged_rows_and_reports():
    t, items = loaded("mmlu_redux")
    rep = t.load_report()
    # the shared copy has 43 x 100 rows (the data README's "4349" is not what the files hold)
    assert rep["rows"] == 4300 and rep["skipped"] == t.skipped == 259 and rep["items"] == 4041
    assert sum(rep["skipped_by_type"].values()) == 259
    assert rep["skipped_by_type"]["wrong groundtruth"] == 63
    assert len({it.meta["subject"] for it in items}) == 43
    assert all(it.meta["error_type"].strip().lower() == "ok" for it in items)
    t2, all_items = loaded("mmlu_redux", include_errors=True)
    assert t2.load_report()["skipped"] == 0
    assert Counter(it.gold for it in all_items) == {3: 1196, 2: 1097, 1: 1038, 0: 969}


@needs_data
def test_mmlu_redux_reads_both_delimiters_and_prompts_like_lm_eval():
    t, items = loaded("mmlu_redux", subjects="anatomy+abstract_algebra")   # ';' and ','
    by_id = {it.id: it for it in items}
    first = by_id["anatomy-0"]
    assert first.choices[first.gold] == "Narcolepsy"
    assert {it.meta["subject"] for it in items} == {"anatomy", "abstract_algebra"}
    reqs = t.ll_requests(first)
    assert [r.continuation for r in reqs] == [" A", " B", " C", " D"]
    assert reqs[0].context == (
        "The following are multiple choice questions (with answers) about anatomy.\n\n"
        f"{first.question}\nA. Dyslexia\nB. Epilepsy\nC. Hydrocephalus\nD. Narcolepsy\nAnswer:")
    assert t.prompt(first) == t.letter_prompt(first)
    assert "D. Narcolepsy" in t.prompt(first, cot=True)


def test_mmlu_redux_subjects_canonical_and_unknown(tmp_path):
    a = get_task("mmlu_redux", subjects="b+a")
    b = get_task("mmlu_redux", subjects=["a", "b", "a"])
    assert a.version_key == b.version_key == "mmlu_redux@1[subjects=a+b]"
    assert get_task("mmlu_redux", subjects="all").version_key == "mmlu_redux@1"
    assert get_task("mmlu_redux", include_errors="true").version_key == "mmlu_redux@1[include_errors=True]"
    (tmp_path / "mmlu_x.csv").write_text("question,choices,answer,error_type\nq,\"['a','b']\",1,ok\n")
    with pytest.raises(UserError, match="unknown subject"):
        get_task("mmlu_redux", path=tmp_path, subjects="nope").load()


def test_mmlu_redux_user_csv_any_delimiter_and_column_order(tmp_path):
    f = tmp_path / "mmlu_toy.csv"
    f.write_bytes(("answer;error_type;question;choices;correct_answer\r\n"
                   "2;OK ;\"Multi\nline?\";['x', 'y', 'z'];\r\n"
                   "0;Wrong Groundtruth;Bad?;['p', 'q'];1\r\n").encode())
    t = get_task("mmlu_redux", path=f)
    items = t.load()
    assert [(it.id, it.question, it.gold, it.choices) for it in items] == \
        [("toy-0", "Multi\nline?", 2, ("x", "y", "z"))]
    assert t.load_report()["skipped_by_type"] == {"wrong groundtruth": 1}
    kept = get_task("mmlu_redux", path=f, include_errors=True).load()
    assert kept[1].gold == 0 and kept[1].meta["correct_answer"] == "1"   # gold = answer column


@pytest.mark.parametrize("body,msg", [
    ("question,choices,answer\nq,not a list,0\n", "Python list literal"),
    ("question,choices,answer\nq,\"['a','b']\",7\n", "outside"),
    ("question,choices,answer\nq,\"['a','b']\",x\n", "0-based index"),
    ("question,options,answer\nq,\"['a','b']\",0\n", "no column"),
])
def test_mmlu_redux_bad_rows(tmp_path, body, msg):
    f = tmp_path / "bad.csv"
    f.write_text(body)
    with pytest.raises(UserError, match=msg):
        get_task("mmlu_redux", path=f).load()


# -- GSM8K ---------------------------------------------------------------------------------

@needs_data
def test_gsm8k_gold_and_solution():
    t, items = loaded("gsm8k")
    assert items[0].gold == "18"
    assert "<<" not in items[0].meta["solution"] and "####" not in items[0].meta["solution"]
    golds = {it.gold for it in items}
    assert "2125" in golds and "-10" in golds and all("," not in g for g in golds)
    assert t.is_correct(t.extract("So she makes $18 a day. The answer is 18.", items[0]), items[0])
    assert not t.is_correct(t.extract("The answer is 19.", items[0]), items[0])
    assert not t.is_correct(None, items[0])


@pytest.mark.parametrize("text,flexible,strict", [
    ("The answer is 1,234.", "1234", "1234"),
    ("She earns $18 per day. The answer is $18.", "18", "18"),
    ("The answer is -10.", "-10", "-10"),
    ("It drops to -5 degrees", "-5", None),
    ("x = 3.50", "3.5", None),
    ("The answer is 2.25", "2.25", "2.25"),
    ("2 + 3 = 5, then 5 * 4 = 20", "20", None),
    ("#### 1,450,000", "1450000", "1450000"),
    ("so \\boxed{42}", "42", "42"),
    ("**Answer:** 7", "7", "7"),
    ("The answer is 18. Check: 18 * 2 = 36", "18", "18"),
    ("The answer is: 12", "12", "12"),
    ("answer is \u22123", "-3", "-3"),
    ("It takes 3-4 hours", "4", None),
    ("1, 2, 3", "3", None),
    ("50% of them", "50", None),
    ("no numbers here", None, None),
    ("", None, None),
])
def test_number_extraction_golden(text, flexible, strict):
    assert extract_number(text, "flexible") == flexible
    assert extract_number(text, "strict") == strict


@pytest.mark.parametrize("raw,norm", [
    ("1,234", "1234"), ("$5", "5"), ("18.00", "18"), ("-3", "-3"), ("0.50", "0.5"),
    ("-0", "0"), ("1e3", "1000"), ("abc", None), ("", None),
    # a model that rambles digits: longer than Decimal's 28-digit context, still exact
    ("1" * 40, "1" * 40), ("-" + "9" * 35 + ".000", "-" + "9" * 35),
])
def test_normalize_number(raw, norm):
    assert normalize_number(raw) == norm


def test_gsm8k_match_option_is_keyed_and_checked():
    assert get_task("gsm8k", match="strict").version_key == "gsm8k@1[match=strict]"
    with pytest.raises(UserError, match="match must be"):
        get_task("gsm8k", match="fuzzy")
    t = get_task("gsm8k", match="strict")
    assert t.extract("2 + 3 = 5", None) is None


@needs_data
def test_gsm8k_kshot_is_deterministic_and_from_train():
    t1, items = loaded("gsm8k", k_shot=3)
    t2 = get_task("gsm8k", k_shot="3")                 # CLI strings coerce to int
    assert t1.version_key == t2.version_key == "gsm8k@1[k_shot=3]"
    s1, s2 = t1.shots(items[0]), t2.shots(items[5])
    assert [s.id for s in s1] == [s.id for s in s2]     # one shared prefix for all items
    assert all(s.id.startswith("gsm8k-train-") for s in s1) and len(s1) == 3
    p = t1.prompt(items[0], cot=True)
    assert p.count("The answer is") == 4 and p.endswith("where N is the final number.")
    assert s1[0].meta["solution"].splitlines()[0] in p
    direct = t1.prompt(items[0])
    assert s1[0].meta["solution"].splitlines()[0] not in direct
    other = get_task("gsm8k", k_shot=3, fewshot_seed=7)
    assert [s.id for s in other.shots(items[0])] != [s.id for s in s1]
    assert "fewshot_seed=7" in other.version_key


# -- ARC k-shot (base mechanism) -------------------------------------------------------------

@needs_data
def test_arc_easy_kshot_from_train_and_zero_shot_unchanged():
    t0, items = loaded("arc_easy")
    it = items[0]
    assert t0.ll_requests(it)[0].context == f"Question: {it.question}\nAnswer:"
    assert t0.version_key == "arc_easy@1"
    t = get_task("arc_easy", k_shot=2)
    ctx = t.ll_requests(it)[0].context
    shots = t.shots(it)
    assert len(shots) == 2 and ctx.count("Question:") == 3 and ctx.endswith(f"Question: {it.question}\nAnswer:")
    assert f"Answer: {shots[0].choices[shots[0].gold]}\n\n" in ctx
    assert {s.id for s in shots} <= {x.id for x in get_task("arc_easy", split="train").load()}
    assert t.letter_prompt(it).count("Answer: ") == 2
    assert get_task("arc_easy", split="train").version_key == "arc_easy@1[split=train]"


def test_fewshot_sampler_never_shows_item_itself():
    pool = [Item(id=f"i{n}", question=f"q{n}", gold=0) for n in range(6)]
    s = FewShotSampler(pool, 2, seed=1)
    first_two = s.for_item(Item(id="x", question="x", gold=0))
    for it in pool:
        shots = s.for_item(it)
        assert len(shots) == 2 and it.id not in {x.id for x in shots}
    assert s.for_item(first_two[0])[0].id == first_two[1].id
    assert [x.id for x in FewShotSampler(list(reversed(pool)), 2, seed=1).for_item(pool[5])] == \
        [x.id for x in s.for_item(pool[5])]           # pool order does not matter
    with pytest.raises(UserError, match="only 6"):
        FewShotSampler(pool, 7)
    with pytest.raises(UserError, match="not enough"):
        FewShotSampler(pool, 6).for_item(pool[0])
    dup = Item(id="other-id", question="q3", gold=0)     # same content, other id: excluded
    assert "i3" not in {x.id for x in FewShotSampler(pool, 5).for_item(dup)}


# -- letters and labels ----------------------------------------------------------------------

@pytest.mark.parametrize("text,idx", [
    ("B", 1), ("(C)", 2), ("b)", 1), ("The answer is (B).", 1), ("Answer: D", 3),
    ("**Answer: C**", 2), ("Answer:A", 0),
    ("The answer is a bit unclear; I pick C.", 2),
    ("Option A is wrong. The correct option is C.", 2),
    ("The answer is C. Option A is wrong because it is late.", 2),
    ("A. is tempting, but Answer: B", 1),
    ("I think it's B because", 1),
    ("E", None), ("nothing here", None), ("", None),
])
def test_letter_extraction_golden(text, idx):
    assert extract_letter(text, 4) == idx


@pytest.mark.parametrize("text,tfu,tf", [
    ("False", 1, 1), ("True.", 0, 0), ("Answer: Uncertain", 2, None), ("Unknown", 2, None),
    ("The statement is false.", 1, 1), ("It cannot be determined from the premises.", 2, None),
    ("Premise 2 is true. Premise 3 is true. So the conclusion is False.", 1, 1),
    ("the answer is: **True**", 0, 0), ("Answer: B", 1, 1), ("(C)", 2, None),
    ("Yes", 0, 0), ("Let me think. no wait. Hmm", None, None), ("", None, None),
])
def test_label_extraction_golden(text, tfu, tf):
    assert extract_label(text, TFU) == tfu
    assert extract_label(text, TF) == tf


@pytest.mark.parametrize("value,labels,idx", [
    (True, TF, 0), (False, TF, 1), (1, TF, 0), (0, TF, 1), ("1", TF, 0), ("False", TF, 1),
    ("A", TFU, 0), ("C", TFU, 2), ("Unknown", TFU, 2), ("uncertain", TFU, 2),
    ("Uncertain", TF, None), (2, TF, None), (None, TF, None),
])
def test_parse_label(value, labels, idx):
    assert parse_label(value, labels) == idx


@needs_data
def test_logic_tasks_labels_and_prompts():
    _, folio = loaded("folio")
    assert Counter(it.choices[it.gold] for it in folio) == {"True": 72, "Uncertain": 69, "False": 63}
    t, pw = loaded("proofwriter")
    assert Counter(it.gold for it in pw) == {0: 59, 1: 41} and t.load_report()["duplicate_ids"] == 14
    t, rt = loaded("ruletaker")
    assert Counter(it.gold for it in rt) == {0: 471, 1: 496}
    # a conclusion stated verbatim in its context is True: checks 1 = True in the file
    verbatim = [it for it in rt if it.question in it.context.split(". ") or
                it.question.rstrip(".") + "." in [s.strip() + "." for s in it.context.split(".")]]
    assert verbatim and all(it.gold == 0 for it in verbatim)
    it = folio[0]
    t = get_task("folio")
    reqs = t.ll_requests(it)
    assert [r.continuation for r in reqs] == [" True", " False", " Uncertain"]
    assert reqs[0].context.startswith(it.context) and reqs[0].context.endswith(
        f"Statement: {it.question}\nAnswer:")
    assert it.context in t.prompt(it) and "True, False or Uncertain" in t.prompt(it)
    assert t.extract("The answer is Uncertain.", it) == 2
    assert t.is_correct(t.extract("Answer: " + it.choices[it.gold], it), it)


@needs_data
def test_logiqa_options_by_label():
    t, items = loaded("logiqa")
    assert t.load_report()["options_by_position"] == 2
    assert Counter(it.gold for it in items) == {3: 181, 2: 179, 1: 159, 0: 132}
    assert items[108].choices == ("No.2 valve and No.4 valve.", "No.2 valve and No.3 valve.",
                                  "No.3 valve and No.5 valve.", "No.4 valve and No.5 valve.")
    assert items[2].choices[:2] == ("No dangshen", "No Shouwu")          # 'A x' labels
    ctx = t.ll_requests(items[0])[0].context
    assert ctx.startswith("Passage: ") and "\nChoices:\nA. " in ctx and ctx.endswith("\nAnswer:")
    assert t.ll_requests(items[0])[1].continuation == " " + items[0].choices[1]
    assert items[0].context in t.prompt(items[0])


def test_logiqa_user_file_and_bad_block(tmp_path):
    f = tmp_path / "l.txt"
    f.write_text("\nb\nPassage line 1.\nPassage line 2.\nWhich?\nA.one\nB two\nC?three\nD.four\n\n")
    (it,) = get_task("logiqa", path=f).load()
    assert it.gold == 1 and it.choices == ("one", "two", "three", "four")
    assert it.context == "Passage line 1.\nPassage line 2." and it.question == "Which?"
    f.write_text("x\nP\nQ\nA.1\nB.2\nC.3\nD.4\n")
    with pytest.raises(UserError, match="not an answer letter"):
        get_task("logiqa", path=f).load()
    f.write_text("a\nP\nA.1\nB.2\n")
    with pytest.raises(UserError, match="block 1"):
        get_task("logiqa", path=f).load()


# -- user JSONL --------------------------------------------------------------------------------

def write_jsonl(path: Path, rows) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_user_jsonl_multiple_choice_round_trip(tmp_path):
    f = write_jsonl(tmp_path / "mine.jsonl", [
        {"id": "q1", "question": "Largest planet?", "choices": ["Mars", "Jupiter"], "answer": 1},
        {"id": "q2", "question": "2+2?", "choices": ["3", "4"], "answer": "B"},
        {"id": "q3", "context": "Tom is taller than Ann.", "question": "Who is shorter?",
         "choices": ["Tom", "Ann"], "answer": "Ann"},
    ])
    name, opts = parse_task_spec(f"user:{f}")
    assert (name, opts) == ("jsonl", {"path": str(f)})
    t = get_task(name, **opts)
    assert t.kind == "mc" and t.name == "user:mine"
    items = t.load()
    assert [it.gold for it in items] == [1, 1, 1]
    assert items[2].context == "Tom is taller than Ann." and items[2].context in t.prompt(items[2])
    assert [r.continuation for r in t.ll_requests(items[0])] == [" Mars", " Jupiter"]
    assert t.is_correct(t.extract("Answer: B", items[0]), items[0])
    key = t.version_key
    assert key.startswith("user:mine@1[data=")
    write_jsonl(f, [{"id": "q1", "question": "Largest planet?", "choices": ["Mars", "Jupiter"], "answer": 0}])
    assert get_task("jsonl", path=f).version_key != key        # edited file -> new results
    ks = get_task("jsonl", path=f, k_shot=0)
    assert ks.version_key == get_task("jsonl", path=f).version_key


def test_user_jsonl_generative_round_trip(tmp_path):
    f = write_jsonl(tmp_path / "gen.jsonl", [
        {"id": "g1", "question": "Legs on 3 spiders?", "answer": 24},
        {"id": "g2", "question": "Capital of France?", "answer": ["Paris", "Paris, France"]},
        {"question": "Big number?", "answer": "1,000"},
    ])
    t = get_task("jsonl", path=str(f), k_shot=1)
    assert t.kind == "gen"
    items = t.load()
    assert items[2].id == "item-2" and items[2].gold == "1000" and items[0].gold == "24"
    assert t.is_correct(t.extract("Each has 8 legs, so 3 * 8 = 24. The answer is 24.", items[0]), items[0])
    assert t.is_correct(t.extract("The answer is The Paris.", items[1]), items[1])
    assert t.is_correct(t.extract("Thinking...\nparis, france", items[1]), items[1])
    assert not t.is_correct(t.extract("The answer is Lyon.", items[1]), items[1])
    assert t.is_correct(t.extract("The answer is 1000", items[2]), items[2])
    p = t.prompt(items[0], cot=True)
    assert p.count("Question:") == 2 and p.rstrip().endswith("'The answer is <answer>.'")


@pytest.mark.parametrize("rows,msg", [
    ([{"question": "a", "choices": ["x", "y"], "answer": 0}, {"question": "b", "answer": 1}], "mixes"),
    ([{"id": 1, "question": "a", "answer": 1}, {"id": 1, "question": "b", "answer": 2}], "repeated"),
    ([{"question": "a", "choices": ["x", "y"], "answer": "z"}], "not a choice"),
    ([{"question": "a", "choices": ["x", "y"], "answer": 5}], "outside"),
    ([{"question": "a"}], "needs an 'answer'"),
    ([{"answer": 1}], "question"),
    ([{"question": "a", "choices": "xy", "answer": 0}], "list of"),
    ([[1, 2]], "not a JSON object"),
])
def test_user_jsonl_bad_rows(tmp_path, rows, msg):
    f = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(UserError, match=msg):
        get_task("jsonl", path=f).load()


def test_user_jsonl_bad_files(tmp_path):
    with pytest.raises(UserError, match="needs a file"):
        get_task("jsonl")
    with pytest.raises(UserError, match="not found"):
        get_task("jsonl", path=tmp_path / "missing.jsonl")
    f = tmp_path / "broken.jsonl"
    f.write_text('{"question": "a", "answer": 1}\n{"question": \n')
    with pytest.raises(UserError, match="line 2"):
        get_task("jsonl", path=f)
    f.write_text("\n\n")
    with pytest.raises(UserError, match="no items"):
        get_task("jsonl", path=f)


# -- bad files and options for every loader ----------------------------------------------------

@pytest.mark.parametrize("name", ["arc_easy", "gsm8k", "folio", "proofwriter", "ruletaker",
                                  "logiqa", "mmlu_redux"])
def test_missing_file_is_user_error(tmp_path, name):
    with pytest.raises(UserError, match="not found"):
        get_task(name, path=tmp_path / "nope.json").load()


@pytest.mark.parametrize("name,body,msg", [
    ("arc_easy", "[{", "not valid JSON"),
    ("gsm8k", '{"question": "q", "answer": "no marker"}\n', "####"),
    ("gsm8k", '{"question": "q"}\n', "needs fields"),
    ("gsm8k", "not json\n", "line 1"),
    ("folio", '{"premises": ["p"], "conclusion": "c", "label": "Maybe"}\n', "not one of"),
    ("folio", '{"premises": ["p"], "label": "True"}\n', "conclusion"),
    ("proofwriter", '[{"id": "x", "context": "c", "conclusion": "d"}]', "answer"),
    ("ruletaker", '[{"Qid": "x", "context": "c", "conclusion": "d", "answer": 3}]', "not one of"),
    ("ruletaker", '[{"Qid": "x", "context": ', "not valid JSON"),
    ("logiqa", "\xff\xfe", "cannot read"),
])
def test_corrupt_files_are_one_line_user_errors(tmp_path, name, body, msg):
    f = tmp_path / "bad"
    f.write_bytes(body.encode("latin-1") if name == "logiqa" else body.encode())
    with pytest.raises(UserError, match=msg) as e:
        get_task(name, path=f).load()
    assert "\n" not in str(e.value)


def test_user_formats_from_any_path(tmp_path):
    f = tmp_path / "pw.jsonl"                 # JSONL accepted where the shared file is a JSON list
    f.write_text('{"id": "a", "context": "X is red.", "conclusion": "X is red.", "answer": "A"}\n')
    (it,) = get_task("proofwriter", path=f).load()
    assert it.gold == 0 and it.choices == TF
    f2 = tmp_path / "folio.json"
    f2.write_text(json.dumps([{"premises": "P1.", "conclusion": "C.", "label": "Unknown"}]))
    (it,) = get_task("folio", path=f2).load()
    assert it.gold == 2 and it.context == "P1."


def test_options_validation_and_version_key(tmp_path):
    with pytest.raises(UserError, match="unknown option"):
        get_task("gsm8k", kshot=5)
    with pytest.raises(UserError, match="integer"):
        get_task("folio", k_shot="many")
    with pytest.raises(UserError, match="true or false"):
        get_task("mmlu_redux", include_errors="maybe")
    assert get_task("folio", k_shot=0).version_key == "folio@1"
    assert get_task("folio", k_shot=2).version_key == "folio@1[k_shot=2]"
    f = tmp_path / "f.jsonl"
    f.write_text('{"premises": ["p"], "conclusion": "c", "label": "True"}\n'
                 '{"premises": ["p"], "conclusion": "c2", "label": "False"}\n')
    key = get_task("folio", path=f).version_key
    assert key.startswith("folio@1[data=") and len(key) == len("folio@1[data=]") + 12
    fs = get_task("folio", k_shot=1, fewshot_path=f)
    assert "fewshot_path=" in fs.version_key and str(f) not in fs.version_key   # content hash
    assert [s.question for s in fs.shots(fs.load()[0])] == ["c2"]      # 'folio-0' is skipped
    own = get_task("folio", path=f, k_shot=1)
    items = own.load()
    assert [s.question for s in own.shots(items[0])] == ["c2"]
    extended = Item(id=items[0].id, question=items[0].question, context="more\n" + items[0].context,
                    choices=items[0].choices, gold=items[0].gold)        # as RAG/LoT pass it
    assert [s.question for s in own.shots(extended)] == ["c2"]
    for name in ("arc_easy", "gsm8k", "mmlu_redux", "logiqa", "folio", "proofwriter", "ruletaker"):
        assert set(FEWSHOT_OPTIONS) <= set(TASKS.get(name).option_defaults)


@pytest.mark.parametrize("spec,expected", [
    ("gsm8k", ("gsm8k", {})),
    ("gsm8k:k_shot=5,match=strict", ("gsm8k", {"k_shot": "5", "match": "strict"})),
    ("mmlu_redux:subjects=anatomy+virology", ("mmlu_redux", {"subjects": "anatomy+virology"})),
    ("user:data/my.jsonl,k_shot=2", ("jsonl", {"path": "data/my.jsonl", "k_shot": "2"})),
    ("jsonl:path=x.jsonl", ("jsonl", {"path": "x.jsonl"})),
])
def test_parse_task_spec(spec, expected):
    assert parse_task_spec(spec) == expected


def test_registered_names_and_duck_typed_surface():
    names = set(TASKS.names())
    assert {"arc_easy", "mmlu_redux", "gsm8k", "logiqa", "folio", "proofwriter", "ruletaker",
            "jsonl", "wikitext2"} <= names
    for name in ("arc_easy", "mmlu_redux", "logiqa", "folio", "proofwriter", "ruletaker"):
        cls = TASKS.get(name)
        assert cls.kind == "mc"
        for m in ("ll_requests", "letter_prompt", "prompt", "extract", "is_correct", "version_key"):
            assert hasattr(cls, m), (name, m)
    g = TASKS.get("gsm8k")
    assert g.kind == "gen" and all(hasattr(g, m) for m in ("prompt", "extract", "is_correct"))
