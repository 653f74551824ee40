"""moe_gemm roofline floor, workload regimes, and the analytic estimate of the baseline."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache

from ksearch.plan import Plan, Value
from ksearch.task import H100_CEILINGS, Workload

_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
#: expert popularity ∝ rank^-ZIPF_EXPONENT in skewed routing (suites.make_inputs)
ZIPF_EXPONENT = 1.2
#: regimes by tokens per expert (T·k/E) and by the expert weights the pairs move (each pair's
#: experts' bytes, as if no two pairs shared one), upper bounds: decode steps light enough that
#: a few microseconds of launch and ramp per kernel weigh as much as their bytes (overlapping
#: the two GEMMs pays), other decode steps (every pair its own expert), a few rows per expert,
#: row blocks of 16-64, memory to compute bound, one full 128-row block per expert still below
#: an H100's ridge point (about 200 FLOP per weight byte at its power-capped matmul rate),
#: compute bound
INF = float("inf")
REGIMES = (
    ("light", 0.5, 64 * 2**20),
    ("tiny", 0.5, INF),
    ("small", 4.0, INF),
    ("medium", 32.0, INF),
    ("large", 128.0, INF),
    ("ridge", 192.0, INF),
    ("huge", INF, INF),
)


def tokens_per_expert(w: Workload) -> float:
    return w["T"] * w["k"] / w["E"]


def pair_bytes(w: Workload) -> float:
    """The expert weights the T·k pairs would read if no two shared an expert."""
    return w["T"] * w["k"] * 3 * w["H"] * w["I"] * _BYTES[w["dtype"]]


def regime(w: Workload) -> str:
    tpe, moved = tokens_per_expert(w), pair_bytes(w)
    return next(name for name, upper, most in REGIMES if tpe < upper and moved < most)


def experts_touched(w: Workload) -> float:
    """Expected experts with at least one of the T tokens, from the chance of each expert
    to be in a token's top k (k/E each under uniform routing)."""
    return _touched(w["E"], w["k"], w.params.get("routing", "uniform"), w["T"])


@cache
def _touched(e: int, k: int, routing: str, t: int) -> float:
    return sum(1.0 - (1.0 - p) ** t for p in expert_chances(e, k, routing))


@cache
def expert_chances(e: int, k: int, routing: str) -> tuple[float, ...]:
    """Each expert's chance to be among a token's top k: k/E under uniform routing; under
    Zipf routing, estimated from 4000 tokens drawn as `suites.make_inputs` draws them."""
    if routing == "uniform":
        return (k / e,) * e
    import numpy as np

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4000, e)) - ZIPF_EXPONENT * np.log(np.arange(1, e + 1))
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return tuple(float(c) for c in np.bincount(top.ravel(), minlength=e) / logits.shape[0])


def flops(w: Workload) -> float:
    """Two GEMMs per (token, expert) pair: 2·H·2I and 2·I·H."""
    return 6.0 * w["H"] * w["I"] * w["T"] * w["k"]


def min_bytes(w: Workload, touched: float | None = None) -> float:
    """The weights of the experts touched (`touched` of them, else the expected number),
    the activations in and out, the routing."""
    b = _BYTES[w["dtype"]]
    if touched is None:
        touched = experts_touched(w)
    weights = touched * 3 * w["H"] * w["I"] * b
    return weights + 2 * w["T"] * w["H"] * b + w["T"] * w["k"] * 8


def floor(w: Workload, ceilings: Mapping[str, float], touched: float | None = None) -> float:
    """Roofline time in µs: the larger of compute and memory time at the given ceilings,
    with `touched` experts routed to (else the expected number)."""
    return 1e6 * max(flops(w) / ceilings["flops"], min_bytes(w, touched) / ceilings["bytes"])


SMS = 132
#: time of one kernel or torch op in a CUDA graph with nothing to do, µs
LAUNCH_US = 4.0
#: bytes in flight per SM for full DRAM bandwidth (Little's law: 3 TB/s × ~1.5 µs / 132)
INFLIGHT_FULL = 32 * 1024
#: fraction of the bf16 MMA ceiling a well-shaped Triton tile reaches
MMA_EFFICIENCY = 0.78
#: CUDA-core float32 FMA throughput (FLOP/s) of matrix-vector programs
FMA_FLOPS = 50e12
#: torch ops that build the routing metadata (padded, tile map)
TORCH_METADATA_OPS = {"padded": 12, "tilemap": 10}


