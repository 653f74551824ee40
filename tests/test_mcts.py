"""Selection, widening, virtual loss and backup on small hand-built trees."""

import math
import random

import pytest

from ksearch.mcts import Choice, MctsKnobs, Proposal, select_greedy, select_puct, select_random
from ksearch.plan import Action, DesignSpace, Param, ParamKind
from ksearch.tree import NodeStatus, Tree, add_child, backup, mark_pending

SPACE = DesignSpace((Param("k", tuple(range(10)), 0, ParamKind.DECISION),))
ROOT = SPACE.root()


def proposal(value: int, mean: float, prior: float) -> Proposal:
    action = Action("k", value)
    return Proposal(action, action.apply(ROOT), mean, 0.1, prior)


def measured_root(value: float = 0.0) -> Tree:
    tree = Tree.start(ROOT)
    return backup(tree, 0, status=NodeStatus.PASSED, value=value, candidate="r", step=1)


def grow(tree: Tree, parent: int, k: int, value: float | None, status=NodeStatus.PASSED):
    p = proposal(k, 0.0, 0.5)
    tree, child = add_child(
        tree, parent, p.action, plan=p.plan, prior=0.5, pred_mean=0.0, pred_std=0.1
    )
    tree = mark_pending(tree, child)
    return backup(tree, child, status=status, value=value, candidate=f"c{k}", step=k), child


def test_nothing_is_selected_before_the_root_is_measured():
    tree = Tree.start(ROOT)
    assert select_puct(tree, lambda n: [proposal(1, 0.1, 1.0)], knobs=MctsKnobs()) is None


def test_expands_the_proposal_with_the_best_predicted_value_and_prior():
    tree = measured_root()
    props = [proposal(1, 0.05, 0.2), proposal(2, 0.3, 0.6), proposal(3, -0.1, 0.2)]
    choice = select_puct(tree, lambda n: props, knobs=MctsKnobs())
    assert choice == Choice(0, props[1])


def test_descends_into_the_child_with_the_best_subtree_when_widening_is_full():
    tree = measured_root(0.0)
    tree, good = grow(tree, 0, 1, 0.5)
    tree, bad = grow(tree, 0, 2, 0.1)
    knobs = MctsKnobs(widen_k=1.0, widen_alpha=0.0)  # at most one child per visit count 1
    frontier = {0: [proposal(3, 0.0, 1.0)], good: [proposal(4, 0.0, 1.0)], bad: []}
    choice = select_puct(tree, lambda n: frontier.get(n, []), knobs=knobs)
    assert choice is not None and choice.parent == good


def test_progressive_widening_limits_children_by_visits():
    tree = measured_root(0.0)
    tree, child = grow(tree, 0, 1, 0.2)
    # root has 2 visits and one child: ceil(1 * 2^0.5) = 2 allows another child
    knobs = MctsKnobs(widen_k=1.0, widen_alpha=0.5, c_puct=0.0)
    frontier = {0: [proposal(3, 0.5, 1.0)], child: [proposal(4, -0.5, 1.0)]}
    assert select_puct(tree, lambda n: frontier.get(n, []), knobs=knobs).parent == 0
    # with alpha 0 the root may hold one child only: the search must go down
    knobs = MctsKnobs(widen_k=1.0, widen_alpha=0.0, c_puct=0.0)
    assert select_puct(tree, lambda n: frontier.get(n, []), knobs=knobs).parent == child


def test_exhausted_branches_are_left_and_an_exhausted_tree_returns_none():
    tree = measured_root(0.0)
    tree, child = grow(tree, 0, 1, 0.9)
    knobs = MctsKnobs(widen_k=1.0, widen_alpha=0.0)
    frontier = {0: [proposal(2, 0.0, 1.0)], child: []}
    assert select_puct(tree, lambda n: frontier.get(n, []), knobs=knobs).parent == 0
    assert select_puct(tree, lambda n: [], knobs=knobs) is None


