"""Retrieval-augmented answering, alone and with self-consistency (after arXiv 2511.04234).

Four ways to use retrieved documents, all on the same cached retrieval (see
``evalsuite.retrieval.pipeline``: computed once per question, reused by every variant):

``rag``        the top ``docs`` documents before the question, one greedy answer
               (``answer=direct`` by default, ``answer=cot`` for a reasoning chain).
``rag+sc``     the same prompt, k sampled chains, majority vote (self-consistency).
``rag-xdoc``   self-consistency *across documents*: sample i sees only document i
               (round-robin when fewer documents than samples), then the vote; the
               documents disagree where the evidence is weak, which a vote can absorb.
``rag-select`` document selection by inter-document consistency: each of ``docs``
               documents alone yields a probe answer (greedy); the documents whose
               probe agrees with the majority probe answer are kept (all of them when
               no probe parses), and the final answer (``answer`` mode: direct, cot or
               sc) is produced from the kept documents together. Outlier documents
               that pull the model elsewhere are dropped before the real answer.

Every strategy records per item which chunks it used, whether retrieval came from the
cache, and how many candidates decontamination dropped; ``self.stats`` totals the
cache hits/misses and drops for the run.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from evalsuite.metrics import majority_vote
from evalsuite.retrieval.pipeline import RETRIEVAL_DEFAULTS, RetrievalConfig, Retrieved, Retriever
from evalsuite.strategies import STRATEGIES, Strategy
from evalsuite.strategies.answer import (ANSWER_DEFAULTS, AnswerConfig, Meter, answer_items, check_task, extract,
                                         generate_metered, gold_text, is_correct, prompt_hash, prompt_with_documents,
                                         vote)
from evalsuite.types import InferenceClient, Item, Prediction
from quantsuite.errors import UserError


class _RagBase(Strategy):
    """Shared retrieval: configured from ``params``, one cached ``Retriever`` per instance."""

    answer_mode: str = "direct"

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.retrieval_config()                       # bad options fail when the name is parsed
        AnswerConfig.from_params(self.params, mode=self.mode)
        self._retriever: Retriever | None = None
        self._retriever_task: str | None = None

    @property
    def mode(self) -> str:
        return str(self.params.get("answer", self.answer_mode))

    def retrieval_config(self) -> RetrievalConfig:
        return RetrievalConfig.from_params(self.params)

    def retriever(self, task) -> Retriever:
        name = getattr(task, "name", "")
        if self._retriever is None or self._retriever_task != name:
            self._retriever = Retriever(self.retrieval_config(), task_name=name)
            self._retriever_task = name
        return self._retriever

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._retriever.stats) if self._retriever else {"hits": 0, "misses": 0, "dropped": 0}

    def retrieve(self, items: Sequence[Item], task) -> list[Retrieved]:
        refs = [[it.question, f"{it.question} {gold_text(it)}"] for it in items]
        return self.retriever(task).retrieve([it.question for it in items], refs)

    def run_metrics(self, samples) -> dict[str, float]:
        """How often retrieval came from the shared cache (computed once, reused per variant)."""
        flags = [bool((s.get("scores") or {}).get("retrieval_cached")) for s in samples]
        dropped = [int((s.get("scores") or {}).get("decontam_dropped") or 0) for s in samples]
        if not flags:
            return {}
        return {"retrieval_reuse": sum(flags) / len(flags), "decontam_dropped": float(sum(dropped))}

    @staticmethod
    def doc_scores(r: Retrieved) -> dict[str, Any]:
        return {"docs": r.sources, "doc_scores": r.scores, "retrieval_cached": r.cached,
                "decontam_dropped": r.dropped, "retrieval_seconds": r.seconds}

    @property
    def label(self) -> str:
        return f"{self.name}@{self.params['k']}" if "k" in self.params and self.mode == "sc" else self.name


@STRATEGIES.register("rag")
class Rag(_RagBase):
    name = "rag"
    defaults = {**RETRIEVAL_DEFAULTS, "answer": "direct", "max_tokens": 0, "system": ""}

    def run(self, items: Sequence[Item], client: InferenceClient, task) -> list[Prediction]:
        check_task(task)
        found = self.retrieve(items, task)
        docs = {it.id: r.texts for it, r in zip(items, found)}
        cfg = AnswerConfig.from_params(self.params, mode=self.mode)
        return answer_items(client, task, items, lambda it, cot: prompt_with_documents(task, it, docs[it.id], cot),
                            cfg, extra_scores=[self.doc_scores(r) for r in found])


@STRATEGIES.register("rag+sc")
class RagSelfConsistency(Rag):
    name = "rag+sc"
    answer_mode = "sc"
    defaults = {**RETRIEVAL_DEFAULTS, **ANSWER_DEFAULTS}


@STRATEGIES.register("rag-xdoc")
class RagCrossDocument(_RagBase):
    name = "rag-xdoc"
    answer_mode = "sc"
    defaults = {**RETRIEVAL_DEFAULTS, **ANSWER_DEFAULTS, "docs": 0, "pool": 0}   # 0: as many as samples

    def retrieval_config(self) -> RetrievalConfig:
        k = int(self.params["k"])
        docs = int(self.params["docs"]) or k
        pool = int(self.params["pool"]) or max(docs, int(RETRIEVAL_DEFAULTS["pool"]))
        return RetrievalConfig.from_params(self.params, docs=docs, pool=pool)

    def run(self, items: Sequence[Item], client: InferenceClient, task) -> list[Prediction]:
        check_task(task)
        cfg = AnswerConfig.from_params(self.params, mode="sc")
        k = cfg.n
        found = self.retrieve(items, task)
        meters = [Meter() for _ in items]
        reqs, owner, plan = [], [], []
        for idx, (it, r) in enumerate(zip(items, found)):
            texts = r.texts or [""]                  # no document survived: plain prompt for every sample
            d = len(texts)
            counts = [len(range(j, k, d)) for j in range(d)]   # sample i uses document i mod d
            plan.append((d, counts))
            for j, doc in enumerate(texts):
                if counts[j]:
                    prompt = prompt_with_documents(task, it, [doc] if doc else [], True)
                    reqs.append(cfg.request(prompt, n=counts[j]))
                    owner.append(idx)
        gens = generate_metered(client, reqs, [meters[i] for i in owner])
        per_item: dict[int, list] = {}
        for i, g in zip(owner, gens):
            per_item.setdefault(i, []).append(g)
        preds = []
        for idx, (it, r) in enumerate(zip(items, found)):
            d, counts = plan[idx]
            by_doc = [g.texts for g in per_item.get(idx, [])]
            texts = [by_doc[i % d][i // d] for i in range(k)]          # back to sample order
            answers = [extract(task, t, it) for t in texts]
            parsed, scores = vote(task, it, answers)
            scores.update(self.doc_scores(r))
            scores["sample_doc"] = [i % d for i in range(k)]
            scores["prompt_hash"] = prompt_hash("\n".join(q.messages[-1][1] for q, o in zip(reqs, owner) if o == idx))
            preds.append(meters[idx].prediction(it, parsed, is_correct(task, parsed, it),
                                                json.dumps(texts, ensure_ascii=False), scores))
        return preds


@STRATEGIES.register("rag-select")
class RagSelect(_RagBase):
    name = "rag-select"
    answer_mode = "cot"
    defaults = {**RETRIEVAL_DEFAULTS, **ANSWER_DEFAULTS, "docs": 5, "answer": "cot", "probe": "cot",
                "probe_tokens": 0}

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.probe_config()

    def probe_config(self) -> AnswerConfig:
        """One greedy answer per document: ``probe=direct`` or ``probe=cot``."""
        if self.params["probe"] not in ("direct", "cot"):
            raise UserError(f"rag-select: probe must be direct or cot, got '{self.params['probe']}'")
        return AnswerConfig.from_params({**self.params, "max_tokens": self.params["probe_tokens"]},
                                        mode=str(self.params["probe"]))

    def run(self, items: Sequence[Item], client: InferenceClient, task) -> list[Prediction]:
        check_task(task)
        found = self.retrieve(items, task)
        probe = self.probe_config()
        meters = [Meter() for _ in items]
        reqs, owner = [], []
        for idx, (it, r) in enumerate(zip(items, found)):
            for doc in r.texts:
                reqs.append(probe.request(prompt_with_documents(task, it, [doc], probe.cot), n=1))
                owner.append(idx)
        gens = generate_metered(client, reqs, [meters[i] for i in owner])
        probes: dict[int, list] = {i: [] for i in range(len(items))}
        for i, g in zip(owner, gens):
            probes[i].append(extract(task, g.texts[0] if g.texts else "", items[i]))
        kept: dict[str, list[str]] = {}
        extra = []
        for idx, (it, r) in enumerate(zip(items, found)):
            answers = probes[idx]
            top = majority_vote(answers)
            sel = [j for j, a in enumerate(answers) if a == top] if top is not None else list(range(len(answers)))
            kept[it.id] = [r.texts[j] for j in sel]
            s = self.doc_scores(r)
            s.update({"probe_answers": [a if a is None or isinstance(a, (int, float, str)) else str(a) for a in answers],
                      "selected": sel,
                      "consistency": round(len(sel) / len(answers), 4) if answers and top is not None else 0.0})
            extra.append(s)
        cfg = AnswerConfig.from_params(self.params, mode=self.mode)
        return answer_items(client, task, items, lambda it, cot: prompt_with_documents(task, it, kept[it.id], cot),
                            cfg, meters=meters, extra_scores=extra)
