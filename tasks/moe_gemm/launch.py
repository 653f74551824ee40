"""Routing metadata and the launch table of rendered moe_gemm candidates (the second half).

Each regime's row of CONFIGS picks how (token, expert) pairs reach the weights (one
program per pair, or pairs sorted by expert in row blocks, padded or through a tile map),
who builds the routing metadata (torch ops or one Triton kernel), where SiLU·mul happens,
how the k results of a token are combined, whether the MMA operands are swapped, the
program schedule, whether the weights are read through tensor descriptors, and the tiles.
"""

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from tasks.moe_gemm.kernels import _gemm1, _gemm2, _reduce, _silu_mul
from tasks.moe_gemm.pair_kernels import _pair_gemm1, _pair_gemm2

#: regime upper bounds in tokens per expert (T·k/E) and in the expert weights the pairs move
#: (as if no two shared an expert), and the plan's settings per regime (all written by the
#: renderer)
REGIMES: list = []
CONFIGS: dict = {}

#: int32 stride between the experts' scatter cursors: one 128-byte line each, so the
#: atomics of many pairs spread over L2 instead of queueing at a few lines
CURSOR = tl.constexpr(32)

COMBINES = {"rows": 0, "reduce": 1, "atomic": 2, "fused": 3}


@triton.jit
def _route_tables(
    counts,
    scratch_ptr,
    tiles_ptr,
    nblk_ptr,
    BLOCK_M: tl.constexpr,
    E_POW2: tl.constexpr,
    TILEMAP: tl.constexpr,
    TAIL_M: tl.constexpr,
):
    # from the pairs per expert: each expert's first slot (the scatter's cursor), the row
    # blocks' experts (or tile map) and the number of row blocks; with TAIL_M an expert's
    # last block also holds a remainder of up to TAIL_M pairs. Every expert writes its own
    # blocks, one per step, so no block has to search for its expert
    bins = tl.arange(0, E_POW2)
    if TAIL_M > 0:
        blocks = tl.where(counts > 0, tl.maximum((counts - TAIL_M + BLOCK_M - 1) // BLOCK_M, 1), 0)
    else:
        blocks = (counts + BLOCK_M - 1) // BLOCK_M
    first_block = tl.cumsum(blocks, 0) - blocks
    first_pair = tl.cumsum(counts, 0) - counts
    tl.store(scratch_ptr + bins * CURSOR, first_pair if TILEMAP else first_block * BLOCK_M)
    tl.store(nblk_ptr, tl.sum(blocks, 0))
    for j in range(0, tl.max(blocks, 0)):
        b = first_block + j
        mine = j < blocks
        if TILEMAP:
            tl.store(tiles_ptr + 3 * b, first_pair + j * BLOCK_M, mask=mine)
            tl.store(tiles_ptr + 3 * b + 1, first_pair + counts, mask=mine)
            tl.store(tiles_ptr + 3 * b + 2, bins, mask=mine)
        else:
            tl.store(tiles_ptr + b, bins, mask=mine)
    tl.debug_barrier()


@triton.jit
def _route(
    ids_ptr,
    order_ptr,
    tiles_ptr,
    nblk_ptr,
    scratch_ptr,
    P,
    MAX_BLOCKS,
    BLOCK_M: tl.constexpr,
    E_POW2: tl.constexpr,
    TILEMAP: tl.constexpr,
    CHUNK_P: tl.constexpr,
    TAIL_M: tl.constexpr,
):
    # all routing metadata in one program: padding, counts, tables, the sorted order
    # (CHUNK_P pairs at a time)
    if not TILEMAP:
        for r0 in range(0, MAX_BLOCKS * BLOCK_M, CHUNK_P):
            rows = r0 + tl.arange(0, CHUNK_P)
            tl.store(order_ptr + rows, P, mask=rows < MAX_BLOCKS * BLOCK_M)
    counts = tl.zeros((E_POW2,), dtype=tl.int32)
    for p0 in range(0, P, CHUNK_P):
        offs = p0 + tl.arange(0, CHUNK_P)
        e = tl.load(ids_ptr + offs, mask=offs < P, other=0)
        counts += tl.histogram(e, E_POW2, mask=offs < P)
    _route_tables(counts, scratch_ptr, tiles_ptr, nblk_ptr, BLOCK_M, E_POW2, TILEMAP, TAIL_M)
    for p0 in range(0, P, CHUNK_P):
        offs = p0 + tl.arange(0, CHUNK_P)
        e = tl.load(ids_ptr + offs, mask=offs < P, other=0)
        slot = tl.atomic_add(scratch_ptr + e * CURSOR, 1, mask=offs < P, sem="relaxed")
        tl.store(order_ptr + slot, offs, mask=offs < P)


@triton.jit
def _route_count(
    ids_ptr, order_ptr, counts_ptr, P, PADDED, E_POW2: tl.constexpr, CHUNK: tl.constexpr
):
    # parallel routing, step 1 of 3: padding of one chunk of the order, and the chunk's pairs
    # per expert in its own row of counts (no atomics, so nothing needs zeroing first)
    offs = tl.program_id(0) * CHUNK + tl.arange(0, CHUNK)
    tl.store(order_ptr + offs, P, mask=offs < PADDED)
    e = tl.load(ids_ptr + offs, mask=offs < P, other=0)
    hist = tl.histogram(e, E_POW2, mask=offs < P)
    tl.store(counts_ptr + tl.program_id(0) * E_POW2 + tl.arange(0, E_POW2), hist)


@triton.jit
def _route_plan(
    counts_ptr,
    chunks,
    scratch_ptr,
    tiles_ptr,
    nblk_ptr,
    BLOCK_M: tl.constexpr,
    E_POW2: tl.constexpr,
    TILEMAP: tl.constexpr,
    TAIL_M: tl.constexpr,
    CHUNKS_POW2: tl.constexpr,
):
    # step 2 of 3: the chunks' counts summed, then the tables, in one program
    rows = tl.arange(0, CHUNKS_POW2)
    per_chunk = tl.load(
        counts_ptr + rows[:, None] * E_POW2 + tl.arange(0, E_POW2)[None, :],
        mask=(rows < chunks)[:, None],
        other=0,
    )
    counts = tl.sum(per_chunk, 0)
    _route_tables(counts, scratch_ptr, tiles_ptr, nblk_ptr, BLOCK_M, E_POW2, TILEMAP, TAIL_M)


@triton.jit
def _route_scatter(ids_ptr, order_ptr, scratch_ptr, P, CHUNK: tl.constexpr):
    # step 3 of 3: each pair takes the next slot of its expert
    offs = tl.program_id(0) * CHUNK + tl.arange(0, CHUNK)
    e = tl.load(ids_ptr + offs, mask=offs < P, other=0)
    slot = tl.atomic_add(scratch_ptr + e * CURSOR, 1, mask=offs < P, sem="relaxed")
    tl.store(order_ptr + slot, offs, mask=offs < P)


def _route_triton(ids, pairs, experts, block_m, max_blocks, tilemap, tail_m, parallel, step=0):
    """The routing metadata (sorted or padded order, row blocks' experts or tile map, number
    of row blocks) by one Triton program, or with `parallel` by three kernels over the
    pairs; `step` pairs per program step (0: chosen from the number of pairs)."""
    dev = ids.device
    e_pow2 = triton.next_power_of_2(experts)
    padded = 0 if tilemap else max_blocks * block_m
    order = torch.empty(max(pairs, padded), dtype=torch.int32, device=dev)
    tiles = torch.empty(max_blocks * (3 if tilemap else 1), dtype=torch.int32, device=dev)
    nblk = torch.empty(1, dtype=torch.int32, device=dev)
    scratch = torch.empty(e_pow2 * CURSOR.value, dtype=torch.int32, device=dev)
    shape = dict(BLOCK_M=block_m, E_POW2=e_pow2, TILEMAP=tilemap, TAIL_M=tail_m)
    if not parallel:
        step = step or min(2048, max(256, triton.next_power_of_2(pairs)))
        _route[(1,)](ids, order, tiles, nblk, scratch, pairs, max_blocks, CHUNK_P=step, **shape)
        return order, tiles, nblk
    rows = max(pairs, padded)
    step = step or max(1024, triton.next_power_of_2(rows) // 64)  # 64 chunks at most
    chunks = triton.cdiv(rows, step)
    counts = torch.empty(chunks * e_pow2, dtype=torch.int32, device=dev)
    _route_count[(chunks,)](ids, order, counts, pairs, padded, E_POW2=e_pow2, CHUNK=step)
    chunks_pow2 = triton.next_power_of_2(chunks)
    _route_plan[(1,)](counts, chunks, scratch, tiles, nblk, CHUNKS_POW2=chunks_pow2, **shape)
    _route_scatter[(triton.cdiv(pairs, step),)](ids, order, scratch, pairs, CHUNK=step)
    return order, tiles, nblk


def _route_torch(ids, pairs, experts, block_m, max_blocks, tilemap, tail_m):
    """The same metadata as `_route_triton`, by torch ops (no host synchronization)."""
    flat = ids.long()
    dev = flat.device
    order = torch.argsort(flat, stable=True)
    counts = torch.zeros(experts, dtype=torch.long, device=dev)
    counts.scatter_add_(0, flat, torch.ones_like(flat))
    if tail_m:
        blocks = ((counts - tail_m + block_m - 1) // block_m).clamp_(min=1) * (counts > 0)
    else:
        blocks = (counts + block_m - 1) // block_m
    block_end = torch.cumsum(blocks, 0)
    b = torch.arange(max_blocks, device=dev)
    expert = torch.searchsorted(block_end, b, right=True).clamp_(max=experts - 1)
    count_start = torch.cumsum(counts, 0) - counts
    if tilemap:
        first = count_start[expert] + (b - (block_end - blocks)[expert]) * block_m
        end = count_start[expert] + counts[expert]
        tiles = torch.stack([first, end, expert], 1).to(torch.int32)
        return order.to(torch.int32), tiles, block_end[-1:].to(torch.int32)
    expert_of = flat[order]
    pad_start = (block_end - blocks) * block_m
    rank = torch.arange(pairs, device=dev) - count_start[expert_of]
    padded = torch.full((max_blocks * block_m,), pairs, dtype=torch.int32, device=dev)
    padded[pad_start[expert_of] + rank] = order.to(torch.int32)
    return padded, expert.to(torch.int32), block_end[-1:].to(torch.int32)


_SMS: dict = {}


def _grid(tiles, c, device):
    """One program per tile, or for a persistent schedule PROGRAMS_PER_SM per SM at most."""
    if c["schedule"] != "persistent":
        return (tiles,)
    if device.type != "cuda":
        sms = 4
    else:
        if device not in _SMS:
            _SMS[device] = torch.cuda.get_device_properties(device).multi_processor_count
        sms = _SMS[device]
    return (min(tiles, sms * c["PROGRAMS_PER_SM"]),)


def _weights(w2d, c, n, k):
    if c["weights"] == "descriptors":
        return TensorDescriptor.from_tensor(w2d, [c[n], c[k]])
    return w2d


def _opts(c, which):
    return {"num_warps": c[f"num_warps{which}"], "num_stages": c[f"num_stages{which}"]}


def _regime(pairs, experts, moved):
    """The first regime whose bounds hold `pairs / experts` tokens per expert and `moved`
    bytes of expert weights."""
    return next(n for n, upper, most in REGIMES if pairs / experts < upper and moved < most)


def run(x, topk_ids, topk_weights, w1, w2):
    tokens, hidden = x.shape
    top_k = topk_ids.shape[1]
    experts, two_i, _ = w1.shape
    inter = two_i // 2
    pairs = tokens * top_k
    c = CONFIGS[_regime(pairs, experts, pairs * 3 * hidden * inter * x.element_size())]
    ids = topk_ids.reshape(-1).contiguous()
    weights = topk_weights.reshape(-1).contiguous()
    w1_2d, w2_2d = w1.view(experts * two_i, hidden), w2.view(experts * hidden, inter)
    w1_arg = _weights(w1_2d, c, "BLOCK_N1", "BLOCK_K1")
    w2_arg = _weights(w2_2d, c, "BLOCK_N2", "BLOCK_K2")
    fused = c["epilogue"] == "fused"
    desc = c["weights"] == "descriptors"
    combine = COMBINES[c["combine"]]
    width = inter if fused else two_i
    h = torch.empty(pairs, width, dtype=x.dtype, device=x.device)
    finish = c["combine"] == "atomic" and c["atomic_finish"] == "kernels"
    zero_n = 0
    out = y = h  # placeholders for arguments a kernel does not read
    counters = ids
    if finish:  # float32 sums then tile counters, zeroed by the gate/up kernel
        n_tiles2 = triton.cdiv(hidden, c["BLOCK_N2"])
        zero_n = tokens * hidden + tokens * n_tiles2
        sums = torch.empty(zero_n, dtype=torch.int32, device=x.device)
        y = sums[: tokens * hidden].view(torch.float32)
        counters = sums[tokens * hidden :]
        out = torch.empty(tokens, hidden, dtype=x.dtype, device=x.device)
    elif c["combine"] == "atomic":
        y = torch.zeros(tokens, hidden, dtype=torch.float32, device=x.device)
    elif c["combine"] == "fused":
        y = torch.empty(tokens, hidden, dtype=x.dtype, device=x.device)
    else:
        y = torch.empty(pairs, hidden, dtype=x.dtype, device=x.device)
    # a programmatic dependent launch of the down GEMM (not interpreted)
    pdl = bool(c["early_down"]) and x.is_cuda
    if c["dispatch"] == "pair":
        grid = (pairs * triton.cdiv(width, c["BLOCK_N1"]),)
        # 128-byte lines of each pair's down weights to prefetch into L2 (not interpreted)
        lines2 = 0
        if x.is_cuda:
            per_pair = min(c["PREFETCH2"] * 2**20 // pairs, hidden * inter * w2.element_size())
            lines2 = per_pair // 128
        _pair_gemm1[grid](
            x,
            ids,
            w1_2d,
            w1_arg,
            h,
            y,
            zero_n,
            w2,
            lines2,
            hidden,
            inter,
            top_k,
            BLOCK_N=c["BLOCK_N1"],
            BLOCK_K=c["BLOCK_K1"],
            FUSED=fused,
            DESC=desc,
            MMA=bool(c["pair_mma"]),
            ZERO=finish,
            STAGES=c["num_stages1"],
            PREFETCH=lines2 > 0,
            PDL=pdl,
            **_opts(c, 1),
        )
    else:
        tilemap = c["dispatch"] == "tilemap"
        block_m = c["BLOCK_M"]
        tail_m = c["TAIL_M"] if tilemap and not c["swap_ab"] else 0
        max_blocks = min(triton.cdiv(pairs, block_m) + experts, pairs)
        if c["metadata"] in ("triton", "parallel"):
            order, tiles, nblk = _route_triton(
                ids, pairs, experts, block_m, max_blocks, tilemap, tail_m,
                c["metadata"] == "parallel",
            )  # fmt: skip
        else:
            order, tiles, nblk = _route_torch(
                ids, pairs, experts, block_m, max_blocks, tilemap, tail_m
            )
        common = dict(
            BLOCK_M=block_m,
            GROUP_M=c["GROUP_M"],
            TILEMAP=tilemap,
            SWAP=bool(c["swap_ab"]),
            DESC=desc,
        )
        tiles1 = max_blocks * triton.cdiv(width, c["BLOCK_N1"])
        _gemm1[_grid(tiles1, c, x.device)](
            x,
            w1_2d,
            w1_arg,
            h,
            order,
            tiles,
            nblk,
            y,
            zero_n,
            pairs,
            hidden,
            inter,
            top_k,
            BLOCK_N=c["BLOCK_N1"],
            BLOCK_K=c["BLOCK_K1"],
            FUSED=fused,
            ZERO=finish,
            TAIL_M=tail_m,
            **common,
            **_opts(c, 1),
        )
    if not fused:
        act = torch.empty(pairs, inter, dtype=x.dtype, device=x.device)
        _silu_mul[(pairs, triton.cdiv(inter, 1024))](h, act, inter, BLOCK=1024)
        h = act
    if c["dispatch"] == "pair":
        rows = tokens if c["combine"] == "fused" else pairs
        grid = (rows * triton.cdiv(hidden, c["BLOCK_N2"]) * c["SPLIT_K"],)
        _pair_gemm2[grid](
            h,
            ids,
            weights,
            w2_2d,
            w2_arg,
            y,
            out,
            counters,
            hidden,
            inter,
            top_k,
            BLOCK_N=c["BLOCK_N2"],
            BLOCK_K=c["BLOCK_K2"],
            DESC=desc,
            COMBINE=combine,
            SPLIT_K=c["SPLIT_K"],
            MMA=bool(c["pair_mma"]),
            ROWS=max(16, triton.next_power_of_2(top_k)),
            FINISH=finish,
            STAGES=c["num_stages2"],
            EARLY=bool(c["early_down"]),
            PDL=pdl,
            launch_pdl=pdl,
            **_opts(c, 2),
        )
    else:
        tiles2 = max_blocks * triton.cdiv(hidden, c["BLOCK_N2"]) * c["SPLIT_K"]
        _gemm2[_grid(tiles2, c, x.device)](
            h,
            w2_2d,
            w2_arg,
            y,
            weights,
            order,
            tiles,
            nblk,
            out,
            counters,
            pairs,
            hidden,
            inter,
            top_k,
            BLOCK_N=c["BLOCK_N2"],
            BLOCK_K=c["BLOCK_K2"],
            COMBINE=combine,
            SPLIT_K=c["SPLIT_K"],
            FINISH=finish,
            TAIL_M=tail_m,
            **common,
            **_opts(c, 2),
        )
    if c["combine"] == "rows":
        return y.view(tokens, top_k, hidden).sum(dim=1, dtype=torch.float32).to(x.dtype)
    if c["combine"] == "reduce":
        out = torch.empty(tokens, hidden, dtype=x.dtype, device=x.device)
        _reduce[(tokens, triton.cdiv(hidden, 1024))](y, weights, out, hidden, top_k, BLOCK=1024)
        return out
    if finish:
        return out
    if c["combine"] == "atomic":
        return y.view(tokens, hidden).to(x.dtype)
    return y
