"""Reports: metric recomputation, pairing, recommendations, every export format, errors."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import re
from pathlib import Path

import pytest

from evalsuite.metrics import mcnemar_exact
from evalsuite.store import ResultsStore, SampleRow
from quantsuite.errors import UserError
from reports import build as build_mod
from reports.build import build_report, format_for, report_model
from reports.compare import flipped_items, paired_items, recovery
from reports.data import Metric, condition_labels, load_runs, merge_metrics, summarize_samples
from reports.recommend import GIB, Candidate, MemoryModel, memory_need, overall_conditions, parse_budgets, recommend

ROOT = Path(__file__).resolve().parents[2]


def _sample_module():
    spec = importlib.util.spec_from_file_location("make_sample_store", ROOT / "scripts" / "make_sample_store.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Two families (each with a 'base'), three tasks, one partial run."""
    path = tmp_path_factory.mktemp("store") / "results.sqlite"
    return _sample_module().make_sample_store(path, n_items=30, seed=1)


@pytest.fixture(scope="module")
def model(sample):
    return report_model(sample["path"], budgets=[0.45, 0.6, 1, 2])


# -- memory and recommendations ---------------------------------------------------------------
def test_memory_need_is_the_documented_formula():
    mm = MemoryModel(context_tokens=1000, kv_bytes_per_value=2, kv_width_coef=0.5, weights_overhead_frac=0.1,
                     runtime_fixed_gib=0.25)
    need = memory_need(1_000_000, 10_000, mm)
    assert need["weights"] == pytest.approx(1_100_000)
    assert need["kv_cache"] == pytest.approx(2 * 2 * 1000 * 0.5 * 100)
    assert need["runtime"] == pytest.approx(0.25 * GIB)
    assert need["total"] == pytest.approx(need["weights"] + need["kv_cache"] + need["runtime"])
    assert need["kv_known"]
    unknown = memory_need(1_000_000, None, mm)
    assert unknown["kv_cache"] == 0 and not unknown["kv_known"]
    d = mm.as_dict()
    assert d["context_tokens"] == 1000 and "sqrt(n_params)" in d["formula"]


def test_default_kv_estimate_is_close_to_real_gqa_models():
    # Llama-3-8B: 32 layers x 8 KV heads x 128 dims, fp16: 128 KiB per token
    kv = memory_need(0, 8.0e9, MemoryModel(context_tokens=1))["kv_cache"]
    assert 0.7 < kv / (2 * 2 * 32 * 1024) < 1.3


def test_parse_budgets():
    assert parse_budgets(None) == [1, 2, 4, 8, 16, 24, 48, 80]
    assert parse_budgets("8, 2GB,4gib,2") == [2, 4, 8]
    assert parse_budgets([0.5, 1]) == [0.5, 1]
    for bad in ("", "x", "-1", "0", [float("nan")]):
        with pytest.raises(UserError):
            parse_budgets(bad)


def _cand(model, vid, gib, **scores):
    return Candidate(model, vid, gib * GIB, {tuple(k.split("__")): v for k, v in scores.items()})


