"""rmsnorm design space, static feasibility, and the priors of the built-in world model."""

from __future__ import annotations

import math

from ksearch.plan import DesignSpace, Param, ParamKind, Plan, Value
from ksearch.task import Prior

#: Rows of at least this many elements are the `long` regime.
LONG_ROW = 2048
#: Largest fp32 tile a program may hold in registers (ROWS x BLOCK elements) before it spills.
MAX_TILE = 32768

SPACE = DesignSpace(
    params=(
        Param(
            "passes",
            ("two", "one"),
            "two",
            doc="one: the whole row in registers, read once; two: chunks of BLOCK_N, read twice",
        ),
        Param(
            "grid",
            ("rows", "persistent"),
            "rows",
            doc="rows: one program per ROWS rows; persistent: PROGRAMS_PER_SM programs per SM loop",
        ),
        Param(
            "weight",
            ("per_block", "hoisted"),
            "per_block",
            doc="hoisted: a persistent one-pass program loads the weight once",
        ),
        Param("ROWS", (1, 2, 4, 8, 16), 1, ParamKind.KNOB, "rows per program"),
        Param(
            "BLOCK_N",
            (256, 512, 1024, 2048, 4096),
            512,
            ParamKind.KNOB,
            "chunk length of the two-pass loop",
        ),
        Param("num_warps", (1, 2, 4, 8, 16), 4, ParamKind.KNOB, "warps per program"),
        Param("PROGRAMS_PER_SM", (1, 2, 4, 8), 2, ParamKind.KNOB, "persistent grid occupancy"),
    ),
    regimes=("short", "long"),
)


def next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def tile(settings: dict[str, Value], n: int) -> int:
    """Elements of x one program holds at once for rows of length n."""
    block = next_pow2(n) if settings["passes"] == "one" else int(settings["BLOCK_N"])
    return int(settings["ROWS"]) * block


def infeasible(plan: Plan, max_n: dict[str, int]) -> str | None:
    """Why a plan cannot run on every workload, given each regime's longest row."""
    for regime, settings in plan.table().items():
        if settings["weight"] == "hoisted" and (
            settings["passes"] != "one" or settings["grid"] != "persistent"
        ):
            return f"{regime}: weight=hoisted needs passes=one and grid=persistent"
        size = tile(settings, max_n.get(regime, 1))
        if size > MAX_TILE:
            return f"{regime}: tile of {size} elements exceeds the register budget {MAX_TILE}"
    return None


# Heuristics of a kernel engineer, as (mean, std) of the change in ln(latency) of a move
# in the direction listed; the reverse move gets the negated mean.
_HEURISTICS: dict[tuple[str, Value, Value, str], tuple[float, float]] = {
    ("passes", "two", "one", "short"): (-0.15, 0.2),
    ("passes", "two", "one", "long"): (-0.10, 0.2),
    ("grid", "rows", "persistent", "short"): (-0.05, 0.2),
    ("grid", "rows", "persistent", "long"): (0.0, 0.2),
    ("weight", "per_block", "hoisted", "short"): (-0.02, 0.1),
    ("weight", "per_block", "hoisted", "long"): (-0.01, 0.1),
}
# Knob moves upward: more rows per program helps short rows; more warps helps long ones.
_UPWARD: dict[tuple[str, str], tuple[float, float]] = {
    ("ROWS", "short"): (-0.05, 0.15),
    ("ROWS", "long"): (0.02, 0.15),
    ("num_warps", "short"): (0.02, 0.15),
    ("num_warps", "long"): (-0.05, 0.15),
    ("BLOCK_N", "short"): (-0.03, 0.15),
    ("BLOCK_N", "long"): (-0.03, 0.15),
    ("PROGRAMS_PER_SM", "short"): (-0.02, 0.1),
    ("PROGRAMS_PER_SM", "long"): (-0.02, 0.1),
}


def prior(parent: Plan, child: Plan, regime: str) -> Prior | None:
    """The sum of the heuristics of the settings `child` changes in `regime`, or None if
    there is none for any of them."""
    known = [
        h
        for (param, old), (_, new) in zip(parent.row(regime), child.row(regime), strict=True)
        if old != new and (h := move_prior(param, old, new, regime)) is not None
    ]
    if not known:
        return None
    return Prior(sum(h.mean for h in known), math.sqrt(sum(h.std**2 for h in known)))


def move_prior(param: str, old: Value, new: Value, regime: str) -> Prior | None:
    """The heuristic for setting `param` from `old` to `new` in `regime`, if there is one."""
    if (param, old, new, regime) in _HEURISTICS:
        mean, std = _HEURISTICS[(param, old, new, regime)]
        return Prior(mean, std)
    if (param, new, old, regime) in _HEURISTICS:
        mean, std = _HEURISTICS[(param, new, old, regime)]
        return Prior(-mean, std)
    if (param, regime) in _UPWARD:
        values = SPACE.param(param).values
        mean, std = _UPWARD[(param, regime)]
        steps = values.index(new) - values.index(old)
        return Prior(mean * steps, std)
    return None
