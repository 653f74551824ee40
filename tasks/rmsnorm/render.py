"""Render an rmsnorm plan as one self-contained Triton candidate file.

Each distinct structure the plan uses (passes x grid x weight) becomes one
@triton.jit kernel; a table maps each regime to its kernel and knobs, and
`run` dispatches on the row length.
"""

from __future__ import annotations

import json

from ksearch.plan import Plan, Value, header
from tasks.rmsnorm.space import LONG_ROW

_PRELUDE = '''"""rmsnorm candidate rendered by ksearch from the plan in the header."""

import torch
import triton
import triton.language as tl

'''

_SIGNATURE = """@triton.jit
def {name}(
    # pointers
    x_ptr, w_ptr, y_ptr,
    # sizes
    M, N, eps,
    # strides (elements between rows)
    stride_x, stride_y,
    # meta-parameters
    ROWS: tl.constexpr, BLOCK_N: tl.constexpr,
):
"""

# -- the loop over row blocks ----------------------------------------------------------------

_ROWS_GRID = """    # One program per block of ROWS rows.
    blk = tl.program_id(0)
"""

_PERSISTENT_GRID = """    # A fixed number of programs walk the row blocks with a stride.
    num_blocks = tl.cdiv(M, ROWS)
    for blk in range(tl.program_id(0), num_blocks, tl.num_programs(0)):
"""

_HOISTED_WEIGHT = """    # The weight is loaded once per program and reused for every row block.
    cols = tl.arange(0, BLOCK_N)
    w = tl.load(w_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)
"""

# -- one pass: the whole row lives in registers -------------------------------------------

_ONE_PASS = """rows = blk * ROWS + tl.arange(0, ROWS)
cols = tl.arange(0, BLOCK_N)
mask = (rows[:, None] < M) & (cols[None, :] < N)
x = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0)
x = x.to(tl.float32)
rstd = tl.rsqrt(tl.sum(x * x, axis=1) / N + eps)
{weight}y = x * rstd[:, None] * w[None, :]
tl.store(y_ptr + rows[:, None] * stride_y + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=mask)
"""

_WEIGHT_PER_BLOCK = "w = tl.load(w_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)\n"

# -- two passes: sum of squares over chunks, then normalize chunk by chunk ------------------

_TWO_PASS = """rows = blk * ROWS + tl.arange(0, ROWS)
row_mask = rows < M
acc = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
for start in range(0, N, BLOCK_N):
    cols = start + tl.arange(0, BLOCK_N)
    mask = row_mask[:, None] & (cols[None, :] < N)
    x = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0)
    x = x.to(tl.float32)
    acc += x * x
rstd = tl.rsqrt(tl.sum(acc, axis=1) / N + eps)
for start in range(0, N, BLOCK_N):
    cols = start + tl.arange(0, BLOCK_N)
    mask = row_mask[:, None] & (cols[None, :] < N)
    x = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0)
    w = tl.load(w_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)
    y = x.to(tl.float32) * rstd[:, None] * w[None, :]
    tl.store(y_ptr + rows[:, None] * stride_y + cols[None, :], y.to(y_ptr.dtype.element_ty),
             mask=mask)
"""

_WRAPPER = '''
def _regime(n_cols):
    return "long" if n_cols >= {long_row} else "short"


def _num_sms(device):
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4  # the CPU interpreter: a handful of programs keeps it quick


def run(x, weight, eps):
    """y = x * rsqrt(mean(x^2, -1) + eps) * weight, computed in float32."""
    assert x.ndim == 2 and weight.shape == (x.shape[1],), "x [M, N] and weight [N] expected"
    x = x.contiguous()
    M, N = x.shape
    y = torch.empty_like(x)
    cfg = CONFIGS[_regime(N)]
    block_n = triton.next_power_of_2(N) if cfg["passes"] == "one" else cfg["BLOCK_N"]
    num_blocks = triton.cdiv(M, cfg["ROWS"])
    if cfg["grid"] == "persistent":
        grid = (min(num_blocks, _num_sms(x.device) * cfg["PROGRAMS_PER_SM"]),)
    else:
        grid = (num_blocks,)
    KERNELS[cfg["kernel"]][grid](
        x, weight, y, M, N, eps, x.stride(0), y.stride(0),
        ROWS=cfg["ROWS"], BLOCK_N=block_n, num_warps=cfg["num_warps"],
    )
    return y
'''


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "".join(pad + line if line.strip() else line for line in text.splitlines(True))


def kernel_name(settings: dict[str, Value]) -> str:
    weight = "_hoisted" if settings["weight"] == "hoisted" else ""
    return f"_rmsnorm_{settings['passes']}_pass_{settings['grid']}{weight}"


def _kernel(settings: dict[str, Value]) -> str:
    persistent = settings["grid"] == "persistent"
    hoisted = settings["weight"] == "hoisted"
    if settings["passes"] == "one":
        body = _ONE_PASS.format(weight="" if hoisted else _WEIGHT_PER_BLOCK)
    else:
        body = _TWO_PASS
    out = _SIGNATURE.format(name=kernel_name(settings))
    if hoisted:
        out += _HOISTED_WEIGHT
    if persistent:
        out += _PERSISTENT_GRID + _indent(body, 8)
    else:
        out += _ROWS_GRID + _indent(body, 4)
    return out


def render(plan: Plan) -> str:
    """The candidate source for `plan`: header, kernels, dispatch table, wrapper."""
    table = plan.table()
    kernels: dict[str, str] = {}
    configs: dict[str, dict[str, Value]] = {}
    for regime, settings in table.items():
        name = kernel_name(settings)
        kernels.setdefault(name, _kernel(settings))
        configs[regime] = dict(settings, kernel=name)
    parts = [header(plan), _PRELUDE]
    for name in sorted(kernels):
        parts.append(f"# {'-' * 90}\n\n{kernels[name]}\n\n")
    parts.append(f"CONFIGS = {json.dumps(configs, indent=4, sort_keys=True)}\n")
    parts.append("KERNELS = {" + ", ".join(f'"{n}": {n}' for n in sorted(kernels)) + "}\n")
    parts.append(_WRAPPER.format(long_row=LONG_ROW))
    source = "".join(parts)
    return source.replace(": true", ": True").replace(": false", ": False")
