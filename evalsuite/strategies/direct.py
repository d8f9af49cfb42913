"""Direct answering: one greedy generation, answer parsed from it (the cheapest baseline).

Multiple-choice tasks ask for the letter only; generative tasks use their non-CoT prompt.
A short ``max_tokens`` keeps it cheap while leaving room for "The answer is B.".
"""

from __future__ import annotations

from typing import Sequence

from evalsuite.strategies import STRATEGIES, Strategy
from evalsuite.strategies.answer import DIRECT_TOKENS, AnswerConfig, answer_items, check_task, question_prompt
from evalsuite.types import InferenceClient, Item, Prediction


@STRATEGIES.register("direct")
class Direct(Strategy):
    name = "direct"
    mode = "direct"          # AnswerConfig mode: which prompt and how many tokens by default
    defaults = {"max_tokens": DIRECT_TOKENS, "system": ""}

    def run(self, items: Sequence[Item], client: InferenceClient, task) -> list[Prediction]:
        check_task(task)
        cfg = AnswerConfig.from_params(self.params, mode=self.mode)
        return answer_items(client, task, items, lambda it, cot: question_prompt(task, it, cot), cfg)