def test_recommend_picks_the_best_that_fits_and_what_more_memory_buys():
    cands = [
        _cand("small", "q4", 0.5, arc__arc_ll=0.40, gsm__gsm_sc=0.10),
        _cand("small", "base", 1.5, arc__arc_ll=0.45, gsm__gsm_sc=0.12),
        _cand("large", "q4", 1.2, arc__arc_ll=0.60, gsm__gsm_sc=0.08),
        _cand("large", "base", 5.0, arc__arc_ll=0.61, gsm__gsm_sc=0.09),
    ]
    rec = recommend(cands, [0.25, 1, 2, 8])
    arc = rec["per_task"]["arc"]
    assert arc[0]["pick"] is None                       # nothing fits in 0.25 GiB
    assert arc[0]["next"]["buys"]["variant_id"] == "q4" and arc[0]["next"]["buys"]["gain"] is None
    assert (arc[1]["pick"]["model"], arc[1]["pick"]["variant_id"]) == ("small", "q4")
    assert (arc[2]["pick"]["model"], arc[2]["pick"]["variant_id"]) == ("large", "q4")   # larger model at 4 bits
    assert arc[1]["next"]["buys"]["gain"] == pytest.approx(0.20)
    assert arc[3]["pick"]["variant_id"] == "base" and arc[3]["next"] is None
    gsm = rec["per_task"]["gsm"]
    assert [r["pick"] and r["pick"]["model"] for r in gsm] == [None, "small", "small", "small"]
    assert gsm[2]["pick"]["variant_id"] == "base" and gsm[2]["next"]["buys"] is None
    overall = rec["overall"]
    assert {(c["task"], c["condition"]) for c in overall["conditions"]} == {("arc", "arc_ll"), ("gsm", "gsm_sc")}
    assert overall["rows"][2]["pick"]["model"] == "large"
    assert overall["rows"][2]["pick"]["score"] == pytest.approx((0.60 + 0.08) / 2)
    assert rec["budgets_gib"] == [0.25, 1, 2, 8]


def test_recommend_ties_go_to_the_smaller_variant_then_the_name():
    cands = [_cand("a", "big", 3, t__c=0.5), _cand("a", "small", 1, t__c=0.5), _cand("b", "small", 1, t__c=0.5)]
    row = recommend(cands, [4])["per_task"]["t"][0]
    assert (row["pick"]["model"], row["pick"]["variant_id"]) == ("a", "small")


def test_recommend_per_task_uses_each_variants_best_strategy():
    cands = [_cand("m", "v", 1, arc__direct=0.3, arc__cot=0.5)]
    pick = recommend(cands, [2])["per_task"]["arc"][0]["pick"]
    assert pick["score"] == 0.5 and pick["detail"] == "cot"


def test_overall_excludes_variants_missing_a_shared_condition():
    full = [_cand("m", "a", 1, t1__c=0.5, t2__c=0.5), _cand("m", "b", 1, t1__c=0.6, t2__c=0.1)]
    lacking = _cand("m", "c", 1, t1__c=0.9)
    conds, inc, exc = overall_conditions(full + [lacking])
    assert conds == [("t1", "c")] and len(inc) == 3 and exc == []
    disjoint = [_cand("m", "a", 1, t1__c=0.5), _cand("m", "b", 1, t1__c=0.4), _cand("m", "c", 1, t2__c=0.9)]
    conds, inc, exc = overall_conditions(disjoint)
    assert conds == [("t1", "c")] and [c.variant_id for c in exc] == ["c"]
    rec = recommend(disjoint, [2])
    assert rec["overall"]["excluded"] == ["m/c"] and rec["overall"]["rows"][0]["pick"]["variant_id"] == "a"
    assert recommend([], [1])["overall"]["rows"][0]["pick"] is None


def test_next_budget_gain_within_the_ci_is_flagged():
    small = Candidate("m", "q4", 0.5 * GIB, {("t", "c"): 0.50}, {("t", "c"): (0.40, 0.60)})
    big = Candidate("m", "q8", 1.5 * GIB, {("t", "c"): 0.52}, {("t", "c"): (0.45, 0.60)})
    huge = Candidate("m", "f16", 3 * GIB, {("t", "c"): 0.80}, {("t", "c"): (0.70, 0.90)})
    rows = recommend([small, big, huge], [1, 2, 4])["per_task"]["t"]
    assert rows[0]["next"]["buys"]["within_noise"] is True
    assert rows[1]["next"]["buys"]["within_noise"] is False


