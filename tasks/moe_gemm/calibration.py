"""The baseline's analytic estimate fitted to H100 measurements.

`BASELINE_US` holds the torch grouped-GEMM baseline measured on an H100 (CUDA-graph
replay, L2 flushed, median; ../shared/GPU.md, 2026-11-21) on the 16 headline cells.
The estimate is `a · memory time + b · padded compute time + c · glue time + d µs`
(`cost.baseline_features`): the expert weights and activations at DRAM bandwidth, the FLOPs of
128-row tiles per expert at the MMA ceiling, the gathers, activation and combine that
torch runs around the GEMMs, and the launches. `fit` finds the constants by least
squares on the relative error; `cost.BASELINE` holds the ones in use, and
`python -m tasks.moe_gemm.calibration` prints a refit with its leave-one-out error.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ksearch.task import Workload
from tasks.moe_gemm import cost, suites

#: µs per headline cell, by (E, k, H, I) and T
BASELINE_US: dict[tuple[int, int, int, int], dict[int, float]] = {
    (8, 2, 4096, 7168): {1: 216, 16: 608, 256: 657, 4096: 3062},
    (128, 8, 2048, 384): {1: 85, 16: 231, 256: 384, 4096: 1599},
    (256, 8, 7168, 512): {1: 148, 16: 956, 256: 2340, 4096: 6498},
    (128, 4, 2880, 2880): {1: 160, 16: 1105, 256: 2521, 4096: 4469},
}


def measured() -> list[tuple[Workload, float]]:
    """The default suite's workloads that were measured, with their baseline µs."""
    out = []
    for w in suites.DEFAULT:
        cell = BASELINE_US.get((w["E"], w["k"], w["H"], w["I"]), {})
        if w["T"] in cell:
            out.append((w, float(cell[w["T"]])))
    return out


def fit(rows: list[tuple[Workload, float]]) -> tuple[float, ...]:
    """Constants, none negative, minimizing the squared relative error over `rows`: the
    best least-squares fit over the subsets of terms whose fit has no negative one."""
    x = np.array([cost.baseline_features(w) for w, _ in rows])
    y = np.array([t for _, t in rows])
    a, ones = x / y[:, None], np.ones(len(y))
    best: tuple[float, np.ndarray] | None = None
    for used in itertools.product((False, True), repeat=x.shape[1]):
        cols = [i for i, u in enumerate(used) if u]
        if not cols:
            continue
        sub, *_ = np.linalg.lstsq(a[:, cols], ones, rcond=None)
        if (sub < 0).any():
            continue
        coef = np.zeros(x.shape[1])
        coef[cols] = sub
        residual = float(np.sum((a @ coef - ones) ** 2))
        if best is None or residual < best[0]:
            best = (residual, coef)
    assert best is not None
    return tuple(float(c) for c in best[1])


def errors(coef: tuple[float, ...], rows: list[tuple[Workload, float]]) -> list[float]:
    """|ln(estimate / measured)| per row."""
    return [abs(math.log(float(np.dot(cost.baseline_features(w), coef)) / t)) for w, t in rows]


def leave_one_out(rows: list[tuple[Workload, float]]) -> list[float]:
    """Each row's error under constants fitted to the others."""
    return [errors(fit(rows[:i] + rows[i + 1 :]), [rows[i]])[0] for i in range(len(rows))]


if __name__ == "__main__":
    rows = measured()
    coef = fit(rows)
    held = leave_one_out(rows)
    print("fitted", ", ".join(f"{c:.4g}" for c in coef), "in use", cost.BASELINE)
    print(f"in use: median |error| {float(np.median(errors(cost.BASELINE, rows))):.1%}")
    print(f"leave-one-out: median {float(np.median(held)):.1%}, worst {max(held):.1%}")
