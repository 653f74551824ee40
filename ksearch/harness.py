"""Scoring candidates in worker processes: isolation, checking, timing, and estimates.

`Harness.submit(source)` returns a future of an `Evaluation`. Candidates run in
`python -m ksearch.worker` processes, each in its own process group, which the
parent kills whole when the compile or run timeout expires or memory runs over.
A worker serves jobs until one ends in a fault or its reuse limit, a spare is started
ahead of a worker's last job or a fault's replacement; after a fault the next worker is
health-checked before it gets a candidate.
Outputs are checked here, against references the worker never sees (ksearch.checking).
On the GPU, queued candidates are compiled ahead in compile workers, and a candidate
clearly behind after the screening workloads is not timed on the rest. The
interpreter scorer checks correctness for real and takes speed from the task's
analytic estimate of the plan in the candidate's header.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import math
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ksearch.checking import Checker
from ksearch.evaluation import (
    Evaluation,
    Method,
    Status,
    WorkloadResult,
    failure,
    geomean,
    summarize,
)
from ksearch.plan import Plan, read_plan
from ksearch.task import H100_CEILINGS, Task, Workload
from ksearch.workers import STARTUP_TIMEOUT, Workers

log = logging.getLogger(__name__)


#: share of the device's memory all compile workers together may hold, so that the
#: evaluation being timed never runs out of memory because candidates compile beside it
COMPILE_MEMORY = 0.4


def content_hash(source: str) -> str:
    """A candidate's identity: 16 hex digits of the SHA-256 of its source."""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class HarnessConfig:
    """How candidates are scored (conf/scorer/*.yaml).

    Args:
        mode: "interpret" (Triton interpreter on the CPU) or "gpu".
        suite: workload suite the score is computed on.
        workers: evaluations run at once.
        compile_workers: processes that compile queued candidates' Triton kernels ahead of
            their evaluation, while the GPU times the current one (gpu only; 0: none).
        compile_timeout: seconds to load the candidate, compile it and make the first call
            (after the worker has started, which may take STARTUP_TIMEOUT).
        run_timeout: seconds for everything after the first call.
        seeds: how many input seeds are checked per workload (offsets; each evaluation
            derives its own seeds from the candidate's hash, so inputs differ per candidate).
        warmup, reps: timing calls per workload (gpu), for the candidate and the baseline alike.
        rounds: runs that the reps are split into, candidate and baseline taking turns to go
            first (gpu), so a drift of the device over the timing weighs on both alike.
        memory_mb: resident host memory a worker and its children may use.
        output_mb: bytes a worker may write to any file, its log included.
        reuse: jobs a worker serves before it is replaced (it is replaced at once after a
            crash, a timeout, a runtime error or a rejection); on the GPU an evaluation
            worker times one candidate only (`Workers.serves`).
        screen: stop timing a candidate after the screening workloads when its times there
            are more than this many times the best full evaluation's (0: never screen).
        estimate_suite: interpret: the suite whose shapes speed is estimated on, while
            correctness is checked on `suite` (None: `suite` itself).
    """

    mode: str = "interpret"
    suite: str = "smoke"
    workers: int = 1
    compile_workers: int = 0
    compile_timeout: float = 120.0
    run_timeout: float = 300.0
    seeds: tuple[int, ...] = (0, 1)
    warmup: int = 10
    reps: int = 50
    rounds: int = 10
    memory_mb: int = 16384
    output_mb: int = 64
    reuse: int = 16
    screen: float = 0.0
    estimate_suite: str | None = None