# -- metrics from samples -----------------------------------------------------------------------
def test_summarize_samples_accuracy_and_compute():
    samples = [{"item_id": str(i), "correct": i % 2, "scores": {"acc_norm": 1.0, "maj@8": float(i < 3),
                                                                 "acc@64": 0.5, "agreement": 0.9, "forced": True},
                "calls": 1, "tokens_in": 10, "tokens_out": 5, "seconds": 0.5} for i in range(10)]
    samples.append({"item_id": "x", "correct": None, "scores": {}, "calls": 0, "tokens_in": 0, "tokens_out": 0,
                    "seconds": 0.0})
    m = summarize_samples(samples)
    assert m["acc"].value == 0.5 and m["acc"].n == 10 and m["acc"].lo < 0.5 < m["acc"].hi
    assert m["acc_norm"].value == 1.0 and m["maj@8"].value == pytest.approx(0.3) and m["acc@64"].value == 0.5
    assert "agreement" not in m and "forced" not in m
    assert m["tokens_in_per_item"].value == pytest.approx(100 / 11)
    assert m["tokens_per_item"].value == pytest.approx(150 / 11)
    assert m["tokens_per_second"].value == pytest.approx(150 / 5.0)
    assert summarize_samples([]) == {}


def test_summarize_samples_perplexity_and_kld():
    chunks = [{"item_id": f"chunk-{i}", "correct": None, "scores": {
        "nll_sum": math.log(20) * 100, "n": 100, "kld": [0.1] * 100, "same_top1": 90}} for i in range(3)]
    m = summarize_samples(chunks)
    assert m["ppl"].value == pytest.approx(20.0) and m["ppl"].n == 300
    assert m["kld_mean"].value == pytest.approx(0.1) and m["kld_p99"].value == pytest.approx(0.1)
    assert m["same_top1"].value == pytest.approx(0.9)
    assert "acc" not in m


def test_stored_metrics_only_fill_gaps():
    merged = merge_metrics({"acc": Metric(0.7)}, {"acc": {"value": 0.0}, "bleu": {"value": 3.0, "n": 4}})
    assert merged["acc"].value == 0.7 and merged["acc"].source == "samples"
    assert merged["bleu"].value == 3.0 and merged["bleu"].source == "store"


def test_report_recomputes_stale_and_missing_metrics(sample, tmp_path):
    import shutil

    path = tmp_path / "r.sqlite"
    shutil.copy(sample["path"], path)
    run = next(r for r in sample["runs"] if r["variant_id"] == "gguf-q8_0" and r["task"] == "arc_easy")
    store = ResultsStore(path)
    store.finish_run(run["run_key"], {"acc": (0.0, None, None, 1)})     # a stale, wrong number
    truth = sum(s["correct"] for s in store.samples(run["run_key"])) / run["n"]
    store.close()
    runs, _ = load_runs(path)
    r = next(x for x in runs if x.run_key == run["run_key"])
    assert r.metrics["acc"].value == pytest.approx(truth) and r.metrics["acc"].source == "samples"
    partial = next(x for x in runs if x.status == "running")
    assert partial.partial and "acc" in partial.metrics and partial.n_done < partial.n_items


# -- pairing -----------------------------------------------------------------------------------------
def _s(item, correct, parsed=None, **kw):
    return {"item_id": item, "correct": correct, "parsed": parsed, "gold": kw.pop("gold", 1), "raw": kw.pop("raw", ""),
            "scores": kw.pop("scores", {})}


def test_recovery_pairs_on_shared_items_only():
    base = [_s("a", 1, 1), _s("b", 1, 1), _s("c", 0, 2), _s("d", 1, 1), _s("only-base", 1, 1)]
    var = [_s("a", 1, 1), _s("b", 0, 3), _s("c", 1, 1), _s("d", 0, 0), _s("only-var", 0, 0), _s("e", None)]
    assert [b["item_id"] for b, _ in paired_items(base, var)] == ["a", "b", "c", "d"]
    rec = recovery(base, var)
    assert rec["n_paired"] == 4 and rec["lost"] == 2 and rec["gained"] == 1
    assert rec["base_acc"] == 0.75 and rec["variant_acc"] == 0.5
    assert rec["recovery_pct"] == pytest.approx(100 * 0.5 / 0.75)
    assert rec["answer_flip_rate"] == 0.75
    assert rec["mcnemar_p"] == mcnemar_exact([1, 1, 0, 1], [1, 0, 1, 0])["p_value"]
    assert recovery(base, [_s("zzz", 1)]) is None
    assert recovery([_s("a", 0)], [_s("a", 1)])["recovery_pct"] is None   # base at 0 %: no ratio


