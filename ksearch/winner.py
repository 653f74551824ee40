"""The end of a run: re-measure the best candidates, then write the winner and a summary."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ksearch.evaluation import Evaluation
from ksearch.protocols import Scorer
from ksearch.store import Store
from ksearch.tree import Tree

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The declared winner: its node, its re-measured evaluation, and where it was written."""

    node: int
    evaluation: Evaluation
    path: Path


def finalists(tree: Tree, count: int) -> list[int]:
    """Ids of the `count` best passed nodes with distinct candidates, best first, then the
    root (the starting plan) if it passed and is not among them: the best search scores
    are the luckiest of many noisy measurements, so the starting plan is re-measured beside
    them and a search never declares a winner that measures worse than where it began."""
    seen: set[str] = set()
    out: list[int] = []
    for n in sorted(tree.nodes, key=lambda n: (-(n.value or 0.0), n.id)):
        if len(out) == count:
            break
        if n.value is not None and n.candidate not in seen:
            seen.add(n.candidate or "")
            out.append(n.id)
    root = tree.root
    if out and root.value is not None and root.candidate not in seen:
        out.append(root.id)
    return out


def finish(
    tree: Tree,
    store: Store,
    scorer: Scorer,
    run_dir: Path,
    count: int,
    say: Callable[[str], object] = log.info,
) -> Outcome | None:
    """Re-measure the finalists on every workload, side by side; write the best as winner.py,
    and summary.json. A resumed run whose finalists are the candidates re-measured at its
    last end keeps that measurement instead of repeating it. `say` tells a person which."""
    ids = finalists(tree, count)
    if not ids:
        return None
    sources = {i: store.source(tree[i].candidate or "") or "" for i in ids}
    earlier = store.finals()
    if earlier and set(earlier) == {tree[i].candidate for i in ids}:
        say(f"the {len(ids)} finalists were re-measured when this run last ended; kept")
        results = {i: earlier[tree[i].candidate or ""] for i in ids}
        store.event(-1, "finals_kept", nodes=ids)
    else:
        say(f"re-measuring {len(ids)} finalists on every workload, side by side")
        futures = {i: scorer.submit(sources[i], screen=False) for i in ids}
        results = {i: f.result() for i, f in futures.items()}
        store.save_finals(results)
        for i, ev in results.items():
            store.event(
                -1,
                "final",
                node=i,
                candidate=ev.candidate,
                status=ev.status.value,
                score=ev.score,
                search_score=_score(tree, i),
            )
    passed = [i for i in ids if results[i].passed and results[i].score is not None]
    if not passed:
        log.warning("no finalist passed its re-measurement")
        return None
    best = max(passed, key=lambda i: (results[i].score, -i))
    path = run_dir / "winner.py"
    path.write_text(sources[best])
    summary: dict[str, Any] = {
        "winner": {
            "node": best,
            "candidate": results[best].candidate,
            "score": results[best].score,
            "method": _method(results[best]),
        },
        "finalists": [
            {
                "node": i,
                "candidate": results[i].candidate,
                "status": results[i].status.value,
                "search_score": _score(tree, i),
                "final_score": results[i].score,
            }
            for i in ids
        ],
        "evaluations": store.evaluation_count(),
        "nodes": len(tree),
        "fingerprint": results[best].fingerprint,
        "workloads": results[best].to_dict()["workloads"],
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return Outcome(best, results[best], path)


def _score(tree: Tree, node_id: int) -> float | None:
    import math

    v = tree[node_id].value
    return None if v is None else math.exp(v)


def _method(ev: Evaluation) -> str | None:
    return None if ev.method is None else ev.method.value
