"""moe_gemm's design space on the CPU: feasibility, canonical plans, rendering, priors, the
cost model, and rendered plans covering every structural decision run under the Triton
interpreter on the smoke suite."""

import math

import pytest

from ksearch.checking import judge
from ksearch.plan import Plan, read_plan
from ksearch.task import H100_CEILINGS
from tasks.moe_gemm import TASK, cost, suites
from tasks.moe_gemm.space import SPACE, canonical, infeasible

ROOT = SPACE.root()
DECISIONS = [p for p in SPACE.params if p.kind.value == "decision"]
#: small tiles, so the interpreter runs few and cheap programs
SMALL = dict(BLOCK_M=16, BLOCK_N1=32, BLOCK_K1=32, BLOCK_N2=32, BLOCK_K2=32, GROUP_M=4,
             num_stages1=2, num_stages2=2, SPLIT_K=1, TAIL_M=0)  # fmt: skip
PAIR = dict(SMALL, BLOCK_N1=64, BLOCK_K1=64, BLOCK_N2=64, BLOCK_K2=64)
#: 32-row blocks whose last block per expert takes up to 16 more rows
TAIL = dict(SMALL, BLOCK_M=32, TAIL_M=16)


def plan(regimes=SPACE.regimes, base=ROOT, **settings):
    for name, value in settings.items():
        base = base.with_value(name, value, tuple(regimes))
    return base


# every value of every structural decision appears in at least one of these plans
SAMPLE = {
    "padded-torch-rows": plan(**SMALL, dispatch="padded", metadata="torch"),
    "tilemap-triton-separate-reduce-swap-persistent-tma": plan(
        **SMALL,
        dispatch="tilemap",
        metadata="triton",
        epilogue="separate",
        combine="reduce",
        swap_ab=True,
        schedule="persistent",
        weights="descriptors",
    ),
    "padded-parallel-atomic-finished-in-kernels-splitk-swap-tma": plan(
        **dict(SMALL, SPLIT_K=2),
        dispatch="padded",
        metadata="parallel",
        combine="atomic",
        atomic_finish="kernels",
        swap_ab=True,
        weights="descriptors",
    ),
    "tilemap-atomic-finished-in-kernels-persistent-tail": plan(
        **dict(TAIL, SPLIT_K=2),
        dispatch="tilemap",
        combine="atomic",
        atomic_finish="kernels",
        schedule="persistent",
    ),
    "tilemap-parallel-persistent-tail": plan(
        **TAIL, dispatch="tilemap", metadata="parallel", schedule="persistent", combine="rows"
    ),
    "tilemap-torch-tail-tma": plan(
        **TAIL, dispatch="tilemap", metadata="torch", combine="reduce", weights="descriptors"
    ),
    "pair-fused-tma": plan(**PAIR, dispatch="pair", combine="fused", weights="descriptors"),
    "pair-separate-atomic-splitk": plan(
        **dict(PAIR, SPLIT_K=2), dispatch="pair", epilogue="separate", combine="atomic"
    ),
    "pair-reduce": plan(**PAIR, dispatch="pair", combine="reduce"),
    "pair-mma-fused": plan(**PAIR, dispatch="pair", pair_mma=True, combine="fused"),
    "pair-mma-separate-atomic-splitk-tma-finished-in-kernels-early-down": plan(
        **dict(PAIR, SPLIT_K=2, BLOCK_N1=32, BLOCK_N2=16),
        dispatch="pair",
        pair_mma=True,
        early_down=True,
        epilogue="separate",
        combine="atomic",
        atomic_finish="kernels",
        weights="descriptors",
    ),
    "per-regime": plan(
        ("medium",),
        plan(
            ("small",),
            plan(("light",), plan(**SMALL), **PAIR, dispatch="pair", combine="fused"),
            metadata="triton",
            swap_ab=True,
        ),
        dispatch="tilemap",
        metadata="parallel",
        combine="atomic",
    ),
}


def test_the_sample_represents_every_structural_decision():
    for p in DECISIONS:
        seen = {plan_.get(p.name, r) for plan_ in SAMPLE.values() for r in SPACE.regimes}
        assert seen == set(p.values), p.name
    smoke_regimes = {TASK.regime(w) for w in suites.SMOKE}
    assert {"light", "small", "medium"} <= smoke_regimes


def test_the_smoke_suite_routes_tails_for_the_last_blocks_to_absorb():
    # experts whose last 32-row block takes a remainder of 1-16 rows, and experts with a
    # block before it that must not take those rows
    counts = []
    for w in suites.SMOKE:
        ids = TASK.make_inputs(w, seed=4, device="cpu")["topk_ids"]
        counts += ids.flatten().bincount().tolist()
    assert any(32 < c <= 48 for c in counts)
    assert any(c > 48 + 16 for c in counts) or any(48 < c <= 64 for c in counts)


