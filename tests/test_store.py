"""The run database: migrations, round trips, and unusable files."""

import sqlite3

import pytest

from ksearch.evaluation import Evaluation, Method, Status, WorkloadResult
from ksearch.store import MIGRATIONS, Store, StoreError


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
