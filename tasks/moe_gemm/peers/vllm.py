"""Peer for `ksearch.bench`: vLLM's Triton fused_moe with its tuned tile tables (w1 is
[E, 2I, H], gate rows first, as vLLM lays it out)."""

import torch
from vllm.model_executor.layers.fused_moe import fused_experts


def run(x, topk_ids, topk_weights, w1, w2):
    with torch.no_grad():
        return fused_experts(x, w1, w2, topk_weights, topk_ids)