def test_flipped_items_order_limit_question_and_raw():
    base = [_s("1", 1, 1), _s("2", 0, 2), _s("3", 0, 2), _s("4", 1, 1), _s("5", 1, 1)]
    var = [_s("1", 0, 3, raw="x" * 1000, scores={"question": "Why?"}), _s("2", 1, 1), _s("3", 0, 0),
           _s("4", 1, 1), _s("5", 0, 0)]
    f = flipped_items(base, var, limit=2)
    assert f["total"] == 4 and f["counts"] == {"lost": 2, "gained": 1, "changed": 1}
    assert [(r["item_id"], r["kind"]) for r in f["rows"]] == [("1", "lost"), ("5", "lost")]
    first = f["rows"][0]
    assert first["question"] == "Why?" and first["base_answer"] == 1 and first["variant_answer"] == 3
    assert first["variant_raw"].startswith("x" * 300) and "700 more chars" in first["variant_raw"]
    assert [r["kind"] for r in flipped_items(base, var, limit=None)["rows"]] == ["lost", "lost", "gained", "changed"]


def test_condition_labels_disambiguate_only_when_needed():
    class R:
        def __init__(self, task, strategy, params, seed=0, version="t@1"):
            self.condition = (task, version, strategy, json.dumps(params), seed)

    labels = condition_labels([R("arc", "ll", {}), R("gsm", "sc", {"k": 8}), R("gsm", "sc", {"k": 16}),
                               R("mmlu", "cot", {}, 0), R("mmlu", "cot", {}, 1)])
    assert set(labels.values()) == {"arc · ll", "gsm · sc (k=8)", "gsm · sc (k=16)", "mmlu · cot (seed 0)",
                                    "mmlu · cot (seed 1)"}


# -- the assembled report ---------------------------------------------------------------------------
def test_model_fronts_recovery_and_base_note(model, sample):
    assert {f["model"] for f in model["families"]} == set(sample["families"])
    assert all(f["dequantized"] for f in model["families"])
    assert sum("dequantized" in n for n in model["notes"]) == 2
    assert any("partial" in n for n in model["notes"])
    acc_runs = [r for r in model["runs"] if r["condition"] == "arc_easy · ll"]
    assert len(acc_runs) == len(sample["variants"])
    on = [r for r in acc_runs if r["pareto"]["acc"]]
    assert on and all(
        not any(o["size_bytes"] <= r["size_bytes"] and o["metrics"]["acc"]["value"] > r["metrics"]["acc"]["value"]
                for o in acc_runs) for r in on)
    # recovery exists for every non-base accuracy run, paired with its own family's base
    rec = {(r["model"], r["variant_id"], r["task"]) for r in model["recovery"]}
    expected = {(m, v, t) for m, v in sample["variants"] if v != "base" for t in ("arc_easy", "gsm8k")}
    assert rec == expected
    runs = {r["run_key"]: r for r in model["runs"]}
    assert all(runs[r["base_run_key"]]["model"] == r["model"] and runs[r["base_run_key"]]["is_base"]
               for r in model["recovery"])
    assert model["drilldown"] and model["headlines"]
    # the base's ppl run (params reference=None) and its variants' (reference='base') are one condition
    assert [c["label"] for c in model["conditions"] if c["task"] == "wikitext2"] == ["wikitext2 · ppl"]
    assert all(q["base_ppl"] is not None for q in model["quality"])
    ppl = [q for q in model["quality"] if q["variant_id"] == "base"]
    assert len(ppl) == 2 and all(q["ppl_ratio"] == pytest.approx(1.0) for q in ppl)
    assert not any("metrics table" in n for n in model["notes"])


