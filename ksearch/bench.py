"""`python -m ksearch.bench task=T candidate=FILE`: candidates, the baseline and the task's
installed peers side by side, timed by the same harness in one run (`repeat=N`: N times, each
time on other inputs and starting with another entry, the table showing per-workload medians).

Per workload: the roofline floor, and for each entry its time in µs, its time over the
floor and its speedup over the baseline; then geometric means over the suite and over the
task's headline subset (the cells peer numbers are published for). Prints the table, then
one JSON object as the last line; `out=FILE` also writes that object to a file.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig
from rich.console import Console
from rich.table import Table

from ksearch.evaluation import Evaluation, geomean, summarize


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


def median_evaluation(runs: Sequence[Evaluation]) -> Evaluation:
    """One evaluation from repeated runs of the same candidate: where every run passed, per
    workload the median of each number the runs measured (the largest error), and the score
    over those rows; otherwise the worst run, as it is."""
    worst = max(runs, key=lambda r: r.status.severity)
    if len(runs) == 1 or not worst.passed:
        return worst
    rows = [
        replace(
            same[0],
            **{f: _median([getattr(w, f) for w in same]) for f in _MEASURED},
            max_error=max((w.max_error for w in same if w.max_error is not None), default=None),
        )
        for same in zip(*(r.workloads for r in runs), strict=True)
    ]
    first = runs[0]
    return summarize(first.candidate, rows, method=first.method, fingerprint=first.fingerprint)


#: the numbers of a workload row that repeated runs measure anew
_MEASURED = ("latency_us", "spread", "speedup", "time_over_floor", "estimate_us", "baseline_us")


def _median(values: list[float | None]) -> float | None:
    if any(v is None for v in values):
        return None
    return float(statistics.median(v for v in values if v is not None))


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
        repeat = int(cfg.repeat)
        if repeat < 1:
            raise C.ConfigError(f"repeat must be at least 1, not {repeat}")
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
    runs: dict[str, list[Evaluation]] = {label: [] for label, _ in sources}
    try:
        for r in range(repeat):
            # each run starts one entry further on, so no entry is always timed first
            for label, path in sources[r % len(sources) :] + sources[: r % len(sources)]:
                run = f"run {r + 1} of {repeat}: " if repeat > 1 else ""
                console.print(f"{run}timing {label} ({path}) on the {harness.config.suite} suite")
                runs[label].append(harness.evaluate(path.read_text(), screen=False, draw=r))
    finally:
        harness.close()
    entries = [Entry(label, median_evaluation(runs[label])) for label, _ in sources]
    fp = harness.fingerprint()
    title = f"{task.name}, {harness.config.suite} suite, {fp.get('gpu') or fp.get('device')}" + (
        " (times are analytic estimates)" if mode == "interpret" else ""
    )
    if repeat > 1:
        title += f", median of {repeat} runs"
    summaries = {e.label: summary(e.evaluation, headline) for e in entries}
    console.print(table(entries, summaries, headline, title))
    for e in entries:
        if e.evaluation.reason:
            console.print(f"{e.label}: {e.evaluation.reason}", highlight=False)
        if repeat > 1:
            each = [ev.score for ev in runs[e.label]]
            summaries[e.label]["speedup_runs"] = each
            shown = ", ".join(_f(x, ".3f") for x in each)
            console.print(f"{e.label}: speedup in each run {shown}", highlight=False)
    if missing:
        console.print(f"peers not installed here: {', '.join(missing)}", highlight=False)
    result = {
        "task": task.name,
        "suite": harness.config.suite,
        "fingerprint": fp,
        "headline": list(headline),
        "repeat": repeat,
        "entries": summaries,
    }
    line = json.dumps(result)
    if cfg.out:
        Path(str(cfg.out)).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
