"""Evaluation results: statuses, per-workload rows, and the score of a candidate."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PASSED = "passed"
    INCORRECT = "incorrect"
    RUNTIME_ERROR = "runtime_error"
    COMPILE_ERROR = "compile_error"
    TIMEOUT = "timeout"
    CRASHED = "crashed"
    REJECTED = "rejected"

    @property
    def severity(self) -> int:
        """Higher is worse: rejected > crashed > timeout > compile > runtime > incorrect."""
        return list(Status).index(self)


class Method(StrEnum):
    CUDA_GRAPH = "cuda_graph"
    CUDA_EVENTS = "cuda_events"
    ESTIMATE = "estimate"


@dataclass(frozen=True, slots=True)
class WorkloadResult:
    """One workload of one candidate. Times in µs; `speedup` is × over the baseline."""

    name: str
    status: Status
    reason: str | None = None
    latency_us: float | None = None
    spread: float | None = None
    speedup: float | None = None
    time_over_floor: float | None = None
    estimate_us: float | None = None
    max_error: float | None = None
    error: str | None = None
    baseline_us: float | None = None
    method: str | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of scoring one candidate on one workload suite."""

    status: Status
    candidate: str
    method: Method | None
    workloads: tuple[WorkloadResult, ...] = ()
    reason: str | None = None
    score: float | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED

    @property
    def log_score(self) -> float | None:
        """ln of the geometric-mean speedup over the baseline, or None."""
        return None if self.score is None else math.log(self.score)

    def latencies(self) -> dict[str, float]:
        """Per-workload time in µs, measured or estimated, for workloads that have one."""
        out = {}
        for w in self.workloads:
            t = w.latency_us if w.latency_us is not None else w.estimate_us
            if t is not None and t > 0:
                out[w.name] = t
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        d["method"] = None if self.method is None else self.method.value
        d["workloads"] = [dict(asdict(w), status=w.status.value) for w in self.workloads]
        keys = ("status", "reason", "candidate", "method", "score", "fingerprint", "workloads")
        return {k: d[k] for k in keys}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Evaluation:
        rows = tuple(
            WorkloadResult(**dict(w, status=Status(w["status"]))) for w in d.get("workloads", ())
        )
        return Evaluation(
            status=Status(d["status"]),
            candidate=d["candidate"],
            method=None if d.get("method") is None else Method(d["method"]),
            workloads=rows,
            reason=d.get("reason"),
            score=d.get("score"),
            fingerprint=d.get("fingerprint") or {},
        )


def geomean(values: Iterable[float | None]) -> float | None:
    """Geometric mean of the positive values, or None if there are none."""
    logs = [math.log(v) for v in values if v is not None and v > 0]
    return math.exp(sum(logs) / len(logs)) if logs else None


def summarize(
    candidate: str,
    rows: list[WorkloadResult],
    *,
    method: Method | None,
    fingerprint: dict[str, Any],
) -> Evaluation:
    """Combine per-workload rows: the worst status wins; score is the geomean speedup.

    The score exists only when every workload passed; it is taken over the workloads that
    have a speedup (all of them, unless timing stopped after screening).
    """
    if not rows:
        return Evaluation(Status.RUNTIME_ERROR, candidate, method, (), "no workloads", None)
    worst = max(rows, key=lambda w: w.status.severity)
    reason = None if worst.status is Status.PASSED else f"{worst.name}: {worst.reason}"
    score = None
    speedups = [w.speedup for w in rows if w.speedup is not None and w.speedup > 0]
    if worst.status is Status.PASSED and speedups:
        score = geomean(speedups)
    return Evaluation(worst.status, candidate, method, tuple(rows), reason, score, fingerprint)


def failure(candidate: str, status: Status, reason: str, fingerprint: dict[str, Any]) -> Evaluation:
    """An evaluation that ended before any workload could be scored."""
    return Evaluation(status, candidate, None, (), reason, None, fingerprint)