def test_model_recommendations_respect_budgets(model):
    rec = model["recommendations"]
    assert rec["budgets_gib"] == [0.45, 0.6, 1, 2]
    assert rec["memory_model"]["context_tokens"] == MemoryModel().context_tokens
    needs = {(v["model"], v["variant_id"]): v["need_gib"] for v in model["variants"]}
    for rows in list(rec["per_task"].values()) + [rec["overall"]["rows"]]:
        for r in rows:
            if r["pick"]:
                assert needs[(r["pick"]["model"], r["pick"]["variant_id"])] <= r["budget_gib"]
    assert "wikitext2" not in rec["per_task"]       # perplexity is not comparable across families
    assert {c["task"] for c in rec["overall"]["conditions"]} == {"arc_easy", "gsm8k"}


# -- outputs -----------------------------------------------------------------------------------------
def test_html_is_self_contained(sample, tmp_path):
    out = build_report(sample["path"], tmp_path / "report.html")
    html = out.read_text()
    assert out.name == "report.html" and html.startswith("<!DOCTYPE html>")
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "", html, flags=re.S | re.I)   # plotly.js strings aside
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", markup, re.I)
    assert not re.search(r"<link[^>]+stylesheet", markup, re.I) and not re.search(r"<script[^>]+src", html, re.I)
    assert "Plotly.newPlot" in html and len(html) > 1_000_000            # plotly.js is inlined
    assert "dequantized from the Q4_1 GGUF" in html
    expected = [int(n) for n in re.findall(r'data-expected-points="(\d+)"', html)]
    assert len(expected) >= 6 and all(n > 0 for n in expected)
    data = json.loads(re.search(r'<script id="figure-data" type="application/json">(.*?)</script>', html, re.S)[1])
    assert len(data) == len(expected)
    for r in sample["runs"][:3]:
        assert r["run_key"] in html
    assert list(tmp_path.iterdir()) == [out]                             # no temp file left behind


def test_markdown_csv_and_json(sample, tmp_path):
    md = build_report(sample["path"], tmp_path / "r.md", fmt="md").read_text()
    for heading in ("## Recommendation by memory budget", "## Size vs accuracy", "## Recovery versus the base",
                    "## Drill-down", "## Provenance"):
        assert heading in md
    assert "dequantized" in md and "| budget | best variant |" in md
    rows = list(csv.DictReader(io.StringIO(build_report(sample["path"], tmp_path / "r.csv", fmt="csv").read_text())))
    assert len(rows) == len(sample["runs"])
    arc = [r for r in rows if r["task"] == "arc_easy" and r["variant_id"] != "base"]
    assert all(r["recovery_pct"] and r["mcnemar_p"] for r in arc)
    assert any(r["pareto"] == "True" for r in arc)
    text = build_report(sample["path"], tmp_path / "r.json", fmt="json").read_text()
    assert "NaN" not in text
    data = json.loads(text)
    assert {"runs", "recovery", "recommendations", "drilldown", "variants", "data_sources", "notes"} <= set(data)
    assert len(data["runs"]) == len(sample["runs"])


def test_compute_table_puts_accuracy_next_to_its_cost(model, sample, tmp_path):
    rows = model["compute"]
    acc_runs = [r for r in sample["runs"] if r["task"] != "wikitext2"]
    assert len(rows) == len(acc_runs)                         # every accuracy run, no perplexity run
    sc = [r for r in rows if r["strategy"] == "sc@8"]
    assert sc and all(r["calls"] == 8 for r in sc)              # 8 samples per item, as stored
    assert all(r["tokens_out"] > 0 and r["seconds"] > 0 and "maj@8" in r["extra"] for r in sc)
    ll = [r for r in rows if r["strategy"] == "ll"]
    assert all(r["calls"] == 1 and r["tokens_out"] == 0 for r in ll)
    md = build_report(sample["path"], tmp_path / "c.md", fmt="md").read_text()
    section = md.split("## Accuracy and compute by strategy")[1].split("\n## ")[0]
    assert section.count("| gsm8k |") == len(sc) and "maj@8=" in section
    html = build_report(sample["path"], tmp_path / "c.html", fmt="html").read_text()
    assert "tokens out / item" in html


