"""Peer for `ksearch.bench`: liger-kernel's fused MoE forward (liger-kernel >= 0.8.5).

Its routing metadata ends in one host synchronization, so it cannot be captured in a CUDA
graph and is timed eagerly.
"""

import torch
from liger_kernel.ops.fused_moe import LigerFusedMoEFunction


def run(x, topk_ids, topk_weights, w1, w2):
    with torch.no_grad():
        return LigerFusedMoEFunction.apply(x, w1, w2, topk_ids, topk_weights)
