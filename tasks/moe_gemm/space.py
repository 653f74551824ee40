"""moe_gemm design space: structural decisions and tile knobs per token regime, the starting
plan, static feasibility, and the canonical form of a plan's settings.

Knobs ending in 1 belong to the gate/up GEMM, those ending in 2 to the down GEMM; BLOCK_M
is shared because both GEMMs walk the same sorted row blocks.
"""

from __future__ import annotations

from collections.abc import Mapping

from ksearch.plan import DesignSpace, Param, ParamKind, Plan, Row, Value
from tasks.moe_gemm.cost import REGIMES, reads_tail

KNOB = ParamKind.KNOB
#: shared memory a Triton program may use on an H100 (227 KB), less room for the epilogue
SMEM_BYTES = 232448 - 16 * 1024
#: float32 values per thread beyond which a program spills registers
MAX_PER_THREAD = 256

SPACE_PARAMS = (
    Param(
        "dispatch",
        ("padded", "tilemap", "pair"),
        "padded",
        doc="padded: pairs sorted by expert, each expert's run padded to BLOCK_M rows; "
        "tilemap: sorted without padding, row blocks listed in a tile map; "
        "pair: one program per (token, expert) pair, matrix-vector products, no sorting",
    ),
    Param(
        "metadata",
        ("torch", "triton", "parallel"),
        "torch",
        doc="routing metadata (sorted order, row blocks' experts) by about ten torch ops, "
        "by one single-program Triton kernel, or by three Triton kernels over the pairs "
        "(counts, tables, scatter)",
    ),
    Param(
        "epilogue",
        ("fused", "separate"),
        "fused",
        doc="fused: gate and up tiles in one program, SiLU·mul in its epilogue; "
        "separate: the [P, 2I] product written out, then an activation pass",
    ),
    Param(
        "combine",
        ("rows", "reduce", "atomic", "fused"),
        "rows",
        doc="rows: weighted row per pair, summed by torch; reduce: one Triton gather-sum "
        "kernel; atomic: float32 atomic adds per token; fused (pair dispatch): one program "
        "per token sums its k pairs inside the down GEMM",
    ),
    Param(
        "atomic_finish",
        ("torch", "kernels"),
        "torch",
        doc="atomic combine: the float32 sums zeroed and cast to the output by torch (two "
        "more launches), or inside the kernels: the gate/up programs zero them, and the "
        "last program to add into an output tile casts it",
    ),
    Param(
        "swap_ab",
        (False, True),
        False,
        doc="compute (W·Xᵀ)ᵀ so the weights fill the MMA's M side when few rows share an expert",
    ),
    Param(
        "pair_mma",
        (False, True),
        False,
        doc="pair dispatch: matrix-vector products on tensor cores, the vector padded to an "
        "MMA tile, so the weight loads are software-pipelined over num_stages (instead of "
        "multiply-and-sum on CUDA cores)",
    ),
    Param(
        "schedule",
        ("grouped", "persistent"),
        "grouped",
        doc="grouped: one program per tile in GROUP_M order; persistent: PROGRAMS_PER_SM "
        "programs per SM loop over the tiles",
    ),
    Param(
        "weights",
        ("pointers", "descriptors"),
        "pointers",
        doc="weight tiles loaded by pointer arithmetic, or through tensor descriptors (TMA)",
    ),
    Param(
        "early_down",
        (False, True),
        False,
        doc="pair dispatch: the down GEMM launched as a programmatic dependent of the gate/up "
        "GEMM, so its programs start while that one runs and load their first weight tile "
        "before they wait for its output",
    ),
    Param("BLOCK_M", (16, 32, 64, 128), 64, KNOB, "rows (pairs) per row block"),
    Param("BLOCK_N1", (16, 32, 64, 128, 256), 64, KNOB, "gate/up output columns per program"),
    Param("BLOCK_K1", (32, 64, 128, 256, 512), 64, KNOB, "gate/up reduction step over H"),
    Param("num_warps1", (2, 4, 8), 4, KNOB, "warps of the gate/up program"),
    Param("num_stages1", (2, 3, 4, 5), 4, KNOB, "gate/up software pipeline depth"),
    Param("BLOCK_N2", (16, 32, 64, 128, 256), 128, KNOB, "down output columns per program"),
    Param("BLOCK_K2", (32, 64, 128, 256, 512), 64, KNOB, "down reduction step over I"),
    Param("num_warps2", (2, 4, 8), 4, KNOB, "warps of the down program"),
    Param("num_stages2", (2, 3, 4, 5), 4, KNOB, "down software pipeline depth"),
    Param("GROUP_M", (1, 4, 8, 16, 32), 8, KNOB, "row blocks sharing a weight column stripe"),
    Param("SPLIT_K", (1, 2, 4, 8), 1, KNOB, "slices of the down GEMM's reduction (atomic only)"),
    Param("PROGRAMS_PER_SM", (1, 2, 4), 1, KNOB, "occupancy of the persistent grid"),
    Param(
        "TAIL_M",
        (0, 16, 32, 64),
        0,
        KNOB,
        "tile map: pairs beyond BLOCK_M that an expert's last row block may hold, on the "
        "same weight tiles through a second MMA with swapped operands (0: none)",
    ),
    Param(
        "PREFETCH2",
        (0, 4, 8, 16),
        0,
        KNOB,
        "pair dispatch: MB of the routed experts' down weights that the gate/up programs "
        "ask L2 to prefetch, shared evenly among the pairs",
    ),
)

