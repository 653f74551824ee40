"""What a person sees while a search runs: a rich live panel, or one log line per result."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ksearch.loop import Progress as SearchProgress
from ksearch.tree import NodeStatus


def _best(p: SearchProgress) -> str:
    return "—" if p.best is None else f"{math.exp(p.best):.3f}×"


class LiveView:
    """A progress bar over the budget, the best score so far, and the work in flight."""

    def __init__(self, title: str, budget: int, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.job = self.bar.add_task(title, total=budget)
        self.stats = Table.grid(padding=(0, 2))
        self.live = Live(Group(self.bar, self.stats), console=self.console, refresh_per_second=4)

    def update(self, p: SearchProgress) -> None:
        self.bar.update(self.job, completed=p.evaluations, total=p.budget)
        counts: dict[str, int] = {}
        for n in p.tree.nodes:
            counts[n.status.value] = counts.get(n.status.value, 0) + 1
        grid = Table.grid(padding=(0, 2))
        grid.add_row("best so far", _best(p), "in flight", str(p.in_flight))
        grid.add_row(
            "nodes",
            str(len(p.tree)),
            "by status",
            ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
        )
        self.live.update(Group(self.bar, grid))


def view(
    display: str, title: str, budget: int
) -> tuple[AbstractContextManager[object], Callable[[SearchProgress], None]]:
    """A context to run the search in and the progress callback for `display`."""
    if display == "live" and sys.stderr.isatty():
        lv = LiveView(title, budget)
        return lv.live, lv.update
    if display == "none":
        return nullcontext(), lambda p: None
    console = Console(stderr=True, soft_wrap=True)
    printed = {-1}

    def line(p: SearchProgress) -> None:
        if p.evaluations in printed:
            return  # one line per applied evaluation
        printed.add(p.evaluations)
        last = max(
            (n for n in p.tree.nodes if n.status.measured), key=lambda n: n.step or 0, default=None
        )
        status = "" if last is None else f" last {last.status.value}"
        if last is not None and last.status is NodeStatus.PASSED and last.value is not None:
            status += f" {math.exp(last.value):.3f}×"
        elif last is not None and last.reason:
            status += f" ({last.reason[:120]})"
        console.print(f"[{p.evaluations}/{p.budget}] best {_best(p)}{status}", highlight=False)

    return nullcontext(), line