def reads_tail(s: Mapping[str, Value]) -> bool:
    """Whether a regime's settings run TAIL_M: a tile map with unswapped operands."""
    return s["dispatch"] == "tilemap" and not s["swap_ab"]


def estimate(plan: Plan | None, w: Workload) -> float:
    """Analytic H100 time in µs of `plan` (None: the torch baseline) on `w`.

    A small model of the hardware: launches, bytes moved against DRAM bandwidth scaled by
    the programs in flight and the bytes each keeps in flight, FLOPs against the MMA
    ceiling scaled by the tile's shape (wgmma wants 64 rows; swapping operands gives it the
    weights' rows), rows wasted by padding, weights re-read by row blocks, atomics,
    registers spilled. It ranks plans the way the hardware tends to; it is never a
    measurement.
    """
    if plan is not None:
        return estimate_row(dict(plan.row(regime(w))), w)
    return sum(c * f for c, f in zip(BASELINE, baseline_features(w), strict=True))


#: the baseline's constants: weights of memory, padded compute and glue time, and µs of
#: launches, fitted to the baseline measured on an H100 (tasks/moe_gemm/calibration.py)
BASELINE = (0.9038, 0.476, 4.722, 74.95)


def baseline_features(w: Workload) -> tuple[float, float, float, float]:
    """The torch baseline's time terms in µs at the H100's ceilings: the minimum bytes,
    the FLOPs of whole 128-row tiles per expert touched, the bytes of its gathers,
    activation and combine; and 1 for its launches."""
    b = _BYTES[w["dtype"]]
    pairs = w["T"] * w["k"]
    touched = max(experts_touched(w), 1.0)
    rows = touched * 128 * max(1, math.ceil(pairs / touched / 128))
    glue = pairs * (3 * w["H"] + 3 * 2 * w["I"] + 2 * w["H"]) * b
    return (
        1e6 * min_bytes(w) / H100_CEILINGS["bytes"],
        1e6 * 6 * w["H"] * w["I"] * rows / H100_CEILINGS["flops"],
        1e6 * glue / H100_CEILINGS["bytes"],
        1.0,
    )