#: what the two regimes from 128 rows per expert up share
_ONE_BLOCK_PER_EXPERT: dict[str, Value] = {
    "dispatch": "tilemap", "metadata": "parallel", "combine": "reduce", "BLOCK_M": 128,
    "TAIL_M": 32, "weights": "descriptors", "num_stages1": 3, "BLOCK_N2": 256,
    "num_warps2": 8, "num_stages2": 4,
}  # fmt: skip

#: what the two decode regimes share
_DECODE: dict[str, Value] = {
    "dispatch": "pair", "pair_mma": True, "combine": "atomic", "SPLIT_K": 2,
    "atomic_finish": "kernels", "BLOCK_N1": 32, "BLOCK_K1": 256, "num_warps1": 2,
    "num_stages1": 3, "num_warps2": 2, "num_stages2": 2,
}  # fmt: skip

#: the starting plan: per regime, the best settings measured on an H100 (earlier searches and
#: side-by-side experiments over the default suite). Decode steps: one program per pair on tensor
#: cores (weight loads pipelined three deep, two down), two warps, 256-deep K steps, float32 atomics
#: over two K slices finished inside the kernels (two launches in all), 8 MB of the down weights
#: prefetched into L2 during the gate/up GEMM; when the step moves under 64 MB of weights, 4 MB,
#: with 128-deep K steps over 64 columns in the down GEMM, which is launched as a programmatic
#: dependent that loads its first weights before it waits; few rows per expert: sorted 16-row blocks
#: with swapped operands (the weights fill the MMA's M side); more: 32-row, then 64-row blocks
#: through a tile map whose last block per expert takes up to 16 more rows, deeper K steps, in plain
#: row-block order (GROUP_M 1) from 32 rows per expert on; many: 128-row blocks taking up to 32
#: more, 128x256 down tiles with TMA weights, and gate/up tiles of 128x64 in four-warp programs two
#: to an SM while the weights bound the time (128 to 192 rows per expert), 128x128 in eight-warp
#: programs once compute does; the k rows of a token summed by a Triton gather-sum unless decoding;
#: the routing metadata by one Triton program while the pairs are few, by three kernels after.
START: dict[str, dict[str, Value]] = {
    "light": {**_DECODE, "BLOCK_N2": 64, "BLOCK_K2": 128, "PREFETCH2": 4, "early_down": True},
    "tiny": {**_DECODE, "BLOCK_N2": 32, "BLOCK_K2": 256, "PREFETCH2": 8},
    "small": {"metadata": "triton", "combine": "reduce", "BLOCK_M": 16, "BLOCK_N1": 64,
              "BLOCK_K1": 128, "BLOCK_N2": 64, "BLOCK_K2": 128, "GROUP_M": 1, "swap_ab": True},
    "medium": {"metadata": "triton", "combine": "reduce", "BLOCK_M": 32, "BLOCK_K1": 128,
               "BLOCK_K2": 128, "num_stages2": 2},
    "large": {"dispatch": "tilemap", "metadata": "parallel", "combine": "reduce",
              "BLOCK_K1": 128, "num_stages2": 3, "TAIL_M": 16, "GROUP_M": 1},
    "ridge": {**_ONE_BLOCK_PER_EXPERT, "BLOCK_N1": 64, "num_warps1": 4, "GROUP_M": 1},
    "huge": {**_ONE_BLOCK_PER_EXPERT, "BLOCK_N1": 128, "num_warps1": 8, "GROUP_M": 4},
}  # fmt: skip

#: settings whose effects interact, so the built-in world model also moves them together:
#: each tile's sizes with the warps that compute it and the stages that feed it, the atomic
#: combine with how it is finished and with the K slices it adds, pair dispatch with its MMA
COUPLES = (
    ("BLOCK_N1", "num_warps1"), ("BLOCK_K1", "num_stages1"), ("BLOCK_N1", "BLOCK_K1"),
    ("BLOCK_N2", "num_warps2"), ("BLOCK_K2", "num_stages2"), ("BLOCK_N2", "BLOCK_K2"),
    ("BLOCK_M", "BLOCK_N1"), ("combine", "atomic_finish"), ("SPLIT_K", "combine"),
    ("dispatch", "pair_mma"), ("dispatch", "combine"),
)  # fmt: skip

