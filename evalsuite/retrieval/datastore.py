"""Datastores for retrieval: user documents (text, JSONL, JSON lists, folders) cut into chunks.

A datastore is an ordered list of chunks with a source label each and a content key: the
hash of the files' bytes and the chunking settings. Every cache (retrieval results,
dense embeddings) is keyed by it, so editing a document invalidates exactly what
depends on it, and the same files anywhere on disk share one cache.

Ready datastores for the bundled tasks are read from the shared data folder (read-only,
never copied): ``gsm8k`` (GSM8K train, worked solutions), ``arc_easy`` (ARC-Easy train,
question with its correct answer) and ``wikitext2`` (WikiText-2 validation text, for any
task). ``auto`` picks the one that matches the task, else ``wikitext2``.

Chunking: a record (JSON/JSONL object) is one document, a text file is split into
paragraphs at blank lines and paragraphs are packed up to ``words`` words; anything
longer is cut into windows of ``words`` words overlapping by ``overlap`` words, so a fact
near a cut is whole in at least one chunk.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from quantsuite.errors import UserError

NAMED = {
    "gsm8k": "gsm8k/train.jsonl",
    "arc_easy": "arc_easy/train.json",
    "wikitext2": "wikitext2/valid.txt",
}
TASK_DATASTORE = {"gsm8k": "gsm8k", "arc_easy": "arc_easy"}
TEXT_SUFFIXES = {".txt", ".md", ".text", ".rst"}
RECORD_SUFFIXES = {".jsonl", ".json"}
FORMAT_VERSION = "1"


@dataclass(frozen=True)
class ChunkConfig:
    words: int = 200
    overlap: int = 40

    def __post_init__(self):
        if self.words < 1 or not 0 <= self.overlap < self.words:
            raise UserError(f"chunking needs words >= 1 and 0 <= overlap < words (got {self.words}, {self.overlap})")


@dataclass
class Datastore:
    name: str
    key: str                 # content hash: files' bytes + chunking
    texts: list[str]
    sources: list[str]       # "file:record" or "file:chunk" for each chunk

    def __len__(self) -> int:
        return len(self.texts)


def resolve(spec: str | Path, task_name: str = "") -> tuple[str, list[Path]]:
    """A datastore name, 'auto', or a file/folder path -> (display name, files)."""
    spec = str(spec)
    if spec == "auto":
        spec = TASK_DATASTORE.get(task_name, "wikitext2")
    if spec in NAMED:
        from quantsuite.paths import data_dir

        path = data_dir() / NAMED[spec]
        if not path.exists():
            raise UserError(f"datastore {spec}: {path} not found in the data folder")
        return spec, [path]
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(f"datastore '{spec}' is neither a known name ({', '.join(NAMED)}, auto) nor an existing path")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES | RECORD_SUFFIXES)
        if not files:
            raise UserError(f"datastore folder {path} has no .txt/.md/.jsonl/.json files")
        return path.name, files
    return path.name, [path]


def load(spec: str | Path, cfg: ChunkConfig = ChunkConfig(), task_name: str = "") -> Datastore:
    name, files = resolve(spec, task_name)
    h = hashlib.sha256(f"quantsuite-datastore/{FORMAT_VERSION}/{cfg.words}/{cfg.overlap}".encode())
    texts: list[str] = []
    sources: list[str] = []
    for f in files:
        data = f.read_bytes()
        h.update(hashlib.sha256(data).digest())
        try:
            content = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"datastore file {f} is not UTF-8 text") from None
        for label, text in _documents(f, content, cfg.words):
            for j, chunk in enumerate(chunk_text(text, cfg)):
                texts.append(chunk)
                sources.append(f"{f.name}:{label}" + (f"#{j}" if j else ""))
    if not texts:
        raise UserError(f"datastore {name}: no text found in {', '.join(str(f) for f in files)}")
    return Datastore(name=name, key=h.hexdigest()[:16], texts=texts, sources=sources)


def _documents(path: Path, content: str, words: int) -> Iterator[tuple[str, str]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        for i, line in enumerate(content.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{i}: not valid JSON ({e.msg})") from None
            yield str(i), record_text(rec)
    elif suffix == ".json":
        try:
            data = json.loads(content)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON ({e.msg})") from None
        rows = data if isinstance(data, list) else data.get("data") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise UserError(f"{path}: expected a JSON list of records (or {{\"data\": [...]}})")
        for i, rec in enumerate(rows):
            yield str(i), record_text(rec)
    else:
        for i, para in enumerate(_pack_paragraphs(content, words)):
            yield f"p{i}", para


def record_text(rec: Any) -> str:
    """One record as text: a 'text'-like field, a question with its answer, or all strings.

    ARC-style records (``choices`` + ``answerKey``) keep only the correct choice: the
    store is background knowledge, not a quiz.
    """
    if isinstance(rec, str):
        return rec
    if not isinstance(rec, dict):
        return json.dumps(rec, ensure_ascii=False)
    for k in ("text", "content", "passage", "document", "body"):
        if isinstance(rec.get(k), str):
            return rec[k]
    q = rec.get("question")
    if isinstance(q, str):
        ans = rec.get("answer")
        ch = rec.get("choices")
        if isinstance(ch, dict) and "answerKey" in rec:
            labels, texts = ch.get("label", []), ch.get("text", [])
            if rec["answerKey"] in labels:
                ans = texts[labels.index(rec["answerKey"])]
        return f"Question: {q}\nAnswer: {ans}" if ans is not None else q
    return "\n".join(str(v) for v in rec.values() if isinstance(v, (str, int, float)))


def _pack_paragraphs(content: str, budget: int) -> Iterator[str]:
    """Paragraphs (split at blank lines) grouped into pieces of about ``budget`` words."""
    buf: list[str] = []
    n = 0
    for para in re.split(r"\n\s*\n", content):
        para = para.strip()
        if not para:
            continue
        w = len(para.split())
        if buf and n + w > budget:
            yield "\n".join(buf)
            buf, n = [], 0
        buf.append(para)
        n += w
    if buf:
        yield "\n".join(buf)


def chunk_text(text: str, cfg: ChunkConfig) -> list[str]:
    """``text`` whole when short enough (layout kept), else overlapping word windows."""
    words = text.split()
    if not words:
        return []
    if len(words) <= cfg.words:
        return [text.strip()]
    step = cfg.words - cfg.overlap
    return [" ".join(words[i:i + cfg.words]) for i in range(0, len(words) - cfg.overlap, step)]
