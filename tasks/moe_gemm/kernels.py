"""Triton kernels of rendered moe_gemm candidates (the first half of a candidate file).

GEMMs over pairs sorted by expert in row blocks (`_gemm1` with SiLU·mul fused or not,
`_gemm2` with per-pair rows or atomic sums per token, split-K, swapped operands), their
matrix-vector twins with one program per pair (on CUDA cores, or on tensor cores with the
vector padded to an MMA tile so the weight loads are software-pipelined), the separate
activation pass and the weighted gather-sum of a token's k rows.
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
):
    # gate and up projections of sorted pairs; SiLU·mul in the epilogue when FUSED, else
    # the raw [P, 2I] product for a separate activation pass; first, with ZERO, this
    # program's share of zeroing zero_ptr[:zero_n]
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
        for k0 in range(0, H, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            a = tl.load(
                x_ptr + token[:, None] * H + ks[None, :],
                mask=valid[:, None] & (ks < H)[None, :],
                other=0.0,
            )
            w = _w_tile(
                w_ptr, w_desc, base + pid_n * BLOCK_N, base + n_out, k0, H, BLOCK_N, BLOCK_K, DESC
            )
            acc_g = _mma(a, w, acc_g, SWAP)
            if FUSED:
                w = _w_tile(
                    w_ptr,
                    w_desc,
                    base + I + pid_n * BLOCK_N,
                    base + 2 * I,
                    k0,
                    H,
                    BLOCK_N,
                    BLOCK_K,
                    DESC,
                )
                acc_u = _mma(a, w, acc_u, SWAP)
        if FUSED:
            acc_g = acc_g / (1.0 + tl.exp(-acc_g)) * acc_u
        _store(h_ptr, pair, cols, acc_g, valid, cols < n_out, n_out, SWAP, False)


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
):
    # down projection of sorted pairs: weighted rows per pair (COMBINE 0), unweighted rows
    # (1), or weighted atomic sums into a float32 row per token (2), over SPLIT_K K-slices;
    # with FINISH the last program to add into a tile of sums writes it to out_ptr
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
        for k0 in range(k_lo, k_hi, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            a = tl.load(
                h_ptr + pair[:, None].to(tl.int64) * I + ks[None, :],
                mask=valid[:, None] & (ks < k_hi)[None, :],
                other=0.0,
            )
            w = _w_tile(
                w_ptr,
                w_desc,
                expert * H + pid_n * BLOCK_N,
                expert * H + H,
                k0,
                I,
                BLOCK_N,
                BLOCK_K,
                DESC,
            )
            acc = _mma(a, w, acc, SWAP)
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
                _finish(y_ptr, out_ptr, cnt_ptr, token, pid_n, cols, valid, cols < H, H,
                        n_tiles, TOP_K * SPLIT_K, SWAP)  # fmt: skip
        else:
            _store(y_ptr, pair, cols, acc, valid, cols < H, H, SWAP, False)


@triton.jit
def _vec(ptr, ks, k_end, ROWS: tl.constexpr, row, MMA: tl.constexpr):
    # a vector of ROWS-row MMA operand: ptr[ks] as float32, or as row `row` of a [ROWS, K]
    # tile whose other rows are zero (the matrix-vector product then runs on tensor cores)
    if MMA:
        r = tl.arange(0, ROWS)
        v = tl.load(
            ptr + ks[None, :] + 0 * r[:, None],
            mask=(r == row)[:, None] & (ks < k_end)[None, :],
            other=0.0,
        )
    else:
        v = tl.load(ptr + ks, mask=ks < k_end, other=0.0).to(tl.float32)
    return v


@triton.jit
def _gemv(w, v, acc, MMA: tl.constexpr):
    # acc[BLOCK_N] += w · v on CUDA cores, or acc[BLOCK_N, ROWS] += w · vᵀ on tensor cores
    if MMA:
        acc = tl.dot(w, tl.trans(v), acc)
    else:
        acc += tl.sum(w.to(tl.float32) * v[None, :], axis=1)
    return acc


@triton.jit
def _pair_gemm1(
    x_ptr,
    ids_ptr,
    w_ptr,
    w_desc,
    h_ptr,
    zero_ptr,
    zero_n,
    H,
    I,
    TOP_K,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    FUSED: tl.constexpr,
    DESC: tl.constexpr,
    MMA: tl.constexpr,
    ZERO: tl.constexpr,
    STAGES: tl.constexpr,
):
    # one program per (pair, column tile): a matrix-vector product without sorting (ZERO
    # as in _gemm1)
    if ZERO:
        _zero_share(zero_ptr, zero_n, 1024)
    n_out = I if FUSED else 2 * I
    n_tiles = tl.cdiv(n_out, BLOCK_N)
    pair = (tl.program_id(0) // n_tiles).to(tl.int64)
    col0 = (tl.program_id(0) % n_tiles) * BLOCK_N
    cols = col0 + tl.arange(0, BLOCK_N)
    base = tl.load(ids_ptr + pair).to(tl.int64) * 2 * I
    if MMA:
        acc_g = tl.zeros((BLOCK_N, 16), dtype=tl.float32)
    else:
        acc_g = tl.zeros((BLOCK_N,), dtype=tl.float32)
    acc_u = tl.zeros_like(acc_g)
    x_row = x_ptr + (pair // TOP_K) * H
    for k0 in tl.range(0, H, BLOCK_K, num_stages=STAGES):
        xk = _vec(x_row, k0 + tl.arange(0, BLOCK_K), H, 16, 0, MMA)
        w = _w_tile(w_ptr, w_desc, base + col0, base + n_out, k0, H, BLOCK_N, BLOCK_K, DESC)
        acc_g = _gemv(w, xk, acc_g, MMA)
        if FUSED:
            w = _w_tile(w_ptr, w_desc, base + I + col0, base + 2 * I, k0, H, BLOCK_N, BLOCK_K, DESC)
            acc_u = _gemv(w, xk, acc_u, MMA)
    if MMA:  # only column 0 holds products
        g = tl.sum(acc_g, axis=1)
        u = tl.sum(acc_u, axis=1)
    else:
        g, u = acc_g, acc_u
    if FUSED:
        g = g / (1.0 + tl.exp(-g)) * u
    tl.store(h_ptr + pair * n_out + cols, g.to(h_ptr.dtype.element_ty), mask=cols < n_out)


@triton.jit
def _pair_gemm2(
    h_ptr,
    ids_ptr,
    weight_ptr,
    w_ptr,
    w_desc,
    y_ptr,
    out_ptr,
    cnt_ptr,
    H,
    I,
    TOP_K,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DESC: tl.constexpr,
    COMBINE: tl.constexpr,
    SPLIT_K: tl.constexpr,
    MMA: tl.constexpr,
    ROWS: tl.constexpr,
    FINISH: tl.constexpr,
    STAGES: tl.constexpr,
):
    # down projection one pair at a time (COMBINE 0-2 as in _gemm2), or one token at a
    # time summing its k pairs (3: the weighted gather-sum fused into the GEMM). With MMA,
    # pair j of the program adds into column j of a [BLOCK_N, ROWS] accumulator in one
    # software-pipelined loop over (pair, K step); the columns are weighted and summed last.
    n_tiles = tl.cdiv(H, BLOCK_N)
    tile = tl.program_id(0) // SPLIT_K
    col0 = (tile % n_tiles) * BLOCK_N
    cols = col0 + tl.arange(0, BLOCK_N)
    k_span = tl.cdiv(tl.cdiv(I, BLOCK_K), SPLIT_K) * BLOCK_K
    k_lo = (tl.program_id(0) % SPLIT_K) * k_span
    k_hi = min(k_lo + k_span, I)
    first = (tile // n_tiles).to(tl.int64)
    n_pairs = 1
    if COMBINE == 3:
        first = first * TOP_K
        n_pairs = TOP_K
    if MMA:
        steps = tl.cdiv(k_hi - k_lo, BLOCK_K)
        acc2 = tl.zeros((BLOCK_N, ROWS), dtype=tl.float32)
        for step in tl.range(0, n_pairs * steps, num_stages=STAGES):
            j = step // steps
            k0 = k_lo + (step % steps) * BLOCK_K
            base = tl.load(ids_ptr + first + j).to(tl.int64) * H
            hk = _vec(h_ptr + (first + j) * I, k0 + tl.arange(0, BLOCK_K), k_hi, ROWS, j, MMA)
            w = _w_tile(w_ptr, w_desc, base + col0, base + H, k0, I, BLOCK_N, BLOCK_K, DESC)
            acc2 = _gemv(w, hk, acc2, MMA)
        j = tl.arange(0, ROWS)
        if COMBINE != 1:
            scale = tl.load(weight_ptr + first + j, mask=j < n_pairs, other=0.0)
        else:
            scale = (j < n_pairs).to(tl.float32)
        acc = tl.sum(acc2 * scale[None, :], axis=1)
    else:
        acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for pair in range(first, first + n_pairs):
            base = tl.load(ids_ptr + pair).to(tl.int64) * H
            part = tl.zeros((BLOCK_N,), dtype=tl.float32)
            for k0 in tl.range(k_lo, k_hi, BLOCK_K, num_stages=STAGES):
                hk = _vec(h_ptr + pair * I, k0 + tl.arange(0, BLOCK_K), k_hi, ROWS, 0, MMA)
                w = _w_tile(w_ptr, w_desc, base + col0, base + H, k0, I, BLOCK_N, BLOCK_K, DESC)
                part = _gemv(w, hk, part, MMA)
            if COMBINE != 1:
                part = part * tl.load(weight_ptr + pair)
            acc += part
    if COMBINE == 2:
        tl.atomic_add(y_ptr + (first // TOP_K) * H + cols, acc, mask=cols < H, sem="relaxed")
        if FINISH:  # (FINISH as in _gemm2)
            token = first // TOP_K + tl.zeros((1,), dtype=tl.int64)
            one = tl.full((1,), 1, dtype=tl.int1)
            _finish(y_ptr, out_ptr, cnt_ptr, token, tile % n_tiles, cols, one, cols < H, H,
                    n_tiles, TOP_K * SPLIT_K, False)  # fmt: skip
    else:
        out = first // TOP_K if COMBINE == 3 else first
        tl.store(y_ptr + out * H + cols, acc.to(y_ptr.dtype.element_ty), mask=cols < H)


@triton.jit
def _silu_mul(g_ptr, h_ptr, I, BLOCK: tl.constexpr):
    # the separate activation pass: h[p] = silu(gate[p]) · up[p] from the [P, 2I] product
    pair = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = cols < I
    g = tl.load(g_ptr + pair * 2 * I + cols, mask=m, other=0.0).to(tl.float32)
    u = tl.load(g_ptr + pair * 2 * I + I + cols, mask=m, other=0.0).to(tl.float32)
    tl.store(
        h_ptr + pair * I + cols, (g / (1.0 + tl.exp(-g)) * u).to(h_ptr.dtype.element_ty), mask=m
    )


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
