"""Retrieval: datastores, BM25 and dense top-k against brute force, RRF, MMR, decontamination, cache."""

from __future__ import annotations

import json
import math
import re
import zlib

import numpy as np
import pytest

from evalsuite.retrieval.bm25 import BM25Index, tokenize, top_k
from evalsuite.retrieval.datastore import ChunkConfig, chunk_text, load, record_text
from evalsuite.retrieval.decontam import Decontaminator
from evalsuite.retrieval.dense import DenseIndex
from evalsuite.retrieval.hybrid import rrf
from evalsuite.retrieval.mmr import cosine_matrix, lexical_similarity, mmr
from evalsuite.retrieval.pipeline import RetrievalConfig, Retriever
from quantsuite.errors import UserError


class HashEmbedder:
    """Deterministic bag-of-words embedder: fast stand-in for MiniLM in pipeline tests."""

    name = "hash-test"
    dim = 64

    def __init__(self):
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                out[i, zlib.crc32(w.encode()) % self.dim] += 1
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(n > 0, n, 1)


# -- datastores ------------------------------------------------------------------------------
def test_datastore_formats_and_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("First paragraph here.\n\nSecond one.\n")
    (tmp_path / "sub" / "b.jsonl").write_text('{"question": "Q1?", "answer": "42"}\n\n{"text": "plain"}\n')
    (tmp_path / "c.json").write_text(json.dumps([{"question": "Why?", "choices": {"label": ["A", "B"], "text": ["no", "yes"]},
                                                  "answerKey": "B"}]))
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    ds = load(tmp_path)
    assert ds.texts == ["First paragraph here.\nSecond one.", "Question: Why?\nAnswer: yes", "Question: Q1?\nAnswer: 42", "plain"]
    assert ds.sources == ["a.txt:p0", "c.json:0", "b.jsonl:1", "b.jsonl:3"]


def test_datastore_key_tracks_content_and_chunking(tmp_path):
    f = tmp_path / "d.txt"
    f.write_text("alpha beta gamma")
    k1 = load(f).key
    assert load(f).key == k1
    assert load(f, ChunkConfig(words=50, overlap=5)).key != k1
    f.write_text("alpha beta delta")
    assert load(f).key != k1


def test_chunking_windows_overlap_and_cover_everything():
    words = [f"w{i}" for i in range(25)]
    chunks = chunk_text(" ".join(words), ChunkConfig(words=10, overlap=3))
    assert chunks[0].split() == words[:10] and chunks[1].split()[:3] == words[7:10]
    assert chunks[-1].split()[-1] == "w24"
    assert all(len(c.split()) <= 10 for c in chunks)
    assert chunk_text("short\ntext", ChunkConfig(words=10, overlap=3)) == ["short\ntext"]   # layout kept


def test_datastore_errors_are_user_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(UserError, match=":2"):
        load(bad)
    with pytest.raises(UserError, match="neither a known name"):
        load(tmp_path / "missing")
    with pytest.raises(UserError):
        ChunkConfig(words=5, overlap=5)
    assert record_text({"title": "T", "n": 3, "tags": ["x"]}) == "T\n3"


def test_named_datastores_read_the_shared_data():
    ds = load("auto", task_name="arc_easy")
    assert ds.name == "arc_easy" and len(ds) > 2000 and ds.texts[0].startswith("Question: ")


# -- BM25 ------------------------------------------------------------------------------------
def _brute_bm25(corpus_tokens, query_tokens, k1=1.5, b=0.75):
    n = len(corpus_tokens)
    avg = sum(len(d) for d in corpus_tokens) / n
    scores = np.zeros(n)
    for t in set(query_tokens):
        df = sum(t in d for d in corpus_tokens)
        if df == 0:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for i, d in enumerate(corpus_tokens):
            tf = d.count(t)
            scores[i] += idf * tf / (tf + k1 * (1 - b + b * len(d) / avg))
    return scores


def test_bm25_top_k_matches_brute_force():
    rng = np.random.default_rng(0)
    vocab = [f"term{i}" for i in range(40)]
    corpus = [" ".join(rng.choice(vocab, size=rng.integers(5, 16))) for _ in range(60)]
    index = BM25Index(corpus)
    toks = [tokenize(c) for c in corpus]
    for q in ["term1 term2 term3", "term7", "term39 term0 term11 term12", "nothing matches"]:
        brute = _brute_bm25(toks, tokenize(q))
        np.testing.assert_allclose(index.scores(q), brute, rtol=1e-5, atol=1e-6)
        expect = [i for i in sorted(range(len(brute)), key=lambda i: (-brute[i], i)) if brute[i] > 0][:5]
        assert [d for d, _ in index.search(q, 5)] == expect


