"""Landscapes: a plan's true time on each workload without a GPU, for studies of search.

A landscape is a callable `f(table, params) -> µs`: `table` is a plan's canonical table
(regime -> {param: value}), or None for the task's baseline, and `params` a workload's
parameters. `model(task)` is the task's analytic estimate (what `scorer=interpret`
reports); `perturbed(task, draw)` is that model with each setting's effect scaled by a
log-normal factor of its own, and pairs of interacting settings by joint factors, so a
search can be judged where its priors, which come from the model, are wrong.
`LandscapeScorer` answers a search's candidates from a landscape in microseconds, with
log-normal measurement noise, through the same `Scorer` protocol as the GPU harness.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import random
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from time import perf_counter
from typing import Any

from ksearch.evaluation import Evaluation, Method, Status, WorkloadResult, summarize
from ksearch.harness import content_hash
from ksearch.plan import Plan, Value, read_plan
from ksearch.task import Task, Workload

Table = dict[str, dict[str, Value]]
Landscape = Callable[[Table | None, Mapping[str, Any]], float]


def model(task: Task) -> Landscape:
    """The task's analytic estimate as a landscape, cached per (regime row, workload)."""
    regime_of: dict[str, str] = {}
    cache: dict[tuple[str, tuple[tuple[str, Value], ...] | None], float] = {}

    def time(table: Table | None, params: Mapping[str, Any]) -> float:
        workload = Workload(_name(params), params)
        key: tuple[str, tuple[tuple[str, Value], ...] | None]
        if table is None:
            key = (workload.name, None)
            if key not in cache:
                cache[key] = task.estimate(None, workload)
            return cache[key]
        if workload.name not in regime_of:
            regime_of[workload.name] = task.regime(workload)
        regime = regime_of[workload.name]
        row = tuple(sorted(table[regime].items()))
        key = (workload.name, row)
        if key not in cache:
            cache[key] = task.estimate(Plan.of({r: dict(row) for r in table}), workload)
        return cache[key]

    return time


def perturbed(task: Task, draw: int, *, sigma: float = 0.02, joint: float = 0.03) -> Landscape:
    """The task's model with every setting's effect off by its own factor: each (param,
    value, regime) of the canonical table scales the time by exp(N(0, sigma)), and each
    pair of settings in `task.space.couples` (if it declares any) by exp(N(0, joint)).
    Factors are drawn from `draw`, the same for every process."""
    base = model(task)
    couples: Sequence[tuple[str, str]] = getattr(task.space, "couples", ())
    factors: dict[tuple[object, ...], float] = {}
    regime_of: dict[str, str] = {}

    def factor(*key: object, spread: float) -> float:
        if key not in factors:
            digest = hashlib.sha256(repr((draw, *key)).encode()).digest()
            factors[key] = math.exp(random.Random(digest).gauss(0.0, spread))
        return factors[key]

    def time(table: Table | None, params: Mapping[str, Any]) -> float:
        t = base(table, params)
        if table is None:
            return t
        workload = _name(params)
        if workload not in regime_of:
            regime_of[workload] = task.regime(Workload(workload, params))
        regime = regime_of[workload]
        row = table[regime]
        for name, value in row.items():
            t *= factor(name, value, regime, spread=sigma)
        for a, b in couples:
            t *= factor(a, row[a], b, row[b], regime, spread=joint)
        return t

    return time


def load(spec: str, task: Task) -> Landscape:
    """`model`, `perturbed:DRAW[:SIGMA[:JOINT]]`, or `MODULE:FUNCTION` (a callable
    `f(table, params)`)."""
    if spec == "model":
        return model(task)
    head, _, tail = spec.partition(":")
    if head == "perturbed":
        draw, *spreads = tail.split(":")
        try:
            if not draw.isdigit() or len(spreads) > 2:
                raise ValueError
            numbers = [float(x) for x in spreads]
        except ValueError:
            raise ValueError(
                f"landscape {spec!r}: use perturbed:DRAW, perturbed:DRAW:SIGMA or "
                "perturbed:DRAW:SIGMA:JOINT (DRAW an integer, the spreads numbers)"
            ) from None
        return perturbed(task, int(draw), **dict(zip(("sigma", "joint"), numbers, strict=False)))
    if not tail:
        raise ValueError(
            f"unknown landscape {spec!r}: use model, perturbed:DRAW or MODULE:FUNCTION"
        )
    try:
        function = getattr(importlib.import_module(head), tail)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"landscape {spec!r} cannot be loaded: {e}") from e
    if not callable(function):
        raise ValueError(f"landscape {spec!r} is not callable")
    return function


def _name(params: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={params[k]}" for k in sorted(params))


class LandscapeScorer:
    """Scores rendered candidates from a landscape: each workload's time is the landscape's
    for the plan in the candidate's header, times exp(N(0, noise)) drawn from (seed,
    candidate, workload). A candidate without a plan header fails to compile."""

    name = "landscape"

    def __init__(
        self,
        task: Task,
        landscape: Landscape,
        workloads: Sequence[Workload],
        *,
        noise: float = 0.02,
        seed: int = 0,
    ) -> None:
        self.task, self.landscape, self.workloads = task, landscape, tuple(workloads)
        self.noise, self.seed = noise, seed
        self.seconds = 0.0  # spent scoring, so a study can tell the engine's own time
        self.baseline = {w.name: landscape(None, w.params) for w in self.workloads}

    def table(self, plan: Plan) -> Table:
        """The canonical table a landscape is asked about, so plans that render the same
        code take the same time."""
        complete = self.task.space.complete(plan) if self.task.space else plan
        return self.task.canonical(complete).table()

    def true_score(self, plan: Plan) -> float:
        """Geometric mean speedup over the baseline without noise."""
        table = self.table(plan)
        logs = [
            math.log(self.baseline[w.name] / self.landscape(table, w.params))
            for w in self.workloads
        ]
        return math.exp(sum(logs) / len(logs))

    def submit(self, source: str, *, screen: bool = True) -> Future[Evaluation]:
        began = perf_counter()
        try:
            return self._submit(source)
        finally:
            self.seconds += perf_counter() - began

    def _submit(self, source: str) -> Future[Evaluation]:
        candidate = content_hash(source)
        plan = read_plan(source)
        future: Future[Evaluation] = Future()
        if plan is None:
            row = WorkloadResult("*", Status.COMPILE_ERROR, reason="no plan header")
            future.set_result(summarize(candidate, [row], method=Method.ESTIMATE, fingerprint={}))
            return future
        table = self.table(plan)
        rows = []
        for w in self.workloads:
            rng = random.Random(f"{self.seed}:{candidate}:{w.name}")
            t = self.landscape(table, w.params) * math.exp(rng.gauss(0.0, self.noise))
            rows.append(
                WorkloadResult(
                    w.name, Status.PASSED, latency_us=t, speedup=self.baseline[w.name] / t
                )
            )
        future.set_result(summarize(candidate, rows, method=Method.ESTIMATE, fingerprint={}))
        return future

    def fingerprint(self) -> dict[str, Any]:
        return {"device": "landscape"}

    def close(self) -> None:
        pass
