"""`python -m ksearch.replay DB [--step N] [--json]`: the tree of a run, from its database alone.

Shows each node's plan step, status, score (× over the baseline) and the world
model's prediction beside the measured outcome (both as × over the parent).
With --step N, the tree as it stood after N evaluations.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.tree import Tree as RichTree

from ksearch.store import Store, StoreError


def load(db: Path, step: int | None) -> dict[str, Any]:
    """The replay object: `evaluations` and `nodes` (see DESIGN.md), plus run details."""
    if not db.exists():
        raise StoreError(f"{db} does not exist")
    store = Store(db, readonly=True)
    total = store.evaluation_count()
    rows = store.nodes()
    if step is not None:
        rows = [r for r in rows if r["step"] is not None and r["step"] <= step]
    values = {r["id"]: r["value"] for r in rows}
    nodes = []
    for r in rows:
        parent_value = values.get(r["parent"])
        observed = None
        if r["value"] is not None and parent_value is not None:
            observed = r["value"] - parent_value
        nodes.append(
            {
                "id": r["id"],
                "parent": r["parent"],
                "status": r["status"],
                "score": None if r["value"] is None else math.exp(r["value"]),
                "candidate": r["candidate"],
                "action": None if r["action"] is None else json.loads(r["action"]),
                "plan": json.loads(r["plan"]),
                "predicted": {"mean": r["pred_mean"], "std": r["pred_std"]},
                "observed": observed,
                "reason": r["reason"],
                "step": r["step"],
            }
        )
    run = store.run() or {}
    return {
        "evaluations": total if step is None else min(step, total),
        "nodes": nodes,
        "task": run.get("task"),
        "seed": run.get("seed"),
        "config": json.loads(run["config"]) if run.get("config") else None,
        "llm": store.llm_usage(),
    }


def _label(n: dict[str, Any]) -> str:
    action = n["action"]
    what = (
        "root"
        if action is None
        else (
            ",".join(
                f"{k}={v}" for k, v in [[action["param"], action["value"]], *action.get("also", [])]
            )
            + (f" @{action['regime']}" if action["regime"] else "")
        )
    )
    color = {"passed": "green", "pruned": "dim", "open": "cyan", "pending": "cyan"}.get(
        n["status"], "red"
    )
    text = f"#{n['id']} {what} [{color}]{n['status']}[/]"
    if n["score"] is not None:
        text += f" [bold]{n['score']:.3f}×[/]"
    if action is not None:
        p = n["predicted"]
        text += f"  predicted ×{math.exp(p['mean']):.2f}±{p['std']:.2f}"
        if n["observed"] is not None:
            text += f" → observed ×{math.exp(n['observed']):.2f}"
    if n["reason"] and n["status"] != "passed":
        text += f"  [dim]{n['reason'][:80]}[/]"
    return text


def render(data: dict[str, Any], console: Console, *, pruned: bool = False) -> None:
    """Print the tree; pruned children are counted beside their parent unless `pruned`."""
    by_parent: dict[int | None, list[dict[str, Any]]] = {}
    hidden: dict[int, int] = {}
    for n in data["nodes"]:
        if n["status"] == "pruned" and not pruned:
            hidden[n["parent"]] = hidden.get(n["parent"], 0) + 1
            continue
        by_parent.setdefault(n["parent"], []).append(n)
    roots = by_parent.get(None, [])
    if not roots:
        console.print("no nodes recorded at this step")
        return

    def label(n: dict[str, Any]) -> str:
        count = hidden.get(n["id"])
        return _label(n) + (f"  [dim](+{count} pruned)[/]" if count else "")

    top = RichTree(label(roots[0]))
    stack = [(roots[0], top)]
    while stack:
        node, branch = stack.pop()
        for child in by_parent.get(node["id"], []):
            stack.append((child, branch.add(label(child))))
    console.print(
        f"task {data['task']}, seed {data['seed']}: "
        f"{data['evaluations']} evaluations, {len(data['nodes'])} nodes"
    )
    llm = data.get("llm") or {}
    if llm.get("calls"):
        purposes = ", ".join(f"{k} {v}" for k, v in llm["by_purpose"].items())
        console.print(
            f"LLM: {llm['calls']} calls ({purposes}), {llm['prompt_tokens']} prompt + "
            f"{llm['completion_tokens']} completion tokens, ${llm['dollars']:.4f}, "
            f"{llm['invalid']} unusable answers, {llm['latency_s']:.1f} s waiting",
            highlight=False,
        )
    console.print(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ksearch.replay", description=__doc__.split("\n")[0]
    )
    parser.add_argument("db", type=Path, help="a run's search.db")
    parser.add_argument("--step", type=int, default=None, help="show the tree after N evaluations")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("--pruned", action="store_true", help="show pruned plans in the tree")
    args = parser.parse_args(argv)
    if args.step is not None and args.step < 0:
        parser.error("--step must be 0 or more")
    try:
        data = load(args.db, args.step)
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(data))
    else:
        console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)
        render(data, console, pruned=args.pruned)
    return 0


if __name__ == "__main__":
    sys.exit(main())
