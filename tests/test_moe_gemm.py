"""moe_gemm on the CPU: inputs, reference, baseline, floors, and checks that catch wrong
implementations."""

import math

import pytest
import torch

from ksearch.checking import judge
from ksearch.task import H100_CEILINGS
from tasks.moe_gemm import TASK, cost, suites

SMOKE = TASK.suites["smoke"]


def naive(x, topk_ids, topk_weights, w1, w2):
    """One (token, slot) pair at a time, in float64."""
    inter = w2.shape[2]
    out = torch.zeros(x.shape, dtype=torch.float64)
    for t in range(x.shape[0]):
        for j in range(topk_ids.shape[1]):
            e = int(topk_ids[t, j])
            gu = w1[e].double() @ x[t].double()
            act = torch.nn.functional.silu(gu[:inter]) * gu[inter:]
            out[t] += float(topk_weights[t, j]) * (w2[e].double() @ act)
    return out


@pytest.mark.parametrize("w", SMOKE, ids=lambda w: w.name)
def test_the_reference_matches_a_pair_by_pair_computation(w):
    inputs = TASK.make_inputs(w, seed=5, device="cpu")
    ref = TASK.reference(**inputs)
    assert ref.dtype == torch.float32 and ref.shape == inputs["x"].shape
    torch.testing.assert_close(ref.double(), naive(**inputs), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("w", SMOKE, ids=lambda w: w.name)
def test_the_baseline_passes_the_checks(w):
    inputs = TASK.make_inputs(w, seed=9, device="cpu")
    saved = {k: v.clone() for k, v in inputs.items()}
    from tasks.moe_gemm.baseline import run

    status, reason, _ = judge(TASK, run(**inputs), inputs, saved)
    assert status == "passed", reason


def test_inputs_follow_the_contract_and_are_reproducible():
    w = SMOKE[1]  # weights left as softmax probabilities
    a = TASK.make_inputs(w, seed=3, device="cpu")
    b = TASK.make_inputs(w, seed=3, device="cpu")
    assert all(torch.equal(a[k], b[k]) for k in a)
    e, k, h, i, t = (w[n] for n in "EkHIT")
    assert a["x"].shape == (t, h) and a["w1"].shape == (e, 2 * i, h) and a["w2"].shape == (e, h, i)
    assert a["topk_ids"].dtype == torch.int32 and a["topk_weights"].dtype == torch.float32
    ids = a["topk_ids"]
    assert int(ids.min()) >= 0 and int(ids.max()) < e
    assert all(len(set(row.tolist())) == k for row in ids)  # distinct experts per token
    assert not torch.allclose(a["topk_weights"].sum(-1), torch.ones(t))
    renormed = TASK.make_inputs(SMOKE[0], seed=3, device="cpu")["topk_weights"]
    torch.testing.assert_close(renormed.sum(-1), torch.ones(renormed.shape[0]))


def test_skewed_routing_favours_some_experts():
    w = suites.workload((16, 2, 32, 16), 4000, "float16", routing="zipf")
    counts = torch.bincount(TASK.make_inputs(w, 0, "cpu")["topk_ids"].reshape(-1).long())
    assert counts.max() > 4 * counts.min().clamp(min=1)


def test_the_suites_cover_the_layers_token_counts_and_regimes():
    default = TASK.suites["default"]
    assert len(default) == 24
    shapes = {(w["E"], w["k"], w["H"], w["I"]) for w in default}
    assert shapes == set(suites.SHAPES)
    assert {w["T"] for w in default} == {1, 16, 64, 256, 1024, 4096}
    assert {w["renorm"] for w in default} == {True, False}
    assert {TASK.regime(w) for w in default} == {r for r, _, _ in cost.REGIMES}
    full = TASK.suites["full"]
    names = [w.name for w in full]
    assert {w.name for w in default} < set(names) and len(set(names)) == len(names)
    assert any(w["routing"] == "zipf" for w in full) and any(w["T"] == 16384 for w in full)
    held = {(w["E"], w["k"], w["H"], w["I"]) for w in full} - shapes
    assert held == set(suites.HELD_OUT)
    assert all(w["dtype"] == "float16" for w in SMOKE)


@pytest.mark.parametrize(
    ("shape", "t", "floor_us"),
    [  # measured-ceiling floors of ../shared/GPU.md (3.0 TB/s, about 770 TFLOP/s)
        (suites.MIXTRAL_TP2, 1, 117),
        (suites.QWEN3_30B_TP2, 1, 12.6),
        (suites.DEEPSEEK_V3_TP4, 1, 59),
        (suites.GPT_OSS_120B, 1, 66),
        (suites.MIXTRAL_TP2, 4096, 1850),
    ],
)
def test_floors_match_the_recorded_ones(shape, t, floor_us):
    w = suites.workload(shape, t)
    assert math.isclose(TASK.floor(w, H100_CEILINGS), floor_us, rel_tol=0.05)


def test_with_inputs_the_floor_counts_the_experts_their_routing_touches():
    w = suites.workload(suites.QWEN3_30B_TP2, 16)  # E=128, k=8, H=2048, I=384
    same_eight = {"topk_ids": torch.arange(8, dtype=torch.int32).repeat(16, 1)}
    all_once = {"topk_ids": torch.arange(128, dtype=torch.int32).view(16, 8)}
    other = 2 * 16 * 2048 * 2 + 16 * 8 * 8  # activations in and out, routing
    for inputs, experts in ((same_eight, 8), (all_once, 128)):
        weights = experts * 3 * 2048 * 384 * 2
        expected = 1e6 * (weights + other) / H100_CEILINGS["bytes"]
        assert math.isclose(TASK.floor(w, H100_CEILINGS, inputs), expected, rel_tol=1e-9)
    by_routing = (TASK.floor(w, H100_CEILINGS, x) for x in (same_eight, all_once))
    assert next(by_routing) < TASK.floor(w, H100_CEILINGS) < next(by_routing)


def test_the_floor_is_memory_bound_at_small_t_and_compute_bound_at_large_t():
    small = suites.workload(suites.MIXTRAL_TP2, 16)
    large = suites.workload(suites.MIXTRAL_TP2, 16384)
    mem = lambda w: cost.min_bytes(w) / H100_CEILINGS["bytes"]  # noqa: E731
    comp = lambda w: cost.flops(w) / H100_CEILINGS["flops"]  # noqa: E731
    assert mem(small) > comp(small) and comp(large) > mem(large)


def wrong(kind):
    from tasks.moe_gemm.baseline import run as honest

    def run(x, topk_ids, topk_weights, w1, w2):
        if kind == "swapped_swiglu":
            inter = w2.shape[2]
            w1 = torch.cat([w1[:, inter:], w1[:, :inter]], dim=1)
        elif kind == "ignored_weights":
            topk_weights = torch.ones_like(topk_weights)
        elif kind == "renormalized_weights":
            topk_weights = topk_weights / topk_weights.sum(-1, keepdim=True)
        elif kind == "first_expert_only":
            topk_weights = topk_weights.clone()
            topk_weights[:, 1:] = 0
        elif kind == "no_activation":
            out = torch.zeros(x.shape, dtype=torch.float32)
            for t in range(x.shape[0]):
                for j in range(topk_ids.shape[1]):
                    e = int(topk_ids[t, j])
                    gu = w1[e].float() @ x[t].float()
                    inter = w2.shape[2]
                    out[t] += topk_weights[t, j] * (w2[e].float() @ (gu[:inter] * gu[inter:]))
            return out.to(x.dtype)
        return honest(x, topk_ids, topk_weights, w1, w2)

    return run


@pytest.mark.parametrize(
    "kind",
    ["swapped_swiglu", "ignored_weights", "renormalized_weights", "first_expert_only",
     "no_activation"],
)  # fmt: skip
def test_the_checks_catch_wrong_implementations(kind):
    w = SMOKE[1]  # k = 2, weights that do not sum to one
    inputs = TASK.make_inputs(w, seed=2, device="cpu")
    saved = {k: v.clone() for k, v in inputs.items()}
    status, reason, _ = judge(TASK, wrong(kind)(**inputs), inputs, saved)
    assert status == "incorrect" and "elements off" in reason, (kind, reason)