def test_task_filter_and_format_from_suffix(sample, tmp_path):
    out = build_report(sample["path"], tmp_path / "arc.json", fmt=None, task="arc_easy")
    data = json.loads(out.read_text())
    assert {r["task"] for r in data["runs"]} == {"arc_easy"} and data["task_filter"] == "arc_easy"
    assert format_for("x.md", None) == "md" and format_for("x.weird", None) == "html"


def test_write_is_atomic_when_rendering_fails(sample, tmp_path, monkeypatch):
    out = tmp_path / "report.md"
    out.write_text("old report")

    def boom(model):
        raise RuntimeError("renderer crashed")

    monkeypatch.setitem(build_mod.RENDERERS, "md", boom)
    with pytest.raises(RuntimeError):
        build_report(sample["path"], out, fmt="md")
    assert out.read_text() == "old report" and list(tmp_path.iterdir()) == [out]

    def crash_midway(path, text):
        raise OSError("disk full")

    monkeypatch.setattr(build_mod.os, "fsync", lambda fd: crash_midway(None, None))
    monkeypatch.setitem(build_mod.RENDERERS, "md", lambda m: "new")
    with pytest.raises(OSError):
        build_report(sample["path"], out, fmt="md")
    assert out.read_text() == "old report" and list(tmp_path.iterdir()) == [out]


def test_bad_input_is_a_one_line_user_error(sample, tmp_path):
    empty_store = tmp_path / "empty.sqlite"
    ResultsStore(empty_store).close()
    (tmp_path / "zero.sqlite").write_bytes(b"")
    (tmp_path / "junk.sqlite").write_text("not a database, just text " * 100)
    cases = [
        (tmp_path / "missing.sqlite", {}, "not found"),
        (tmp_path / "zero.sqlite", {}, "empty"),
        (empty_store, {}, "no runs"),
        (tmp_path / "junk.sqlite", {}, "not a quantsuite results store"),
        (sample["path"], {"task": "nope"}, "no runs for task 'nope'"),
        (sample["path"], {"fmt": "pdf"}, "unknown report format"),
        (sample["path"], {"budgets": "abc"}, "not a number"),
    ]
    for store, kw, msg in cases:
        with pytest.raises(UserError) as e:
            build_report(store, tmp_path / "out" / "r.html", **kw)
        assert msg in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "missing.sqlite").exists()       # a missing store is not created
    assert not (tmp_path / "out" / "r.html").exists()
    with pytest.raises(UserError):
        build_report(sample["path"], tmp_path)                # output is a folder


def test_store_without_base_or_size_still_reports(tmp_path):
    """A family with no 'base' and a variant of unknown size: caveats instead of crashes."""
    path = tmp_path / "r.sqlite"
    store = ResultsStore(path)
    for vid, size in (("q4", None), ("q8", 2_000_000)):
        var = {"variant_id": vid, "model": "fam", "sha": vid, "method": "gguf", "size_bytes": size,
               "bits_per_weight": None, "manifest": {"notes": []}}
        store.ensure_run(vid, variant=var, task="arc_easy", task_version="arc_easy@1", strategy="ll", params={},
                         seed=0, n_items=3)
        store.add_samples(vid, [SampleRow(item_id=str(i), parsed=i, gold=1, correct=i == 1) for i in range(3)])
        store.finish_run(vid, {"acc": (1 / 3, None, None, 3)})
    store.close()
    m = report_model(path, budgets=[1])
    assert any("no 'base' variant" in n for n in m["notes"])
    assert any("Size unknown" in n and "fam/q4" in n for n in m["notes"])
    assert any("excludes the KV cache" in n and "fam/q8" in n for n in m["notes"])
    assert m["recovery"] == [] and m["drilldown"] == []
    assert m["recommendations"]["per_task"]["arc_easy"][0]["pick"]["variant_id"] == "q8"
    assert {r["variant_id"]: r["pareto"]["acc"] for r in m["runs"]} == {"q4": False, "q8": True}
    for fmt in ("html", "md", "csv", "json"):
        assert build_report(path, tmp_path / f"r.{fmt}", fmt=fmt).stat().st_size > 0
