"""`python -m ksearch.study task=<name>`: search strategies compared on a landscape.

Each strategy runs `study.seeds` searches from the same root through the same loop, world
model and settings as `python -m ksearch`, but each evaluation is answered by a landscape
(`ksearch.landscape`) in microseconds, with log-normal noise. After every evaluation a
strategy's curve holds the true score of the plan it would pick then (its best measured
plan); at the end its finalists are measured again, as a search's are, and the true score
of the one it picks is its final. The target is the true score of the task's starting
plan (`study.target=start`) or of the truly fastest plan, found by trying every row of
every regime (`study.target=best`, for small spaces). It prints a table per strategy
and, as its last line, one JSON object.
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from ksearch import config as C
from ksearch.landscape import LandscapeScorer, load
from ksearch.loop import Progress, Search, SearchConfig
from ksearch.plan import Plan, Row
from ksearch.store import Store
from ksearch.task import Task
from ksearch.winner import finalists

console = Console(stderr=True, soft_wrap=True)
#: evaluation counts the table reports the best true score at (and the budget)
MARKS = (10, 25, 50, 100)


@dataclass(slots=True)
class Run:
    """One search of a study: its curve (true score of its best measured plan after each
    evaluation), the true score of the winner it picks, and the engine's seconds (scoring
    excluded)."""

    curve: list[float] = field(default_factory=list)
    final: float = 0.0
    seconds: float = 0.0
    infeasible: int = 0  # search=tpe: rows drawn that could not work (not measured)


def run_one(
    task: Task, root: Plan, scorer: LandscapeScorer, config: SearchConfig, cfg: DictConfig
) -> Run:
    """One search from `root` on the scorer's landscape, with the built-in world model."""
    wm = C.builtin_world_model(cfg, task, scorer.workloads)
    out = Run()
    truth: dict[str, float] = {}

    def true(plan: Plan) -> float:
        if plan.key not in truth:
            truth[plan.key] = scorer.true_score(plan)
        return truth[plan.key]

    def watch(progress: Progress) -> None:
        best = progress.tree.best_node()
        while best is not None and len(out.curve) < progress.evaluations:
            out.curve.append(true(best.plan))

    began = time.perf_counter()
    engine = Search(
        root=root, world_model=wm, scorer=scorer, store=Store(None), config=config,
        on_progress=watch, sampler=C.sampler(task, root, config),
    )  # fmt: skip
    tree = engine.run()
    out.seconds = time.perf_counter() - began - scorer.seconds
    if engine.sampler is not None:
        out.infeasible = engine.sampler.infeasible
    while out.curve and len(out.curve) < config.budget:
        out.curve.append(out.curve[-1])  # no plan was left to measure
    # the winner: the finalists measured again (other noise), the best re-measurement
    again = LandscapeScorer(
        task, scorer.landscape, scorer.workloads, noise=scorer.noise, seed=-1 - config.seed
    )
    scores = {}
    for i in finalists(tree, config.finalists):
        ev = again.submit(engine.sources[i], screen=False).result()
        scores[i] = ev.score or 0.0
    if scores:
        out.final = true(tree[max(scores, key=lambda i: (scores[i], -i))].plan)
    return out


#: rows of one regime `best_plan` tries at most
EXHAUSTIVE_ROWS = 200_000


def best_plan(task: Task, truth: LandscapeScorer) -> Plan:
    """The truly fastest plan, by trying every feasible row of every regime on the
    landscape without noise: a workload times its own regime's row, so the best plan is
    the best row of each regime. Raises ValueError where a regime has more rows than
    `EXHAUSTIVE_ROWS`."""
    space = task.space
    assert space is not None
    size = math.prod(len(p.values) for p in space.params)
    if size > EXHAUSTIVE_ROWS:
        raise ValueError(
            f"study.target=best tries every row of a regime, and {task.name} has {size:,} "
            f"per regime (at most {EXHAUSTIVE_ROWS:,}); use study.target=start"
        )
    names = sorted(p.name for p in space.params)
    domains = [space.param(n).values for n in names]
    base = task.canonical(space.untuned())
    rows: dict[str, Row] = {}
    for regime in space.regimes:
        mine = [w for w in truth.workloads if task.regime(w) == regime]
        if not mine:
            continue
        best: tuple[float, Row] | None = None
        seen: set[Row] = set()
        for values in itertools.product(*domains):
            plan = task.canonical(base.with_rows({regime: tuple(zip(names, values, strict=True))}))
            row = plan.row(regime)
            if row in seen or task.infeasible(plan) is not None:
                continue
            seen.add(row)
            table = plan.table()
            t = sum(math.log(truth.landscape(table, w.params)) for w in mine)
            if best is None or t < best[0]:
                best = (t, row)
        if best is not None:
            rows[regime] = best[1]
    return base.with_rows(rows)


def evals_to(curve: list[float], target: float, budget: int) -> int:
    """The first evaluation count at which the curve reaches `target`, else budget + 1."""
    return next((n for n, v in enumerate(curve, 1) if v >= target - 1e-12), budget + 1)


