"""Priors of the built-in world model for moe_gemm, from each regime's roofline model.

The prior of an action in a regime is what the analytic model (`cost.estimate`) predicts
it does to the default suite's workloads of that regime, starting from the starting plan:
the mean of ln(t_after / t_before), with a spread that grows with the size of the claim,
since the model ranks plans but does not measure them.
"""

from __future__ import annotations

import math
from functools import cache

from ksearch.plan import Value
from ksearch.task import Prior
from tasks.moe_gemm import cost, suites
from tasks.moe_gemm.space import SPACE, canonical

#: spread of a prior whose model says "no effect", and its growth with the predicted effect
BASE_STD = 0.1
STD_PER_EFFECT = 0.5


@cache
def prior(param: str, old: Value, new: Value, regime: str) -> Prior | None:
    """Predicted change in ln(latency) when `param` goes from `old` to `new` in `regime`."""
    workloads = [w for w in suites.DEFAULT if cost.regime(w) == regime]
    if not workloads or param not in {p.name for p in SPACE.params}:
        return None
    root = SPACE.root()
    before = canonical(root.with_value(param, old, (regime,)))
    after = canonical(root.with_value(param, new, (regime,)))
    effect = sum(
        math.log(cost.estimate(after, w) / cost.estimate(before, w)) for w in workloads
    ) / len(workloads)
    return Prior(effect, BASE_STD + STD_PER_EFFECT * abs(effect))
