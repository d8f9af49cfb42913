"""Benchmarks: one loader per family, each a ``Task`` found through ``TASKS``.

A task knows how to read its data (from ../shared/data or any user path with the same
format), how to phrase an item for log-likelihood scoring and for generation, how to
pull an answer out of generated text, and its version (part of every run key).
"""

from __future__ import annotations

from quantsuite.registry import Registry

TASKS: Registry = Registry("task")
TASKS.lazy("arc_easy", "evalsuite.tasks.arc")
TASKS.lazy("wikitext2", "evalsuite.tasks.wikitext")
TASKS.lazy("mmlu_redux", "evalsuite.tasks.mmlu_redux")
TASKS.lazy("gsm8k", "evalsuite.tasks.gsm8k")
TASKS.lazy("logiqa", "evalsuite.tasks.logiqa")
TASKS.lazy("folio", "evalsuite.tasks.folio")
TASKS.lazy("proofwriter", "evalsuite.tasks.proofwriter")
TASKS.lazy("ruletaker", "evalsuite.tasks.ruletaker")
TASKS.lazy("jsonl", "evalsuite.tasks.user_jsonl")


def get_task(name: str, **options):
    """Instantiate a task by name; ``options`` (path, split, k-shot...) go to its constructor."""
    return TASKS.get(name)(**options)