def test_bm25_tokenizer_and_top_k_ties():
    assert tokenize("The Cat's a cat, isn't it?") == ["cat", "cat", "isn"]
    assert top_k(np.array([1.0, 3.0, 3.0, 0.0]), 3) == [(1, 3.0), (2, 3.0), (0, 1.0)]
    assert top_k(np.array([0.0, 2.0]), 5, positive=True) == [(1, 2.0)]


# -- dense ------------------------------------------------------------------------------------
def test_dense_top_k_matches_brute_force_with_any_embedder():
    rng = np.random.default_rng(1)
    vec = rng.normal(size=(50, 8)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)

    class Fixed:
        name, dim = "fixed", 8

        def encode(self, texts):
            return np.stack([vec[int(t)] for t in texts])

    idx = DenseIndex(vec, Fixed())
    for q in range(5):
        brute = vec @ vec[q]
        assert [d for d, _ in idx.search(str(q), 7)] == list(np.argsort(-brute, kind="stable")[:7])
        assert idx.search(str(q), 1)[0][0] == q


def test_minilm_embeddings_are_real_and_batch_invariant(tmp_path):
    pytest.importorskip("transformers")
    from evalsuite.retrieval.dense import default_embedder

    emb = default_embedder()
    docs = ["The cat is a small pet that purrs and chases mice.",
            "Stock markets fell sharply after the interest rate decision.",
            "Dogs are loyal animals that bark at strangers.",
            "Photosynthesis turns sunlight, water and carbon dioxide into sugar."]
    cache = tmp_path / "emb.npy"
    idx = DenseIndex.build(docs, emb, cache)
    assert idx.vectors.shape == (4, 384) and cache.exists()
    np.testing.assert_allclose(np.linalg.norm(idx.vectors, axis=1), 1.0, atol=1e-5)
    # padding must not leak into mean pooling: one batch == one text at a time
    single = np.concatenate([emb.encode([d]) for d in docs])
    np.testing.assert_allclose(idx.vectors, single, atol=1e-5)
    for q, want in [("Which animal purrs?", 0), ("How do plants make food from light?", 3),
                    ("Why did share prices drop?", 1)]:
        brute = idx.vectors @ emb.encode([q])[0]
        got = idx.search(q, 4)
        assert [d for d, _ in got] == list(np.argsort(-brute)) and got[0][0] == want
    assert DenseIndex.build(docs, emb, cache).vectors.tobytes() == idx.vectors.tobytes()   # from cache


# -- fusion, MMR, decontamination --------------------------------------------------------------
def test_rrf_rewards_agreement():
    fused = rrf([[1, 2, 3], [2, 3, 9]])
    assert [d for d, _ in fused] == [2, 3, 1, 9]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    assert rrf([[5, 6], [6, 5]])[0][0] == 5                   # exact tie: smaller id


def test_mmr_lambda_one_is_plain_top_k():
    rng = np.random.default_rng(2)
    for _ in range(20):
        rel = rng.random(12)
        sim = cosine_matrix(rng.normal(size=(12, 5)))
        assert mmr(rel, sim, 5, 1.0) == list(np.argsort(-rel, kind="stable")[:5])
    assert mmr([3.0, 3.0, 1.0], np.eye(3), 2, 1.0) == [0, 1]          # ties to the earlier candidate


def test_mmr_diversifies_near_duplicates():
    texts = ["cats purr softly at night", "cats purr softly at night too", "dogs bark loudly"]
    sim = lexical_similarity(texts)
    assert sim[0, 1] > 0.9 and sim[0, 2] == 0
    assert mmr([1.0, 0.95, 0.5], sim, 2, 1.0) == [0, 1]
    assert mmr([1.0, 0.95, 0.5], sim, 2, 0.5) == [0, 2]
    with pytest.raises(ValueError):
        mmr([1.0], np.eye(1), 1, 1.5)


