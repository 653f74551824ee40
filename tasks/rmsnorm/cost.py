"""rmsnorm roofline floor and an analytic H100 time estimate for plans and the baseline.

The estimate is a small model of a memory-bound kernel on an H100 SXM: it
counts the bytes a plan moves (two passes read x twice, the second read
partly served by L2), the programs it launches against 132 SMs (waves, idle
SMs), the bytes each SM keeps in flight (Little's law: about 16 KB per SM
hides DRAM latency at full bandwidth), and register spills of large tiles.
It ranks plans the way the hardware tends to; it is never a measurement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ksearch.plan import Plan
from ksearch.task import H100_CEILINGS, Workload
from tasks.rmsnorm.space import next_pow2

SMS = 132
LAUNCH_US = 2.5
#: bytes in flight per SM needed to reach full DRAM bandwidth
INFLIGHT_FULL = 16 * 1024
MAX_WARPS_PER_SM = 64
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


def floor(workload: Workload, ceilings: Mapping[str, float]) -> float:
    """Roofline time in µs: read x and weight once, write y once; 4 FLOPs per element."""
    m, n, b = workload["M"], workload["N"], DTYPE_BYTES[workload["dtype"]]
    bytes_moved = (2 * m * n + n) * b
    flops = 4 * m * n
    return 1e6 * max(bytes_moved / ceilings["bytes"], flops / ceilings["flops"])


def estimate(plan: Plan | None, workload: Workload, regime: str) -> float:
    """Estimated H100 time in µs of `plan` (None: the torch baseline) on `workload`."""
    m, n, b = workload["M"], workload["N"], DTYPE_BYTES[workload["dtype"]]
    bw = H100_CEILINGS["bytes"]
    if plan is None:
        # Eager torch: float cast, pow, mean, add+rsqrt, two multiplies, cast back; each op
        # reads and writes fp32 copies of x.
        fp32 = 4 * m * n
        moved = m * n * b + 9 * fp32 + m * n * b
        return 6 * LAUNCH_US + 1e6 * moved / (0.85 * bw)

    s = plan.table()[regime]
    rows, warps = int(s["ROWS"]), int(s["num_warps"])
    one_pass = s["passes"] == "one"
    block = next_pow2(n) if one_pass else int(s["BLOCK_N"])
    blocks = math.ceil(m / rows)
    resident = max(1, min(MAX_WARPS_PER_SM // warps, 32))
    if s["grid"] == "persistent":
        programs = min(blocks, SMS * int(s["PROGRAMS_PER_SM"]))
        resident = min(resident, int(s["PROGRAMS_PER_SM"]))
    else:
        programs = blocks

    # Bytes: x read once or twice (a second pass hits L2 while the rows in flight fit in it),
    # y written once, the weight read per program or, hoisted, once per persistent program.
    x_bytes = m * n * b
    reads = 1.0
    if not one_pass:
        in_flight_rows = min(programs, SMS * resident) * rows * n * b
        reads += 0.35 if in_flight_rows < 40e6 else 1.0
    weight_loads = programs if s["weight"] == "hoisted" else blocks
    moved = x_bytes * (reads + 1.0) + n * b * min(weight_loads, 64) + 0.05 * n * b * weight_loads

    # Parallelism: SMs busy and bytes in flight per SM.
    active = min(SMS, programs)
    per_thread = max(1, rows * block // (warps * 32))
    vec = min(per_thread, 16 // b)
    inflight = min(resident, math.ceil(programs / active)) * warps * 32 * vec * b
    efficiency = min(1.0, inflight / INFLIGHT_FULL)
    t_mem = 1e6 * moved / (bw * (active / SMS) * efficiency)

    # Waste: masked lanes of a power-of-two block, and registers spilled by a huge tile.
    padded = block * math.ceil(n / block)
    t_mem *= min(4.0, (padded / n) ** 0.5)
    if per_thread > 64:
        t_mem *= 1.0 + 0.5 * (per_thread / 64 - 1)

    # Each wave of a non-persistent grid pays block scheduling; a tiny grid pays a reduction
    # latency per row block that no other program hides.
    waves = math.ceil(programs / (SMS * resident))
    t_sched = 0.3 * (waves - 1) if s["grid"] == "rows" else 0.2
    chunks = 1 if one_pass else 2 * math.ceil(n / block)
    t_latency = 0.6 * chunks * math.ceil(blocks / max(programs, 1)) if blocks < SMS else 0.0
    return LAUNCH_US + t_mem + t_sched + t_latency
