"""The search loop with a fake scorer: budget, determinism, workers, resume, persistence."""

import json
import time
from collections import Counter
from types import SimpleNamespace

import pytest

from ksearch import loop
from ksearch.loop import SearchConfig
from ksearch.replay import load
from ksearch.store import Store
from worldmodel.builtin import BuiltinWorldModel

from landscape import Landscape, LandscapeScorer
from search_helpers import search


def shape(tree):
    return [(n.id, n.parent, n.plan.key, n.status.value, n.candidate) for n in tree.nodes]


def test_budget_counts_distinct_candidates_sent_to_a_worker():
    tree, _, scorer = search("mcts", 3, 25)
    assert len(scorer.calls) == 25 == len(set(scorer.calls))
    assert max(n.step or 0 for n in tree.nodes) == 25


def test_the_same_seed_gives_the_same_tree():
    a, _, _ = search("mcts", 5, 30)
    b, _, _ = search("mcts", 5, 30)
    assert shape(a) == shape(b)


def test_several_workers_give_a_deterministic_tree():
    a, _, _ = search("mcts", 5, 30, workers=3)
    b, _, _ = search("mcts", 5, 30, workers=3)
    assert shape(a) == shape(b)
    assert len(a) > 1


def test_resume_measures_nothing_twice_and_ends_with_the_same_tree(tmp_path):
    full, _, _ = search("mcts", 7, 40)
    db = tmp_path / "search.db"
    _first, _, s1 = search("mcts", 7, 15, store=Store(db))
    resumed, _, s2 = search("mcts", 7, 40, store=Store(db))
    assert len(s1.calls) == 15 and len(s2.calls) == 25
    assert not set(s1.calls) & set(s2.calls)
    assert shape(resumed) == shape(full)
    assert Store(db).evaluation_count() == 40


def test_every_node_evaluation_and_belief_version_is_persisted(tmp_path):
    db = tmp_path / "search.db"
    tree, _, _ = search("mcts", 2, 12, store=Store(db))
    store = Store(db)
    rows = store.nodes()
    assert [r["id"] for r in rows] == [n.id for n in tree.nodes]
    assert store.evaluation_count() == 12
    versions = [r["version"] for r in store.db["beliefs"].rows]
    assert versions == list(range(1, len(versions) + 1)) and len(versions) >= 11
    kinds = {e["kind"] for e in store.events()}
    assert {"started", "evaluated", "finished"} <= kinds
    child = next(r for r in rows if r["parent"] is not None and r["value"] is not None)
    assert child["pred_std"] > 0  # the prediction is kept beside the outcome


def test_replay_rebuilds_the_tree_and_steps_back(tmp_path):
    db = tmp_path / "search.db"
    tree, _, _ = search("greedy", 1, 10, store=Store(db))
    data = load(db, None)
    assert data["evaluations"] == 10
    assert [(n["id"], n["parent"], n["status"], n["candidate"]) for n in data["nodes"]] == [
        (n.id, n.parent, n.status.value, n.candidate) for n in tree.nodes
    ]
    early = load(db, 4)
    assert early["evaluations"] == 4
    measured = [n for n in early["nodes"] if n["score"] is not None]
    assert len({n["candidate"] for n in measured}) == 4
    json.dumps(early)


class SlowScorer(LandscapeScorer):
    """Takes `delay` seconds per candidate, as a GPU would."""

    def __init__(self, landscape, delay):
        super().__init__(landscape)
        self.delay = delay

    def submit(self, source, *, screen=True):
        time.sleep(self.delay)
        return super().submit(source, screen=screen)


def test_a_time_limit_stops_new_evaluations_and_the_run_still_ends_with_a_best(tmp_path):
    scorer = SlowScorer(Landscape.draw(4), delay=0.05)
    store = Store(tmp_path / "search.db")
    tree, _, _ = search(
        "mcts", 4, 200, store=store, scorer=scorer, overrides=("search.time_limit=0.5",)
    )
    assert 3 <= len(scorer.calls) < 40  # about 0.5 s / 0.05 s, far below the budget
    assert tree.best_node() is not None
    assert any(e["kind"] == "time_limit" for e in store.events())


def test_a_time_limit_must_be_positive():
    with pytest.raises(ValueError, match="time_limit"):
        SearchConfig(time_limit=0)


def test_a_resumed_run_starts_its_time_limit_after_replaying(tmp_path, monkeypatch):
    # a clock that moves one second per reading: replaying the 12 recorded evaluations
    # alone reads it more often than the 6 s limit allows
    clock = iter(range(10**6))
    monkeypatch.setattr(loop, "time", SimpleNamespace(monotonic=lambda: float(next(clock))))
    db = tmp_path / "search.db"
    first, _, _ = search("mcts", 3, 12, store=Store(db))
    resumed, _, scorer = search("mcts", 3, 40, store=Store(db), overrides=("search.time_limit=6",))
    assert 1 <= len(scorer.calls) < 28  # new work, stopped by the limit before the budget
    assert {n.plan.key for n in first.nodes} <= {n.plan.key for n in resumed.nodes}
    assert sum(e["kind"] == "time_limit" for e in Store(db).events()) == 1


def test_the_world_model_is_asked_once_per_node_and_beliefs_version(monkeypatch):
    asked: Counter[tuple[str, int]] = Counter()
    propose = BuiltinWorldModel.propose

    def counting(self, plan, beliefs):
        asked[(plan.key, beliefs.version)] += 1
        return propose(self, plan, beliefs)

    monkeypatch.setattr(BuiltinWorldModel, "propose", counting)
    search("mcts", 3, 12)
    assert len(asked) > 12 and max(asked.values()) == 1