@pytest.mark.interpret
@pytest.mark.parametrize("name", list(SAMPLE))
def test_sampled_plans_pass_the_smoke_suite_under_the_interpreter(name):
    p = SAMPLE[name]
    assert infeasible(p) is None
    namespace: dict = {}
    exec(compile(TASK.render(p), name, "exec"), namespace)
    for w in suites.SMOKE:
        inputs = TASK.make_inputs(w, seed=4, device="cpu")
        saved = {k: v.clone() for k, v in inputs.items()}
        status, reason, _ = judge(TASK, namespace["run"](**inputs), inputs, saved)
        assert status == "passed", (w.name, reason)


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        (dict(combine="fused", dispatch="padded"), "combine=fused needs dispatch=pair"),
        (dict(SPLIT_K=4, combine="rows"), "SPLIT_K=4 needs combine=atomic"),
        (dict(BLOCK_M=128, BLOCK_N1=256, BLOCK_K1=256, num_stages1=5), "KB of shared memory"),
        (
            dict(BLOCK_M=128, BLOCK_N1=256, BLOCK_K1=32, BLOCK_K2=64, num_warps1=2),
            "registers per thread",
        ),
        (dict(dispatch="pair", BLOCK_N1=256, BLOCK_K1=256, num_warps1=2), "values per thread"),
        (dict(dispatch="tilemap", BLOCK_M=32, TAIL_M=32), "TAIL_M=32 needs BLOCK_M above it"),
    ],
)
def test_plans_that_cannot_work_are_refused_with_a_reason(settings, reason):
    why = infeasible(plan(("medium",), **settings))
    assert why is not None and why.startswith("medium:") and reason in why


def test_the_starting_plan_is_feasible_and_differs_by_regime():
    assert infeasible(ROOT) is None
    assert ROOT.get("dispatch", "tiny") == "pair" and ROOT.get("BLOCK_M", "huge") == 128
    assert {r for r, _, _ in cost.REGIMES} == set(SPACE.regimes)


def test_one_row_block_per_expert_below_the_ridge_point_has_its_own_regime():
    regime = {w.name.split("_T")[0] + f"_T{w['T']}": TASK.regime(w) for w in suites.DEFAULT}
    # 128 rows per expert: one 128-row block streams each expert's weights once and the
    # weights bound the time; 256 rows per expert and more: compute does
    assert regime["E256_k8_H7168_I512_T4096"] == regime["E128_k4_H2880_I2880_T4096"] == "ridge"
    assert regime["E8_k2_H4096_I7168_T1024"] == regime["E128_k8_H2048_I384_T4096"] == "huge"
    ridge, huge = ROOT.table()["ridge"], ROOT.table()["huge"]
    # the ridge row's gate/up programs are small enough for two to share an SM
    rows = ridge["BLOCK_M"] + ridge["TAIL_M"]
    stage = (rows + 2 * ridge["BLOCK_N1"]) * ridge["BLOCK_K1"] * 2
    assert 2 * ridge["num_stages1"] * stage <= 228 * 1024
    assert ridge["BLOCK_N1"] < huge["BLOCK_N1"] and ridge["num_warps1"] < huge["num_warps1"]


def test_light_decode_steps_have_their_own_regime_and_candidates_pick_the_same_one():
    regime = {w.name.split("_T")[0] + f"_T{w['T']}": TASK.regime(w) for w in suites.DEFAULT}
    # a Qwen3 decode step moves 38 MB of expert weights, the other layers' 176-352 MB
    assert regime["E128_k8_H2048_I384_T1"] == "light"
    assert regime["E256_k8_H7168_I512_T1"] == regime["E8_k2_H4096_I7168_T1"] == "tiny"
    assert regime["E128_k8_H2048_I384_T16"] == "small"
    assert ROOT.get("early_down", "light") and not ROOT.get("early_down", "tiny")
    namespace: dict = {}
    exec(compile(TASK.render(ROOT), "candidate", "exec"), namespace)
    for w in suites.SMOKE + suites.DEFAULT + suites.FULL:
        pairs, moved = w["T"] * w["k"], cost.pair_bytes(w)
        assert namespace["_regime"](pairs, w["E"], moved) == TASK.regime(w), w.name


def test_settings_without_effect_render_the_same_candidate():
    a = plan(("tiny",), dispatch="pair", metadata="torch", BLOCK_M=32)
    b = plan(("tiny",), dispatch="pair", metadata="parallel", BLOCK_M=64, swap_ab=True)
    assert a != b and TASK.render(a) == TASK.render(b)
    assert read_plan(TASK.render(a)) == canonical(a)
    c = plan(("tiny",), dispatch="padded")
    assert TASK.render(c) != TASK.render(a)
    assert TASK.render(plan(("tiny",), dispatch="padded", pair_mma=True)) == TASK.render(c)


def test_a_plan_written_before_a_knob_existed_renders_and_estimates_with_it_off():
    table = ROOT.with_value("TAIL_M", 0, SPACE.regimes).with_value("PREFETCH2", 0, SPACE.regimes)
    old = {r: {k: v for k, v in row.items() if k not in ("TAIL_M", "PREFETCH2")}
           for r, row in table.table().items()}  # fmt: skip
    before = read_plan(TASK.render(Plan.of(old)))
    assert before == canonical(table)
    w = suites.DEFAULT[-1]
    assert TASK.estimate(Plan.of(old), w) == TASK.estimate(table, w)