def test_virtual_loss_spreads_parallel_selection():
    tree = measured_root(0.0)
    tree, a = grow(tree, 0, 1, 0.5)
    tree, b = grow(tree, 0, 2, 0.45)
    knobs = MctsKnobs(widen_k=1.0, widen_alpha=0.0, c_puct=2.0)
    frontier = {a: [proposal(3, 0.0, 1.0)], b: [proposal(4, 0.0, 1.0)]}
    first = select_puct(tree, lambda n: frontier.get(n, []), knobs=knobs)
    assert first.parent == a
    p = first.proposal
    tree, pending = add_child(tree, a, p.action, plan=p.plan, prior=1.0, pred_mean=0, pred_std=0)
    for _ in range(3):
        tree = mark_pending(tree, pending)  # three evaluations in flight below a
    frontier[a] = []
    second = select_puct(tree, lambda n: frontier.get(n, []), knobs=knobs)
    assert second.parent == b


def test_backup_keeps_the_best_value_and_counts_visits():
    tree = measured_root(0.0)
    tree, a = grow(tree, 0, 1, 0.4)
    tree, _ = grow(tree, a, 2, -0.3)
    assert tree[a].best == 0.4 and tree[a].visits == 2
    assert tree.root.best == 0.4 and tree.root.visits == 3
    assert tree.root.inflight == 0


def test_a_failure_is_a_penalized_visit_not_minus_infinity():
    tree = measured_root(0.0)
    tree, a = grow(tree, 0, 1, 0.4)
    tree, f = grow(tree, a, 2, None, NodeStatus.COMPILE_ERROR)
    assert tree[f].value is None and tree[f].status is NodeStatus.COMPILE_ERROR
    assert tree[a].visits == 2 and tree[a].failures == 1 and tree[a].best == 0.4
    # a sibling with the same best but no failures is preferred
    tree, b = grow(tree, 0, 3, 0.4)
    frontier = {a: [proposal(5, 0.0, 1.0)], b: [proposal(6, 0.0, 1.0)]}
    knobs = MctsKnobs(widen_k=1.0, widen_alpha=0.0, c_puct=0.0, fail_penalty=0.25)
    assert select_puct(tree, lambda n: frontier.get(n, []), knobs=knobs).parent == b
    assert math.isfinite(tree.root.best)


def test_greedy_takes_the_best_predicted_value_anywhere():
    tree = measured_root(0.0)
    tree, a = grow(tree, 0, 1, 0.5)
    frontier = {0: [proposal(2, 0.3, 1.0)], a: [proposal(3, -0.1, 1.0)]}
    assert select_greedy(tree, lambda n: frontier.get(n, [])).parent == a
    frontier = {0: [proposal(2, 0.7, 1.0)], a: [proposal(3, -0.1, 1.0)]}
    assert select_greedy(tree, lambda n: frontier.get(n, [])).parent == 0


def test_random_is_reproducible_from_its_generator():
    tree = measured_root(0.0)
    tree, a = grow(tree, 0, 1, 0.5)
    frontier = {0: [proposal(i, 0.0, 0.1) for i in range(2, 9)], a: [proposal(9, 0.0, 1.0)]}
    picks = [select_random(tree, lambda n: frontier.get(n, []), random.Random(s)) for s in range(8)]
    again = [select_random(tree, lambda n: frontier.get(n, []), random.Random(s)) for s in range(8)]
    assert picks == again and len({(c.parent, c.proposal.action) for c in picks}) > 1


def test_q_relative_to_the_best_lets_a_one_percent_gain_count_despite_a_disaster():
    tree = measured_root(0.0)
    tree, good = grow(tree, 0, 1, 0.01)  # 1% faster than the root
    tree, disaster = grow(tree, 0, 2, -2.0)  # 7x slower
    # a proposal under the root predicted as good as the root itself, with a strong prior
    frontier = {0: [proposal(3, 0.0, 1.0)], good: [proposal(4, 0.0, 0.01)], disaster: []}
    knobs = dict(c_puct=0.02, widen_k=4.0)
    by_range = select_puct(tree, lambda n: frontier.get(n, []), knobs=MctsKnobs(**knobs))
    by_best = select_puct(
        tree, lambda n: frontier.get(n, []), knobs=MctsKnobs(q_norm="best", **knobs)
    )
    assert by_range is not None and by_range.parent == 0  # the gain is lost in the range
    assert by_best is not None and by_best.parent == good


def test_an_unknown_q_norm_is_refused():
    with pytest.raises(ValueError, match="q_norm"):
        MctsKnobs(q_norm="max")