def test_decontamination_thirteen_grams():
    q = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    d = Decontaminator([q], 13)
    assert d.contaminated("xx " + " ".join(q.split()[1:]) + " yy")                    # shares 13 words
    assert not d.contaminated(" ".join(q.split()[:12]) + " zz " + "thirteen")          # only 12 in a row
    assert d.contaminated("ONE, two; three four five six seven eight nine ten eleven twelve thirteen!")
    short = Decontaminator(["Which planet is red?", "Which planet is red? Mars"], 13)
    assert short.contaminated("Quiz: which planet is red? (Mars)")
    assert not short.contaminated("Mars is the fourth planet; it is red.")
    assert short.filter(["which planet is red", "mars", "red planet"]) == ([1, 2], 1)


# -- the cached pipeline -------------------------------------------------------------------------
DOCS = ["Cats purr when they are content.", "Cats purr when they are content, mostly.",
        "Dogs bark at strangers.", "Fish swim in water.", "Which animal purrs? The cat."]


@pytest.fixture
def corpus(tmp_path):
    f = tmp_path / "docs.jsonl"
    f.write_text("".join(json.dumps({"text": t}) + "\n" for t in DOCS))
    return f


def test_pipeline_caches_on_disk_and_counts_reuse(tmp_path, corpus):
    cfg = RetrievalConfig(datastore=str(corpus), retriever="bm25", docs=2, pool=5, decontam=0)
    first = Retriever(cfg, cache_root=tmp_path / "c")
    a = first.retrieve(["cats purr", "dogs bark"])
    assert first.stats["misses"] == 2 and not any(r.cached for r in a)
    second = Retriever(cfg, cache_root=tmp_path / "c")
    b = second.retrieve(["cats purr", "dogs bark"])
    assert second.stats == {"hits": 2, "misses": 0, "dropped": 0}
    assert [r.ids for r in b] == [r.ids for r in a] and all(r.cached for r in b)
    assert b[0].texts[0] == DOCS[0] and b[0].sources[0] == "docs.jsonl:1"
    # the cache holds the candidate pool: other docs / mmr / decontam settings share it
    same = Retriever(RetrievalConfig(datastore=str(corpus), retriever="bm25", docs=3, pool=5, mmr=0.5, decontam=0),
                     cache_root=tmp_path / "c")
    [r] = same.retrieve(["cats purr"])
    assert same.stats["hits"] == 1 and r.ids == [0, 1] and r.cached       # only two chunks match
    other = Retriever(RetrievalConfig(datastore=str(corpus), retriever="bm25", docs=2, pool=4),
                      cache_root=tmp_path / "c")
    other.retrieve(["cats purr"])
    assert other.stats["misses"] == 1                     # another pool size: another search


def test_pipeline_decontaminates_and_diversifies(tmp_path, corpus):
    base = dict(datastore=str(corpus), retriever="bm25", docs=2, pool=5)
    [r] = Retriever(RetrievalConfig(**base, decontam=0), cache_root=tmp_path).retrieve(["which animal purrs cats purr"])
    assert 4 in r.ids
    ret = Retriever(RetrievalConfig(**base), cache_root=tmp_path)
    [r] = ret.retrieve(["which animal purrs cats purr"], [["Which animal purrs?"]])
    assert 4 not in r.ids and r.dropped == 1 and ret.stats["dropped"] == 1
    q = ["cats purr content dogs"]
    [plain] = Retriever(RetrievalConfig(**base, decontam=0), cache_root=tmp_path).retrieve(q)
    [div] = Retriever(RetrievalConfig(**base, decontam=0, mmr=0.3), cache_root=tmp_path).retrieve(q)
    assert set(plain.ids) == {0, 1} and div.ids[0] == plain.ids[0] and div.ids[1] not in (0, 1)


@pytest.mark.parametrize("kind", ["dense", "hybrid", "rerank"])
def test_pipeline_dense_kinds_with_embedder(tmp_path, corpus, kind):
    emb = HashEmbedder()
    ret = Retriever(RetrievalConfig(datastore=str(corpus), retriever=kind, docs=2, pool=5, decontam=0),
                    cache_root=tmp_path, embedder=emb)
    [r] = ret.retrieve(["dogs bark at strangers"])
    assert r.ids[0] == 2
    # rerank only reorders BM25 hits (one here); the others rank every chunk
    assert len(r.ids) == (1 if kind == "rerank" else 2)
    assert list((tmp_path / "datastores").rglob("hash-test.npy"))    # corpus embeddings cached on disk
