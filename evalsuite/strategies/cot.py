"""Chain of thought (Wei et al. 2022), zero-shot: one greedy reasoning chain, then the answer.

The task's CoT prompt asks the model to think step by step and finish with
"Answer: ..."; the answer is parsed from the whole chain by the task's extractor (for
letters, an explicit "Answer: X" wins over stray letters in the reasoning).
"""

from __future__ import annotations

from typing import Sequence

from evalsuite.strategies import STRATEGIES, Strategy
from evalsuite.strategies.answer import COT_TOKENS, AnswerConfig, answer_items, check_task, question_prompt
from evalsuite.types import InferenceClient, Item, Prediction


@STRATEGIES.register("cot")
class ChainOfThought(Strategy):
    name = "cot"
    defaults = {"max_tokens": COT_TOKENS, "system": ""}

    def run(self, items: Sequence[Item], client: InferenceClient, task) -> list[Prediction]:
        check_task(task)
        cfg = AnswerConfig.from_params(self.params, mode="cot")
        return answer_items(client, task, items, lambda it, cot: question_prompt(task, it, cot), cfg)
