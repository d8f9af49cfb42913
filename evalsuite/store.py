"""SQLite results store: one row per run, one row per (run, sample), numbered migrations.

Why SQLite: one file that reports can read without importing the evaluator, safe under
``kill -9`` (every finished batch is committed, WAL journal), and queryable by users.
Resume: a run is identified by its run key (variant sha + task version + strategy +
parameters + seed); samples already stored for that key are never recomputed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from quantsuite.errors import UserError

MIGRATIONS: list[str] = [
    # 1: initial schema
    """
    CREATE TABLE runs (
        run_key TEXT PRIMARY KEY,
        variant_id TEXT NOT NULL,
        model TEXT NOT NULL,
        variant_sha TEXT NOT NULL,
        method TEXT,
        size_bytes INTEGER,
        bits_per_weight REAL,
        manifest TEXT,              -- the variant manifest as JSON (provenance for reports)
        task TEXT NOT NULL,
        task_version TEXT NOT NULL,
        strategy TEXT NOT NULL,
        params TEXT NOT NULL,       -- strategy parameters as canonical JSON
        seed INTEGER NOT NULL,
        n_items INTEGER,
        status TEXT NOT NULL DEFAULT 'running',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE samples (
        run_key TEXT NOT NULL REFERENCES runs(run_key),
        item_id TEXT NOT NULL,
        prompt_hash TEXT,
        raw TEXT,
        parsed TEXT,                -- JSON
        gold TEXT,                  -- JSON
        correct INTEGER,
        scores TEXT,                -- JSON: acc_norm, maj@k, per-budget answers...
        calls INTEGER DEFAULT 0,
        tokens_in INTEGER DEFAULT 0,
        tokens_out INTEGER DEFAULT 0,
        seconds REAL DEFAULT 0,
        PRIMARY KEY (run_key, item_id)
    );
    CREATE TABLE metrics (
        run_key TEXT NOT NULL REFERENCES runs(run_key),
        name TEXT NOT NULL,
        value REAL,
        lo REAL,
        hi REAL,
        n INTEGER,
        PRIMARY KEY (run_key, name)
    );
    CREATE INDEX samples_run ON samples(run_key);
    """,
    # 2: environment of each run (threads, runtime, machine) for honest timing comparisons
    """
    ALTER TABLE runs ADD COLUMN runtime TEXT;
    ALTER TABLE runs ADD COLUMN env TEXT;
    """,
]


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def run_key(variant_sha: str, task: str, task_version: str, strategy: str, params: dict, seed: int) -> str:
    blob = canonical([variant_sha, task, task_version, strategy, params, seed])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass
class SampleRow:
    item_id: str
    prompt_hash: str = ""
    raw: str = ""
    parsed: Any = None
    gold: Any = None
    correct: bool | None = None
    scores: dict | None = None
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0


class ResultsStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path), timeout=30)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise UserError(f"{self.path} is not a quantsuite results store ({e})") from None

    # -- schema -------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        v = self.schema_version
        if v > len(MIGRATIONS):
            raise UserError(f"{self.path} has schema {v}, newer than this quantsuite ({len(MIGRATIONS)})")
        for i in range(v, len(MIGRATIONS)):
            with self.db:
                self.db.executescript("BEGIN;" + MIGRATIONS[i] + f"; PRAGMA user_version={i + 1};")

    # -- runs ------------------------------------------------------------------------
    def ensure_run(self, key: str, *, variant: dict, task: str, task_version: str, strategy: str,
                   params: dict, seed: int, n_items: int, runtime: str = "", env: dict | None = None) -> None:
        now = _now()
        with self.db:
            row = self.db.execute("SELECT run_key FROM runs WHERE run_key=?", (key,)).fetchone()
            if row:
                self.db.execute("UPDATE runs SET n_items=MAX(COALESCE(n_items,0), ?), updated_at=?, status=CASE WHEN status='done' AND ? > n_items THEN 'running' ELSE status END WHERE run_key=?",
                                (n_items, now, n_items, key))
                return
            self.db.execute(
                "INSERT INTO runs (run_key, variant_id, model, variant_sha, method, size_bytes, bits_per_weight, manifest,"
                " task, task_version, strategy, params, seed, n_items, status, created_at, updated_at, runtime, env)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (key, variant["variant_id"], variant["model"], variant["sha"], variant.get("method"),
                 variant.get("size_bytes"), variant.get("bits_per_weight"), canonical(variant.get("manifest", {})),
                 task, task_version, strategy, canonical(params), seed, n_items, "running", now, now,
                 runtime, canonical(env or {})),
            )

    def done_items(self, key: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT item_id FROM samples WHERE run_key=?", (key,))}

    def add_samples(self, key: str, rows: Iterable[SampleRow]) -> None:
        """Insert a batch in one transaction: a kill loses at most the batch in flight."""
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO samples (run_key, item_id, prompt_hash, raw, parsed, gold, correct, scores,"
                " calls, tokens_in, tokens_out, seconds) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [(key, r.item_id, r.prompt_hash, r.raw, canonical(r.parsed), canonical(r.gold),
                  None if r.correct is None else int(bool(r.correct)), canonical(r.scores or {}),
                  r.calls, r.tokens_in, r.tokens_out, r.seconds) for r in rows],
            )
            self.db.execute("UPDATE runs SET updated_at=? WHERE run_key=?", (_now(), key))

    def finish_run(self, key: str, metrics: dict[str, tuple[float, float | None, float | None, int]]) -> None:
        with self.db:
            self.db.execute("DELETE FROM metrics WHERE run_key=?", (key,))
            self.db.executemany("INSERT INTO metrics (run_key, name, value, lo, hi, n) VALUES (?,?,?,?,?,?)",
                                [(key, k, *v) for k, v in metrics.items()])
            self.db.execute("UPDATE runs SET status='done', updated_at=? WHERE run_key=?", (_now(), key))

    # -- reading ----------------------------------------------------------------------
    def runs(self, **where: Any) -> list[dict]:
        sql, args = "SELECT * FROM runs", []
        if where:
            sql += " WHERE " + " AND ".join(f"{k}=?" for k in where)
            args = list(where.values())
        out = []
        for r in self.db.execute(sql + " ORDER BY model, size_bytes, variant_id, task, strategy", args):
            d = dict(r)
            d["params"] = json.loads(d["params"])
            d["manifest"] = json.loads(d["manifest"] or "{}")
            d["env"] = json.loads(d.get("env") or "{}")
            out.append(d)
        return out

    def samples(self, key: str) -> list[dict]:
        out = []
        for r in self.db.execute("SELECT * FROM samples WHERE run_key=? ORDER BY item_id", (key,)):
            d = dict(r)
            for f in ("parsed", "gold", "scores"):
                d[f] = json.loads(d[f]) if d[f] is not None else None
            out.append(d)
        return out

    def metrics(self, key: str) -> dict[str, dict]:
        return {r["name"]: dict(r) for r in self.db.execute("SELECT * FROM metrics WHERE run_key=?", (key,))}

    def progress(self) -> Iterator[dict]:
        for r in self.db.execute(
            "SELECT r.run_key, r.variant_id, r.model, r.task, r.strategy, r.status, r.n_items,"
            " (SELECT COUNT(*) FROM samples s WHERE s.run_key=r.run_key) AS done FROM runs r"
            " ORDER BY r.model, r.size_bytes, r.variant_id, r.task, r.strategy"
        ):
            yield dict(r)

    def close(self) -> None:
        self.db.close()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
