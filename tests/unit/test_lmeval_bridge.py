"""The lm-eval bridge against the scripted fake model: lm-eval's own tasks, prompts and
metrics on tiny local data files, our runtime interface underneath, our results store out.

Needs the [lmeval] extra (lm-eval 0.4.13); skipped without it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("lm_eval")

from evalsuite import lmeval_bridge as lb  # noqa: E402
from evalsuite.store import ResultsStore  # noqa: E402
from quant.manifest import VariantManifest  # noqa: E402
from quantsuite.errors import UserError  # noqa: E402
from tests.fakes import FakeClient  # noqa: E402

# the default fake scorer (-len) makes acc pick the shortest choice (right in q0, q1) and
# acc_norm (per character) the longest (right in q2 only)
ARC = [
    {"id": "q0", "question": "Sky colour?", "choices": {"text": ["blue", "green-ish", "purple"], "label": ["A", "B", "C"]}, "answerKey": "A"},
    {"id": "q1", "question": "Two plus two?", "choices": {"text": ["four", "eleven", "seventeen"], "label": ["A", "B", "C"]}, "answerKey": "A"},
    {"id": "q2", "question": "Biggest planet?", "choices": {"text": ["Mars", "Jupiter", "Venus"], "label": ["1", "2", "3"]}, "answerKey": "2"},
    {"id": "q3", "question": "Frozen water?", "choices": {"text": ["ice", "steam", "fog"], "label": ["A", "B", "C"]}, "answerKey": "C"},
]
GSM = [{"question": f"What is {i} plus {i}?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"} for i in range(1, 9)]


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "arc_easy").mkdir(parents=True)
    (root / "arc_easy" / "validation.json").write_text(json.dumps(ARC))
    (root / "arc_easy" / "train.json").write_text(json.dumps(ARC[:2]))
    (root / "gsm8k").mkdir()
    (root / "gsm8k" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GSM[3:]))
    (root / "gsm8k" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GSM[:3]))
    return root


def manifest(vid: str = "gguf-q4_k_m") -> VariantManifest:
    return VariantManifest(variant_id=vid, model="tiny", base={}, spec={"method": "gguf", "bits": 4},
                           runtime=["llamacpp"], artifact="x.gguf", files={"x.gguf": {"bytes": 10, "sha256": vid * 3}},
                           size_bytes=10, bits_per_weight=4.5)


def use_client(monkeypatch, client):
    import evalsuite.runtimes as rt

    opened = []

    def fake_open(m, cfg=None, runtime=None):
        opened.append(m.variant_id)
        return client

    monkeypatch.setattr(rt, "open_variant", fake_open)
    return opened


# -- task resolution ---------------------------------------------------------------------------
def test_arc_easy_reads_local_json_and_drops_missing_test_split(data_root):
    t = lb.build_tasks(["arc_easy"], data_root)["arc_easy"]
    assert t.data_files == {"train": str(data_root / "arc_easy/train.json"),
                            "validation": str(data_root / "arc_easy/validation.json")}
    assert t.task.get_config("dataset_path") == "json" and t.task.get_config("test_split") is None
    assert t.item_ids == ["q0", "q1", "q2", "q3"] and t.n_docs == 4
    assert t.version_key.startswith("lm-eval:arc_easy@1.0[data=")
    # the data file's content is part of the version: another file, another run key
    (data_root / "arc_easy" / "validation.json").write_text(json.dumps(ARC[:3]))
    assert lb.build_tasks(["arc_easy"], data_root)["arc_easy"].version_key != t.version_key


def test_local_overrides_only_for_known_datasets(tmp_path):
    assert lb.local_overrides({"dataset_path": "Rowan/hellaswag", "dataset_name": None}, tmp_path) is None
    with pytest.raises(UserError, match="local data file missing"):
        lb.local_overrides({"task": "arc_easy", "dataset_path": "allenai/ai2_arc", "dataset_name": "ARC-Easy"}, tmp_path)


@pytest.mark.parametrize("name, message", [
    ("arc_eazy", "unknown lm-eval task 'arc_eazy' (did you mean arc_easy"),
    ("mmlu", "is a group of tasks"),
    ("hellaswag", "has no local copy"),
])
def test_bad_task_names_are_one_line_user_errors(data_root, name, message):
    with pytest.raises(UserError) as e:
        lb.build_tasks([name], data_root)
    assert message in str(e.value) and "\n" not in str(e.value)


# -- the LM adapter ----------------------------------------------------------------------------
def inst(args, doc_id=0, task="t"):
    return SimpleNamespace(args=args, doc_id=doc_id, task_name=task)


def test_lm_is_an_lm_eval_model_and_shares_contexts_and_caches(tmp_path):
    from lm_eval.api.model import LM

    client = FakeClient(ll_scorer=lambda q: -float(len(q.continuation)))
    cache = lb.ResponseCache(tmp_path / "c.sqlite")
    lm = lb.QuantsuiteLM(client, cache=cache, chunk_contexts=1)
    assert isinstance(lm, LM)
    reqs = [inst(("ctx A", " x")), inst(("ctx B", " yy"), 1), inst(("ctx A", " zzz")), inst(("ctx A", " x"))]
    out = lm.loglikelihood(reqs)
    assert out == [(-2.0, False), (-3.0, False), (-4.0, False), (-2.0, False)]
    # one context's choices stay together (prefix sharing); the duplicate is scored once
    assert [(q.context, q.continuation) for q in client.ll_requests] == [("ctx A", " x"), ("ctx A", " zzz"), ("ctx B", " yy")]
    assert lm.stats[("t", 0)].calls == 1 and lm.stats[("t", 1)].calls == 1
    assert lm.stats[("t", 0)].seconds == pytest.approx(3 * client.seconds_per_call)
    # a second model object on the same cache asks the runtime nothing
    client2 = FakeClient()
    lm2 = lb.QuantsuiteLM(client2, cache=cache)
    assert lm2.loglikelihood(reqs) == out and client2.ll_requests == []
    assert lm2.stats[("t", 0)].seconds == pytest.approx(3 * client.seconds_per_call)   # measured, not zero


def test_generate_until_maps_kwargs_and_groups_repeats(tmp_path):
    client = FakeClient(default="six Question: next")
    lm = lb.QuantsuiteLM(client, cache=lb.ResponseCache(tmp_path / "c.sqlite"), seed=3)
    greedy = inst(("Q1", {"until": ["Question:"], "do_sample": False, "temperature": 0.0, "max_gen_toks": 32}))
    sampled = inst(("Q2", {"until": "\n\n", "do_sample": True, "temperature": 0.7}), doc_id=1)
    out = lm.generate_until([greedy, sampled, sampled, sampled])
    assert out == ["six ", "six Question: next", "six Question: next", "six Question: next"]
    r1, r2 = client.requests
    assert (r1.prompt, r1.stop, r1.max_tokens, r1.temperature, r1.n) == ("Q1", ("Question:",), 32, 0.0, 1)
    assert (r2.prompt, r2.stop, r2.temperature, r2.n, r2.seed) == ("Q2", ("\n\n",), 0.7, 3, 3)
    # greedy answers come from the cache next time; sampled ones are always drawn afresh
    client.requests.clear()
    lm.generate_until([greedy, sampled])
    assert [r.prompt for r in client.requests] == ["Q2"]


class CountingClient(FakeClient):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.windows: list[int] = []

    def token_logprobs(self, tokens):
        self.windows.append(len(tokens))
        return super().token_logprobs(tokens)


def test_loglikelihood_rolling_scores_every_token_once_in_windows():
    client = CountingClient(n_vocab=64)
    lm = lb.QuantsuiteLM(client, max_length=4)
    text = " ".join(f"w{i}" for i in range(10))
    (total,) = lm.loglikelihood_rolling([inst((text,))])
    assert total == pytest.approx(-10 * math.log(64))
    assert len(client.windows) == 3 and max(client.windows) <= 4
    assert lm.stats[("t", 0)].tokens_in == 10


# -- end to end into the results store ---------------------------------------------------------
def test_run_lmeval_arc_store_rows_metrics_and_resume(tmp_path, data_root, monkeypatch):
    client = FakeClient()                       # default scorer: -len(continuation)
    opened = use_client(monkeypatch, client)
    store = ResultsStore(tmp_path / "r.sqlite")
    keys = lb.run_lmeval([manifest()], ["arc_easy"], store, limit=2, data_root=data_root)
    assert len(client.ll_requests) == 6 and opened == ["gguf-q4_k_m"]
    # widening the limit runs only the new documents (zero-shot: no shared state)
    keys2 = lb.run_lmeval([manifest()], ["arc_easy"], store, data_root=data_root)
    assert keys2 == keys and len(client.ll_requests) == 12
    (run,) = store.runs()
    assert (run["task"], run["strategy"], run["params"], run["n_items"], run["status"]) == \
        ("arc_easy", "lm-eval", {"num_fewshot": 0}, 4, "done")
    assert run["env"]["lm_eval"] == lb.lmeval_version() and run["runtime"] == "fake"
    samples = {s["item_id"]: s for s in store.samples(keys[0])}
    assert [samples[q]["correct"] for q in ("q0", "q1", "q2", "q3")] == [1, 1, 0, 0]
    assert [samples[q]["parsed"] for q in ("q0", "q1", "q2", "q3")] == [0, 0, 0, 0]
    assert [samples[q]["gold"] for q in ("q0", "q1", "q2", "q3")] == [0, 0, 1, 2]
    assert [samples[q]["scores"]["acc_norm"] for q in ("q0", "q1", "q2", "q3")] == [0.0, 0.0, 1.0, 0.0]
    assert samples["q0"]["scores"]["question"] == "Sky colour?" and samples["q0"]["calls"] == 1
    assert samples["q0"]["scores"]["logprobs"] == [-5.0, -10.0, -7.0]
    m = store.metrics(keys[0])
    se = float(np.std([1, 1, 0, 0], ddof=1) / 2)
    assert m["acc"]["value"] == 0.5 and m["acc_stderr"]["value"] == pytest.approx(se)
    assert (m["acc"]["lo"], m["acc"]["hi"]) == (pytest.approx(max(0, 0.5 - 1.96 * se)), pytest.approx(min(1, 0.5 + 1.96 * se)))
    assert m["acc_norm"]["value"] == 0.25 and m["seconds_per_item"]["value"] > 0
    # everything stored: the model is not even opened again
    opened.clear()
    assert lb.run_lmeval([manifest()], ["arc_easy"], store, data_root=data_root) == keys and opened == []


def test_killed_run_resumes_from_the_response_cache(tmp_path, data_root, monkeypatch):
    client = FakeClient()
    use_client(monkeypatch, client)
    cache = tmp_path / "cache"
    lb.run_lmeval([manifest()], ["arc_easy"], ResultsStore(tmp_path / "a.sqlite"), cache_dir=cache, data_root=data_root)
    n = len(client.ll_requests)
    # a store that lost everything (the kill came before the rows were written) refills from the cache
    store = ResultsStore(tmp_path / "b.sqlite")
    (key,) = lb.run_lmeval([manifest()], ["arc_easy"], store, cache_dir=cache, data_root=data_root)
    assert len(client.ll_requests) == n and store.metrics(key)["acc"]["value"] == 0.5


def test_run_lmeval_gsm8k_generation_filters_and_fewshot(tmp_path, data_root, monkeypatch):
    answers = {"1": "1 and 1 make 2.\n#### 2", "2": "I think 5", "3": "#### 7"}

    def responder(req, i):
        q = req.prompt.rsplit("Question: What is ", 1)[1].split(" ", 1)[0]
        return answers[q] + "\n\nQuestion: more"

    client = FakeClient(responder=responder)
    use_client(monkeypatch, client)
    store = ResultsStore(tmp_path / "r.sqlite")
    (key,) = lb.run_lmeval([manifest()], ["gsm8k"], store, data_root=data_root)
    (run,) = store.runs()
    assert run["params"] == {"num_fewshot": 5}
    prompt = client.requests[0].prompt
    assert prompt.count("Question:") == 6 and prompt.endswith("Question: What is 1 plus 1?\nAnswer:")
    assert client.requests[0].stop == ("Question:", "</s>", "<|im_end|>") and client.requests[0].temperature == 0
    s = {x["item_id"]: x for x in store.samples(key)}
    assert [s[f"doc-{i:05d}"]["correct"] for i in range(3)] == [1, 0, 0]
    assert s["doc-00000"]["parsed"] == "2" and s["doc-00000"]["raw"].startswith("1 and 1 make 2.")
    assert s["doc-00001"]["scores"]["exact_match:flexible-extract"] == 0.0
    assert s["doc-00001"]["scores"]["parsed:flexible-extract"] == "5"
    m = store.metrics(key)
    assert m["exact_match:strict-match"]["value"] == pytest.approx(1 / 3)
    assert m["exact_match:flexible-extract"]["value"] == pytest.approx(1 / 3)
    assert m["tokens_out_per_item"]["value"] > 0
