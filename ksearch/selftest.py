"""How far the scorer can be trusted on this machine, measured: `python -m ksearch.selftest`.

Four measurements, printed as a table and, last, one JSON line:

- repeatability: the task's starting plan scored `--repeats` times; per workload, the spread
  of the medians across runs ((max - min) / median), and the spread of the suite's
  geometric-mean latency;
- the side-stream cheat: the baseline run on a stream of its own without joining it, next to
  the unchanged baseline (its honest twin), as the ratio of their measured times;
- the cost of a fault: a crash, then an honest candidate: the worker processes started and
  the honest candidate's wall time, against the same candidate after an honest one (on the
  GPU every evaluation gets a fresh worker, started ahead of it);
- throughput: evaluations per minute over distinct rendered plans, compiled ahead.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from ksearch.evaluation import Evaluation, geomean
from ksearch.harness import Harness, HarnessConfig
from ksearch.plan import actions
from ksearch.task import Task, load_task

console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)

SIDE_STREAM = """

import torch as _torch

_honest_run = run
_side = []


def run(**inputs):
    # the cheat: work queued on a side stream that the caller's stream never waits for
    if not _side:
        _side.append(_torch.cuda.Stream())
    with _torch.cuda.stream(_side[0]):
        return _honest_run(**inputs)
"""

CRASH = "import os\n\n\ndef run(**inputs):\n    os._exit(3)\n"


def repeatability(harness: Harness, source: str, repeats: int) -> dict[str, Any]:
    runs = [harness.evaluate(source, screen=False) for _ in range(repeats)]
    bad = [ev for ev in runs if not ev.passed]
    if bad:
        return {"error": f"the starting plan did not pass: {bad[0].reason}"}
    per: dict[str, list[float]] = {}
    for ev in runs:
        for name, t in ev.latencies().items():
            per.setdefault(name, []).append(t)
    spreads = {n: (max(ts) - min(ts)) / statistics.median(ts) for n, ts in per.items()}
    suite = [geomean(ev.latencies().values()) or math.nan for ev in runs]
    return {
        "repeats": repeats,
        "suite_geomean_us": suite,
        "suite_spread": (max(suite) - min(suite)) / statistics.median(suite),
        "workload_spread_median": statistics.median(spreads.values()),
        "workload_spread_max": max(spreads.values()),
        "method": runs[0].method.value if runs[0].method else None,
        "per_workload": {
            n: {"median_us": statistics.median(per[n]), "spread": spreads[n]} for n in per
        },
    }


def side_stream(harness: Harness, task: Task) -> dict[str, Any]:
    honest_src = task.baseline.read_text()
    honest = harness.evaluate(honest_src, screen=False)
    cheat = harness.evaluate(honest_src + SIDE_STREAM, screen=False)
    out: dict[str, Any] = {"honest": honest.status.value, "cheat": cheat.status.value}
    out["cheat_reason"] = cheat.reason
    if honest.passed and cheat.passed:
        h, c = honest.latencies(), cheat.latencies()
        ratios = [c[n] / h[n] for n in h if n in c]
        out.update(cheat_over_honest_min=min(ratios), cheat_over_honest_geomean=geomean(ratios))
    return out


def fault_cost(harness: Harness, source: str) -> dict[str, Any]:
    harness.evaluate(source, screen=False)  # workers started and kernels compiled
    began = time.monotonic()
    assert harness.evaluate(source + "\n# again\n", screen=False).passed
    warm = time.monotonic() - began
    started = harness.workers.started
    crash = harness.evaluate(CRASH)
    began = time.monotonic()
    after = harness.evaluate(source + "\n# after a crash\n", screen=False)
    return {
        "crash": f"{crash.status.value}: {crash.reason}",
        "after_crash": after.status.value,
        "workers_started": harness.workers.started - started,
        "warm_s": warm,
        "after_crash_s": time.monotonic() - began,
    }


def throughput(task: Task, config: HarnessConfig, count: int) -> dict[str, Any]:
    assert task.space is not None
    root = task.space.root()
    plans = [root]
    for action in actions(task.space, root):
        child = action.apply(root)
        if task.infeasible(child) is None and child not in plans:
            plans.append(child)
        if len(plans) == count:
            break
    harness = Harness(task, config)
    try:
        began = time.monotonic()
        futures = [harness.submit(task.render(p), screen=False) for p in plans]
        results: list[Evaluation] = [f.result() for f in futures]
        took = time.monotonic() - began
    finally:
        harness.close()
    return {
        "evaluations": len(results),
        "passed": sum(ev.passed for ev in results),
        "seconds": took,
        "per_minute": 60 * len(results) / took,
        "compile_workers": config.compile_workers,
        "workers_started": harness.workers.started,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ksearch.selftest", description=__doc__)
    parser.add_argument("--task", default="rmsnorm")
    parser.add_argument("--suite", default="default")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--count", type=int, default=12, help="plans timed for throughput")
    parser.add_argument("--compile-workers", type=int, default=4)
    parser.add_argument(
        "--only", nargs="*", default=None, choices=["repeat", "side", "fault", "throughput"]
    )
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        console.print("the self-test measures the GPU scorer and needs a CUDA device")
        sys.exit(2)
    task = load_task(args.task)
    if task.space is None:
        console.print(f"task {task.name} has no design space to render candidates from")
        sys.exit(2)
    config = HarnessConfig(mode="gpu", suite=args.suite, compile_workers=0, screen=0.0)
    only = set(args.only or ["repeat", "side", "fault", "throughput"])
    report: dict[str, Any] = {}
    source = task.render(task.space.root())
    harness = Harness(task, config)
    try:
        if "repeat" in only:
            report["repeatability"] = repeatability(harness, source, args.repeats)
        if "side" in only:
            report["side_stream"] = side_stream(harness, task)
        if "fault" in only:
            report["fault"] = fault_cost(harness, source)
        report["fingerprint"] = harness.fingerprint()
    finally:
        harness.close()
    if "throughput" in only:
        tp = HarnessConfig(
            mode="gpu", suite=args.suite, compile_workers=args.compile_workers, screen=0.0
        )
        report["throughput"] = throughput(task, tp, args.count)
    table = Table(title=f"scorer self-test: {task.name}, {args.suite} suite")
    table.add_column("measurement")
    table.add_column("value", justify="right")
    for section, values in report.items():
        if section == "fingerprint":
            continue
        for key, value in values.items():
            if isinstance(value, dict | list):
                continue
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            table.add_row(f"{section}.{key}", shown)
    console.print(table)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
