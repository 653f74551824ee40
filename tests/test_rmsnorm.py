"""rmsnorm under the Triton interpreter: rendered plans against the reference, and checks."""

import itertools
import random

import pytest
import torch

from ksearch.checking import judge
from ksearch.plan import Action, actions
from tasks.rmsnorm import TASK
from tasks.rmsnorm.render import render

pytestmark = pytest.mark.interpret


def sample_plans(count: int, seed: int = 0):
    """Every feasible structure in both regimes, then a random walk from each of them."""
    rng = random.Random(seed)
    starts = []
    for passes, grid, weight in itertools.product(
        ("one", "two"), ("rows", "persistent"), ("per_block", "hoisted")
    ):
        plan = TASK.space.root()
        for param, value in (("passes", passes), ("grid", grid), ("weight", weight)):
            plan = Action(param, value).apply(plan)
        if TASK.infeasible(plan) is None:
            starts.append(plan)
    out = list(starts)
    while len(out) < count:
        plan = rng.choice(starts)
        for _ in range(rng.randint(1, 6)):
            moves = [a for a in actions(TASK.space, plan) if TASK.infeasible(a.apply(plan)) is None]
            plan = rng.choice(moves).apply(plan)
        out.append(plan)
    return out


def load(source: str):
    namespace: dict = {}
    exec(compile(source, "<candidate>", "exec"), namespace)
    return namespace["run"]


PLANS = sample_plans(24)


def test_the_sample_covers_every_structural_decision():
    for param in ("passes", "grid", "weight"):
        seen = {p.get(param, r) for p in PLANS for r in TASK.space.regimes}
        assert seen == set(TASK.space.param(param).values), param


@pytest.mark.parametrize("plan", PLANS[:5] + PLANS[5::4], ids=lambda p: p.key)
def test_rendered_plans_match_the_reference_on_the_smoke_suite(plan):
    run = load(render(plan))
    for w in TASK.suites["smoke"]:
        inputs = TASK.make_inputs(w, seed=11, device="cpu")
        saved = {k: v.clone() for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        out = run(**inputs)
        status, reason, _ = judge(TASK, out, inputs, saved)
        assert status == "passed", (w.name, reason)


def test_every_structure_renders_its_own_kernel():
    source = render(PLANS[5])
    assert source.startswith("# ksearch-plan: ")
    for plan in PLANS:
        for _regime, settings in plan.table().items():
            assert f"def _rmsnorm_{settings['passes']}_pass_{settings['grid']}" in render(plan)


def wrong(kind: str):
    def run(x, weight, eps):
        xf = x.float()
        if kind == "no_weight":
            y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        elif kind == "mean_not_rms":
            y = (xf - xf.mean(-1, keepdim=True)) * weight.float()
        elif kind == "partial":
            y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
            y[:, -1] = 0
        elif kind == "in_place":
            x.mul_(1.0)
            x[0, 0] += 1
            return x
        else:
            y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
            return y  # float32: the wrong dtype
        return y.to(x.dtype)

    return run


@pytest.mark.parametrize(
    ("kind", "status", "words"),
    [
        ("no_weight", "incorrect", "elements off"),
        ("mean_not_rms", "incorrect", "elements off"),
        ("partial", "incorrect", "elements off"),
        ("in_place", "rejected", "aliases input x"),
        ("wrong_dtype", "incorrect", "dtype"),
    ],
)
def test_the_checks_catch_wrong_implementations(kind, status, words):
    w = TASK.suites["smoke"][1]
    inputs = TASK.make_inputs(w, seed=3, device="cpu")
    saved = {k: v.clone() for k, v in inputs.items() if isinstance(v, torch.Tensor)}
    got, reason, _ = judge(TASK, wrong(kind)(**inputs), inputs, saved)
    assert got == status and words in reason


def test_nan_where_the_reference_is_finite_fails():
    w = TASK.suites["smoke"][0]
    inputs = TASK.make_inputs(w, seed=0, device="cpu")
    saved = {k: v.clone() for k, v in inputs.items() if isinstance(v, torch.Tensor)}
    out = torch.full_like(inputs["x"], float("nan"))
    assert judge(TASK, out, inputs, saved)[0] == "incorrect"


def test_weights_are_random_and_sizes_odd():
    w = TASK.suites["smoke"][1]
    weight = TASK.make_inputs(w, seed=0, device="cpu")["weight"]
    assert not torch.allclose(weight, torch.ones_like(weight))
    assert any(w["N"] % 2 for w in TASK.suites["smoke"])


def test_estimates_prefer_the_fused_kernel_to_eager_torch_and_respect_the_floor():
    from ksearch.task import H100_CEILINGS

    best = PLANS[0]
    for w in TASK.suites["default"]:
        assert TASK.estimate(best, w) > TASK.floor(w, H100_CEILINGS)
        assert TASK.estimate(None, w) > TASK.floor(w, H100_CEILINGS)
    root = TASK.space.root()
    big = TASK.suites["default"][5]
    assert TASK.estimate(root, big) < TASK.estimate(None, big)
