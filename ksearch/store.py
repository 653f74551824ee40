"""The run database: one SQLite file per run, WAL mode, written only by the orchestrator.

Tables: run (config, seed, fingerprint), nodes, candidates (source by content
hash), evaluations and workloads (per-workload rows), beliefs (one row per
world-model version, zlib-compressed), finals (each re-measurement of a run's
finalists) and events (append-only log). The schema evolves by numbered
migrations recorded in `migrations`.
"""

from __future__ import annotations

import json
import sqlite3
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from ksearch.evaluation import Evaluation
from ksearch.plan import table_json
from ksearch.tree import Node, NodeStatus


class StoreError(RuntimeError):
    """A database that cannot be used, with a message meant for the user."""


def _m001_initial(db: sqlite_utils.Database) -> None:
    db.table("run").create(
        {"id": int, "config": str, "seed": int, "task": str, "fingerprint": str, "created": float},
        pk="id",
    )
    db.table("nodes").create(
        {
            "id": int,
            "parent": int,
            "action": str,
            "plan": str,
            "plan_key": str,
            "status": str,
            "reason": str,
            "prior": float,
            "pred_mean": float,
            "pred_std": float,
            "value": float,
            "candidate": str,
            "step": int,
            "iteration": int,
        },
        pk="id",
    )
    db.table("candidates").create({"hash": str, "source": str, "plan_key": str}, pk="hash")
    db.table("evaluations").create(
        {
            "candidate": str,
            "number": int,
            "status": str,
            "reason": str,
            "method": str,
            "score": float,
            "fingerprint": str,
            "data": str,
            "created": float,
        },
        pk="candidate",
    )
    db.table("workloads").create(
        {
            "candidate": str,
            "name": str,
            "status": str,
            "reason": str,
            "latency_us": float,
            "spread": float,
            "speedup": float,
            "time_over_floor": float,
            "estimate_us": float,
            "max_error": float,
            "error": str,
        },
        pk=("candidate", "name"),
    )
    db.table("beliefs").create({"version": int, "step": int, "data": str}, pk="version")
    db.table("events").create(
        {"id": int, "time": float, "iteration": int, "kind": str, "data": str}, pk="id"
    )
    db.table("nodes").create_index(["parent"])


def _m002_timing_method(db: sqlite_utils.Database) -> None:
    """Per workload: the baseline's time and how both were timed (graph replay or eager)."""
    db.table("workloads").add_column("baseline_us", float)
    db.table("workloads").add_column("method", str)


def _m003_llm_calls(db: sqlite_utils.Database) -> None:
    """Every LLM call: request, response, tokens, latency and cost, keyed by a request hash."""
    db.table("llm_calls").create(
        {
            "key": str,
            "purpose": str,
            "model": str,
            "request": str,
            "response": str,
            "finish_reason": str,
            "prompt_tokens": int,
            "completion_tokens": int,
            "latency_s": float,
            "cost": float,
            "parse_error": str,
            "created": float,
        },
        pk="key",
    )


def _m004_plan_diffs(db: sqlite_utils.Database) -> None:
    """A node's plan may be stored as the settings where it differs from its parent's."""
    db.table("nodes").add_column("plan_diff", str)


def _m005_finals(db: sqlite_utils.Database) -> None:
    """The finalists' re-measurements, whole, one round per end of a run or of a chunk."""
    db.table("finals").create(
        {"round": int, "node": int, "candidate": str, "data": str, "created": float},
        pk=("round", "candidate"),
    )


def _m006_packed_beliefs(db: sqlite_utils.Database) -> None:
    """Beliefs may be stored zlib-compressed (`packed`) instead of as JSON text (`data`)."""
    db.table("beliefs").add_column("packed", bytes)


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _m001_initial,
    _m002_timing_method,
    _m003_llm_calls,
    _m004_plan_diffs,
    _m005_finals,
    _m006_packed_beliefs,
]


def _diff(table: dict[str, dict[str, Any]], parent: dict[str, dict[str, Any]]) -> str | None:
    """The settings of `table` that differ from `parent`'s as JSON, or None when the two
    do not have the same regimes and parameters (then only the whole plan will do)."""
    if table.keys() != parent.keys() or any(table[r].keys() != parent[r].keys() for r in table):
        return None
    changed: dict[str, dict[str, Any]] = {}
    for regime, row in table.items():
        for param, value in row.items():
            if parent[regime][param] != value:
                changed.setdefault(regime, {})[param] = value
    return table_json(changed)


