"""The built-in world model: priors around the parent, evidence, feasibility, compound moves."""

import pytest

from ksearch.evaluation import Status
from ksearch.plan import Action, DesignSpace, Param, ParamKind, Plan
from ksearch.protocols import Evidence
from ksearch.task import Prior, Workload
from worldmodel.beliefs import Beliefs
from worldmodel.builtin import BuiltinKnobs, BuiltinWorldModel

SPACE = DesignSpace(
    params=(
        Param("mode", ("a", "b"), "a"),
        Param("block", (16, 32, 64), 32, ParamKind.KNOB),
        Param("warps", (2, 4, 8), 4, ParamKind.KNOB),
        Param("tail", (0, 8), 0, ParamKind.KNOB),
    ),
    regimes=("small", "large"),
    couples=(("block", "warps"),),
)
ROOT = SPACE.root()
WORKLOADS = (
    Workload("s1", {"r": "small"}),
    Workload("s2", {"r": "small"}),
    Workload("l1", {"r": "large"}),
)
TIMES = {"s1": 10.0, "s2": 10.0, "l1": 10.0}


class Task:
    """mode=b is believed 20% faster where blocks are 32 wide and 10% slower elsewhere;
    `tail` takes effect only in mode b; nothing else is known."""

    name = "toy"
    space = SPACE

    def regime(self, w):
        return w["r"]

    def canonical(self, plan: Plan):
        reset = {r: 0 for r in plan.regimes if plan.get("mode", r) == "a" and plan.get("tail", r)}
        for r in reset:
            plan = plan.with_value("tail", 0, (r,))
        return plan

    def infeasible(self, plan: Plan):
        if plan.get("block", "large") == 64 and plan.get("mode", "large") == "b":
            return "large: mode=b cannot take block=64"
        return None

    def prior(self, parent: Plan, child: Plan, regime: str):
        before, after = parent.get("mode", regime), child.get("mode", regime)
        if before == after:
            return None
        effect = -0.2 if child.get("block", regime) == 32 else 0.1
        return Prior(effect if after == "b" else -effect, 0.1)

    def render(self, plan):
        return "code"


@pytest.fixture
def wm():
    return BuiltinWorldModel(Task(), WORKLOADS, knobs=BuiltinKnobs())


def evidence(action, child_times, status=Status.PASSED, parent=ROOT):
    return Evidence(parent, action, status, 0.0, 0.1, TIMES, child_times)


def test_priors_are_computed_around_the_plan_being_expanded(wm):
    mean, _ = wm.predict(ROOT, Action("mode", "b"), Beliefs())
    assert mean == pytest.approx(0.2)  # -(-0.2): faster means a positive ln speedup
    small_only, _ = wm.predict(ROOT, Action("mode", "b", "small"), Beliefs())
    assert small_only == pytest.approx(0.2 * 2 / 3)
    narrow = Action("block", 16).apply(ROOT)  # the same move where its prior is the opposite
    assert wm.predict(narrow, Action("mode", "b"), Beliefs())[0] == pytest.approx(-0.1)


def test_a_change_the_task_knows_nothing_of_gets_the_default_spread(wm):
    mean, std = wm.predict(ROOT, Action("warps", 8, "large"), Beliefs())
    assert mean == 0.0
    assert std == pytest.approx(BuiltinKnobs().default_std / 3)


def test_infeasible_proposals_are_flagged_and_last(wm):
    plan = Action("mode", "b").apply(ROOT)
    props = wm.propose(plan, Beliefs())
    flagged = [p for p in props if p.infeasible]
    assert flagged and all("block=64" in p.infeasible for p in flagged)
    assert props[-len(flagged) :] == flagged
    assert sum(p.prior for p in props if not p.infeasible) == pytest.approx(1.0)


def test_children_are_the_plans_that_render_and_each_appears_once(wm):
    props = wm.propose(ROOT, Beliefs())
    plans = [p.plan for p in props]
    assert len(plans) == len(set(plans))
    assert ROOT not in plans
    assert all(p.plan.get("tail", r) == 0 for p in props for r in SPACE.regimes
               if p.plan.get("mode", r) == "a")  # fmt: skip
    assert not any(p.action.param == "tail" and p.action.regime for p in props)


def test_coupled_settings_are_also_moved_together(wm):
    props = wm.propose(ROOT, Beliefs())
    both = [p for p in props if p.action.also]
    together = {(p.plan.get("block", "small"), p.plan.get("warps", "small")) for p in both}
    assert {(16, 2), (64, 8), (64, 2), (16, 8)} <= together


