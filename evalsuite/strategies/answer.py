"""What every generating strategy shares: prompts, answering modes, voting, compute meters.

Strategies differ in what they put *before* the question (documents, derived facts) and
in how many samples they draw; everything else lives here so that ``direct``, ``cot``,
``sc``, ``rag*`` and ``lot`` phrase, parse, vote and count compute identically, and a
difference between two strategies is the strategy and nothing else.

Tasks are duck-typed (only ``kind``, ``letter_prompt`` or ``prompt``, ``extract`` and
``is_correct`` are used), so any runtime and any task work with any strategy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

from evalsuite.metrics import majority_vote
from evalsuite.types import Generation, GenRequest, InferenceClient, Item, Prediction
from quantsuite.errors import UserError

MODES = ("direct", "cot", "sc")

#: Default generation lengths: an answer alone is short, a reasoning chain is not.
DIRECT_TOKENS = 32
COT_TOKENS = 512

#: Parameters of the answering step, shared by strategies that end with an answer.
ANSWER_DEFAULTS: dict[str, Any] = {
    "k": 8, "temperature": 0.7, "top_p": 0.95, "top_k": 40, "max_tokens": 0, "seed": 0, "system": "",
}


# -- compute accounting ------------------------------------------------------------------------
@dataclass
class Meter:
    """Compute spent on one item across all stages (extraction, answering, forcing...)."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0

    def add(self, gen: Generation) -> Generation:
        self.calls += 1
        self.tokens_in += gen.tokens_in
        self.tokens_out += gen.tokens_out
        self.seconds += gen.seconds
        return gen

    def prediction(self, item: Item, parsed: Any, correct: bool, raw: str, scores: dict) -> Prediction:
        return Prediction(item_id=item.id, parsed=parsed, correct=bool(correct), raw=raw, calls=self.calls,
                          tokens_in=self.tokens_in, tokens_out=self.tokens_out,
                          seconds=round(self.seconds, 6), scores=scores)


def generate_metered(client: InferenceClient, reqs: Sequence[GenRequest], meters: Sequence[Meter]) -> list[Generation]:
    """One batched call; each Generation's cost goes to the meter of the item it serves."""
    if not reqs:
        return []
    gens = client.generate(list(reqs))
    if len(gens) != len(reqs):
        raise RuntimeError(f"runtime {getattr(client, 'name', '?')} returned {len(gens)} generations for {len(reqs)} requests")
    for g, m in zip(gens, meters):
        m.add(g)
    return gens


# -- task adapters -------------------------------------------------------------------------------
def check_task(task) -> None:
    if getattr(task, "kind", None) not in ("mc", "gen"):
        raise UserError(f"task {getattr(task, 'name', task)}: generation strategies need a 'mc' or 'gen' task")


def question_prompt(task, item: Item, cot: bool) -> str:
    """The task's own phrasing: letter prompt for multiple choice, ``prompt`` for generative."""
    if task.kind == "mc" and hasattr(task, "letter_prompt"):
        return task.letter_prompt(item, cot=cot)
    if hasattr(task, "prompt"):
        return task.prompt(item, cot=cot)
    raise UserError(f"task {getattr(task, 'name', task)} has no generation prompt (letter_prompt or prompt)")


def prompt_with_context(task, item: Item, extra: str, cot: bool) -> str:
    """The question with ``extra`` appended to the item's context (original context kept).

    Tasks that show ``item.context`` get it where they put contexts; for a task whose
    prompt ignores the context, ``extra`` is put in front of the prompt instead, so the
    addition is never silently lost.
    """
    if not extra.strip():
        return question_prompt(task, item, cot)
    ctx = f"{item.context}\n\n{extra}" if item.context else extra
    text = question_prompt(task, replace(item, context=ctx), cot)
    return text if extra in text else f"{extra}\n\n{text}"


def prompt_with_documents(task, item: Item, docs: Sequence[str], cot: bool) -> str:
    """Retrieved documents as a numbered block before the task's own prompt."""
    base = question_prompt(task, item, cot)
    if not docs:
        return base
    block = "\n\n".join(f"[{i + 1}] {d.strip()}" for i, d in enumerate(docs))
    return (f"Reference documents (they may or may not help):\n{block}\n\n"
            f"Use the documents if they are relevant.\n{base}")


def extract(task, text: str, item: Item) -> Any:
    try:
        return task.extract(text, item)
    except (ValueError, TypeError, IndexError):
        return None


def is_correct(task, parsed: Any, item: Item) -> bool:
    return parsed is not None and bool(task.is_correct(parsed, item))


def gold_text(item: Item) -> str:
    """The gold answer as text (the choice's text for multiple choice) for decontamination."""
    if item.choices and isinstance(item.gold, int) and 0 <= item.gold < len(item.choices):
        return item.choices[item.gold]
    return "" if item.gold is None else str(item.gold)


def prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- voting ------------------------------------------------------------------------------------
def maj_ks(k: int) -> list[int]:
    """Sample counts reported as maj@j: powers of two below k, and k itself."""
    ks, j = [], 1
    while j < k:
        ks.append(j)
        j *= 2
    return ks + [k]


def vote(task, item: Item, answers: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
    """Majority answer over ``answers`` (in sample order) and the maj@j scores.

    Unparseable answers (None) do not vote; ties go to the answer that appeared first in
    sample order (``metrics.majority_vote``), which makes the vote deterministic for a
    given set of samples. maj@j is the vote over the first j samples, so every j is read
    off one set of k samples (each prefix is itself an i.i.d. draw of j samples).
    """
    winner = majority_vote(answers)
    valid = [a for a in answers if a is not None]
    scores: dict[str, Any] = {
        f"maj@{j}": float(is_correct(task, majority_vote(answers[:j]), item)) for j in maj_ks(len(answers))
    } if answers else {}
    scores["answers"] = [_jsonable(a) for a in answers]
    scores["n_valid"] = len(valid)
    scores["agreement"] = round(sum(a == winner for a in valid) / len(valid), 4) if valid else 0.0
    return winner, scores


def _jsonable(x: Any) -> Any:
    try:
        json.dumps(x)
        return x
    except TypeError:
        return str(x)


# -- answering modes ---------------------------------------------------------------------------
@dataclass(frozen=True)
class AnswerConfig:
    """How the final answer is produced: ``direct`` (greedy answer), ``cot`` (greedy
    reasoning chain) or ``sc`` (k sampled chains, majority vote)."""

    mode: str = "direct"
    k: int = 8
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    max_tokens: int = 0          # 0: DIRECT_TOKENS for direct, COT_TOKENS otherwise
    seed: int = 0
    system: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, Any], mode: str | None = None) -> "AnswerConfig":
        mode = mode or str(params.get("answer", "direct"))
        if mode not in MODES:
            raise UserError(f"answer mode '{mode}' is not one of {', '.join(MODES)}")
        known = {k: params[k] for k in ANSWER_DEFAULTS if k in params}
        cfg = cls(mode=mode, **known)
        if cfg.mode == "sc" and int(cfg.k) < 1:
            raise UserError(f"self-consistency needs k >= 1 samples (got {cfg.k})")
        if cfg.mode == "sc" and float(cfg.temperature) <= 0:
            raise UserError("self-consistency needs temperature > 0 (identical greedy samples cannot vote)")
        return cfg

    @property
    def cot(self) -> bool:
        return self.mode != "direct"

    @property
    def n(self) -> int:
        return int(self.k) if self.mode == "sc" else 1

    @property
    def tokens(self) -> int:
        return int(self.max_tokens) or (DIRECT_TOKENS if self.mode == "direct" else COT_TOKENS)

    def request(self, prompt: str, n: int | None = None) -> GenRequest:
        n = self.n if n is None else n
        sampled = self.mode == "sc" or n > 1
        return GenRequest.chat(
            prompt, system=self.system, max_tokens=self.tokens, n=n, seed=int(self.seed),
            temperature=float(self.temperature) if sampled else 0.0,
            top_p=float(self.top_p) if sampled else 1.0, top_k=int(self.top_k) if sampled else 0,
        )


def answer_items(client: InferenceClient, task, items: Sequence[Item], build: Callable[[Item, bool], str],
                 cfg: AnswerConfig, meters: Sequence[Meter] | None = None,
                 extra_scores: Sequence[dict] | None = None) -> list[Prediction]:
    """Answer every item with one batched call: prompt by ``build(item, cot)``, then parse
    (and vote, in ``sc`` mode). Earlier stages' compute is already in ``meters``."""
    meters = list(meters) if meters is not None else [Meter() for _ in items]
    prompts = [build(it, cfg.cot) for it in items]
    gens = generate_metered(client, [cfg.request(p) for p in prompts], meters)
    preds = []
    for i, (it, p, g, m) in enumerate(zip(items, prompts, gens, meters)):
        scores = dict(extra_scores[i]) if extra_scores else {}
        scores["prompt_hash"] = prompt_hash(p)
        scores["finish"] = list(g.finish_reasons)
        if cfg.mode == "sc":
            answers = [extract(task, t, it) for t in g.texts]
            parsed, vs = vote(task, it, answers)
            scores.update(vs)
            raw = json.dumps(g.texts, ensure_ascii=False)
        else:
            raw = g.texts[0] if g.texts else ""
            parsed = extract(task, raw, it)
        preds.append(m.prediction(it, _jsonable(parsed), is_correct(task, parsed, it), raw, scores))
    return preds
