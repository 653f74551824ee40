"""moe_gemm roofline floor, workload regimes, and the analytic estimate of the baseline."""

from __future__ import annotations

from collections.abc import Mapping

from ksearch.plan import Plan
from ksearch.task import Workload

_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
#: regimes by tokens per expert (T·k/E), upper bounds
REGIMES = (("tiny", 2.0), ("small", 16.0), ("medium", 128.0), ("large", float("inf")))


def tokens_per_expert(w: Workload) -> float:
    return w["T"] * w["k"] / w["E"]


def regime(w: Workload) -> str:
    tpe = tokens_per_expert(w)
    return next(name for name, upper in REGIMES if tpe < upper)


def experts_touched(w: Workload) -> float:
    """Expected experts with at least one token under uniform top-k routing."""
    e, k, t = w["E"], w["k"], w["T"]
    return e * (1.0 - (1.0 - k / e) ** t)


def flops(w: Workload) -> float:
    """Two GEMMs per (token, expert) pair: 2·H·2I and 2·I·H."""
    return 6.0 * w["H"] * w["I"] * w["T"] * w["k"]


def min_bytes(w: Workload) -> float:
    """The weights of the experts touched, the activations in and out, the routing."""
    b = _BYTES[w["dtype"]]
    weights = experts_touched(w) * 3 * w["H"] * w["I"] * b
    return weights + 2 * w["T"] * w["H"] * b + w["T"] * w["k"] * 8


def floor(w: Workload, ceilings: Mapping[str, float]) -> float:
    """Roofline time in µs: the larger of compute and memory time at the given ceilings."""
    return 1e6 * max(flops(w) / ceilings["flops"], min_bytes(w) / ceilings["bytes"])


def estimate(plan: Plan | None, w: Workload) -> float:
    """Analytic H100 time in µs of the torch baseline (`plan=None`): sort, gather, two
    grouped GEMMs at about 60 % of the roofline, the activation and the weighted combine as
    separate passes over the intermediates, and about a dozen launches."""
    from ksearch.task import H100_CEILINGS

    if plan is not None:
        raise ValueError("moe_gemm has no design space to estimate plans from")
    b = _BYTES[w["dtype"]]
    pairs = w["T"] * w["k"]
    glue = pairs * (3 * w["H"] + 3 * 2 * w["I"] + 2 * w["H"]) * b  # gathers, act, combine
    return floor(w, H100_CEILINGS) / 0.6 + 1e6 * glue / H100_CEILINGS["bytes"] + 60.0
