"""The end of a run: which nodes are re-measured, and which of them is declared the winner."""

import json
import math
from concurrent.futures import Future

from ksearch.evaluation import Evaluation, Method, Status
from ksearch.plan import Action, Plan
from ksearch.store import Store
from ksearch.tree import NodeStatus, Tree, add_child, update
from ksearch.winner import finalists, finish


def _tree(root_speedup, child_speedups):
    """A root and one child per speedup (None: the child failed); candidate i is node i's."""
    tree = Tree.start(Plan.of({"r": {"x": 0}}))
    tree = _measured(tree, 0, root_speedup)
    for i, s in enumerate(child_speedups, start=1):
        tree, node = add_child(
            tree, 0, Action("x", i), plan=Plan.of({"r": {"x": i}}), prior=1.0, pred_mean=0.0,
            pred_std=1.0,
        )  # fmt: skip
        tree = _measured(tree, node, s)
    return tree


def _measured(tree, node, speedup):
    if speedup is None:
        return update(tree, node, status=NodeStatus.INCORRECT, candidate=f"c{node}")
    return update(
        tree, node, status=NodeStatus.PASSED, value=math.log(speedup), candidate=f"c{node}"
    )


def test_the_starting_plan_joins_the_best_when_it_is_not_among_them():
    tree = _tree(1.0, [1.5, 1.2, 1.6, 1.1])
    assert finalists(tree, 2) == [3, 1, 0]


def test_the_starting_plan_is_not_listed_twice():
    tree = _tree(1.55, [1.5, 1.2, 1.6])
    assert finalists(tree, 2) == [3, 0]
    assert finalists(tree, 3) == [3, 0, 1]


def test_a_starting_plan_that_failed_or_shares_a_finalists_candidate_stays_out():
    assert finalists(_tree(None, [1.5, 1.2]), 1) == [1]
    tree = _tree(1.0, [1.5, 1.2])
    tree = update(tree, 0, candidate="c1")  # the same code as node 1
    assert finalists(tree, 1) == [1]
    assert finalists(_tree(None, [None]), 3) == []


class _Remeasure:
    """Stands for the GPU scorer: each candidate's re-measured score, from a table."""

    name = "fake"

    def __init__(self, scores, sources):
        self.scores, self.sources = scores, sources
        self.submitted = []

    def submit(self, source, *, screen=True):
        candidate = self.sources[source]
        self.submitted.append((candidate, screen))
        score = self.scores[candidate]
        status = Status.PASSED if score is not None else Status.INCORRECT
        f = Future()
        f.set_result(Evaluation(status, candidate, Method.CUDA_GRAPH, score=score))
        return f

    def fingerprint(self):
        return {}

    def close(self):
        pass


def _store(tree):
    store = Store(None)
    for n in tree.nodes:
        ev = Evaluation(Status.PASSED, n.candidate, Method.CUDA_GRAPH, score=1.0)
        store.save_evaluation(f"source of {n.candidate}", n.plan.key, ev)
    return store


def test_the_starting_plan_wins_when_its_remeasurement_beats_the_lucky_scores(tmp_path):
    tree = _tree(1.56, [1.60, 1.59, 1.58])
    store = _store(tree)
    sources = {f"source of c{i}": f"c{i}" for i in range(4)}
    scorer = _Remeasure({"c0": 1.57, "c1": 1.55, "c2": 1.56, "c3": 1.54}, sources)
    outcome = finish(tree, store, scorer, tmp_path, 2)
    assert sorted(scorer.submitted) == [("c0", False), ("c1", False), ("c2", False)]
    assert outcome is not None and outcome.node == 0
    assert (tmp_path / "winner.py").read_text() == "source of c0"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [f["node"] for f in summary["finalists"]] == [1, 2, 0]
    assert summary["winner"]["score"] == 1.57


def test_a_finalist_that_beats_the_starting_plan_on_remeasurement_wins(tmp_path):
    tree = _tree(1.50, [1.60, 1.59])
    sources = {f"source of c{i}": f"c{i}" for i in range(3)}
    scorer = _Remeasure({"c0": 1.51, "c1": None, "c2": 1.58}, sources)
    outcome = finish(tree, _store(tree), scorer, tmp_path, 2)
    assert outcome is not None and outcome.node == 2
    assert (tmp_path / "winner.py").read_text() == "source of c2"


def test_a_resumed_end_with_the_same_finalists_keeps_their_measurement(tmp_path):
    tree = _tree(1.56, [1.60, 1.59, 1.58])
    store = _store(tree)
    sources = {f"source of c{i}": f"c{i}" for i in range(5)}
    first = _Remeasure({"c0": 1.57, "c1": 1.55, "c2": 1.58}, sources)
    assert finish(tree, store, first, tmp_path, 2).node == 2
    summary = (tmp_path / "summary.json").read_text()

    again = _Remeasure({"c0": 9.0, "c1": 9.0, "c2": 9.0}, sources)  # would change the winner
    outcome = finish(tree, store, again, tmp_path, 2)
    assert again.submitted == []
    assert outcome.node == 2 and outcome.evaluation.score == 1.58
    assert (tmp_path / "summary.json").read_text() == summary
    assert [e["kind"] for e in store.events()].count("finals_kept") == 1

    # a new candidate among the best: every finalist is measured again, side by side
    tree, node = add_child(
        tree, 0, Action("x", 9), plan=Plan.of({"r": {"x": 9}}), prior=1.0, pred_mean=0.0,
        pred_std=1.0,
    )  # fmt: skip
    tree = _measured(tree, node, 1.70)
    store.save_evaluation("source of c4", None, Evaluation(Status.PASSED, "c4", None, score=1.7))
    third = _Remeasure({"c0": 1.57, "c4": 1.54, "c1": 1.56}, sources)
    outcome = finish(tree, store, third, tmp_path, 2)
    assert sorted(third.submitted) == [("c0", False), ("c1", False), ("c4", False)]
    assert outcome.node == 0
