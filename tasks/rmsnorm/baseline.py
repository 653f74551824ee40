"""rmsnorm baseline: plain torch ops in float32, as an eager PyTorch user would write it."""

import torch


def run(x, weight, eps):
    xf = x.float()
    rstd = torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (xf * rstd * weight.float()).to(x.dtype)
