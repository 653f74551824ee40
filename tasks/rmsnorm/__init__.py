"""rmsnorm: y = x * rsqrt(mean(x^2, last dim) + eps) * weight, the engine's small task."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ksearch.plan import DesignSpace, Plan
from ksearch.task import Prior, Workload
from tasks.rmsnorm import cost, render, space

HERE = Path(__file__).parent


def _w(m: int, n: int, dtype: str = "bfloat16", eps: float = 1e-6) -> Workload:
    return Workload(f"M{m}_N{n}_{dtype}", {"M": m, "N": n, "dtype": dtype, "eps": eps})


# smoke: the CPU interpreter in seconds; odd sizes, both regimes, fp16 and fp32 (the
# interpreter's bf16 dot is wrong, and rmsnorm has no dot, but fp16 keeps CPU runs alike).
# In each regime more rows than the interpreter's persistent grid (8 programs), and row
# counts that leave the last block of ROWS=16 partial; few enough that the slowest plan
# (two passes of 512-wide chunks, a row per program) checks the suite in about 3 s.
SMOKE = (
    _w(1, 7, "float16"),
    _w(37, 1000, "float16", 1e-5),
    _w(5, 2050, "float32"),
    _w(19, 4099, "float16"),
    _w(3, 8191, "float32", 1e-5),
)
# default: LLM hidden sizes on the GPU, from one decode token to long prefills, bf16.
DEFAULT = (
    _w(1, 512),
    _w(32768, 512),
    _w(4096, 768),
    _w(16384, 1024),
    _w(1, 4096),
    _w(4096, 4096),
    _w(256, 5120),
    _w(2048, 7168),
    _w(8192, 8192),
)
# full: the default suite plus odd sizes, other dtypes and held-out shapes.
FULL = (
    *DEFAULT,
    _w(1000, 3000),
    _w(4097, 1537),
    _w(7, 12288),
    _w(65536, 4096),
    _w(3000, 2048, "float16"),
    _w(513, 1023, "float32"),
)


@dataclass(frozen=True)
class RmsNorm:
    """The rmsnorm task (contract in ksearch.task.Task)."""

    name: str = "rmsnorm"
    suites: Mapping[str, tuple[Workload, ...]] = field(
        default_factory=lambda: {"smoke": SMOKE, "default": DEFAULT, "full": FULL}
    )
    baseline: Path = HERE / "baseline.py"
    spec: Path = HERE / "spec.md"
    space: DesignSpace | None = space.SPACE
    impossible_margin: float = 2.0

    def make_inputs(self, workload: Workload, seed: int, device: str) -> dict[str, Any]:
        import torch

        # generated on the device itself: the same seed gives the same inputs in every
        # process on that device, and large inputs cost no host time
        gen = torch.Generator(device=device).manual_seed(seed)
        dtype = getattr(torch, workload["dtype"])
        m, n = workload["M"], workload["N"]
        x = torch.randn(m, n, generator=gen, dtype=torch.float32, device=device)
        weight = 1.0 + 0.5 * torch.randn(n, generator=gen, dtype=torch.float32, device=device)
        return {"x": x.to(dtype), "weight": weight.to(dtype), "eps": float(workload["eps"])}

    def reference(self, x: Any, weight: Any, eps: float) -> Any:
        xf = x.float()
        rstd = (xf.pow(2).mean(dim=-1, keepdim=True) + eps).rsqrt()
        return xf * rstd * weight.float()

    def tolerance(self, dtype: Any) -> tuple[float, float]:
        name = str(dtype).removeprefix("torch.")
        return {"bfloat16": (3e-2, 2e-2), "float16": (5e-3, 5e-3)}.get(name, (1e-4, 1e-4))

    def floor(
        self,
        workload: Workload,
        ceilings: Mapping[str, float],
        inputs: Mapping[str, Any] | None = None,
    ) -> float:
        return cost.floor(workload, ceilings)  # the same for any values of the inputs

    def regime(self, workload: Workload) -> str:
        return "long" if workload["N"] >= space.LONG_ROW else "short"

    def render(self, plan: Plan) -> str:
        return render.render(plan)

    def estimate(self, plan: Plan | None, workload: Workload) -> float:
        return cost.estimate(plan, workload, self.regime(workload))

    def infeasible(self, plan: Plan) -> str | None:
        max_n: dict[str, int] = {}
        for suite in self.suites.values():
            for w in suite:
                r = self.regime(w)
                max_n[r] = max(max_n.get(r, 0), w["N"])
        return space.infeasible(plan, max_n)

    def canonical(self, plan: Plan) -> Plan:
        return plan  # every setting is written into the candidate, read or not

    def prior(self, parent: Plan, child: Plan, regime: str) -> Prior | None:
        return space.prior(parent, child, regime)


TASK = RmsNorm()