class Harness:
    """Submits candidates to worker processes and turns their output into Evaluations."""

    def __init__(self, task: Task, config: HarnessConfig) -> None:
        if config.mode not in ("interpret", "gpu"):
            raise ValueError(f"unknown scorer mode {config.mode!r}; expected interpret or gpu")
        if config.suite not in task.suites:
            raise ValueError(
                f"task {task.name} has no workload suite {config.suite!r}; "
                f"it has {', '.join(task.suites)}"
            )
        if not config.seeds:
            raise ValueError("scorer.seeds must name at least one seed")
        if config.reps < 1 or config.rounds < 1 or config.warmup < 0:
            raise ValueError(
                "scorer.reps and scorer.rounds must be at least 1 and scorer.warmup at least 0, "
                f"not {config.reps}, {config.rounds} and {config.warmup}"
            )
        self.task = task
        self.config = config
        self.name = config.mode
        self.workloads = task.suites[config.suite]
        self._by_name = {w.name: w for w in self.workloads}
        estimated = config.estimate_suite if config.mode == "interpret" else None
        if estimated is not None and estimated not in task.suites:
            raise ValueError(
                f"task {task.name} has no suite {estimated!r} to estimate on; "
                f"suites: {', '.join(task.suites)}"
            )
        #: the workloads a score is computed on: interpreter estimates may use other shapes
        #: than the ones correctness is checked on
        self.scored = task.suites[estimated] if estimated else self.workloads
        self._pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="worker")
        compiling = config.mode == "gpu" and config.compile_workers > 0
        self._compiler = (
            ThreadPoolExecutor(max_workers=config.compile_workers, thread_name_prefix="compile")
            if compiling
            else None
        )
        self._dir = tempfile.TemporaryDirectory(prefix="ksearch-")
        self._fingerprint: dict[str, Any] | None = None
        self._closed = False
        self._best: dict[str, float] = {}  # best time per workload among full evaluations
        self.workers = Workers(config, Path(self._dir.name))

    @property
    def capacity(self) -> int:
        """Candidates worth having in flight: those being timed plus those compiling ahead."""
        return self.config.workers + (self.config.compile_workers if self._compiler else 0)

    def submit(self, source: str, *, screen: bool = True) -> Future[Evaluation]:
        """Score `source` in the background; `screen=False` times every workload."""
        compiled = None
        if self._compiler is not None and not self._closed:
            compiled = self._compiler.submit(self._precompile, source)
        return self._pool.submit(self.evaluate, source, screen=screen, compiled=compiled)

    def close(self) -> None:
        """Stop: cancel queued work and kill every worker (their whole groups)."""
        self._closed = True
        pools = [p for p in (self._pool, self._compiler) if p is not None]
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        self.workers.close()
        for pool in pools:
            pool.shutdown(wait=True)
        self.workers.shutdown()
        self._dir.cleanup()

    def fingerprint(self) -> dict[str, Any]:
        """The device fingerprint as the last worker reported it, or as far as known before."""
        if self._fingerprint is not None:
            return self._fingerprint
        versions = {"torch": _version("torch"), "triton": _version("triton")}
        if self.config.mode == "gpu":
            import torch

            name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
            return {"gpu": name, "cuda": torch.version.cuda, **versions}
        return {"gpu": None, "cuda": None, "device": "cpu (Triton interpreter)", **versions}

    def _write(self, source: str) -> tuple[str, Path]:
        candidate = content_hash(source)
        path = Path(self._dir.name) / f"{candidate}.py"
        if not path.exists():
            path.write_text(source)
        return candidate, path

    def _job(self, kind: str, path: Path) -> dict[str, Any]:
        return {
            "kind": kind,
            "task": self.task.name,
            "candidate": str(path),
            "baseline": str(self.task.baseline),
            "suite": self.config.suite,
            "workloads": [w.name for w in self.workloads],
            "mode": self.config.mode,
        }

    def _precompile(self, source: str) -> None:
        """Fill Triton's kernel cache for `source` in a compile worker (best effort: the
        evaluation compiles whatever this did not)."""
        _, path = self._write(source)
        job = self._job("compile", path)
        job["memory_fraction"] = COMPILE_MEMORY / max(self.config.compile_workers, 1)
        _, why = self.workers.run("compile", job, None)
        if why is not None:
            log.debug("compiling ahead failed: %s", why[1])

    def evaluate(
        self,
        source: str,
        *,
        screen: bool = True,
        compiled: Future[None] | None = None,
        draw: int = 0,
    ) -> Evaluation:
        """Score one candidate source in a worker process (blocking). Its input seeds come
        from its hash; `draw` > 0 picks another set of them."""
        candidate, path = self._write(source)
        if compiled is not None:
            with contextlib.suppress(Exception):
                compiled.result(timeout=STARTUP_TIMEOUT + self.config.compile_timeout)
        base = (int(candidate, 16) + 1_000_003 * draw) % (1 << 30)
        order = self._screen_order(screen)
        job = self._job("evaluate", path)
        job.update(
            workloads=[w.name for w in order[0]],
            seeds={
                w.name: [base + 1009 * i + s for s in self.config.seeds]
                for i, w in enumerate(self.workloads)
            },
            timing_seed=base + 104729,
            timing={
                "warmup": self.config.warmup,
                "reps": self.config.reps,
                "rounds": self.config.rounds,
            },
            screen=order[1],
        )
        checker = Checker(self.task, "cuda" if self.config.mode == "gpu" else "cpu")
        result, why = self.workers.run("evaluate", job, _Judge(self, checker))
        fp = (result or {}).get("fingerprint") or self.fingerprint()
        if result is None:
            status, reason = why
            return failure(candidate, status, reason, fp)
        if "error" in result:
            status, reason = result["error"]
            return failure(candidate, Status(status), reason, fp)
        self._fingerprint = result["fingerprint"]
        rows = self._merge(result["workloads"], checker)
        method = Method(result["method"])
        if method is Method.ESTIMATE:
            rows = self._estimate(source, rows)
        ev = summarize(candidate, rows, method=method, fingerprint=result["fingerprint"])
        if ev.passed and all(r.latency_us for r in rows):
            for r in rows:
                assert r.latency_us is not None
                self._best[r.name] = min(self._best.get(r.name, math.inf), r.latency_us)
        return ev

    def _screen_order(self, screen: bool) -> tuple[list[Workload], int]:
        """The suite in timing order, and how many workloads screen (0: none): every third
        workload first, once a full evaluation has set the best times to compare with."""
        workloads = list(self.workloads)
        first = workloads[::3]
        if not (screen and self.config.screen > 0 and len(workloads) > 3):
            return workloads, 0
        if any(w.name not in self._best for w in first):
            return workloads, 0
        return first + [w for w in workloads if w not in first], len(first)

    def _screened(self, latencies: dict[str, float]) -> tuple[bool, float]:
        """Whether to go on timing, and the candidate's geomean time over the best times."""
        ratio = geomean(latencies[n] / self._best[n] for n in latencies if self._best.get(n))
        ratio = 1.0 if ratio is None else ratio
        return ratio <= self.config.screen, ratio

    def _merge(self, raw: list[dict[str, Any]], checker: Checker) -> list[WorkloadResult]:
        """The worker's rows with the checker's verdicts; rows are in suite order."""
        rows = []
        by_name = {r["name"]: r for r in raw}
        stopped = next((r for r in raw if r["status"] != "passed"), None)
        untimed = (
            "not timed: behind the best on the screening workloads"
            if stopped is None
            else f"not timed: timing stopped at {stopped['name']} ({stopped['status']})"
        )
        for w in self.workloads:
            r = by_name.get(w.name)
            if r is None:
                continue
            v = checker.verdicts.get(w.name)
            r = dict(r)
            if r["status"] == "passed":
                if v is None or v.checks == 0:
                    r.update(status="rejected", reason="no output reached the checker")
                elif v.status != "passed":
                    r.update(status=v.status, reason=v.reason)
                elif self.config.mode == "gpu" and r.get("latency_us") is None:
                    r.setdefault("reason", untimed)
            if v is not None:
                r["max_error"] = v.max_error
            r["status"] = Status(r["status"])
            rows.append(WorkloadResult(**r))
        return rows

    def _estimate(self, source: str, rows: list[WorkloadResult]) -> list[WorkloadResult]:
        """Fill in analytic times for a candidate rendered from a plan (none for other code):
        on the checked workloads themselves, or, where the scored suite is another, as rows
        of their own for its workloads once every checked workload passed."""
        plan = read_plan(source)
        if plan is None or self.task.space is None:
            return rows
        if self.scored is self.workloads:
            return [_with_estimate(r, self._estimated(plan, self._by_name[r.name])) for r in rows]
        if not rows or any(r.status is not Status.PASSED for r in rows):
            return rows
        estimated = [
            _with_estimate(
                WorkloadResult(w.name, Status.PASSED, reason="estimate"), self._estimated(plan, w)
            )
            for w in self.scored
        ]
        return rows + estimated

    def _estimated(self, plan: Plan, w: Workload) -> dict[str, float]:
        est = self.task.estimate(plan, w)
        base = self.task.estimate(None, w)
        floor = self.task.floor(w, H100_CEILINGS)
        return {"estimate_us": est, "speedup": base / est, "time_over_floor": est / floor}

    def _decide(self, message: dict[str, Any], checker: Checker) -> bool:
        """Answer a worker's question: time after the checks? time the rest after screening?"""
        if message["await"] == "checks":
            return checker.all_passed
        if message["await"] == "screen":
            go, ratio = self._screened(message["latencies"])
            if not go:
                log.info("screened out: %.2f× the best times on the screening workloads", ratio)
            return go
        return False


class _Judge:
    """The harness's side of an evaluation: frames to the checker, questions answered."""

    def __init__(self, harness: Harness, checker: Checker) -> None:
        self.harness, self.checker = harness, checker

    def frame(self, header: dict[str, Any], payload: bytearray) -> None:
        workload = self.harness._by_name.get(header.get("workload", ""))
        if workload is not None:
            self.checker.receive(workload, header, payload)

    def question(self, message: dict[str, Any]) -> bool:
        return self.harness._decide(message, self.checker)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _with_estimate(row: WorkloadResult, estimate: dict[str, float]) -> WorkloadResult:
    fields = {f: getattr(row, f) for f in row.__slots__}
    fields.update(estimate)
    return WorkloadResult(**fields)