class Store:
    """Typed reads and writes of one run database."""

    def __init__(self, path: Path | str | None, *, readonly: bool = False) -> None:
        self.path = path
        #: the plans (as tables) of the nodes saved through this store, by id
        self._tables: dict[int, dict[str, dict[str, Any]]] = {}
        try:
            if path is None:
                self.db = sqlite_utils.Database(memory=True)
            else:
                uri = f"file:{path}?mode=ro" if readonly else str(path)
                conn = sqlite3.connect(uri, uri=readonly, check_same_thread=False)
                self.db = sqlite_utils.Database(conn)
                self.db.execute("PRAGMA quick_check").fetchall()
                if not readonly:
                    self.db.enable_wal()
            if not readonly:
                self._migrate()
            elif "migrations" not in self.db.table_names():
                raise StoreError(f"{path} is not a ksearch run database (no migrations table)")
        except sqlite3.DatabaseError as e:
            raise StoreError(
                f"{path} is not a usable SQLite database ({e}); "
                "move it away or choose another hydra.run.dir"
            ) from e

    def _migrate(self) -> None:
        if "migrations" not in self.db.table_names():
            self.db.table("migrations").create({"number": int, "applied": float}, pk="number")
        done = {r["number"] for r in self.db.table("migrations").rows}
        for number, migrate in enumerate(MIGRATIONS, start=1):
            if number not in done:
                with self.db.conn:
                    migrate(self.db)
                    self.db.table("migrations").insert({"number": number, "applied": time.time()})

    # -- run ---------------------------------------------------------------------------------

    def run(self) -> dict[str, Any] | None:
        rows = list(self.db.table("run").rows)
        return rows[0] if rows else None

    def start_run(
        self, *, config: dict[str, Any], seed: int, task: str, fingerprint: dict[str, Any]
    ) -> None:
        with self.db.conn:
            self.db.table("run").insert(
                {
                    "id": 1,
                    "config": json.dumps(config, sort_keys=True),
                    "seed": seed,
                    "task": task,
                    "fingerprint": json.dumps(fingerprint, sort_keys=True),
                    "created": time.time(),
                }
            )

    # -- nodes -------------------------------------------------------------------------------

    def save_node(self, node: Node, iteration: int) -> None:
        self.save_nodes([node], iteration)

    def save_nodes(self, nodes: Sequence[Node], iteration: int) -> None:
        """Insert or update nodes in one transaction (one commit for many pruned children).

        A node whose parent this store has saved keeps only the settings where its plan
        differs from the parent's (a few dozen bytes instead of the whole plan: a moe_gemm
        search lists some 60 pruned children per expanded node); `nodes()` rebuilds it.
        """
        rows = []
        for node in nodes:
            table = node.plan.table()
            if node.status is not NodeStatus.PRUNED:  # a pruned node has no children
                self._tables[node.id] = table
            parent = None if node.parent is None else self._tables.get(node.parent)
            diff = None if parent is None else _diff(table, parent)
            rows.append(self._node_row(node, iteration, diff))
        if rows:
            with self.db.conn:
                self.db.table("nodes").upsert_all(rows, pk="id")

    @staticmethod
    def _node_row(node: Node, iteration: int, diff: str | None) -> dict[str, Any]:
        return {
            "id": node.id,
            "parent": node.parent,
            "action": None if node.action is None else json.dumps(node.action.to_dict()),
            "plan": node.plan.to_json() if diff is None else None,
            "plan_diff": diff,
            "plan_key": node.plan.key,
            "status": node.status.value,
            "reason": node.reason,
            "prior": node.prior,
            "pred_mean": node.pred_mean,
            "pred_std": node.pred_std,
            "value": node.value,
            "candidate": node.candidate,
            "step": node.step,
            "iteration": iteration,
        }

    def nodes(self) -> list[dict[str, Any]]:
        """Every node row in id order, each with its whole plan (as JSON) under "plan"."""
        rows = list(self.db.table("nodes").rows_where(order_by="id"))
        parents = {row["parent"] for row in rows}
        tables: dict[int, dict[str, dict[str, Any]]] = {}
        for row in rows:
            diff = row.pop("plan_diff", None)
            if row["plan"] is None:  # a parent's id is below its children's
                table = {r: dict(settings) for r, settings in tables[row["parent"]].items()}
                for regime, changed in json.loads(diff).items():
                    table[regime].update(changed)
                row["plan"] = table_json(table)
            elif row["id"] in parents:
                table = json.loads(row["plan"])
            else:
                continue
            if row["id"] in parents:
                tables[row["id"]] = table
        return rows

    # -- candidates and evaluations ----------------------------------------------------------

    def save_evaluation(self, source: str, plan_key: str | None, ev: Evaluation) -> int:
        """Store a first measurement of a candidate; returns its evaluation number (1-based)."""
        number = self.db.table("evaluations").count + 1
        with self.db.conn:
            self.db.table("candidates").upsert(
                {"hash": ev.candidate, "source": source, "plan_key": plan_key}, pk="hash"
            )
            self.db.table("evaluations").insert(
                {
                    "candidate": ev.candidate,
                    "number": number,
                    "status": ev.status.value,
                    "reason": ev.reason,
                    "method": None if ev.method is None else ev.method.value,
                    "score": ev.score,
                    "fingerprint": json.dumps(ev.fingerprint, sort_keys=True),
                    "data": ev.to_json(),
                    "created": time.time(),
                }
            )
            self.db.table("workloads").insert_all(
                [dict(w, candidate=ev.candidate) for w in ev.to_dict()["workloads"]],
                replace=True,
            )
        return number

    def evaluation(self, candidate: str) -> Evaluation | None:
        rows = list(self.db.table("evaluations").rows_where("candidate = ?", [candidate]))
        return Evaluation.from_dict(json.loads(rows[0]["data"])) if rows else None

    def evaluation_count(self) -> int:
        return self.db.table("evaluations").count

    def source(self, candidate: str) -> str | None:
        rows = list(self.db.table("candidates").rows_where("hash = ?", [candidate]))
        return rows[0]["source"] if rows else None

    # -- finals ------------------------------------------------------------------------------

    def save_finals(self, results: dict[int, Evaluation]) -> None:
        """Store one re-measurement of the finalists (node id to evaluation) as a new round."""
        row = self.db.execute("select coalesce(max(round), 0) from finals").fetchone()
        now = time.time()
        with self.db.conn:
            self.db.table("finals").insert_all(
                {
                    "round": row[0] + 1,
                    "node": node,
                    "candidate": ev.candidate,
                    "data": ev.to_json(),
                    "created": now,
                }
                for node, ev in results.items()
            )

    def finals(self) -> dict[str, Evaluation]:
        """The latest re-measurement of the finalists by candidate ({} if there was none)."""
        rows = self.db.execute(
            "select candidate, data from finals where round = (select max(round) from finals)"
        ).fetchall()
        return {c: Evaluation.from_dict(json.loads(data)) for c, data in rows}

    # -- LLM calls ---------------------------------------------------------------------------

    def llm_call(self, key: str) -> dict[str, Any] | None:
        rows = list(self.db.table("llm_calls").rows_where("key = ?", [key]))
        return rows[0] if rows else None

    def save_llm_call(self, row: dict[str, Any]) -> None:
        with self.db.conn:
            self.db.table("llm_calls").insert(dict(row, created=time.time()), replace=True)

    def mark_llm_invalid(self, key: str, error: str) -> None:
        """Record why a call's answer could not be used (malformed, truncated, refused)."""
        with self.db.conn:
            self.db.table("llm_calls").update(key, {"parse_error": error})

    def llm_totals(self) -> dict[str, float]:
        """Calls, tokens (prompt + completion) and dollars recorded in this run."""
        u = self.llm_usage()
        tokens = u["prompt_tokens"] + u["completion_tokens"]
        return {"calls": u["calls"], "tokens": tokens, "dollars": u["dollars"]}

    def llm_usage(self) -> dict[str, Any]:
        """Calls, tokens, dollars and unusable answers recorded in this run, and calls per
        purpose; all zero for a run without an LLM."""
        row = self.db.execute(
            "select count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),"
            " coalesce(sum(cost), 0), count(parse_error), coalesce(sum(latency_s), 0)"
            " from llm_calls"
        ).fetchone()
        purposes = self.db.execute(
            "select purpose, count(*) from llm_calls group by purpose order by purpose"
        ).fetchall()
        keys = ("calls", "prompt_tokens", "completion_tokens", "dollars", "invalid", "latency_s")
        return {**dict(zip(keys, row, strict=True)), "by_purpose": dict(purposes)}

    # -- beliefs and events ------------------------------------------------------------------

    def save_beliefs(self, version: int, step: int, data: str) -> None:
        """Store one world-model version, compressed (a built-in model's beliefs are some
        40 KB of JSON, and a search saves one version per measured child)."""
        packed = zlib.compress(data.encode(), 6)
        with self.db.conn:
            self.db.table("beliefs").upsert(
                {"version": version, "step": step, "data": None, "packed": packed}, pk="version"
            )

    def beliefs(self, version: int) -> str | None:
        """The JSON of world-model version `version`, or None if it was not stored."""
        rows = list(self.db.table("beliefs").rows_where("version = ?", [version]))
        if not rows:
            return None
        row = rows[0]
        return row["data"] if row.get("packed") is None else zlib.decompress(row["packed"]).decode()

    def event(self, iteration: int, kind: str, **data: Any) -> None:
        with self.db.conn:
            self.db.table("events").insert(
                {
                    "time": time.time(),
                    "iteration": iteration,
                    "kind": kind,
                    "data": json.dumps(data, sort_keys=True, default=str),
                }
            )

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        where = None if kind is None else "kind = ?"
        return list(
            self.db.table("events").rows_where(where, [kind] if kind else [], order_by="id")
        )
