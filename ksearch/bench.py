"""`python -m ksearch.bench task=T candidate=FILE`: candidates, the baseline and the task's
installed peers side by side, timed by the same harness in one run.

Per workload: the roofline floor, and for each entry its time in µs, its time over the
floor and its speedup over the baseline; then geometric means over the suite and over the
task's headline subset (the cells peer numbers are published for). Prints the table, then
one JSON object as the last line; `out=FILE` also writes that object to a file.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig
from rich.console import Console
from rich.table import Table

from ksearch.evaluation import Evaluation, geomean


@dataclass(frozen=True, slots=True)
class Entry:
    """One column of the table: a label and the evaluation of its source."""

    label: str
    evaluation: Evaluation


def summary(ev: Evaluation, headline: Sequence[str]) -> dict[str, Any]:
    """Geometric means of one entry: over the suite, and over the headline workloads."""
    rows = {w.name: w for w in ev.workloads}
    cells = [rows[n] for n in headline if n in rows]
    return {
        "status": ev.status.value,
        "method": ev.method.value if ev.method else None,
        "speedup": geomean(w.speedup for w in ev.workloads),
        "time_over_floor": geomean(w.time_over_floor for w in ev.workloads),
        "headline_time_over_floor": (
            geomean(w.time_over_floor for w in cells)
            if cells and all(w.time_over_floor for w in cells)
            else None
        ),
        "workloads": {
            w.name: {
                "status": w.status.value,
                "us": w.latency_us if w.latency_us is not None else w.estimate_us,
                "time_over_floor": w.time_over_floor,
                "speedup": w.speedup,
                "method": w.method,
                "reason": w.reason,
            }
            for w in ev.workloads
        },
    }


def _f(x: float | None, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def table(
    entries: Sequence[Entry],
    summaries: Mapping[str, Mapping[str, Any]],
    headline: Sequence[str],
    title: str,
) -> Table:
    """Workloads down, entries across (µs, × floor, speedup each); `summaries` by label."""
    t = Table(title=title)
    t.add_column("workload")
    t.add_column("floor µs", justify="right")
    for e in entries:
        for col in ("µs", "×floor", "speedup"):
            t.add_column(f"{e.label} {col}" if col == "µs" else col, justify="right")
    names = [w.name for w in entries[0].evaluation.workloads]
    rows = [{w.name: w for w in e.evaluation.workloads} for e in entries]
    for name in names:
        floor = None
        cells: list[str] = []
        for r in rows:
            w = r.get(name)
            if w is None or w.status.value != "passed":
                cells += [w.status.value if w else "—", "", ""]
                continue
            us = w.latency_us if w.latency_us is not None else w.estimate_us
            if us and w.time_over_floor:
                floor = us / w.time_over_floor
            cells += [_f(us, ".1f"), _f(w.time_over_floor, ".2f"), _f(w.speedup, ".2f")]
        t.add_row(("* " if name in headline else "  ") + name, _f(floor, ".1f"), *cells)
    for label, key in (
        ("geomean, suite", "time_over_floor"),
        ("geomean, * cells", "headline_time_over_floor"),
    ):
        cells = []
        for e in entries:
            s = summaries[e.label]
            speed = _f(s["speedup"], ".3f") if key == "time_over_floor" else ""
            cells += ["", _f(s[key], ".3f"), speed]
        t.add_row(label, "", *cells, end_section=label.endswith("suite"))
    return t


def installed_peers(peers: Mapping[str, tuple[str, Path]]) -> dict[str, Path]:
    """The task's peers whose package imports here: label -> candidate file."""
    return {
        label: path for label, (module, path) in peers.items() if importlib.util.find_spec(module)
    }


def _paths(value: Any) -> list[Path]:
    items = list(value) if isinstance(value, ListConfig | list | tuple) else [value]
    return [Path(str(v)) for v in items]


def _labels(paths: Sequence[Path]) -> list[str]:
    """File stems, or parent/stem where stems repeat."""
    stems = [p.stem for p in paths]
    return [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]


@hydra.main(version_base="1.3", config_path="../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    from ksearch import config as C

    console = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 250)
    try:
        paths = _paths(cfg.candidate)
        mode, harness = C.scoring(cfg, paths)
        task = harness.task
    except (C.ConfigError, ValueError) as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        sys.exit(2)
    peers = installed_peers(getattr(task, "peers", {})) if cfg.peers else {}
    missing = sorted(set(getattr(task, "peers", {})) - set(peers))
    sources = [
        *zip(_labels(paths), paths, strict=True),
        ("baseline", task.baseline),
        *peers.items(),
    ]
    headline = tuple(getattr(task, "headline", ()))
    entries = []
    try:
        for label, path in sources:
            console.print(f"timing {label} ({path}) on the {harness.config.suite} suite")
            entries.append(Entry(label, harness.evaluate(path.read_text(), screen=False)))
    finally:
        harness.close()
    fp = harness.fingerprint()
    title = f"{task.name}, {harness.config.suite} suite, {fp.get('gpu') or fp.get('device')}" + (
        " (times are analytic estimates)" if mode == "interpret" else ""
    )
    summaries = {e.label: summary(e.evaluation, headline) for e in entries}
    console.print(table(entries, summaries, headline, title))
    for e in entries:
        if e.evaluation.reason:
            console.print(f"{e.label}: {e.evaluation.reason}", highlight=False)
    if missing:
        console.print(f"peers not installed here: {', '.join(missing)}", highlight=False)
    result = {
        "task": task.name,
        "suite": harness.config.suite,
        "fingerprint": fp,
        "headline": list(headline),
        "entries": summaries,
    }
    line = json.dumps(result)
    if cfg.out:
        Path(str(cfg.out)).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
