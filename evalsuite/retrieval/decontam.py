"""N-gram decontamination: never retrieve the test item (or its answer) itself.

A retrieved document that shares an n-gram (13 words by default, as in GPT-3's
contamination analysis) with the item is dropped: with a datastore that contains the
benchmark, or copies of it, RAG would otherwise measure lookup rather than reasoning.
The item is given as text segments, normally the question and question + answer; a
segment shorter than n words is matched as a whole (a document containing all of it,
in order, is dropped), so short questions are caught too, while a short answer alone
("5", "Mars") is never a segment, which would drop every document that mentions it.
Words are lower-cased alphanumeric runs, so punctuation and spacing do not hide a copy.
"""

from __future__ import annotations

import re
from typing import Sequence

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


class Decontaminator:
    def __init__(self, segments: str | Sequence[str], n: int = 13):
        self.n = n
        self.grams: dict[int, set[tuple[str, ...]]] = {}     # gram size -> grams
        for seg in [segments] if isinstance(segments, str) else segments:
            w = words(seg)
            if w:
                size = min(n, len(w))
                self.grams.setdefault(size, set()).update(ngrams(w, size))

    def contaminated(self, text: str) -> bool:
        w = words(text)
        return any(not grams.isdisjoint(ngrams(w, size)) for size, grams in self.grams.items())

    def filter(self, texts: Sequence[str]) -> tuple[list[int], int]:
        """Indices of clean texts, and how many were dropped."""
        keep = [i for i, t in enumerate(texts) if not self.contaminated(t)]
        return keep, len(texts) - len(keep)