def test_a_plan_written_before_the_light_regime_runs_the_defaults_there():
    old = {r: row for r, row in plan(("tiny",), SPLIT_K=4).table().items() if r != "light"}
    rendered = read_plan(TASK.render(Plan.of(old)))
    assert rendered.table()["light"] == canonical(SPACE.untuned()).table()["light"]
    assert rendered.get("SPLIT_K", "tiny") == 4
    qwen_decode = suites.workload(suites.QWEN3_30B_TP2, 1)
    assert TASK.estimate(Plan.of(old), qwen_decode) == TASK.estimate(SPACE.untuned(), qwen_decode)


def test_settings_without_effect_reset_to_the_defaults_not_to_the_start():
    # the untuned plan sorts pairs everywhere: pair-only settings stay at their defaults
    untuned = SPACE.untuned()
    assert canonical(untuned) == untuned
    assert canonical(ROOT).get("pair_mma", "small") is False
    pair = canonical(untuned.with_value("dispatch", "pair", ("tiny",)))
    assert pair.get("pair_mma", "tiny") is False and pair.get("PREFETCH2", "tiny") == 0


def test_a_rendered_candidate_is_self_contained_and_carries_its_table():
    source = TASK.render(ROOT)
    assert read_plan(source) == canonical(ROOT)
    assert "from tasks" not in source and "CONFIGS: dict = {}" not in source
    namespace: dict = {}
    exec(compile(source, "candidate", "exec"), namespace)
    assert set(namespace["CONFIGS"]) == set(SPACE.regimes)
    assert [name for name, _, _ in namespace["REGIMES"]] == [r for r, _, _ in cost.REGIMES]
    assert callable(namespace["run"])


def prior(param, old, new, regime, at=ROOT):
    before = canonical(at.with_value(param, old, (regime,)))
    return TASK.prior(before, canonical(before.with_value(param, new, (regime,))), regime)


def test_priors_come_from_the_regime_models_around_the_parent():
    # fewer launches for few pairs: one Triton program beats a dozen torch ops
    assert prior("metadata", "torch", "triton", "small").mean < -0.05
    # a single program walking 30000 pairs is slower than three kernels over them
    assert prior("metadata", "triton", "parallel", "huge").mean < 0
    # a separate activation pass costs a launch and a round trip of the intermediate
    assert prior("epilogue", "fused", "separate", "small").mean > 0
    p = prior("BLOCK_M", 16, 32, "small")
    assert p is not None and p.std > 0
    # eight warps pay off on 128-wide gate/up tiles, not on the default 64-wide ones
    wide = prior("num_warps1", 4, 8, "huge")
    narrow = prior("num_warps1", 4, 8, "huge", at=ROOT.with_value("BLOCK_N1", 64, ("huge",)))
    assert wide.mean < narrow.mean


def test_the_cost_model_respects_the_roofline_and_ranks_launch_overheads():
    for w in suites.DEFAULT:
        assert TASK.estimate(ROOT, w) >= 0.9 * cost.floor(w, H100_CEILINGS), w.name
    qwen_decode = suites.workload(suites.QWEN3_30B_TP2, 1)
    sorted_decode = plan(("light",), dispatch="padded", BLOCK_M=16)
    assert TASK.estimate(ROOT, qwen_decode) < TASK.estimate(sorted_decode, qwen_decode)
    assert all(math.isfinite(TASK.estimate(p, w)) for p in SAMPLE.values() for w in suites.FULL)


def test_skewed_routing_lowers_the_floor_to_the_experts_it_touches():
    shape = (256, 8, 16, 16)  # DeepSeek's routing, tiny matrices
    uniform = suites.workload(shape, 64)
    skewed = suites.workload(shape, 64, routing="zipf")
    assert cost.experts_touched(skewed) < 0.5 * cost.experts_touched(uniform)
    inputs = TASK.make_inputs(skewed, seed=1, device="cpu")
    touched = len(set(inputs["topk_ids"].reshape(-1).tolist()))
    assert math.isclose(touched, cost.experts_touched(skewed), rel_tol=0.25)


def test_the_builtin_world_model_proposes_no_move_that_renders_its_parents_code():
    from worldmodel.builtin import BuiltinKnobs, BuiltinWorldModel

    wm = BuiltinWorldModel(TASK, suites.DEFAULT, knobs=BuiltinKnobs())
    for parent in (ROOT, SAMPLE["pair-reduce"], SAMPLE["tilemap-torch-tail-tma"]):
        moves = wm.propose(parent, wm.initial_beliefs())
        code = TASK.render(parent)
        assert moves and all(TASK.render(p.plan) != code for p in moves)
    described = {p.action.describe() for p in wm.propose(ROOT, wm.initial_beliefs())}
    # the down-weight prefetch is read by pair dispatch only, TAIL_M by a tile map only
    assert any(d.startswith("PREFETCH2") for d in described)
    assert not any(d.startswith("PREFETCH2") and "@huge" in d for d in described)
    assert not any(d.startswith("TAIL_M") and "@tiny" in d for d in described)
