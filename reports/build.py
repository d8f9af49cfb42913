"""Store -> report file: the one entry point the CLI calls.

    from reports.build import build_report
    build_report("results.sqlite", "report.html")                 # self-contained HTML
    build_report("results.sqlite", "report.md", fmt="md", budgets=[2, 8, 24], task="arc_easy")

Why atomic: a report is often regenerated while someone has the old one open or while
a CI job publishes it; the file is written to a temporary sibling and renamed into place,
so readers see the old report or the new one, never half of one. Bad input (missing or
empty store, unknown task or format, bad budgets) raises ``UserError`` with a one-line
message before anything is written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from quantsuite.errors import UserError
from reports.data import load_runs
from reports.model import assemble
from reports.recommend import MemoryModel, parse_budgets
from reports.render import FORMATS, RENDERERS

SUFFIX_FORMAT = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".csv": "csv", ".json": "json"}


def format_for(out_path: str | Path, fmt: str | None) -> str:
    """The explicit format, else the one the file name implies, else HTML."""
    if fmt:
        f = fmt.lower().strip()
        if f not in FORMATS:
            raise UserError(f"unknown report format '{fmt}' (choose {', '.join(FORMATS)})")
        return f
    return SUFFIX_FORMAT.get(Path(out_path).suffix.lower(), "html")


def report_model(store_path: str | Path, budgets: Sequence[float] | str | None = None, task: str | None = None,
                 memory: MemoryModel | None = None, drill_limit: int | None = 50) -> dict[str, Any]:
    """The report as a JSON-able dict (what ``--format json`` writes), for callers who
    want the numbers without a file."""
    budget_list = parse_budgets(budgets)
    runs, info = load_runs(store_path, task=task)
    return assemble(runs, info, budget_list, memory or MemoryModel(), drill_limit, task_filter=task)


def render_report(model: dict[str, Any], fmt: str = "html") -> str:
    return RENDERERS[format_for("", fmt)](model)


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def build_report(store_path: str | Path, out_path: str | Path, fmt: str | None = "html",
                 budgets: Sequence[float] | str | None = None, task: str | None = None, *,
                 memory: MemoryModel | None = None, drill_limit: int | None = 50) -> Path:
    """Read ``store_path`` and write the report to ``out_path``; return the path written.

    fmt: html (default) | md | csv | json; None = from the file suffix.
    budgets: memory budgets in GiB (list or "1,2,4"); None = 1, 2, 4, 8, 16, 24, 48, 80.
    task: restrict to one task. memory: KV-cache/runtime overhead parameters (printed in
    the report). drill_limit: flipped items kept per variant and condition (None = all).
    """
    out = Path(out_path)
    if out.exists() and out.is_dir():
        raise UserError(f"report output is a folder, not a file: {out}")
    f = format_for(out, fmt)
    if Path(store_path).resolve() == out.resolve():
        raise UserError(f"report output would overwrite the results store: {out}")
    text = RENDERERS[f](report_model(store_path, budgets, task, memory, drill_limit))
    return write_atomic(out, text)
