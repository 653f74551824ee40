"""The run database: migrations, round trips, and unusable files."""

import sqlite3

import pytest

from ksearch.evaluation import Evaluation, Method, Status, WorkloadResult
from ksearch.plan import Action, DesignSpace, Param, ParamKind, Plan
from ksearch.store import MIGRATIONS, Store, StoreError
from ksearch.tree import NodeStatus, Tree, add_child, update


def test_a_new_database_gets_every_migration_once(tmp_path):
    db = tmp_path / "search.db"
    Store(db)
    store = Store(db)  # opening again applies nothing twice
    assert [r["number"] for r in store.db["migrations"].rows] == list(range(1, len(MIGRATIONS) + 1))
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_evaluations_round_trip(tmp_path):
    store = Store(tmp_path / "search.db")
    ev = Evaluation(
        Status.INCORRECT,
        "abc",
        Method.ESTIMATE,
        (WorkloadResult("w", Status.INCORRECT, "2 of 9 elements off", max_error=0.5),),
        "w: 2 of 9 elements off",
        None,
        {"gpu": None},
    )
    assert store.save_evaluation("def run(): ...", None, ev) == 1
    assert store.evaluation("abc") == ev
    assert store.source("abc") == "def run(): ..."
    assert store.evaluation("missing") is None


def test_a_corrupt_file_gets_a_clear_error_and_is_left_alone(tmp_path):
    bad = tmp_path / "search.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        Store(bad)
    assert bad.read_bytes() == b"this is not sqlite" * 100


def test_a_foreign_sqlite_file_is_not_read_as_a_run(tmp_path):
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("create table t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a ksearch run database"):
        Store(other, readonly=True)


def test_nodes_saved_in_one_batch_round_trip_and_update_in_place(tmp_path):
    space = DesignSpace(params=(Param("block", (16, 32, 64), 32, ParamKind.KNOB),))
    tree = Tree.start(space.root())
    for value in (16, 64):
        action = Action("block", value)
        tree, _ = add_child(
            tree, 0, action, plan=action.apply(space.root()), prior=0.5, pred_mean=0.1,
            pred_std=0.2, status=NodeStatus.PRUNED, reason=f"block {value} does not fit",
        )  # fmt: skip
    store = Store(tmp_path / "search.db")
    store.save_nodes(tree.nodes, 3)
    store.save_nodes([], 4)  # nothing to write
    rows = store.nodes()
    assert [(r["id"], r["parent"], r["status"], r["iteration"]) for r in rows] == [
        (0, None, "open", 3),
        (1, 0, "pruned", 3),
        (2, 0, "pruned", 3),
    ]
    assert [Plan.from_json(r["plan"]) for r in rows] == [n.plan for n in tree.nodes]
    assert rows[2]["reason"] == "block 64 does not fit"
    store.save_node(update(tree, 1, status=NodeStatus.FAILED)[1], 5)
    again = Store(tmp_path / "search.db").nodes()
    assert (again[1]["id"], again[1]["status"]) == (1, "failed")
