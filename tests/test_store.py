"""The run database: migrations, round trips, and unusable files."""

import json
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


def test_children_are_stored_as_their_changes_from_the_parent_and_read_back_whole(tmp_path):
    space = DesignSpace(
        params=(
            Param("block", (16, 32, 64), 32, ParamKind.KNOB),
            Param("warps", (2, 4, 8), 4, ParamKind.KNOB),
        ),
        regimes=("small", "large"),
    )
    tree = Tree.start(space.root())
    moves = [(0, Action("block", 64, "small"), NodeStatus.PASSED)]
    moves += [(1, Action("warps", 8), NodeStatus.PRUNED), (1, Action("warps", 2), NodeStatus.OPEN)]
    for parent, action, status in moves:
        plan = action.apply(tree[parent].plan)
        tree, _ = add_child(
            tree, parent, action, plan=plan, prior=0.5, pred_mean=0.0, pred_std=0.1, status=status
        )
    path = tmp_path / "search.db"
    Store(path).save_nodes(tree.nodes, 1)
    raw = list(Store(path).db.query("select plan, plan_diff from nodes order by id"))
    assert raw[0]["plan_diff"] is None and Plan.from_json(raw[0]["plan"]) == space.root()
    assert [r["plan"] for r in raw[1:]] == [None, None, None]
    assert json.loads(raw[1]["plan_diff"]) == {"small": {"block": 64}}
    assert json.loads(raw[2]["plan_diff"]) == {"large": {"warps": 8}, "small": {"warps": 8}}
    rows = Store(path, readonly=True).nodes()
    assert [Plan.from_json(r["plan"]) for r in rows] == [n.plan for n in tree.nodes]
    assert [r["plan"] for r in rows] == [n.plan.to_json() for n in tree.nodes]
    assert all("plan_diff" not in r for r in rows)
    # a store that has not saved the parent (another process) stores the child whole
    Store(path).save_node(update(tree, 3, status=NodeStatus.FAILED)[3], 2)
    raw = list(Store(path).db.query("select plan, plan_diff from nodes where id = 3"))
    assert Plan.from_json(raw[0]["plan"]) == tree[3].plan and raw[0]["plan_diff"] is None
    assert [r["status"] for r in Store(path).nodes()] == ["open", "passed", "pruned", "failed"]


def test_a_database_from_before_plan_diffs_reads_and_grows(tmp_path):
    path = tmp_path / "search.db"
    old = Store(path)
    old.db.execute("DELETE FROM migrations WHERE number = 4")
    old.db.conn.commit()
    space = DesignSpace(params=(Param("block", (16, 32), 32, ParamKind.KNOB),))
    tree = Tree.start(space.root())
    row = Store._node_row(tree[0], 1, None)
    del row["plan_diff"]
    old.db.execute("ALTER TABLE nodes DROP COLUMN plan_diff")
    old.db.table("nodes").insert(row)
    old.db.conn.commit()
    store = Store(path)  # migrates
    tree, _ = add_child(
        tree, 0, Action("block", 16), plan=Action("block", 16).apply(space.root()), prior=0.5,
        pred_mean=0.0, pred_std=0.1, status=NodeStatus.PRUNED,
    )  # fmt: skip
    store.save_nodes(tree.nodes, 2)
    assert [Plan.from_json(r["plan"]) for r in store.nodes()] == [n.plan for n in tree.nodes]


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


def test_beliefs_are_stored_compressed_and_read_back(tmp_path):
    store = Store(tmp_path / "search.db")
    data = json.dumps({"effects": {f"regime{i}": [i * 0.01, 1.0] for i in range(2000)}})
    store.save_beliefs(1, 0, data)
    store.save_beliefs(2, 1, "{}")
    row = next(store.db["beliefs"].rows_where("version = 1"))
    assert row["data"] is None and len(row["packed"]) < len(data) / 4
    assert store.beliefs(1) == data and store.beliefs(2) == "{}"
    assert store.beliefs(3) is None


def test_beliefs_stored_as_text_before_compression_still_read(tmp_path):
    path = tmp_path / "search.db"
    old = Store(path)
    old.db.execute("DELETE FROM migrations WHERE number = 6")
    old.db.execute("ALTER TABLE beliefs DROP COLUMN packed")
    old.db.table("beliefs").insert({"version": 1, "step": 0, "data": '{"old": true}'})
    old.db.conn.commit()
    store = Store(path)  # migrates
    store.save_beliefs(2, 1, '{"new": true}')
    assert store.beliefs(1) == '{"old": true}' and store.beliefs(2) == '{"new": true}'


def test_the_latest_round_of_finals_is_read_back_whole(tmp_path):
    store = Store(tmp_path / "search.db")
    assert store.finals() == {}

    def ev(candidate, score):
        result = WorkloadResult("w", Status.PASSED, latency_us=10.0, speedup=score)
        return Evaluation(Status.PASSED, candidate, Method.CUDA_GRAPH, (result,), score=score)

    store.save_finals({3: ev("a", 1.5), 0: ev("b", 1.4)})
    store.save_finals({3: ev("a", 1.6), 5: ev("c", 1.2)})
    assert Store(tmp_path / "search.db").finals() == {"a": ev("a", 1.6), "c": ev("c", 1.2)}
    assert [r["round"] for r in store.db["finals"].rows] == [1, 1, 2, 2]
