"""The SQLite results store: migrations, run keys, resume bookkeeping, bad files."""

from __future__ import annotations

import sqlite3

import pytest

from evalsuite.store import MIGRATIONS, ResultsStore, SampleRow, run_key
from quantsuite.errors import UserError

VARIANT = {"variant_id": "gguf-q4_k_m", "model": "m", "sha": "abc", "method": "gguf", "size_bytes": 10,
           "bits_per_weight": 4.5, "manifest": {"variant_id": "gguf-q4_k_m"}}


def new_run(store: ResultsStore, key: str = "k1", n_items: int = 3) -> None:
    store.ensure_run(key, variant=VARIANT, task="arc_easy", task_version="arc_easy@1", strategy="ll",
                     params={}, seed=0, n_items=n_items, runtime="fake", env={"threads": 2})


def test_run_key_depends_on_every_part_but_not_on_dict_order():
    base = run_key("sha", "arc", "arc@1", "sc", {"k": 8, "temperature": 0.7}, 0)
    assert base == run_key("sha", "arc", "arc@1", "sc", {"temperature": 0.7, "k": 8}, 0)
    others = [
        run_key("sha2", "arc", "arc@1", "sc", {"k": 8, "temperature": 0.7}, 0),
        run_key("sha", "gsm8k", "arc@1", "sc", {"k": 8, "temperature": 0.7}, 0),
        run_key("sha", "arc", "arc@2", "sc", {"k": 8, "temperature": 0.7}, 0),
        run_key("sha", "arc", "arc@1", "cot", {"k": 8, "temperature": 0.7}, 0),
        run_key("sha", "arc", "arc@1", "sc", {"k": 16, "temperature": 0.7}, 0),
        run_key("sha", "arc", "arc@1", "sc", {"k": 8, "temperature": 0.7, "retriever": "bm25"}, 0),
        run_key("sha", "arc", "arc@1", "sc", {"k": 8, "temperature": 0.7}, 1),
    ]
    assert len({base, *others}) == len(others) + 1


def test_fresh_store_is_at_the_latest_schema(tmp_path):
    s = ResultsStore(tmp_path / "r.sqlite")
    assert s.schema_version == len(MIGRATIONS)
    cols = {r[1] for r in s.db.execute("PRAGMA table_info(runs)")}
    assert {"runtime", "env", "run_key", "status"} <= cols


def test_old_store_is_migrated_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version=1;")
    db.execute("INSERT INTO runs (run_key, variant_id, model, variant_sha, task, task_version, strategy, params, seed,"
               " created_at, updated_at) VALUES ('old','v','m','s','arc','arc@1','ll','{}',0,'t','t')")
    db.execute("INSERT INTO samples (run_key, item_id, correct) VALUES ('old', 'i1', 1)")
    db.commit()
    db.close()
    s = ResultsStore(path)
    assert s.schema_version == len(MIGRATIONS)
    run = s.runs(run_key="old")[0]
    assert run["env"] == {} and run["runtime"] is None
    assert s.done_items("old") == {"i1"}


def test_newer_schema_and_foreign_files_are_one_line_errors(tmp_path):
    path = tmp_path / "future.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(UserError, match="newer than this quantsuite"):
        ResultsStore(path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database, just text that is long enough" * 40)
    with pytest.raises(UserError, match="not a quantsuite results store"):
        ResultsStore(junk)


def test_samples_resume_bookkeeping_and_metrics(tmp_path):
    s = ResultsStore(tmp_path / "r.sqlite")
    new_run(s)
    new_run(s)                                     # idempotent
    assert len(s.runs()) == 1 and s.done_items("k1") == set()
    s.add_samples("k1", [SampleRow("a", parsed=1, gold=1, correct=True, scores={"acc_norm": 1}, calls=1,
                                   tokens_in=10, tokens_out=0, seconds=0.5),
                         SampleRow("b", parsed=None, gold=2, correct=False)])
    assert s.done_items("k1") == {"a", "b"}
    got = {r["item_id"]: r for r in s.samples("k1")}
    assert got["a"]["parsed"] == 1 and got["a"]["scores"] == {"acc_norm": 1} and got["a"]["correct"] == 1
    assert got["b"]["parsed"] is None and got["b"]["correct"] == 0
    s.add_samples("k1", [SampleRow("b", parsed=2, gold=2, correct=True)])     # a redo replaces, never duplicates
    assert len(s.samples("k1")) == 2 and {r["item_id"]: r["correct"] for r in s.samples("k1")}["b"] == 1
    s.finish_run("k1", {"acc": (0.5, 0.0, 1.0, 2)})
    assert s.runs()[0]["status"] == "done"
    assert s.metrics("k1")["acc"]["value"] == 0.5 and s.metrics("k1")["acc"]["hi"] == 1.0
    prog = list(s.progress())
    assert prog[0]["done"] == 2 and prog[0]["n_items"] == 3


def test_asking_for_more_items_reopens_a_finished_run(tmp_path):
    s = ResultsStore(tmp_path / "r.sqlite")
    new_run(s, n_items=2)
    s.finish_run("k1", {})
    new_run(s, n_items=2)
    assert s.runs()[0]["status"] == "done"
    new_run(s, n_items=5)                          # --limit raised: the run is not done any more
    r = s.runs()[0]
    assert r["status"] == "running" and r["n_items"] == 5


def test_store_survives_reopening(tmp_path):
    path = tmp_path / "r.sqlite"
    s = ResultsStore(path)
    new_run(s)
    s.add_samples("k1", [SampleRow("a", correct=True)])
    s.close()
    s2 = ResultsStore(path)
    assert s2.done_items("k1") == {"a"} and s2.runs()[0]["params"] == {}