def test_evidence_re_ranks_the_same_move_in_another_branch(wm):
    beliefs = Beliefs()
    act = Action("warps", 8, "small")
    for _ in range(2):
        beliefs = wm.revise(beliefs, evidence(act, {"s1": 5.0, "s2": 5.0, "l1": 10.0}))
    assert beliefs.version == 2
    other = Action("block", 16, "large").apply(ROOT)  # another node: same context in small
    mean, std = wm.predict(other, act, beliefs)
    assert mean > 0.6 * 2 / 3 * 0.69  # ln 2 = 0.69 in a regime weighing 2/3
    assert std < wm.predict(other, act, Beliefs())[1] / 2


def test_a_move_measured_faster_predicts_its_reverse_slower(wm):
    act = Action("warps", 8, "small")
    beliefs = wm.revise(Beliefs(), evidence(act, {"s1": 5.0, "s2": 5.0, "l1": 10.0}))
    there = act.apply(ROOT)
    back, _ = wm.predict(there, Action("warps", 4, "small"), beliefs)
    assert back < -0.2


def test_effects_are_learned_per_regime(wm):
    beliefs = wm.revise(Beliefs(), evidence(Action("warps", 8), {"s1": 5.0, "s2": 5.0, "l1": 20.0}))
    small, _ = wm.predict(ROOT, Action("warps", 8, "small"), beliefs)
    large, _ = wm.predict(ROOT, Action("warps", 8, "large"), beliefs)
    assert small > 0 > large


def test_evidence_from_another_regime_never_overrides_a_regime_s_own_prior(wm):
    # mode=b measured 10% slower in small, where it was believed 20% faster
    beliefs = wm.revise(
        Beliefs(), evidence(Action("mode", "b", "small"), {"s1": 11.0, "s2": 11.0, "l1": 10.0})
    )
    small, _ = wm.predict(ROOT, Action("mode", "b", "small"), beliefs)
    large, _ = wm.predict(ROOT, Action("mode", "b", "large"), beliefs)
    assert small < 0  # the measurement in the regime itself wins there
    assert large > 0.5 * 0.2 / 3  # large keeps most of its own prior (+20% over 1/3 weight)
    assert large < 0.2 / 3  # and leans toward the other regime's evidence


def test_a_move_that_showed_no_effect_is_not_proposed_again_in_that_context(wm):
    act = Action("warps", 8, "small")
    beliefs = wm.revise(Beliefs(), evidence(act, {"s1": 10.0, "s2": 10.02, "l1": 10.0}))
    elsewhere = Action("block", 16, "large").apply(ROOT)  # same context in small
    assert not any(p.plan == act.apply(elsewhere) for p in wm.propose(elsewhere, beliefs))
    wider = Action("block", 64, "small").apply(ROOT)  # block is coupled: another context
    assert any(p.plan == act.apply(wider) for p in wm.propose(wider, beliefs))


def test_proposals_follow_new_beliefs_and_stay_cached_for_the_same_ones(wm):
    act = Action("warps", 8, "small")
    before = {p.plan: p.mean for p in wm.propose(ROOT, Beliefs())}
    beliefs = wm.revise(Beliefs(), evidence(act, {"s1": 7.0, "s2": 7.0, "l1": 10.0}))
    after = {p.plan: p.mean for p in wm.propose(ROOT, beliefs)}
    assert after[act.apply(ROOT)] > before[act.apply(ROOT)] + 0.1
    unrelated = Action("block", 16, "large").apply(ROOT)
    assert after[unrelated] == before[unrelated]
    assert wm.propose(ROOT, beliefs) == wm.propose(ROOT, beliefs)


def test_failed_implementations_count_as_failures_not_as_effects(wm):
    act = Action("block", 64)
    beliefs = wm.revise(Beliefs(), evidence(act, {}, Status.COMPILE_ERROR))
    assert beliefs.evidence == {}
    assert beliefs.fail_chance("block:32->64") > Beliefs().fail_chance("block:32->64")


def test_beliefs_round_trip_through_json(wm):
    beliefs = wm.revise(
        Beliefs(), evidence(Action("mode", "b"), {"s1": 8.0, "s2": 9.0, "l1": 12.0})
    )
    assert Beliefs.from_json(beliefs.to_json()) == beliefs


def test_a_task_without_design_space_is_refused():
    class NoSpace(Task):
        space = None

    with pytest.raises(ValueError, match="no design space"):
        BuiltinWorldModel(NoSpace(), WORKLOADS, knobs=BuiltinKnobs())
