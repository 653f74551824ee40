"""moe_gemm baseline: what a PyTorch user writes with grouped GEMMs.

Sort the (token, expert) pairs by expert, gather their rows, one grouped GEMM for gate and
up, SiLU·mul, one grouped GEMM down, then a weighted index_add into the output. No host
synchronization, so it can be captured in a CUDA graph. Where `torch._grouped_mm` cannot
run (on the CPU, or for other dtypes than bfloat16) a loop over experts does the GEMMs.
"""

import torch


def _grouped(a, b, offsets, counts_cpu):
    """a [M, K] rows grouped by expert, b [E, K, N] -> [M, N]."""
    if a.is_cuda and a.dtype == torch.bfloat16 and hasattr(torch, "_grouped_mm"):
        return torch._grouped_mm(a, b, offs=offsets)
    out = a.new_empty(a.shape[0], b.shape[2])
    start = 0
    for e, n in enumerate(counts_cpu):
        out[start : start + n] = a[start : start + n] @ b[e]
        start += n
    return out


def run(x, topk_ids, topk_weights, w1, w2):
    t, k = topk_ids.shape
    num_experts, two_i, _ = w1.shape
    flat = topk_ids.reshape(-1).long()
    order = torch.argsort(flat, stable=True)
    token = order // k
    # a scatter rather than bincount, which reads the largest id back to the host
    counts = torch.zeros(num_experts, dtype=torch.long, device=x.device)
    counts.scatter_add_(0, flat, torch.ones_like(flat))
    offsets = torch.cumsum(counts, 0).to(torch.int32)
    counts_cpu = None if x.is_cuda and x.dtype == torch.bfloat16 else counts.tolist()
    a = x[token]
    gate_up = _grouped(a, w1.transpose(1, 2), offsets, counts_cpu)
    inter = two_i // 2
    act = torch.nn.functional.silu(gate_up[:, :inter]) * gate_up[:, inter:]
    down = _grouped(act, w2.transpose(1, 2), offsets, counts_cpu)
    weighted = down.float() * topk_weights.reshape(-1)[order, None]
    out = torch.zeros(t, x.shape[1], dtype=torch.float32, device=x.device)
    out.index_add_(0, token, weighted)
    return out.to(x.dtype)