SPACE = DesignSpace(
    params=SPACE_PARAMS,
    regimes=tuple(name for name, _, _ in REGIMES),
    start=tuple((r, p, v) for r, row in START.items() for p, v in row.items()),
    couples=COUPLES,
)
DEFAULTS: dict[str, Value] = {p.name: p.default for p in SPACE_PARAMS}

#: settings a pair-dispatch program never reads
_SORTED_ONLY = ("metadata", "swap_ab", "schedule", "BLOCK_M", "GROUP_M", "PROGRAMS_PER_SM")
#: settings only a pair-dispatch program reads
_PAIR_ONLY = ("pair_mma", "PREFETCH2", "early_down")

_CANONICAL: dict[Row, Row] = {}


def canonical_row(row: Row) -> Row:
    """One regime's settings with those that take no effect at their defaults (cached)."""
    out = _CANONICAL.get(row)
    if out is None:
        s = dict(row)
        unused = list(_SORTED_ONLY) if s["dispatch"] == "pair" else list(_PAIR_ONLY)
        if s["schedule"] != "persistent":
            unused.append("PROGRAMS_PER_SM")
        if s["combine"] != "atomic":
            unused.append("atomic_finish")
        if not reads_tail(s):
            unused.append("TAIL_M")
        for name in unused:
            s[name] = DEFAULTS[name]
        out = tuple((p, s[p]) for p, _ in row)
        if out == row:
            out = row  # the same object: callers compare by identity first
        _CANONICAL[row] = out
    return out


def canonical(plan: Plan) -> Plan:
    """`plan` with settings that have no effect reset to their defaults, so plans that
    differ only there render the same code (and are measured once)."""
    plan = SPACE.complete(plan)
    changed = {}
    for r, row in plan.rows().items():
        out = canonical_row(row)
        if out is not row and out != row:
            changed[r] = out
    return plan.with_rows(changed) if changed else plan


def infeasible_settings(regime: str, s: Mapping[str, Value]) -> str | None:
    """Why one regime's settings cannot compile or cannot be right, or None."""
    if s["combine"] == "fused" and s["dispatch"] != "pair":
        return f"{regime}: combine=fused needs dispatch=pair"
    if int(s["SPLIT_K"]) > 1 and s["combine"] != "atomic":
        return f"{regime}: SPLIT_K={s['SPLIT_K']} needs combine=atomic to add the slices"
    tail = reads_tail(s)
    if tail and int(s["TAIL_M"]) >= int(s["BLOCK_M"]):
        return f"{regime}: TAIL_M={s['TAIL_M']} needs BLOCK_M above it, not {s['BLOCK_M']}"
    fused = 2 if s["epilogue"] == "fused" else 1
    n1, k1, w1 = int(s["BLOCK_N1"]), int(s["BLOCK_K1"]), int(s["num_warps1"])
    n2, k2, w2 = int(s["BLOCK_N2"]), int(s["BLOCK_K2"]), int(s["num_warps2"])
    if s["dispatch"] == "pair" and not s["pair_mma"]:
        for gemm, values in (
            ("gate/up", fused * n1 * k1 // (w1 * 32)),
            ("down", n2 * k2 // (w2 * 32)),
        ):
            if values > MAX_PER_THREAD:
                return f"{regime}: the {gemm} weight tile holds {values} values per thread"
        return None
    m = 16 if s["dispatch"] == "pair" else int(s["BLOCK_M"])
    if tail:
        m += int(s["TAIL_M"])  # the tail's rows ride along in every block
    for gemm, smem in (
        ("gate/up", int(s["num_stages1"]) * (m + fused * n1) * k1 * 2),
        ("down", int(s["num_stages2"]) * (m + n2) * k2 * 2),
    ):
        if smem > SMEM_BYTES:
            return f"{regime}: the {gemm} pipeline needs {smem // 1024} KB of shared memory"
    for gemm, acc in (("gate/up", fused * m * n1 // (w1 * 32)), ("down", m * n2 // (w2 * 32))):
        if acc > MAX_PER_THREAD:
            return f"{regime}: the {gemm} accumulators need {acc} registers per thread"
    return None


_INFEASIBLE: dict[tuple[str, Row], str | None] = {}


def infeasible(plan: Plan) -> str | None:
    """The first reason any regime of `plan` cannot work, or None."""
    for regime, row in plan.rows().items():
        key = (regime, row)
        if key not in _INFEASIBLE:
            _INFEASIBLE[key] = infeasible_settings(regime, dict(row))
        if _INFEASIBLE[key]:
            return _INFEASIBLE[key]
    return None
