"""WikiText-2 raw text for perplexity and KL divergence (llama-perplexity's chunking)."""

from __future__ import annotations

from pathlib import Path

from evalsuite.tasks import TASKS
from evalsuite.tasks.base import Task


@TASKS.register("wikitext2")
class WikiText2(Task):
    name = "wikitext2"
    version = "1"
    kind = "ppl"

    def __init__(self, path=None, limit=None, split: str = "test", **options):
        super().__init__(path, limit, **options)
        self.split = split

    @property
    def default_file(self) -> str:  # type: ignore[override]
        return f"wikitext2/{self.split}.txt"

    def text(self) -> str:
        return self.data_path.read_text(encoding="utf-8")
