"""Chain of thought (Wei et al. 2022), zero-shot: one greedy reasoning chain, then the answer.

The task's CoT prompt asks the model to think step by step and finish with
"Answer: ..."; the answer is parsed from the whole chain by the task's extractor (for
letters, an explicit "Answer: X" wins over stray letters in the reasoning). Same loop as
direct answering, with the CoT prompt and a longer budget.
"""

from __future__ import annotations

from evalsuite.strategies import STRATEGIES
from evalsuite.strategies.answer import COT_TOKENS
from evalsuite.strategies.direct import Direct


@STRATEGIES.register("cot")
class ChainOfThought(Direct):
    name = "cot"
    mode = "cot"
    defaults = {"max_tokens": COT_TOKENS, "system": ""}
