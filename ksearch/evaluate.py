"""`python -m ksearch.evaluate task=T candidate=FILE`: score one candidate file.

Prints a table, then, as its last line, the evaluation as one JSON object
(DESIGN.md). The search scores its candidates through the same harness.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from ksearch.evaluation import Evaluation


def table(ev: Evaluation) -> Table:
    method = ev.method.value if ev.method else "—"
    estimated = " (estimated)" if method == "estimate" else ""
    t = Table(
        title=f"candidate {ev.candidate}: {ev.status.value}"
        + (f", {ev.score:.3f}× over the baseline{estimated}" if ev.score else "")
    )
    for col in (
        "workload",
        "status",
        f"µs{estimated}",
        "spread",
        "speedup",
        "× floor",
        "max error",
        "reason",
    ):
        t.add_column(col)
    for w in ev.workloads:
        us = w.latency_us if w.latency_us is not None else w.estimate_us

        def f(x: float | None, fmt: str) -> str:
            return "—" if x is None else format(x, fmt)

        t.add_row(
            w.name,
            w.status.value,
            f(us, ".2f"),
            f(w.spread, ".1%"),
            f(w.speedup, ".3f"),
            f(w.time_over_floor, ".2f"),
            f(w.max_error, ".2g"),
            (w.reason or "")[:60],
        )
    return t


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from ksearch import config as C

    console = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 200)
    path = Path(str(cfg.candidate))
    try:
        mode, harness = C.scoring(cfg, [path])
    except (C.ConfigError, ValueError) as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)
    if mode == "interpret":
        console.print(
            f"Triton interpreter on the CPU, {harness.config.suite} suite: correctness "
            "is real, times are the task's analytic estimates for an H100"
        )
    try:
        ev = harness.evaluate(path.read_text())
    finally:
        harness.close()
    console.print(table(ev))
    if ev.reason:
        console.print(f"reason: {ev.reason}", highlight=False)
    print(ev.to_json())


if __name__ == "__main__":
    main()
