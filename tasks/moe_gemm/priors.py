"""Priors of the built-in world model for moe_gemm, from each regime's roofline model.

The prior of a change in a regime is what the analytic model (`cost.estimate_row`)
predicts it does to the default suite's workloads of that regime, from the plan being
changed to the exact plan that will render: the mean of ln(t_after / t_before), with a
spread that grows with the size of the claim, since the model ranks plans but does not
measure them.
"""

from __future__ import annotations

import math
from functools import cache

from ksearch.plan import Plan, Row
from ksearch.task import Prior, Workload
from tasks.moe_gemm import cost, suites

#: spread of a prior whose model says "no effect", and its growth with the predicted effect
BASE_STD = 0.1
STD_PER_EFFECT = 0.5

_TIMES: dict[tuple[str, Row], float] = {}


@cache
def _workloads(regime: str) -> tuple[Workload, ...]:
    return tuple(w for w in suites.DEFAULT if cost.regime(w) == regime)


def _log_time(regime: str, row: Row) -> float:
    """Mean ln(estimate) of a regime's settings over the regime's workloads (cached)."""
    key = (regime, row)
    if key not in _TIMES:
        s = dict(row)
        workloads = _workloads(regime)
        _TIMES[key] = sum(math.log(cost.estimate_row(s, w)) for w in workloads) / len(workloads)
    return _TIMES[key]


def prior(parent: Plan, child: Plan, regime: str) -> Prior | None:
    """Predicted change in ln(latency) from `parent` to `child` in `regime`."""
    if not _workloads(regime):
        return None
    effect = _log_time(regime, child.row(regime)) - _log_time(regime, parent.row(regime))
    return Prior(effect, BASE_STD + STD_PER_EFFECT * abs(effect))
