"""Render moe_gemm plans as self-contained Triton candidates.

A candidate is the kernels of `kernels.py` and `pair_kernels.py` followed by the launch
code of `launch.py` (without their imports of each other), with the plan's settings per
regime written into CONFIGS. All three are ordinary modules, so the code every candidate
runs is linted and tested as it is; a plan only picks among their branches and sets their
tiles.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from ksearch.plan import Plan, header
from tasks.moe_gemm.cost import INF, REGIMES
from tasks.moe_gemm.space import canonical

HERE = Path(__file__).parent
_CONFIGS = "CONFIGS: dict = {}"
_REGIMES = "REGIMES: list = []"


def _without_docstring_and_imports(source: str) -> str:
    """`source` from its first statement that is neither the docstring nor an import."""
    tree = ast.parse(source)
    body = [
        node
        for node in tree.body
        if not isinstance(node, ast.Import | ast.ImportFrom)
        and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
    ]
    first = body[0]
    decorators = getattr(first, "decorator_list", [])
    line = decorators[0].lineno if decorators else first.lineno
    return "".join(source.splitlines(keepends=True)[line - 1 :])


@cache
def _template() -> str:
    """kernels.py, pair_kernels.py and launch.py without their imports, with the regime
    bounds written in and the CONFIGS line left to fill (read once per process)."""
    kernels = (HERE / "kernels.py").read_text()
    pair = _without_docstring_and_imports((HERE / "pair_kernels.py").read_text())
    launch = _without_docstring_and_imports((HERE / "launch.py").read_text())
    for line in (_CONFIGS, _REGIMES):
        if line not in launch:
            raise RuntimeError(f"launch.py lost its {line!r} line")
    bounds = [tuple(1e30 if b == INF else b for b in row) for row in REGIMES]
    imports = (
        "from triton.tools.tensor_descriptor import TensorDescriptor\n"
        "from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait\n"
        "import torch\n"
    )
    return (
        kernels.replace("import triton\n", imports + "import triton\n", 1)
        + "\n\n"
        + pair
        + "\n\n"
        + launch.replace(_REGIMES, f"REGIMES = {bounds}")
    )


def render(plan: Plan) -> str:
    """The candidate for `plan`, whose header holds the plan's canonical form."""
    plan = canonical(plan)
    rows = "".join(f"    {regime!r}: {row!r},\n" for regime, row in plan.table().items())
    return header(plan) + _template().replace(_CONFIGS, "CONFIGS = {\n" + rows + "}")
