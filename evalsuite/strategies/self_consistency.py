"""Self-consistency (Wang et al. 2022): k sampled reasoning chains, majority vote on answers.

* The k samples share one prompt (``GenRequest(n=k)``), so a runtime evaluates the
  prompt once and only pays for the k continuations.
* The answer is extracted from each chain separately; unparseable chains do not vote.
* Ties go to the answer that appears first in sample order (``metrics.majority_vote``):
  deterministic for a given set of samples, and with a fixed seed the samples are fixed.
* ``scores`` holds maj@j for j = 1, 2, 4, ... and k, all read off the same k samples
  (maj@j votes over the first j), so one run gives the whole accuracy-vs-k curve; plus
  each sample's answer, how many parsed, and the winner's vote share (``agreement``).

Options: ``sc@8:temperature=0.7,top_p=0.95,top_k=40,max_tokens=512,seed=0``.
"""

from __future__ import annotations

from typing import Sequence

from evalsuite.strategies import STRATEGIES, Strategy
from evalsuite.strategies.answer import ANSWER_DEFAULTS, AnswerConfig, answer_items, check_task, question_prompt
from evalsuite.types import InferenceClient, Item, Prediction


@STRATEGIES.register("sc")
class SelfConsistency(Strategy):
    name = "sc"
    defaults = dict(ANSWER_DEFAULTS)

    def __init__(self, **params):
        super().__init__(**params)
        AnswerConfig.from_params(self.params, mode="sc")   # bad k / temperature fail at parse time

    @property
    def label(self) -> str:
        return f"sc@{self.params['k']}"

    def run(self, items: Sequence[Item], client: InferenceClient, task) -> list[Prediction]:
        check_task(task)
        cfg = AnswerConfig.from_params(self.params, mode="sc")
        return answer_items(client, task, items, lambda it, cot: question_prompt(task, it, cot), cfg)
