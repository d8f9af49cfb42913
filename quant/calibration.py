"""Calibration text shared by GPTQ, AWQ and the GGUF importance matrix.

One named, hashed set of texts per run, recorded in every manifest it influenced, so two
variants calibrated on different data are never compared as if they were the same.
Defaults never touch evaluation splits: WikiText-2 *valid* (perplexity uses *test*).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from quantsuite.errors import UserError
from quantsuite.paths import data_dir


@dataclass(frozen=True)
class CalibrationSet:
    name: str
    texts: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256("\x1e".join(self.texts).encode()).hexdigest()

    @property
    def n_bytes(self) -> int:
        return sum(len(t.encode()) for t in self.texts)

    def describe(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "n_samples": len(self.texts), "bytes": self.n_bytes}

    def write_text(self, path: Path) -> Path:
        path.write_text("\n\n".join(self.texts))
        return path


def _paragraphs(text: str, min_chars: int) -> list[str]:
    paras, cur = [], []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("= ") and cur:  # WikiText section heading: start a new sample
            if sum(map(len, cur)) >= min_chars:
                paras.append(" ".join(cur))
            cur = []
        elif s:
            cur.append(s)
    if cur and sum(map(len, cur)) >= min_chars:
        paras.append(" ".join(cur))
    return paras


def load_calibration(name: str = "wikitext2-valid", n_samples: int = 64, min_chars: int = 2000) -> CalibrationSet:
    """Named sets: wikitext2-valid, gsm8k-train, arc-train, or a path to .txt / .jsonl ({"text": ...})."""
    p = Path(name)
    if name == "wikitext2-valid":
        texts = _paragraphs((data_dir() / "wikitext2" / "valid.txt").read_text(), min_chars)
    elif name == "gsm8k-train":
        rows = [json.loads(x) for x in (data_dir() / "gsm8k" / "train.jsonl").read_text().splitlines() if x.strip()]
        texts = [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in rows]
    elif name == "arc-train":
        rows = json.loads((data_dir() / "arc_easy" / "train.json").read_text())
        texts = [f"Question: {r['question']}\nAnswer: {r['choices']['text'][r['choices']['label'].index(r['answerKey'])]}"
                 for r in rows if r["answerKey"] in r["choices"]["label"]]
    elif p.suffix == ".jsonl" and p.exists():
        texts = [json.loads(x)["text"] for x in p.read_text().splitlines() if x.strip()]
    elif p.exists():
        texts = _paragraphs(p.read_text(), min_chars) or [p.read_text()]
    else:
        raise UserError(f"unknown calibration set '{name}' (wikitext2-valid, gsm8k-train, arc-train, or a file)")
    if not texts:
        raise UserError(f"calibration set '{name}' is empty")
    return CalibrationSet(name if not p.exists() else p.name, tuple(texts[:n_samples]))