def estimate_row(s: Mapping[str, Value], w: Workload) -> float:
    """`estimate` of the settings `s` of the workload's regime."""
    b = _BYTES[w["dtype"]]
    bw, peak = H100_CEILINGS["bytes"], H100_CEILINGS["flops"]
    t, k, h, i = w["T"], w["k"], w["H"], w["I"]
    p = t * k
    touched = max(experts_touched(w), 1.0)
    fused = s["epilogue"] == "fused"
    width = i if fused else 2 * i
    total = 0.0

    def gemm(rows: float, n: int, kdim: int, weight_bytes: float, other_bytes: float,
             programs: float, tile_n: int, tile_k: int, warps: int, stages: int,
             mma: float) -> float:  # fmt: skip
        active = min(programs, SMS)
        per_sm = max(1.0, min(programs / SMS, 4.0))
        inflight = per_sm * stages * tile_n * tile_k * b
        bw_eff = bw * (active / SMS) ** 0.7 * min(1.0, inflight / INFLIGHT_FULL) ** 0.5
        t_mem = (weight_bytes + other_bytes) / bw_eff
        t_cmp = 2.0 * rows * n * kdim / (peak * mma * active / SMS)
        return 1e6 * max(t_mem, t_cmp) + LAUNCH_US

    n1, k1, w1, s1 = (int(s[x]) for x in ("BLOCK_N1", "BLOCK_K1", "num_warps1", "num_stages1"))
    n2, k2, w2, s2 = (int(s[x]) for x in ("BLOCK_N2", "BLOCK_K2", "num_warps2", "num_stages2"))
    split = int(s["SPLIT_K"])
    w1_bytes, w2_bytes = 2 * i * h * b, h * i * b
    if s["dispatch"] == "pair":
        dup = 1.0 + 0.3 * max(p / touched - 1.0, 0.0)  # an expert's weights re-read per pair
        # weight tiles through shared memory on tensor cores, or in registers (which spill)
        if s["pair_mma"]:
            spill1, math_rate = 1.0, 0.25
        else:
            spill1 = 1.5 if (2 if fused else 1) * n1 * k1 / (w1 * 32) > 128 else 1.0
            math_rate = FMA_FLOPS / peak
        # down weights prefetched into L2 during the gate/up GEMM move between the two
        early = min(int(s["PREFETCH2"]) * 2**20, touched * w2_bytes * dup)
        total += spill1 * gemm(p, 2 * i, h, touched * w1_bytes * dup + early, p * width * b,
                               p * -(-width // n1), n1, k1, w1, s1, math_rate)  # fmt: skip
        rows = t if s["combine"] == "fused" else p
        total += gemm(p, h, i, touched * w2_bytes * dup - early, p * i * b,
                      rows * -(-h // n2) * split, n2, k2, w2, s2, math_rate)  # fmt: skip
    else:
        m = int(s["BLOCK_M"])
        # an expert's last block absorbs up to TAIL_M more rows (a tile map, unswapped)
        tail = int(s["TAIL_M"]) if reads_tail(s) else 0
        blocks_e = max(1.0, -(-(p / touched - tail) // m))
        rows = touched * (blocks_e * m + tail / 2)
        reread = 1.0 + (blocks_e - 1.0) * (0.05 if int(s["GROUP_M"]) >= blocks_e else 0.25)
        swap = bool(s["swap_ab"])
        gain = 1.05 if s["weights"] == "descriptors" else 1.0
        gain *= 1.03 if s["schedule"] == "persistent" else 1.0

        def mma(n: int, kk: int, warps: int, stages: int, accs: int) -> float:
            rows_eff = min(1.0, (n if swap else m) / 64) * (0.9 if swap else 1.0)
            shape = min(1.0, (m * n / (128 * 128)) ** 0.25) * min(1.0, (kk / 64) ** 0.25)
            pipe = min(1.0, 0.7 + 0.1 * stages)
            regs = accs * m * n / (warps * 32)
            return MMA_EFFICIENCY * gain * rows_eff * shape * pipe * (0.5 if regs > 128 else 1.0)

        def programs(n: int, tile: int, n_split: int = 1) -> float:
            tiles = touched * blocks_e * -(-n // tile) * n_split
            if s["schedule"] == "persistent":
                return min(tiles, SMS * int(s["PROGRAMS_PER_SM"]))
            return tiles

        total += {
            "triton": LAUNCH_US + 2.5e-3 * p,  # one program walks every pair twice
            "parallel": 4 * LAUNCH_US + 1e6 * p * 16 / bw,  # three kernels and a memset
            "torch": LAUNCH_US * TORCH_METADATA_OPS[str(s["dispatch"])] + 2e-3 * p,
        }[str(s["metadata"])]
        total += gemm(rows, 2 * i, h, touched * w1_bytes * reread, p * (h + width) * b,
                      programs(width, n1), n1, k1, w1, s1,
                      mma(n1, k1, w1, s1, 2 if fused else 1))  # fmt: skip
        total += gemm(rows, h, i, touched * w2_bytes * reread, p * i * b,
                      programs(h, n2, split), n2, k2, w2, s2, mma(n2, k2, w2, s2, 1))  # fmt: skip
    if not fused:
        total += LAUNCH_US + 1e6 * p * 3 * i * b / bw
    out = t * h
    total += {
        "rows": 2 * LAUNCH_US + 1e6 * (p * h * b + out * (8 + b)) / bw,
        "reduce": LAUNCH_US + 1e6 * (p * h * b + out * b) / bw,
        "atomic": (0 if s["atomic_finish"] == "kernels" else 2 * LAUNCH_US)
        + 1e6 * (p * h * 4 * split * 2 + out * (8 + b)) / bw,
        "fused": 0.0,
    }[str(s["combine"])]
    if s["dispatch"] != "pair" and s["combine"] != "atomic":
        total += 1e6 * p * h * b / bw  # rows written per pair
    return total
