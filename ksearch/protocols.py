"""The world outside the search core, injected as protocols: world models and scorers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from ksearch.evaluation import Evaluation, Status
from ksearch.mcts import Proposal
from ksearch.plan import Action, Plan


class WorldModelError(RuntimeError):
    """A world model cannot go on (an LLM endpoint that is down, a spent budget); the
    message says what to fix. The search stops with it and can be resumed."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """A measured child next to its parent and to the prediction made for it.

    Latencies are per workload name, in µs (measured or estimated).
    """

    parent_plan: Plan
    action: Action
    status: Status
    predicted_mean: float
    predicted_std: float
    parent_latency: Mapping[str, float]
    child_latency: Mapping[str, float]

    def log_speedup(self) -> float | None:
        """Mean ln(t_parent / t_child) over the workloads both were timed on, or None."""
        logs = [
            math.log(t / self.child_latency[w])
            for w, t in self.parent_latency.items()
            if t > 0 and self.child_latency.get(w)
        ]
        return sum(logs) / len(logs) if logs else None


class WorldModel(Protocol):
    """Proposes child plans with predictions, writes them as code, and learns from outcomes."""

    def root(self) -> Plan:
        """The plan a search starts from."""
        ...

    def initial_beliefs(self) -> Any: ...

    def propose(self, plan: Plan, beliefs: Any) -> list[Proposal]:
        """Every child plan of `plan`; infeasible ones carry a reason. The caller does not
        change the list (a world model may hand out the same one again)."""
        ...

    def predict(self, plan: Plan, action: Action, beliefs: Any) -> tuple[float, float]:
        """(mean, std) of ln(t_parent / t_child) for `action` applied to `plan`."""
        ...

    def instantiate(self, plan: Plan, parent_source: str | None) -> str: ...

    def repair(self, plan: Plan, source: str, evaluation: Evaluation) -> str | None: ...

    def revise(self, beliefs: Any, evidence: Evidence) -> Any: ...

    def beliefs_json(self, beliefs: Any) -> str: ...


class Scorer(Protocol):
    """Scores candidate sources; `submit` may run several at once."""

    name: str

    def submit(self, source: str, *, screen: bool = True) -> Future[Evaluation]:
        """Score `source`; `screen=False` asks for every workload to be measured."""
        ...

    def fingerprint(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
