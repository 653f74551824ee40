"""Triton kernels of rendered moe_gemm candidates (the first part of a candidate file).

GEMMs over pairs sorted by expert in row blocks (`_gemm1` with SiLU·mul fused or not,
`_gemm2` with per-pair rows or atomic sums per token, split-K, swapped operands, an
expert's remainder rows in its last block), the separate activation pass, the weighted
gather-sum of a token's k rows, and the helpers they share with the matrix-vector twins of
pair_kernels.py (an L2 prefetch among them).
"""

import triton
import triton.language as tl


@triton.jit
def _w_tile(
    w_ptr,
    w_desc,
    row0,
    row_end,
    k0,
    K,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DESC: tl.constexpr,
):
    # a [BLOCK_N, BLOCK_K] tile of a 2D weight view whose rows are output columns
    if DESC:
        w = w_desc.load([row0.to(tl.int32), k0])
    else:
        n = row0 + tl.arange(0, BLOCK_N)
        k = k0 + tl.arange(0, BLOCK_K)
        w = tl.load(
            w_ptr + n[:, None].to(tl.int64) * K + k[None, :],
            mask=(n < row_end)[:, None] & (k < K)[None, :],
            other=0.0,
        )
    return w


@triton.jit
def _mma(a, w, acc, SWAP: tl.constexpr):
    # acc[BLOCK_M, BLOCK_N] += a · wᵀ, or swapped: acc[BLOCK_N, BLOCK_M] += w · aᵀ
    if SWAP:
        acc = tl.dot(w, tl.trans(a), acc)
    else:
        acc = tl.dot(a, tl.trans(w), acc)
    return acc


@triton.jit
def _swiglu(gate, up):
    # SiLU(gate) · up, in float32
    return gate / (1.0 + tl.exp(-gate)) * up


