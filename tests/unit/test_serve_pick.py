"""``pick``: best evaluated GGUF variant under a RAM budget, from a real results store."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalsuite.store import ResultsStore, run_key
from quant.manifest import VariantManifest
from quantsuite.errors import UserError
from quantsuite.serve.fakellm import write_fake_gguf
from quantsuite.serve.pick import FIXED_OVERHEAD_BYTES, memory_need, parse_size, pick_variant

GGUF_KV = {"general.architecture": "llama", "llama.block_count": 30, "llama.context_length": 8192,
           "llama.embedding_length": 576, "llama.attention.head_count": 9, "llama.attention.head_count_kv": 3,
           "llama.vocab_size": 49152}
MB = 10 ** 6


def make_variant(root: Path, vid: str, size: int, runtime=("llamacpp",)) -> VariantManifest:
    folder = root / "variants" / "tiny" / vid
    folder.mkdir(parents=True)
    art = f"tiny-{vid}.gguf" if "llamacpp" in runtime else "model.safetensors"
    if "llamacpp" in runtime:
        write_fake_gguf(folder / art, GGUF_KV)
    else:
        (folder / art).write_bytes(b"x")
    m = VariantManifest(variant_id=vid, model="tiny", base={}, spec={"method": "gguf", "bits": 4},
                        runtime=list(runtime), artifact=art, files={art: {"bytes": size, "sha256": vid * 4}},
                        size_bytes=size, bits_per_weight=4.0)
    m.write(folder)
    return m


def add_result(store: ResultsStore, m: VariantManifest, task: str, acc: float, strategy: str = "ll",
               with_path: bool = False) -> None:
    manifest = m.to_dict()
    if with_path:
        manifest["path"] = str(m.path)
    info = {"variant_id": m.variant_id, "model": m.model, "sha": m.sha, "method": "gguf", "size_bytes": m.size_bytes,
            "bits_per_weight": 4.0, "manifest": manifest}
    key = run_key(m.sha, task, "1", strategy, {}, 0)
    store.ensure_run(key, variant=info, task=task, task_version="1", strategy=strategy, params={}, seed=0, n_items=10)
    store.finish_run(key, {"acc": (acc, None, None, 10), "seconds_per_item": (1.0, None, None, 10)})


@pytest.fixture
def world(tmp_path):
    vs = {"q8": make_variant(tmp_path, "q8", 900 * MB), "q4": make_variant(tmp_path, "q4", 500 * MB),
          "q2": make_variant(tmp_path, "q2", 300 * MB), "hf": make_variant(tmp_path, "hf", 100 * MB, ("hf",))}
    store = ResultsStore(tmp_path / "results.sqlite")
    for vid, arc, boolq in (("q8", 0.70, 0.60), ("q4", 0.66, 0.62), ("q2", 0.50, 0.40), ("hf", 0.99, 0.99)):
        add_result(store, vs[vid], "arc_easy", arc)
        add_result(store, vs[vid], "boolq", boolq)
    add_result(store, vs["q2"], "arc_easy", 0.55, strategy="sc@8")   # a better strategy for q2
    store.close()
    return tmp_path, vs


def overhead_at(ctx: int = 4096) -> int:
    kv = 30 * ctx * 3 * 128 * 2
    compute = 49152 * min(512, ctx) * 4 + ctx * min(512, ctx) * 9 * 4
    return kv + compute + FIXED_OVERHEAD_BYTES


def test_memory_need_terms(world):
    root, vs = world
    need, kv, compute, ctx = memory_need(vs["q4"].artifact_path, 500 * MB, 4096)
    assert (kv, ctx) == (30 * 4096 * 3 * 128 * 2, 4096)
    assert need == 500 * MB + overhead_at(4096)
    assert memory_need(vs["q4"].artifact_path, 1, 100_000)[3] == 8192     # capped at the training context


def test_picks_best_mean_accuracy_that_fits(world):
    root, vs = world
    big = pick_variant(root / "results.sqlite", "4GB")
    # the hf variant scores best but cannot be served; q8 and q4 tie on the mean (0.65 vs 0.64)
    assert big.chosen.variant_id == "q8" and big.tasks == ["arc_easy", "boolq"]
    assert big.chosen.score == pytest.approx(0.65)
    assert any(c.variant_id == "hf" and "not llama.cpp" in c.reason for c in big.rejected)
    assert big.command == f"quantsuite serve {vs['q8'].path} --ctx 4096"
    assert "needs" in big.summary() and "KV cache" in big.summary()

    budget = 500 * MB + overhead_at() + 1           # q4 fits exactly, q8 does not
    mid = pick_variant(root / "results.sqlite", budget)
    assert mid.chosen.variant_id == "q4"
    assert any(c.variant_id == "q8" and "over the" in c.reason for c in mid.rejected)


def test_task_and_strategy_selection(world):
    root, _ = world
    p = pick_variant(root / "results.sqlite", 10 ** 10, task="boolq")
    assert p.chosen.variant_id == "q4" and p.tasks == ["boolq"]
    small = 300 * MB + overhead_at() + 1
    p = pick_variant(root / "results.sqlite", small, task="arc_easy")
    assert p.chosen.variant_id == "q2" and p.chosen.score == pytest.approx(0.55)
    assert p.chosen.strategies["arc_easy"] == "sc@8"
    p = pick_variant(root / "results.sqlite", small, task="arc_easy", strategy="ll")
    assert p.chosen.score == pytest.approx(0.50)


def test_smaller_context_fits_more(world):
    root, _ = world
    budget = 500 * MB + overhead_at(1024) + 1
    assert pick_variant(root / "results.sqlite", budget).chosen.variant_id == "q2"
    p = pick_variant(root / "results.sqlite", budget, n_ctx=1024)
    assert p.chosen.variant_id == "q4" and p.command.endswith("--ctx 1024")


def test_nothing_fits_or_nothing_stored(world, tmp_path):
    root, _ = world
    with pytest.raises(UserError, match="smallest, tiny/q2, needs"):
        pick_variant(root / "results.sqlite", "100MB")
    with pytest.raises(UserError, match="no finished accuracy results for task gsm8k"):
        pick_variant(root / "results.sqlite", "8GB", task="gsm8k")
    with pytest.raises(UserError, match="no results store"):
        pick_variant(tmp_path / "nope.sqlite", "8GB")


def test_variants_found_by_stored_path_anywhere(tmp_path):
    m = make_variant(tmp_path / "elsewhere", "q4", 500 * MB)
    store = ResultsStore(tmp_path / "store" / "results.sqlite")
    add_result(store, m, "arc_easy", 0.6, with_path=True)
    store.close()
    p = pick_variant(tmp_path / "store" / "results.sqlite", "8GB")
    assert p.chosen.gguf == m.artifact_path


def test_missing_gguf_is_reported(tmp_path):
    m = make_variant(tmp_path / "elsewhere", "q4", 500 * MB)
    store = ResultsStore(tmp_path / "store" / "results.sqlite")
    add_result(store, m, "arc_easy", 0.6)
    store.close()
    with pytest.raises(UserError, match="GGUF file was not found"):
        pick_variant(tmp_path / "store" / "results.sqlite", "8GB")
    p = pick_variant(tmp_path / "store" / "results.sqlite", "8GB", search=[tmp_path / "elsewhere"])
    assert p.chosen.variant_id == "q4"


@pytest.mark.parametrize("text, n", [("8GB", 8 * 10 ** 9), ("8 gb", 8 * 10 ** 9), ("16GiB", 16 * 2 ** 30),
                                     ("512MB", 512 * 10 ** 6), ("1.5G", 1_500_000_000), ("1000", 1000),
                                     (1234, 1234)])
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["", "eight", "8XB", "-1GB", "0"])
def test_parse_size_rejects(text):
    with pytest.raises(UserError):
        parse_size(text)
