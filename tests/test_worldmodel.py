"""The built-in world model: posteriors, predictions, feasibility, evidence."""

import math

import pytest

from ksearch.evaluation import Status
from ksearch.plan import Action, DesignSpace, Param, ParamKind, Plan
from ksearch.protocols import Evidence
from ksearch.task import Prior, Workload
from worldmodel.beliefs import Beliefs, Posterior
from worldmodel.builtin import BuiltinKnobs, BuiltinWorldModel

SPACE = DesignSpace(
    params=(Param("mode", ("a", "b"), "a"), Param("block", (16, 32, 64), 32, ParamKind.KNOB)),
    regimes=("small", "large"),
)
WORKLOADS = (
    Workload("s1", {"r": "small"}),
    Workload("s2", {"r": "small"}),
    Workload("l1", {"r": "large"}),
)


class Task:
    name = "toy"
    space = SPACE

    def regime(self, w):
        return w["r"]

    def canonical(self, plan: Plan):
        return plan

    def infeasible(self, plan: Plan):
        if plan.get("block", "large") == 64 and plan.get("mode", "large") == "b":
            return "large: mode=b cannot take block=64"
        return None

    def prior(self, param, old, new, regime):
        if (param, old, new) == ("mode", "a", "b"):
            return Prior(-0.2, 0.1)  # the task expects b to be faster
        return None

    def render(self, plan):
        return "code"


@pytest.fixture
def wm():
    return BuiltinWorldModel(Task(), WORKLOADS, knobs=BuiltinKnobs())


def test_posterior_moves_toward_observations_and_narrows():
    prior = Posterior.from_prior(0.0, 0.3)
    post = prior
    for _ in range(20):
        post = post.observe(-0.4)
    assert post.m == pytest.approx(-0.4, abs=0.02)
    assert post.std < prior.std / 3


def test_prediction_uses_the_task_prior_weighted_by_regime_share(wm):
    mean, _std = wm.predict(SPACE.root(), Action("mode", "b"), Beliefs())
    assert mean == pytest.approx(0.2)  # -(-0.2): faster means a positive ln speedup
    small_only, _ = wm.predict(SPACE.root(), Action("mode", "b", "small"), Beliefs())
    assert small_only == pytest.approx(0.2 * 2 / 3)


def test_undeclared_knobs_get_a_weak_default_prior(wm):
    post = wm.posterior(Beliefs(), Action("block", 64), SPACE.root(), "small")
    assert post.m == 0.0
    assert post.std == pytest.approx(
        math.hypot(BuiltinKnobs().default_std, BuiltinKnobs().context_std), rel=1e-3
    )


def test_infeasible_proposals_are_flagged_and_last(wm):
    plan = Action("mode", "b").apply(SPACE.root())
    props = wm.propose(plan, Beliefs())
    flagged = [p for p in props if p.infeasible]
    assert flagged and all("block=64" in p.infeasible for p in flagged)
    assert props[-len(flagged) :] == flagged
    assert sum(p.prior for p in props if not p.infeasible) == pytest.approx(1.0)


def evidence(action, child_times, status=Status.PASSED, parent=None):
    parent_plan = parent or SPACE.root()
    return Evidence(
        parent_plan, action, status, 0.0, 0.1, {"s1": 10.0, "s2": 10.0, "l1": 10.0}, child_times
    )


def test_evidence_re_ranks_the_same_action_at_other_nodes(wm):
    beliefs = Beliefs()
    act = Action("block", 64)
    for _ in range(3):
        beliefs = wm.revise(beliefs, evidence(act, {"s1": 5.0, "s2": 5.0, "l1": 5.0}))
    assert beliefs.version == 3
    # the same move elsewhere (another node whose plan differs in the large regime)
    other = Action("block", 16, "large").apply(SPACE.root())
    mean, _ = wm.predict(other, Action("block", 64, "small"), beliefs)
    assert mean > 0.3


def test_effects_are_learned_per_regime(wm):
    beliefs = wm.revise(
        Beliefs(), evidence(Action("block", 64), {"s1": 5.0, "s2": 5.0, "l1": 20.0})
    )
    small, _ = wm.predict(SPACE.root(), Action("block", 64, "small"), beliefs)
    large, _ = wm.predict(SPACE.root(), Action("block", 64, "large"), beliefs)
    assert small > 0 > large


def test_failed_implementations_count_as_failures_not_as_effects(wm):
    act = Action("block", 64)
    beliefs = wm.revise(Beliefs(), evidence(act, {}, Status.COMPILE_ERROR))
    assert beliefs.effects == {}
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