def study(cfg: DictConfig) -> dict[str, Any]:
    """Run the study the config describes; returns its JSON result."""
    s = cfg.study
    task = C.task(cfg)
    if task.space is None:
        raise C.ConfigError(f"task {task.name} has no design space to search")
    if s.root not in ("start", "untuned"):
        raise C.ConfigError(f"study.root must be start or untuned, not {s.root!r}")
    if int(s.seeds) < 1:
        raise C.ConfigError(f"study.seeds must be at least 1, not {s.seeds}")
    if str(s.suite) not in task.suites:
        raise C.ConfigError(f"task {task.name} has no suite {s.suite!r}: {', '.join(task.suites)}")
    try:
        landscape = load(str(s.landscape), task)
    except ValueError as e:
        raise C.ConfigError(str(e)) from e
    if cfg.worldmodel.name != "builtin":
        raise C.ConfigError("a study runs the built-in world model (worldmodel=builtin)")
    for strategy in s.strategies:
        C.build(SearchConfig, cfg.search, skip=("strategy",), strategy=str(strategy))
    workloads = task.suites[str(s.suite)]
    truth = LandscapeScorer(task, landscape, workloads, noise=0.0)
    if s.target == "start":
        target = truth.true_score(task.space.root())
    elif s.target == "best":
        try:
            target = truth.true_score(best_plan(task, truth))
        except ValueError as e:
            raise C.ConfigError(str(e)) from e
    else:
        raise C.ConfigError(f"study.target must be start or best, not {s.target!r}")
    budget = int(cfg.search.budget)
    jobs = [(str(strategy), seed) for strategy in s.strategies for seed in range(int(s.seeds))]
    runs: dict[tuple[str, int], Run] = {}
    processes = int(s.jobs) if s.jobs else os.cpu_count() or 1
    yaml = OmegaConf.to_yaml(cfg, resolve=True)
    if processes > 1 and len(jobs) > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(processes, len(jobs)), mp_context=context) as pool:
            futures = {pool.submit(_job, yaml, *job): job for job in jobs}
            for future in as_completed(futures):
                runs[futures[future]] = _done(futures[future], future.result())
    else:
        for job in jobs:
            runs[job] = _done(job, _job(yaml, *job))
    result: dict[str, Any] = {"target": target, "strategies": {}}
    for strategy in dict.fromkeys(name for name, _ in jobs):
        mine = [runs[(strategy, seed)] for seed in range(int(s.seeds))]
        result["strategies"][strategy] = {
            "evals_to_95": [evals_to(r.curve, 0.95 * target, budget) for r in mine],
            "evals_to_100": [evals_to(r.curve, target, budget) for r in mine],
            "final": [r.final for r in mine],
            "curve": [r.curve for r in mine],
            "overhead_ms": [1e3 * r.seconds / max(len(r.curve), 1) for r in mine],
            "infeasible_draws": [r.infeasible for r in mine],
        }
    return result


def _job(yaml: str, strategy: str, seed: int) -> Run:
    """One search of the study, from the config as YAML (so that it runs in any process)."""
    cfg = OmegaConf.create(yaml)
    assert isinstance(cfg, DictConfig)
    s = cfg.study
    task = C.task(cfg)
    assert task.space is not None
    landscape = load(str(s.landscape), task)
    workloads = task.suites[str(s.suite)]
    root = task.space.root() if s.root == "start" else task.space.untuned()
    config = C.build(SearchConfig, cfg.search, skip=("strategy",), strategy=strategy, seed=seed)
    scorer = LandscapeScorer(task, landscape, workloads, noise=float(s.noise), seed=seed)
    return run_one(task, root, scorer, config, cfg)


def _done(job: tuple[str, int], run: Run) -> Run:
    console.print(
        f"{job[0]} seed {job[1]}: best {run.curve[-1]:.3f}, final {run.final:.3f} "
        f"({run.seconds:.1f} s)",
        highlight=False,
    )
    return run


def show(result: dict[str, Any], budget: int) -> None:
    """The table: medians over seeds per strategy."""
    marks = [m for m in MARKS if m < budget] + [budget]
    table = Table(title=f"true score, median over seeds (target {result['target']:.3f})")
    table.add_column("strategy")
    for m in marks:
        table.add_column(f"@{m}", justify="right")
    for name in ("to 95%", "to 100%", "final", "final/target", "ms/eval"):
        table.add_column(name, justify="right")
    for name, r in result["strategies"].items():
        at = [statistics.median(c[min(m, len(c)) - 1] for c in r["curve"] if c) for m in marks]
        final = statistics.median(r["final"])
        table.add_row(
            name,
            *(f"{v:.3f}" for v in at),
            _count(statistics.median(r["evals_to_95"]), budget),
            _count(statistics.median(r["evals_to_100"]), budget),
            f"{final:.3f}",
            f"{final / result['target']:.3f}",
            f"{statistics.median(r['overhead_ms']):.1f}",
        )
    Console(stderr=True, width=max(console.width, 132)).print(table)


def _count(n: float, budget: int) -> str:
    return "never" if n > budget else f"{n:g}"


@hydra.main(version_base="1.3", config_path="../conf", config_name="study")
def main(cfg: DictConfig) -> None:
    try:
        result = study(cfg)
    except C.ConfigError as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)
    show(result, int(cfg.search.budget))
    line = json.dumps(result, allow_nan=False, default=_finite)
    if cfg.study.out:
        Path(str(cfg.study.out)).write_text(line + "\n")
    print(line)


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


if __name__ == "__main__":
    main()
