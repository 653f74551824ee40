"""Synthetic landscapes with known optima, and a fake scorer over them (for tests).

A landscape is a task whose design space has structural decisions and knobs in
two regimes, and whose true ln(latency) is a sum of effects with one
interaction: a structural choice that is slower on its own but moves the best
value of a knob to a much faster place (a non-monotonic path). Each seed draws
another landscape. The fake scorer reads the plan from a candidate's header and
answers with the landscape's latencies; nothing of it reaches the world model's
priors, which stay the weak defaults.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ksearch.evaluation import Evaluation, Method, Status, WorkloadResult, summarize
from ksearch.harness import content_hash
from ksearch.plan import DesignSpace, Param, ParamKind, Plan, Value, header, read_plan
from ksearch.task import Prior, Workload

REGIMES = ("a", "b")
SPACE = DesignSpace(
    params=(
        Param("layout", ("x", "y", "z"), "x"),
        Param("fuse", ("no", "yes"), "no"),
        Param("k1", (1, 2, 3, 4, 5, 6), 1, ParamKind.KNOB),
        Param("k2", (1, 2, 3, 4, 5), 1, ParamKind.KNOB),
        Param("k3", (1, 2, 4, 8), 1, ParamKind.KNOB),
    ),
    regimes=REGIMES,
)
WORKLOADS = tuple(Workload(f"{r}{i}", {"regime": r}) for r in REGIMES for i in range(2))


@dataclass(frozen=True)
class Landscape:
    """True ln(latency) per regime; `enabler` is the slow-alone layout that unlocks k1."""

    seed: int
    enabler: str = "y"
    k1_best: dict[str, int] = field(default_factory=dict)  # with the default layout
    k1_enabled: dict[str, int] = field(default_factory=dict)  # with the enabler
    k2_best: dict[str, int] = field(default_factory=dict)
    k3_best: dict[str, int] = field(default_factory=dict)
    fuse_gain: dict[str, float] = field(default_factory=dict)
    _optimum: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    @staticmethod
    def draw(seed: int) -> Landscape:
        rng = random.Random(seed)
        return Landscape(
            seed=seed,
            enabler=rng.choice(("y", "z")),
            k1_best={r: rng.choice((1, 2)) for r in REGIMES},
            k1_enabled={r: rng.choice((4, 5)) for r in REGIMES},
            k2_best={r: rng.randint(1, 5) for r in REGIMES},
            k3_best={r: rng.choice((1, 2, 4, 8)) for r in REGIMES},
            fuse_gain={r: rng.choice((-0.12, 0.1)) for r in REGIMES},
        )

    def log_latency(self, s: dict[str, Value], regime: str) -> float:
        enabled = s["layout"] == self.enabler
        t = 0.0
        t += {"x": 0.0, self.enabler: 0.15}.get(str(s["layout"]), 0.08)
        k1_opt = self.k1_enabled[regime] if enabled else self.k1_best[regime]
        depth = 0.1 if enabled else 0.03
        t += depth * abs(int(s["k1"]) - k1_opt) - (0.6 if enabled else 0.2)
        t += 0.05 * abs(int(s["k2"]) - self.k2_best[regime])
        k3 = (1, 2, 4, 8)
        t += 0.05 * abs(k3.index(int(s["k3"])) - k3.index(self.k3_best[regime]))
        t += self.fuse_gain[regime] if s["fuse"] == "yes" else 0.0
        return t

    def optimum(self) -> dict[str, float]:
        """The lowest ln(latency) of each regime, by brute force over the space (once)."""
        if not self._optimum:
            names = [p.name for p in SPACE.params]
            for r in REGIMES:
                self._optimum[r] = min(
                    self.log_latency(dict(zip(names, values, strict=True)), r)
                    for values in itertools.product(*(p.values for p in SPACE.params))
                )
        return self._optimum

    def is_optimal(self, plan: Plan) -> bool:
        opt = self.optimum()
        return all(abs(self.log_latency(plan.table()[r], r) - opt[r]) < 1e-9 for r in REGIMES)


def _noise(plan: Plan, workload: str) -> float:
    """A measurement's deterministic noise: ±1% per (plan, workload)."""
    digest = hashlib.sha256(f"{plan.key}{workload}".encode()).digest()
    return (digest[0] / 255.0 - 0.5) * 0.02


@dataclass
class LandscapeTask:
    """A task over the landscape's design space, with no knowledge of the landscape."""

    name: str = "landscape"
    space: DesignSpace = SPACE
    suites: dict[str, tuple[Workload, ...]] = field(default_factory=lambda: {"smoke": WORKLOADS})

    def regime(self, workload: Workload) -> str:
        return str(workload["regime"])

    def render(self, plan: Plan) -> str:
        return header(plan) + "def run(**inputs):\n    raise RuntimeError('not a kernel')\n"

    def infeasible(self, plan: Plan) -> str | None:
        return None

    def canonical(self, plan: Plan) -> Plan:
        return plan

    def prior(self, parent: Plan, child: Plan, regime: str) -> Prior | None:
        return None


class LandscapeScorer:
    """Answers at once with the landscape's latencies; counts what it was asked."""

    name = "landscape"

    def __init__(self, landscape: Landscape) -> None:
        self.landscape = landscape
        self.calls: list[str] = []

    def submit(self, source: str, *, screen: bool = True) -> Future[Evaluation]:
        plan = read_plan(source)
        assert plan is not None
        self.calls.append(content_hash(source))
        rows = []
        for w in WORKLOADS:
            r = str(w["regime"])
            t = math.exp(self.landscape.log_latency(plan.table()[r], r) + _noise(plan, w.name))
            rows.append(WorkloadResult(w.name, Status.PASSED, latency_us=100 * t, speedup=1 / t))
        future: Future[Evaluation] = Future()
        future.set_result(
            summarize(content_hash(source), rows, method=Method.ESTIMATE, fingerprint={})
        )
        return future

    def fingerprint(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass
