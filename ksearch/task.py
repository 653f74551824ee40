"""The task contract: what a kernel task gives the engine, and how tasks are found."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ksearch.plan import DesignSpace, Plan


@dataclass(frozen=True, slots=True)
class Workload:
    """One input configuration of a task, e.g. {"M": 37, "N": 1000, "dtype": "float16"}."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.params[key]


@dataclass(frozen=True, slots=True)
class Prior:
    """Belief about an action's effect on ln(latency): negative mean means faster."""

    mean: float
    std: float


class Task(Protocol):
    """What the engine, the workers and the built-in world model need from a task."""

    name: str
    suites: Mapping[str, tuple[Workload, ...]]
    baseline: Path
    spec: Path
    space: DesignSpace | None
    #: a time under `floor / impossible_margin` is rejected as impossible
    impossible_margin: float

    def make_inputs(self, workload: Workload, seed: int, device: str) -> dict[str, Any]: ...

    def reference(self, **inputs: Any) -> Any: ...

    def tolerance(self, dtype: Any) -> tuple[float, float]:
        """(atol, rtol) for outputs of `dtype`."""
        ...

    def floor(
        self,
        workload: Workload,
        ceilings: Mapping[str, float],
        inputs: Mapping[str, Any] | None = None,
    ) -> float:
        """Roofline time in µs from FLOPs and minimum bytes at the given ceilings, for the
        `inputs` timed where given (when the minimum depends on their values, as the experts
        a routing touches do), else for the workload's expected inputs."""
        ...

    def regime(self, workload: Workload) -> str: ...

    def render(self, plan: Plan) -> str:
        """A self-contained candidate source whose first line holds the plan."""
        ...

    def estimate(self, plan: Plan | None, workload: Workload) -> float:
        """Analytic time estimate in µs on an H100; `plan=None` is the baseline."""
        ...

    def infeasible(self, plan: Plan) -> str | None:
        """Why `plan` cannot work on this task's workloads, or None if it can."""
        ...

    def canonical(self, plan: Plan) -> Plan:
        """`plan` with the settings that have no effect reset, so that plans which render the
        same code are equal (`plan` itself where every setting always has an effect)."""
        ...

    def prior(self, parent: Plan, child: Plan, regime: str) -> Prior | None:
        """The task's belief about ln(t_child / t_parent) on the workloads of `regime`, for
        two canonical plans that differ there, or None if it knows nothing of the change."""
        ...


#: Ceilings used by analytic estimates and on CPU: an H100 SXM (../GPU.md), bf16.
H100_CEILINGS: dict[str, float] = {"flops": 770e12, "bytes": 3.0e12}


def available() -> list[str]:
    """Names of the tasks under tasks/."""
    import tasks

    return sorted(m.name for m in pkgutil.iter_modules(tasks.__path__) if m.ispkg)


def load_task(name: str) -> Task:
    """Import tasks.<name> and return its TASK object, with a clear error if there is none."""
    names = available()
    if name not in names:
        raise UnknownTaskError(f"unknown task {name!r}; available tasks: {', '.join(names)}")
    module = importlib.import_module(f"tasks.{name}")
    task: Task = module.TASK
    return task


class UnknownTaskError(LookupError):
    pass