@triton.jit
def _tile_order(tile, blocks_m, n_tiles, GROUP_M: tl.constexpr):
    # grouped order: GROUP_M row blocks share a column stripe of the expert's weights
    in_group = GROUP_M * n_tiles
    first_m = (tile // in_group) * GROUP_M
    size_m = min(blocks_m - first_m, GROUP_M)
    return first_m + (tile % in_group) % size_m, (tile % in_group) // size_m


@triton.jit
def _block_rows(pid_m, order_ptr, tiles_ptr, P, BLOCK_M: tl.constexpr, TILEMAP: tl.constexpr):
    # the pairs of row block pid_m, which of them are real, and their expert
    if TILEMAP:
        start = tl.load(tiles_ptr + 3 * pid_m)
        rows = start + tl.arange(0, BLOCK_M)
        valid = rows < tl.load(tiles_ptr + 3 * pid_m + 1)
        pair = tl.load(order_ptr + rows, mask=valid, other=0)
        expert = tl.load(tiles_ptr + 3 * pid_m + 2)
    else:
        pair = tl.load(order_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
        valid = pair < P
        expert = tl.load(tiles_ptr + pid_m)
    return pair, valid, expert.to(tl.int64)


@triton.jit
def _tail_rows(pid_m, order_ptr, tiles_ptr, BLOCK_M: tl.constexpr, TAIL_M: tl.constexpr):
    # the up to TAIL_M pairs after row block pid_m of a tile map, real only when they end
    # its expert's run (the expert's last block absorbs a remainder of at most TAIL_M)
    start = tl.load(tiles_ptr + 3 * pid_m) + BLOCK_M
    end = tl.load(tiles_ptr + 3 * pid_m + 1)
    rows = start + tl.arange(0, TAIL_M)
    has_tail = (end > start) & (end - start <= TAIL_M)
    valid = (rows < end) & has_tail
    pair = tl.load(order_ptr + rows, mask=valid, other=0)
    return pair, valid, has_tail


@triton.jit
def _store(ptr, rows, cols, val, mask_r, mask_c, stride, SWAP: tl.constexpr, ATOMIC: tl.constexpr):
    # val is [rows, cols], or [cols, rows] when swapped
    if SWAP:
        p = ptr + rows[None, :].to(tl.int64) * stride + cols[:, None]
        m = mask_r[None, :] & mask_c[:, None]
    else:
        p = ptr + rows[:, None].to(tl.int64) * stride + cols[None, :]
        m = mask_r[:, None] & mask_c[None, :]
    if ATOMIC:
        tl.atomic_add(p, val, mask=m, sem="relaxed")
    else:
        tl.store(p, val.to(ptr.dtype.element_ty), mask=m)


@triton.jit
def _zero_share(ptr, n, BLOCK: tl.constexpr):
    # this program's share of zeroing ptr[:n] (the float32 sums and tile counters of an
    # atomic combine finished in the kernels), so no memset launch precedes the down GEMM
    per = tl.cdiv(tl.cdiv(n, tl.num_programs(0)), BLOCK) * BLOCK
    lo = tl.program_id(0).to(tl.int64) * per
    for i in range(lo, lo + per, BLOCK):
        offs = i + tl.arange(0, BLOCK)
        tl.store(ptr + offs, tl.zeros((BLOCK,), dtype=tl.int32), mask=offs < n)


@triton.jit
def _prefetch_l2(ptrs, mask):
    # ask L2 to fetch the 128-byte lines at ptrs and keep them (evict last); nothing waits
    tl.inline_asm_elementwise(
        "{ .reg .pred p; setp.ne.b32 p, $2, 0; @p prefetch.global.L2::evict_last [$1]; "
        "mov.u32 $0, 0; }",
        "=r,l,r",
        [ptrs, mask.to(tl.int32)],
        dtype=tl.int32,
        is_pure=False,
        pack=1,
    )


@triton.jit
def _finish(sum_ptr, out_ptr, cnt_ptr, rows, tile_n, cols, mask_r, mask_c, H, n_tiles, expected,
            SWAP: tl.constexpr):  # fmt: skip
    # count this program's adds into each (token, column tile); the program that adds last
    # casts the tile's float32 sums into the output, so no cast launch follows
    tl.debug_barrier()
    seen = tl.atomic_add(cnt_ptr + rows * n_tiles + tile_n, 1, mask=mask_r, sem="acq_rel")
    tl.debug_barrier()
    done = mask_r & (seen == expected - 1)
    if SWAP:
        offs = rows[None, :].to(tl.int64) * H + cols[:, None]
        m = done[None, :] & mask_c[:, None]
    else:
        offs = rows[:, None].to(tl.int64) * H + cols[None, :]
        m = done[:, None] & mask_c[None, :]
    total = tl.load(sum_ptr + offs, mask=m, other=0.0, cache_modifier=".cg")
    tl.store(out_ptr + offs, total.to(out_ptr.dtype.element_ty), mask=m)


@triton.jit
def _gate_up_loop(x_ptr, w_ptr, w_desc, base, pid_n, n_out, H, I, BLOCK_N: tl.constexpr,
                  BLOCK_K: tl.constexpr, FUSED: tl.constexpr, SWAP: tl.constexpr,
                  DESC: tl.constexpr, token, valid, acc_g, acc_u, token_t, valid_t, acc_gt,
                  acc_ut, TAIL: tl.constexpr):  # fmt: skip
    # _gemm1's K loop over one block's rows, and with TAIL over its tail's rows as well
    row0 = base + pid_n * BLOCK_N
    for k0 in range(0, H, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(
            x_ptr + token[:, None] * H + ks[None, :],
            mask=valid[:, None] & (ks < H)[None, :],
            other=0.0,
        )
        if TAIL:
            a_t = tl.load(
                x_ptr + token_t[:, None] * H + ks[None, :],
                mask=valid_t[:, None] & (ks < H)[None, :],
                other=0.0,
            )
        w = _w_tile(w_ptr, w_desc, row0, base + n_out, k0, H, BLOCK_N, BLOCK_K, DESC)
        acc_g = _mma(a, w, acc_g, SWAP)
        if TAIL:
            acc_gt = _mma(a_t, w, acc_gt, True)
        if FUSED:
            w = _w_tile(w_ptr, w_desc, row0 + I, base + 2 * I, k0, H, BLOCK_N, BLOCK_K, DESC)
            acc_u = _mma(a, w, acc_u, SWAP)
            if TAIL:
                acc_ut = _mma(a_t, w, acc_ut, True)
    return acc_g, acc_u, acc_gt, acc_ut


@triton.jit
def _down_loop(h_ptr, w_ptr, w_desc, expert, pid_n, k_lo, k_hi, H, I, BLOCK_N: tl.constexpr,
               BLOCK_K: tl.constexpr, SWAP: tl.constexpr, DESC: tl.constexpr, pair, valid, acc,
               pair_t, valid_t, acc_t, TAIL: tl.constexpr):  # fmt: skip
    # _gemm2's K loop over one block's rows (and with TAIL its tail's) in [k_lo, k_hi)
    row0 = expert * H + pid_n * BLOCK_N
    for k0 in range(k_lo, k_hi, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(
            h_ptr + pair[:, None].to(tl.int64) * I + ks[None, :],
            mask=valid[:, None] & (ks < k_hi)[None, :],
            other=0.0,
        )
        w = _w_tile(w_ptr, w_desc, row0, expert * H + H, k0, I, BLOCK_N, BLOCK_K, DESC)
        acc = _mma(a, w, acc, SWAP)
        if TAIL:
            a_t = tl.load(
                h_ptr + pair_t[:, None].to(tl.int64) * I + ks[None, :],
                mask=valid_t[:, None] & (ks < k_hi)[None, :],
                other=0.0,
            )
            acc_t = _mma(a_t, w, acc_t, True)
    return acc, acc_t


@triton.jit
def _gemm1(
    x_ptr,
    w_ptr,
    w_desc,
    h_ptr,
    order_ptr,
    tiles_ptr,
    nblk_ptr,
    zero_ptr,
    zero_n,
    P,
    H,
    I,
    TOP_K,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    TILEMAP: tl.constexpr,
    FUSED: tl.constexpr,
    SWAP: tl.constexpr,
    DESC: tl.constexpr,
    ZERO: tl.constexpr,
    TAIL_M: tl.constexpr,
):
    # gate and up projections of sorted pairs; SiLU·mul in the epilogue when FUSED, else
    # the raw [P, 2I] product for a separate activation pass; first, with ZERO, this
    # program's share of zeroing zero_ptr[:zero_n]. With TAIL_M (a tile map, unswapped),
    # the up to TAIL_M pairs that end an expert's run after its last full block share that
    # block's weight tiles: a second, swapped MMA, instead of a block of their own
    if ZERO:
        _zero_share(zero_ptr, zero_n, 1024)
    n_out = I if FUSED else 2 * I
    n_tiles = tl.cdiv(n_out, BLOCK_N)
    n_blocks = tl.load(nblk_ptr)
    for tile in tl.range(tl.program_id(0), n_blocks * n_tiles, tl.num_programs(0)):
        pid_m, pid_n = _tile_order(tile, n_blocks, n_tiles, GROUP_M)
        pair, valid, expert = _block_rows(pid_m, order_ptr, tiles_ptr, P, BLOCK_M, TILEMAP)
        token = (pair // TOP_K).to(tl.int64)
        cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        base = expert * 2 * I
        if SWAP:
            acc_g = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
        else:
            acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        acc_u = tl.zeros_like(acc_g)
        if TAIL_M > 0:
            pair_t, valid_t, has_tail = _tail_rows(pid_m, order_ptr, tiles_ptr, BLOCK_M, TAIL_M)
            token_t = (pair_t // TOP_K).to(tl.int64)
            acc_gt = tl.zeros((BLOCK_N, TAIL_M), dtype=tl.float32)
            acc_ut = tl.zeros_like(acc_gt)
            if has_tail:  # the tail's MMAs only in the blocks that have one
                acc_g, acc_u, acc_gt, acc_ut = _gate_up_loop(
                    x_ptr, w_ptr, w_desc, base, pid_n, n_out, H, I, BLOCK_N, BLOCK_K, FUSED,
                    SWAP, DESC, token, valid, acc_g, acc_u, token_t, valid_t, acc_gt, acc_ut,
                    True)  # fmt: skip
            else:
                acc_g, acc_u, acc_gt, acc_ut = _gate_up_loop(
                    x_ptr, w_ptr, w_desc, base, pid_n, n_out, H, I, BLOCK_N, BLOCK_K, FUSED,
                    SWAP, DESC, token, valid, acc_g, acc_u, token_t, valid_t, acc_gt, acc_ut,
                    False)  # fmt: skip
        else:
            acc_g, acc_u, _, _ = _gate_up_loop(
                x_ptr, w_ptr, w_desc, base, pid_n, n_out, H, I, BLOCK_N, BLOCK_K, FUSED, SWAP,
                DESC, token, valid, acc_g, acc_u, token, valid, acc_g, acc_u, False)  # fmt: skip
        if FUSED:
            acc_g = _swiglu(acc_g, acc_u)
        _store(h_ptr, pair, cols, acc_g, valid, cols < n_out, n_out, SWAP, False)
        if TAIL_M > 0:
            if FUSED:
                acc_gt = _swiglu(acc_gt, acc_ut)
            _store(h_ptr, pair_t, cols, acc_gt, valid_t, cols < n_out, n_out, True, False)


@triton.jit
def _gemm2(
    h_ptr,
    w_ptr,
    w_desc,
    y_ptr,
    weight_ptr,
    order_ptr,
    tiles_ptr,
    nblk_ptr,
    out_ptr,
    cnt_ptr,
    P,
    H,
    I,
    TOP_K,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    TILEMAP: tl.constexpr,
    SWAP: tl.constexpr,
    DESC: tl.constexpr,
    COMBINE: tl.constexpr,
    SPLIT_K: tl.constexpr,
    FINISH: tl.constexpr,
    TAIL_M: tl.constexpr,
):
    # down projection of sorted pairs: weighted rows per pair (COMBINE 0), unweighted rows
    # (1), or weighted atomic sums into a float32 row per token (2), over SPLIT_K K-slices;
    # with FINISH the last program to add into a tile of sums writes it to out_ptr (TAIL_M
    # as in _gemm1)
    n_tiles = tl.cdiv(H, BLOCK_N)
    n_blocks = tl.load(nblk_ptr)
    k_span = tl.cdiv(tl.cdiv(I, BLOCK_K), SPLIT_K) * BLOCK_K
    n_work = n_blocks * n_tiles * SPLIT_K
    for tile in tl.range(tl.program_id(0), n_work, tl.num_programs(0)):
        pid_m, pid_n = _tile_order(tile // SPLIT_K, n_blocks, n_tiles, GROUP_M)
        pair, valid, expert = _block_rows(pid_m, order_ptr, tiles_ptr, P, BLOCK_M, TILEMAP)
        cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        k_lo = (tile % SPLIT_K) * k_span
        k_hi = min(k_lo + k_span, I)
        if SWAP:
            acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
        else:
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        if TAIL_M > 0:
            pair_t, valid_t, has_tail = _tail_rows(pid_m, order_ptr, tiles_ptr, BLOCK_M, TAIL_M)
            acc_t = tl.zeros((BLOCK_N, TAIL_M), dtype=tl.float32)
            if has_tail:  # (as in _gemm1)
                acc, acc_t = _down_loop(
                    h_ptr, w_ptr, w_desc, expert, pid_n, k_lo, k_hi, H, I, BLOCK_N, BLOCK_K,
                    SWAP, DESC, pair, valid, acc, pair_t, valid_t, acc_t, True)  # fmt: skip
            else:
                acc, acc_t = _down_loop(
                    h_ptr, w_ptr, w_desc, expert, pid_n, k_lo, k_hi, H, I, BLOCK_N, BLOCK_K,
                    SWAP, DESC, pair, valid, acc, pair_t, valid_t, acc_t, False)  # fmt: skip
        else:
            acc, _ = _down_loop(
                h_ptr, w_ptr, w_desc, expert, pid_n, k_lo, k_hi, H, I, BLOCK_N, BLOCK_K, SWAP,
                DESC, pair, valid, acc, pair, valid, acc, False)  # fmt: skip
        _epilogue2(acc, pair, valid, cols, y_ptr, weight_ptr, out_ptr, cnt_ptr, pid_n, H, n_tiles,
                   TOP_K, SPLIT_K, COMBINE, FINISH, SWAP)  # fmt: skip
        if TAIL_M > 0:
            _epilogue2(acc_t, pair_t, valid_t, cols, y_ptr, weight_ptr, out_ptr, cnt_ptr, pid_n,
                       H, n_tiles, TOP_K, SPLIT_K, COMBINE, FINISH, True)  # fmt: skip


@triton.jit
def _epilogue2(acc, pair, valid, cols, y_ptr, weight_ptr, out_ptr, cnt_ptr, pid_n, H, n_tiles,
               TOP_K, SPLIT_K: tl.constexpr, COMBINE: tl.constexpr, FINISH: tl.constexpr,
               SWAP: tl.constexpr):  # fmt: skip
    # a down tile's rows out: weighted (COMBINE != 1), as rows per pair or atomic sums
    if COMBINE != 1:
        scale = tl.load(weight_ptr + pair, mask=valid, other=0.0)
        if SWAP:
            acc = acc * scale[None, :]
        else:
            acc = acc * scale[:, None]
    if COMBINE == 2:
        token = pair // TOP_K
        _store(y_ptr, token, cols, acc, valid, cols < H, H, SWAP, True)
        if FINISH:
            _finish(y_ptr, out_ptr, cnt_ptr, token, pid_n, cols, valid, cols < H, H, n_tiles,
                    TOP_K * SPLIT_K, SWAP)  # fmt: skip
    else:
        _store(y_ptr, pair, cols, acc, valid, cols < H, H, SWAP, False)


@triton.jit
def _silu_mul(g_ptr, h_ptr, I, BLOCK: tl.constexpr):
    # the separate activation pass: h[p] = silu(gate[p]) · up[p] from the [P, 2I] product
    pair = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = cols < I
    g = tl.load(g_ptr + pair * 2 * I + cols, mask=m, other=0.0).to(tl.float32)
    u = tl.load(g_ptr + pair * 2 * I + I + cols, mask=m, other=0.0).to(tl.float32)
    tl.store(h_ptr + pair * I + cols, _swiglu(g, u).to(h_ptr.dtype.element_ty), mask=m)


@triton.jit
def _reduce(y_ptr, weight_ptr, out_ptr, H, TOP_K, BLOCK: tl.constexpr):
    # out[t] = Σ_j w[t, j] · y[t·k + j], in float32
    t = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for j in range(TOP_K):
        w = tl.load(weight_ptr + t * TOP_K + j)
        acc += w * tl.load(y_ptr + (t * TOP_K + j) * H + cols, mask=cols < H).to(tl.float32)
    tl.store(out_ptr + t * H + cols, acc.to(out_ptr.dtype.element_ty), mask=cols < H)
