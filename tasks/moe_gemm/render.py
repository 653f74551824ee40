"""Render moe_gemm candidates as self-contained Triton files.

The structure rendered here: routing metadata by torch ops (no host synchronization, so
the candidate can be captured in a CUDA graph), (token, expert) pairs sorted by expert
and padded per expert to BLOCK_M rows, GEMM1 with the gate and up tiles of one program
accumulated side by side and SiLU·mul fused into its epilogue, GEMM2 scaled by the routing
weight into one row per pair, and the k rows of each token summed. Tile knobs come from a
table per regime (tokens per expert), and `run` dispatches on the regime.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from tasks.moe_gemm.cost import REGIMES

#: tile knobs of one GEMM
KNOBS = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M", "num_warps", "num_stages")

_SOURCE = '''"""moe_gemm candidate rendered by ksearch: sorted and padded dispatch, fused SwiGLU."""

import torch
import triton
import triton.language as tl

#: regime upper bounds in tokens per expert (T·k/E), and tile knobs per regime and GEMM
REGIMES = {regimes}
CONFIGS = {configs}


@triton.jit
def _tile(BLOCKS_M, N, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    # grouped order: GROUP_M row blocks share a column stripe of the expert's weights
    pid = tl.program_id(0)
    in_group = GROUP_M * tl.cdiv(N, BLOCK_N)
    first_m = (pid // in_group) * GROUP_M
    size_m = min(BLOCKS_M - first_m, GROUP_M)
    return first_m + (pid % in_group) % size_m, (pid % in_group) // size_m


@triton.jit
def _gate_up_silu(
    x_ptr, w1_ptr, h_ptr, sorted_ptr, block_expert_ptr, used_ptr,
    P, H, I, TOP_K, BLOCKS_M,
    stride_xt, stride_we, stride_wn, stride_ht,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    pid_m, pid_n = _tile(BLOCKS_M, I, BLOCK_N, GROUP_M)
    if pid_m * BLOCK_M < tl.load(used_ptr):
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        pair = tl.load(sorted_ptr + rows)
        valid = pair < P
        token = pair // TOP_K
        expert = tl.load(block_expert_ptr + pid_m).to(tl.int64)
        cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        col_ok = cols < I
        w_base = w1_ptr + expert * stride_we
        acc_gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, H, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_ok = ks < H
            a = tl.load(
                x_ptr + token[:, None] * stride_xt + ks[None, :],
                mask=valid[:, None] & k_ok[None, :], other=0.0,
            )
            w_mask = k_ok[:, None] & col_ok[None, :]
            gate = tl.load(
                w_base + cols[None, :] * stride_wn + ks[:, None], mask=w_mask, other=0.0
            )
            up = tl.load(
                w_base + (cols[None, :] + I) * stride_wn + ks[:, None], mask=w_mask, other=0.0
            )
            acc_gate = tl.dot(a, gate, acc_gate)
            acc_up = tl.dot(a, up, acc_up)
        act = acc_gate / (1.0 + tl.exp(-acc_gate)) * acc_up
        tl.store(
            h_ptr + pair[:, None] * stride_ht + cols[None, :],
            act.to(h_ptr.dtype.element_ty),
            mask=valid[:, None] & col_ok[None, :],
        )


@triton.jit
def _down_weighted(
    h_ptr, w2_ptr, y_ptr, weight_ptr, sorted_ptr, block_expert_ptr, used_ptr,
    P, H, I, BLOCKS_M,
    stride_ht, stride_we, stride_wn, stride_yt,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    pid_m, pid_n = _tile(BLOCKS_M, H, BLOCK_N, GROUP_M)
    if pid_m * BLOCK_M < tl.load(used_ptr):
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        pair = tl.load(sorted_ptr + rows)
        valid = pair < P
        expert = tl.load(block_expert_ptr + pid_m).to(tl.int64)
        cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        col_ok = cols < H
        w_base = w2_ptr + expert * stride_we
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, I, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_ok = ks < I
            a = tl.load(
                h_ptr + pair[:, None] * stride_ht + ks[None, :],
                mask=valid[:, None] & k_ok[None, :], other=0.0,
            )
            w = tl.load(
                w_base + cols[None, :] * stride_wn + ks[:, None],
                mask=k_ok[:, None] & col_ok[None, :], other=0.0,
            )
            acc = tl.dot(a, w, acc)
        scale = tl.load(weight_ptr + pair, mask=valid, other=0.0)
        acc = acc * scale[:, None]
        tl.store(
            y_ptr + pair[:, None] * stride_yt + cols[None, :],
            acc.to(y_ptr.dtype.element_ty),
            mask=valid[:, None] & col_ok[None, :],
        )


def _route(topk_ids, num_experts, block_m):
    """Pairs sorted by expert, each expert's run padded to block_m rows (padding = P), the
    expert of each row block, and how many rows are used; all on the device."""
    flat = topk_ids.reshape(-1).long()
    pairs = flat.numel()
    order = torch.argsort(flat, stable=True)
    counts = torch.zeros(num_experts, dtype=torch.long, device=flat.device)
    counts.scatter_add_(0, flat, torch.ones_like(flat))
    padded = (counts + block_m - 1) // block_m * block_m
    pad_end = torch.cumsum(padded, 0)
    pad_start = pad_end - padded
    count_start = torch.cumsum(counts, 0) - counts
    expert_of = flat[order]
    rank = torch.arange(pairs, device=flat.device) - count_start[expert_of]
    blocks = min(triton.cdiv(pairs, block_m) + num_experts, pairs)
    sorted_ids = torch.full((blocks * block_m,), pairs, dtype=torch.int32, device=flat.device)
    sorted_ids[pad_start[expert_of] + rank] = order.to(torch.int32)
    starts = torch.arange(blocks, device=flat.device) * block_m
    block_expert = torch.searchsorted(pad_end, starts, right=True).clamp_(max=num_experts - 1)
    return sorted_ids, block_expert.to(torch.int32), pad_end[-1:], blocks


def _launch(kernel, cfg, blocks, n, *args):
    grid = (blocks * triton.cdiv(n, cfg["BLOCK_N"]),)
    kernel[grid](
        *args,
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"],
        GROUP_M=cfg["GROUP_M"],
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )


def run(x, topk_ids, topk_weights, w1, w2):
    t, hidden = x.shape
    top_k = topk_ids.shape[1]
    num_experts, two_i, _ = w1.shape
    inter = two_i // 2
    pairs = t * top_k
    per_expert = pairs / num_experts
    regime = next(name for name, upper in REGIMES if per_expert < upper)
    up_cfg, down_cfg = CONFIGS[regime]["gate_up"], CONFIGS[regime]["down"]
    if up_cfg["BLOCK_M"] != down_cfg["BLOCK_M"]:
        raise ValueError("both GEMMs share one padded order: BLOCK_M must match")
    sorted_ids, block_expert, used, blocks = _route(topk_ids, num_experts, up_cfg["BLOCK_M"])
    h = torch.empty(pairs, inter, dtype=x.dtype, device=x.device)
    _launch(
        _gate_up_silu, up_cfg, blocks, inter,
        x, w1, h, sorted_ids, block_expert, used,
        pairs, hidden, inter, top_k, blocks,
        x.stride(0), w1.stride(0), w1.stride(1), h.stride(0),
    )
    y = torch.empty(pairs, hidden, dtype=x.dtype, device=x.device)
    _launch(
        _down_weighted, down_cfg, blocks, hidden,
        h, w2, y, topk_weights.reshape(-1), sorted_ids, block_expert, used,
        pairs, hidden, inter, blocks,
        h.stride(0), w2.stride(0), w2.stride(1), y.stride(0),
    )
    return y.view(t, top_k, hidden).sum(dim=1, dtype=torch.float32).to(x.dtype)
'''


def render(configs: Mapping[str, Mapping[str, Mapping[str, int]]]) -> str:
    """The candidate source for tile knobs per regime and GEMM ("gate_up", "down")."""
    for regime, _ in REGIMES:
        for gemm in ("gate_up", "down"):
            missing = [k for k in KNOBS if k not in configs[regime][gemm]]
            if missing:
                raise ValueError(f"{regime}/{gemm} lacks {', '.join(missing)}")
    regimes = [(name, upper if upper != float("inf") else 1e30) for name, upper in REGIMES]
    table = {r: {g: dict(c) for g, c in gemms.items()} for r, gemms in configs.items()}
    return _SOURCE.format(regimes=repr(regimes), configs=json.dumps(table, indent=4))
