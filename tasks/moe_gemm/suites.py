"""moe_gemm workloads and their inputs.

A workload names the layer shape (E experts, top-k, hidden H, intermediate I), the token
count T, the dtype, the routing (uniform: softmax top-k of random logits; zipf: the same
with a popularity bias per expert) and whether the top-k weights are renormalized to sum
to one (Mixtral, Qwen3) or left as softmax probabilities (they do not sum to one).
"""

from __future__ import annotations

from typing import Any

from ksearch.task import Workload
from tasks.moe_gemm.cost import ZIPF_EXPONENT

#: (E, k, H, I) of the GPU suites' layers (../shared/GPU.md)
MIXTRAL_TP2 = (8, 2, 4096, 7168)
QWEN3_30B_TP2 = (128, 8, 2048, 384)
DEEPSEEK_V3_TP4 = (256, 8, 7168, 512)
GPT_OSS_120B = (128, 4, 2880, 2880)
SHAPES = (MIXTRAL_TP2, QWEN3_30B_TP2, DEEPSEEK_V3_TP4, GPT_OSS_120B)
#: held out of the search, for final validation only
HELD_OUT = ((128, 8, 2048, 768), (32, 4, 2880, 2880), (8, 2, 4096, 3584), (64, 6, 2048, 1408))


def workload(
    shape: tuple[int, int, int, int],
    t: int,
    dtype: str = "bfloat16",
    *,
    routing: str = "uniform",
    renorm: bool = True,
) -> Workload:
    e, k, h, i = shape
    short = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[dtype]
    name = f"E{e}_k{k}_H{h}_I{i}_T{t}_{short}"
    if routing != "uniform":
        name += f"_{routing}"
    if not renorm:
        name += "_raw"
    params = {
        "E": e, "k": k, "H": h, "I": i, "T": t,
        "dtype": dtype, "routing": routing, "renorm": renorm,
    }  # fmt: skip
    return Workload(name, params)


# smoke: the CPU interpreter in seconds; odd sizes, fp16 (the interpreter's bf16 dot is wrong).
# The skewed routing gives an expert 32-48 rows (a last 32-row block and a tail of up to 16)
# and one with more than 48 (a block before the last, which must not take the tail); the
# interpreter runs a program per pair under pair dispatch, so it has no more pairs than that.
SMOKE = (
    workload((4, 2, 64, 48), 5, "float16"),
    workload((8, 2, 96, 80), 33, "float16", renorm=False),
    workload((3, 1, 40, 24), 1, "float16"),
    workload((16, 4, 64, 48), 56, "float16", routing="zipf"),
)
# default: four real layers from one decode token to long prefills, bf16; the weights of
# every other token count do not sum to one
DEFAULT = tuple(
    workload(shape, t, renorm=n % 2 == 0)
    for shape in SHAPES
    for n, t in enumerate((1, 16, 64, 256, 1024, 4096))
)
#: the 16 cells of ../shared/GPU.md's peer numbers: 4 layers × T ∈ {1, 16, 256, 4096}
CELLS = tuple(w for w in DEFAULT if w["T"] in (1, 16, 256, 4096))
HEADLINE = tuple(w.name for w in CELLS)
# full: the default suite, long prefills, odd token counts, skewed routing, held-out layers
FULL = (
    *DEFAULT,
    *(workload(shape, 16384) for shape in SHAPES),
    *(workload(shape, t, renorm=False) for shape in SHAPES for t in (3, 37, 1000)),
    *(workload(shape, t, routing="zipf") for shape in SHAPES for t in (64, 2048)),
    *(workload(shape, t) for shape in HELD_OUT for t in (1, 16, 256, 4096)),
)


def make_inputs(w: Workload, seed: int, device: str) -> dict[str, Any]:
    """Inputs drawn on the device itself, so every process on that device draws the same
    ones from a seed; weights scaled by 1/sqrt(fan-in) so outputs stay near unit scale."""
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)
    dtype = getattr(torch, w["dtype"])
    e, k, h, i, t = w["E"], w["k"], w["H"], w["I"], w["T"]
    x = torch.randn(t, h, generator=gen, device=device, dtype=dtype)
    w1 = torch.randn(e, 2 * i, h, generator=gen, device=device, dtype=dtype).mul_(h**-0.5)
    w2 = torch.randn(e, h, i, generator=gen, device=device, dtype=dtype).mul_(i**-0.5)
    logits = torch.randn(t, e, generator=gen, device=device, dtype=torch.float32)
    if w["routing"] == "zipf":
        rank = torch.randperm(e, generator=gen, device=device).float() + 1.0
        logits -= ZIPF_EXPONENT * torch.log(rank)  # expert popularity ∝ rank^-1.2
    weights, ids = torch.softmax(logits, dim=-1).topk(k, dim=-1)
    if w["renorm"]:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return {
        "x": x,
        "topk_ids": ids.to(torch.int32),
        "topk_weights": weights.float().contiguous(),
        "w1": w1,
        "w2": w2,
    }
