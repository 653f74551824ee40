"""Triton kernels of rendered moe_gemm candidates with one program per (token, expert) pair
(the second part of a candidate file): matrix-vector products without sorting, on CUDA
cores, or on tensor cores with the vector padded to an MMA tile so the weight loads are
software-pipelined.
"""

import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from tasks.moe_gemm.kernels import _finish, _prefetch_l2, _swiglu, _w_tile, _zero_share


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
    w2_ptr,
    lines2,
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
    PREFETCH: tl.constexpr,
    PDL: tl.constexpr,
):
    # one program per (pair, column tile): a matrix-vector product without sorting (ZERO
    # as in _gemm1). With PREFETCH, the pair's programs first ask L2 for the first lines2
    # 128-byte lines of its expert's down weights, so the down GEMM that follows finds
    # them there and DRAM streams both GEMMs' weights during this one. With PDL the down
    # GEMM, launched as a programmatic dependent, may start once every program has begun
    if PDL:
        gdc_launch_dependents()
    if ZERO:
        _zero_share(zero_ptr, zero_n, 1024)
    n_out = I if FUSED else 2 * I
    n_tiles = tl.cdiv(n_out, BLOCK_N)
    pair = (tl.program_id(0) // n_tiles).to(tl.int64)
    col0 = (tl.program_id(0) % n_tiles) * BLOCK_N
    expert = tl.load(ids_ptr + pair).to(tl.int64)
    if PREFETCH:
        per = tl.cdiv(lines2, n_tiles)
        lo = (tl.program_id(0) % n_tiles) * per
        line = 1024 // w2_ptr.dtype.element_ty.primitive_bitwidth
        w2_expert = w2_ptr + expert * H * I
        for l0 in range(lo, lo + per, 512):
            lines = l0 + tl.arange(0, 512)
            in_share = (lines < lo + per) & (lines < lines2)
            _prefetch_l2(w2_expert + lines.to(tl.int64) * line, in_share)
    cols = col0 + tl.arange(0, BLOCK_N)
    base = expert * 2 * I
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
        g = _swiglu(g, u)
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
    EARLY: tl.constexpr,
    PDL: tl.constexpr,
):
    # down projection one pair at a time (COMBINE 0-2 as in _gemm2), or one token at a
    # time summing its k pairs (3: the weighted gather-sum fused into the GEMM). With MMA,
    # pair j of the program adds into column j of a [BLOCK_N, ROWS] accumulator in one
    # software-pipelined loop over (pair, K step); the columns are weighted and summed last.
    # With EARLY (one pair on tensor cores) the first weight tile is loaded before anything
    # the gate/up GEMM writes; with PDL (a programmatic dependent launch) the program waits
    # for that GEMM only then, so the load overlaps it
    if PDL and not (EARLY and MMA and COMBINE != 3):
        gdc_wait()
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
        acc2 = tl.zeros((BLOCK_N, ROWS), dtype=tl.float32)
        if COMBINE == 3:
            # the token's experts loaded once: no load feeds a weight address in the loop,
            # so the weight loads are software-pipelined across the pairs
            js = tl.arange(0, ROWS)
            experts = tl.load(ids_ptr + first + js, mask=js < n_pairs, other=0).to(tl.int64)
            steps = tl.cdiv(k_hi - k_lo, BLOCK_K)
            for step in tl.range(0, n_pairs * steps, num_stages=STAGES):
                j = step // steps
                k0 = k_lo + (step % steps) * BLOCK_K
                base = tl.sum(tl.where(js == j, experts, 0)) * H
                hk = _vec(h_ptr + (first + j) * I, k0 + tl.arange(0, BLOCK_K), k_hi, ROWS, j, MMA)
                w = _w_tile(w_ptr, w_desc, base + col0, base + H, k0, I, BLOCK_N, BLOCK_K, DESC)
                acc2 = _gemv(w, hk, acc2, MMA)
        else:
            # one pair: addresses invariant in the loop, so its loads are software-pipelined
            base = tl.load(ids_ptr + first).to(tl.int64) * H
            k_rest = k_lo
            if EARLY:
                w = _w_tile(w_ptr, w_desc, base + col0, base + H, k_lo, I, BLOCK_N, BLOCK_K, DESC)
                if PDL:
                    gdc_wait()
                hk = _vec(h_ptr + first * I, k_lo + tl.arange(0, BLOCK_K), k_hi, ROWS, 0, MMA)
                acc2 = _gemv(w, hk, acc2, MMA)
                k_rest = k_lo + BLOCK_K
            for k0 in tl.range(k_rest, k_hi, BLOCK_K, num_stages=STAGES):
                hk = _vec(h_ptr + first * I, k0 + tl.arange(0, BLOCK_K), k_hi, ROWS, 0, MMA)
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
