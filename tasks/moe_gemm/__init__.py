"""moe_gemm: the expert computation of a mixture-of-experts layer, routing given.

out[t] = Σ_j topk_weights[t, j] · (silu(x[t] · gate_eᵀ) ⊙ (x[t] · up_eᵀ)) · w2_eᵀ with
e = topk_ids[t, j], gate_e = w1[e, :I], up_e = w1[e, I:], computed in float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ksearch.plan import DesignSpace, Plan
from ksearch.task import Prior, Workload
from tasks.moe_gemm import cost, priors, render, space, suites

HERE = Path(__file__).parent
HEADLINE = suites.HEADLINE


@dataclass(frozen=True)
class MoeGemm:
    """The moe_gemm task (contract in ksearch.task.Task)."""

    name: str = "moe_gemm"
    suites: Mapping[str, tuple[Workload, ...]] = field(
        default_factory=lambda: {
            "smoke": suites.SMOKE,
            "default": suites.DEFAULT,
            "cells": suites.CELLS,
            "full": suites.FULL,
        }
    )
    baseline: Path = HERE / "baseline.py"
    spec: Path = HERE / "spec.md"
    space: DesignSpace | None = space.SPACE
    impossible_margin: float = 1.5
    #: the 16 cells of ../shared/GPU.md's peer numbers
    headline: tuple[str, ...] = HEADLINE
    #: peers `ksearch.bench` times when their package imports: label -> (package, adapter)
    peers: Mapping[str, tuple[str, Path]] = field(
        default_factory=lambda: {
            "liger": ("liger_kernel", HERE / "peers" / "liger.py"),
            "vllm": ("vllm", HERE / "peers" / "vllm.py"),
        }
    )

    def make_inputs(self, workload: Workload, seed: int, device: str) -> dict[str, Any]:
        return suites.make_inputs(workload, seed, device)

    def reference(self, x: Any, topk_ids: Any, topk_weights: Any, w1: Any, w2: Any) -> Any:
        """float32 throughout, one expert at a time (the weights of one expert in float32 at
        most, so the largest shapes fit beside the candidate's inputs)."""
        import torch

        t, h = x.shape
        inter = w2.shape[2]
        out = torch.zeros(t, h, dtype=torch.float32, device=x.device)
        flat = topk_ids.reshape(-1).long()
        token = torch.arange(t, device=x.device).repeat_interleave(topk_ids.shape[1])
        weight = topk_weights.reshape(-1).float()
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=w1.shape[0]).tolist()
        start = 0
        for e, n in enumerate(counts):
            if n == 0:
                continue
            rows = order[start : start + n]
            start += n
            xe = x[token[rows]].float()
            gate_up = xe @ w1[e].float().t()
            act = torch.nn.functional.silu(gate_up[:, :inter]) * gate_up[:, inter:]
            y = act @ w2[e].float().t()
            out.index_add_(0, token[rows], y * weight[rows, None])
        return out

    def tolerance(self, dtype: Any) -> tuple[float, float]:
        name = str(dtype).removeprefix("torch.")
        return {"bfloat16": (2e-2, 2e-2), "float16": (5e-3, 5e-3)}.get(name, (1e-4, 1e-4))

    def floor(
        self,
        workload: Workload,
        ceilings: Mapping[str, float],
        inputs: Mapping[str, Any] | None = None,
    ) -> float:
        """With `inputs`, the weights of the experts their routing touches count, not the
        expected number: at T=16 on 128 experts the two differ by 10% either way."""
        if inputs is None:
            return cost.floor(workload, ceilings)
        touched = int(inputs["topk_ids"].unique().numel())
        return cost.floor(workload, ceilings, touched)

    def regime(self, workload: Workload) -> str:
        return cost.regime(workload)

    def render(self, plan: Plan) -> str:
        return render.render(plan)

    def estimate(self, plan: Plan | None, workload: Workload) -> float:
        return cost.estimate(None if plan is None else space.SPACE.complete(plan), workload)

    def infeasible(self, plan: Plan) -> str | None:
        return space.infeasible(plan)

    def canonical(self, plan: Plan) -> Plan:
        return space.canonical(plan)

    def prior(self, parent: Plan, child: Plan, regime: str) -> Prior | None:
        return priors.prior(parent, child, regime)


TASK = MoeGemm()
