"""rich progress bars behind the evaluator's small Progress interface."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


class RichProgress:
    def __init__(self):
        self._p = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
        self._task = None

    def __enter__(self):
        self._p.__enter__()
        return self

    def __exit__(self, *exc):
        return self._p.__exit__(*exc)

    def start(self, label: str, total: int) -> None:
        if self._task is not None:
            self._p.update(self._task, visible=True)
        self._task = self._p.add_task(label, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None and n:
            self._p.advance(self._task, n)

    def note(self, msg: str) -> None:
        self._p.console.print(f"[dim]{msg}[/dim]")
