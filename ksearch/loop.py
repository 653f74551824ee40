"""The search loop: select, expand, instantiate, evaluate, back up, revise, persist.

This is the one module where effects happen. Several evaluations may be in
flight; results are applied in the order their work was submitted and each
iteration draws its randomness from (seed, iteration), so a seed determines
the tree. Resuming re-runs the same loop against the run database: a candidate
measured before is read back, not measured again, so with one worker a
resumed run ends with the same tree as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ksearch import mcts
from ksearch.evaluation import Evaluation, Status
from ksearch.harness import content_hash
from ksearch.mcts import Choice, MctsKnobs, Proposal
from ksearch.plan import Plan, read_plan
from ksearch.protocols import Evidence, Scorer, WorldModel
from ksearch.store import Store
from ksearch.tpe import TpeSampler
from ksearch.tree import NodeStatus, Tree, add_child, backup, mark_pending, update

log = logging.getLogger(__name__)

STRATEGIES = ("mcts", "greedy", "random", "tpe")


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """What a search does (conf/search/*.yaml plus the run seed)."""

    strategy: str = "mcts"
    budget: int = 30
    seed: int = 0
    mcts: MctsKnobs = field(default_factory=MctsKnobs)
    repair_attempts: int = 0
    finalists: int = 3
    #: seconds after which this run starts no new evaluation (in-flight ones finish); a
    #: resumed run starts the clock once it has replayed the iterations it recorded before
    time_limit: float | None = None
    #: the plan a search starts from: the task's starting plan, or every parameter at its
    #: default (`untuned`), to find what the starting plan's values know
    root: str = "start"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown search strategy {self.strategy!r}; choose from {STRATEGIES}")
        if self.budget < 1:
            raise ValueError(f"search.budget must be at least 1, got {self.budget}")
        if self.root not in ("start", "untuned"):
            raise ValueError(f"search.root must be start or untuned, not {self.root!r}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"search.time_limit must be positive seconds, got {self.time_limit}")


@dataclass(slots=True)
class Work:
    """One iteration in flight: a node, its source, and its (future) evaluation."""

    iteration: int
    node: int
    source: str
    result: Future[Evaluation]
    counted: bool
    repairs: int = 0


@dataclass(frozen=True, slots=True)
class Progress:
    tree: Tree
    evaluations: int
    budget: int
    in_flight: int
    best: float | None


class Search:
    """Runs one search over a task's plans, persisting every step in `store`."""

    def __init__(
        self,
        *,
        root: Plan,
        world_model: WorldModel,
        scorer: Scorer,
        store: Store,
        config: SearchConfig,
        workers: int = 1,
        on_progress: Callable[[Progress], None] | None = None,
        sampler: TpeSampler | None = None,
    ) -> None:
        """`sampler` chooses the plans of `search=tpe` (and is required by it); the world
        model then only renders them."""
        if (config.strategy == "tpe") != (sampler is not None):
            raise ValueError("search=tpe, and only it, takes a TPE sampler")
        self.wm, self.scorer, self.store, self.config = world_model, scorer, store, config
        self.sampler = sampler
        self.workers = max(1, workers)
        self.on_progress = on_progress or (lambda p: None)
        self.tree = Tree.start(root)
        self.beliefs = world_model.initial_beliefs()
        self.sources: dict[int, str] = {}
        self.results: dict[str, Evaluation] = {}  # candidates applied in this run, by hash
        self.submitted: dict[str, Future[Evaluation]] = {}
        self.counted = 0  # distinct candidates sent to a worker (or restored from the database)
        self.applied = 0  # counted evaluations whose results have been applied
        self.iteration = 0
        self._proposals: dict[int, Sequence[Proposal]] = {}  # by node, for one beliefs version
        #: by node: its proposals, their frontier, its plans, the tree size it is for
        self._frontiers: dict[int, tuple[Sequence[Proposal], list[Proposal], set[Plan], int]] = {}
        self._greedy: dict[int, tuple[Sequence[Proposal], Proposal | None]] = {}
        self._ahead: dict[int, tuple[Sequence[Proposal], float | None]] = {}
        #: mcts with search.mcts.noise: each measured node's value estimate and its variance
        self._estimates: dict[int, tuple[float, float]] = {}
        self._values: mcts.Values | None = None
        if (
            config.strategy == "mcts"
            and config.mcts.noise > 0
            and hasattr(world_model, "unaffected")
        ):
            self._values = mcts.Values({}, {})
        self._proposals_version = -1
        events = store.events()
        self.replaying_until = max((e["iteration"] for e in events), default=-1)

    # -- selection ---------------------------------------------------------------------------

    def proposals(self, node_id: int) -> Sequence[Proposal]:
        """The world model's proposals for a node under the current beliefs (cached)."""
        if self._proposals_version != self._version():
            self._proposals.clear()  # beliefs changed: every prediction is stale
            self._proposals_version = self._version()
        if node_id not in self._proposals:
            self._proposals[node_id] = self.wm.propose(self.tree[node_id].plan, self.beliefs)
        return self._proposals[node_id]

    def frontier(self, node_id: int) -> Sequence[Proposal]:
        """Feasible proposals of a passed node whose plans are not in the tree yet (the
        same list object while neither the proposals nor the frontier change)."""
        props = self.proposals(node_id)
        cached = self._frontiers.get(node_id)
        size = len(self.tree)
        if cached is None or cached[0] is not props:
            kept = [p for p in props if p.infeasible is None and p.plan not in self.tree.plans]
            keys = {p.plan for p in kept}
        else:
            _, kept, keys, upto = cached
            if upto < size:
                added = {n.plan for n in self.tree.nodes[upto:]} & keys
                if added:
                    kept = [p for p in kept if p.plan not in added]
                    keys = keys - added
        self._frontiers[node_id] = (props, kept, keys, size)
        return kept

    def _version(self) -> int:
        return int(getattr(self.beliefs, "version", 0))

    def select(self, rng: random.Random) -> Choice | None:
        if self.sampler is not None:
            return self.sampler.select(self.tree)
        if self.config.strategy == "greedy":
            return mcts.select_greedy(self.tree, self.frontier, self._greedy)
        if self.config.strategy == "random":
            return mcts.select_random(self.tree, self.frontier, rng)
        return mcts.select_puct(
            self.tree, self.frontier, knobs=self.config.mcts, values=self._values, memo=self._ahead
        )

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> Tree:
        """Search until the budget or the time limit is spent, or no plan is left; returns
        the final tree."""
        queue: deque[Work] = deque()
        self._event(
            "resumed" if self.replaying_until >= 0 else "started", budget=self.config.budget
        )
        limit = self.config.time_limit
        deadline: float | None = None
        timed_out = False
        try:
            while True:
                while len(queue) < self.workers and self.counted < self.config.budget:
                    if limit is not None and deadline is None and self.replayed:
                        deadline = time.monotonic() + limit
                    if deadline is not None and self.applied > 0 and time.monotonic() > deadline:
                        if not timed_out:
                            self._event("time_limit", seconds=limit, evaluations=self.counted)
                        timed_out = True
                        break
                    work = self._next()
                    if work is None:
                        break
                    queue.append(work)
                if not queue:
                    break
                self._report(len(queue))
                self._apply(queue.popleft(), queue)
            self._report(0)
        finally:
            for work in queue:
                work.result.cancel()
        self._event("finished", evaluations=self.counted, nodes=len(self.tree))
        return self.tree

    @property
    def replayed(self) -> bool:
        """Whether the iterations a resumed run recorded before have all been run again
        (always true for a new run)."""
        return self.iteration > self.replaying_until

    def _next(self) -> Work | None:
        """Choose and submit the next iteration's node, or None if nothing can be chosen now."""
        if self.tree.root.status is NodeStatus.OPEN:
            node_id, parent_source = 0, None
        else:
            rng = random.Random(f"{self.config.seed}:{self.iteration}")
            choice = self.select(rng)
            if choice is None:
                return None
            p = choice.proposal
            self.tree, node_id = add_child(
                self.tree,
                choice.parent,
                p.action,
                plan=p.plan,
                prior=p.prior,
                pred_mean=p.mean,
                pred_std=p.std,
            )
            parent_source = self.sources.get(choice.parent)
        self.iteration += 1
        plan = self.tree[node_id].plan
        source = self.wm.instantiate(plan, parent_source)
        self.tree = mark_pending(self.tree, node_id)
        self._save(node_id)
        return self._submit(node_id, source)

    def _submit(self, node_id: int, source: str, repairs: int = 0) -> Work:
        self.sources[node_id] = source
        h = content_hash(source)
        counted = False
        if h in self.submitted:
            future = self.submitted[h]  # the same code is already measured or in flight
        else:
            stored = self.store.evaluation(h)
            if stored is not None:
                future = Future()
                future.set_result(stored)
            else:
                future = self.scorer.submit(source)
            self.submitted[h] = future
            counted = True
            self.counted += 1
        return Work(self.iteration, node_id, source, future, counted, repairs)

    def _apply(self, work: Work, queue: deque[Work]) -> None:
        """Apply one finished iteration: back up, revise beliefs, persist."""
        ev = work.result.result()
        h = ev.candidate
        if work.counted:
            self.applied += 1
            if self.store.evaluation(h) is None:
                plan = read_plan(work.source)
                self.store.save_evaluation(work.source, plan.key if plan else None, ev)
        self.results[h] = ev
        node = self.tree[work.node]
        failed = ev.status is not Status.PASSED
        can_repair = self.counted < self.config.budget
        if failed and can_repair and work.repairs < self.config.repair_attempts:
            fixed = self.wm.repair(node.plan, work.source, ev)
            if fixed is not None:
                self._event(
                    "repair", work.iteration, node=node.id, status=ev.status.value, reason=ev.reason
                )
                queue.appendleft(self._submit(node.id, fixed, work.repairs + 1))
                return
        status = NodeStatus(ev.status.value)
        if failed and work.repairs > 0:
            status = NodeStatus.FAILED
        value = ev.log_score if ev.passed else None
        self.tree = backup(
            self.tree,
            node.id,
            status=status,
            value=value,
            candidate=h,
            step=self.applied,
            reason=ev.reason,
        )
        if self._values is not None and value is not None:
            self._estimate(node.id, ev)
        if self.sampler is not None:
            self.sampler.tell(node.plan, value)
        else:
            self._revise(node.id, ev)
            if ev.passed:
                self._prune(node.id)
        self._save(node.id)
        self._event(
            "evaluated",
            work.iteration,
            node=node.id,
            candidate=h,
            status=ev.status.value,
            score=ev.score,
            predicted=node.pred_mean,
            cached=not work.counted,
        )

    def _estimate(self, node_id: int, ev: Evaluation) -> None:
        """A measured node's value for Q: its measured ln score combined by precision with
        its parent's value plus the change measured on the workloads the move can affect
        (the others' differences are noise alone), each with the variance that
        `search.mcts.noise` per workload implies."""
        assert self._values is not None
        node = self.tree[node_id]
        assert node.value is not None
        logs = _log_speedups(ev)
        n = len(logs)
        var = self.config.mcts.noise**2 / n
        mean = node.value
        parent = None if node.parent is None else self.tree[node.parent]
        parent_ev = None if parent is None else self.results.get(parent.candidate or "")
        if parent is not None and parent.id in self._estimates and parent_ev is not None:
            before = _log_speedups(parent_ev)
            if before.keys() == logs.keys():
                same = self.wm.unaffected(parent.plan, node.plan)  # type: ignore[attr-defined]
                moved = [w for w in logs if w not in same]
                p_mean, p_var = self._estimates[parent.id]
                chain = p_mean + sum(logs[w] - before[w] for w in moved) / n
                chain_var = p_var + 2 * self.config.mcts.noise**2 * len(moved) / n**2
                precision = 1.0 / var + 1.0 / chain_var
                mean = (mean / var + chain / chain_var) / precision
                var = 1.0 / precision
        self._estimates[node_id] = (mean, var)
        of, best = self._values.of, self._values.best
        of[node_id] = mean
        at: int | None = node_id
        while at is not None and best.get(at, -math.inf) < mean:
            best[at] = mean
            at = self.tree[at].parent

    def _revise(self, node_id: int, ev: Evaluation) -> None:
        node = self.tree[node_id]
        if node.parent is None or node.action is None:
            return
        parent = self.tree[node.parent]
        parent_ev = self.results.get(parent.candidate or "")
        if parent_ev is None:
            return
        evidence = Evidence(
            parent.plan,
            node.action,
            ev.status,
            node.pred_mean,
            node.pred_std,
            parent_ev.latencies(),
            ev.latencies(),
        )
        self.beliefs = self.wm.revise(self.beliefs, evidence)
        self.store.save_beliefs(self._version(), self.applied, self.wm.beliefs_json(self.beliefs))

    def _prune(self, node_id: int) -> None:
        """List the statically infeasible proposals of a passed node as pruned children."""
        pruned = []
        for p in self.proposals(node_id):
            if p.infeasible is not None and p.plan not in self.tree.plans:
                self.tree, child = add_child(
                    self.tree,
                    node_id,
                    p.action,
                    plan=p.plan,
                    prior=0.0,
                    pred_mean=p.mean,
                    pred_std=p.std,
                    status=NodeStatus.PRUNED,
                    reason=p.infeasible,
                )
                self.tree = update(self.tree, child, step=self.applied)
                pruned.append(self.tree[child])
        self.store.save_nodes(pruned, self.iteration)

    # -- persistence and display -------------------------------------------------------------

    def _save(self, node_id: int) -> None:
        self.store.save_node(self.tree[node_id], self.iteration)

    def _event(self, kind: str, iteration: int | None = None, **data: Any) -> None:
        """Append to the event log, except for iterations a resumed run is replaying."""
        at = self.iteration if iteration is None else iteration
        if at > self.replaying_until or kind in ("resumed", "started", "finished"):
            self.store.event(at, kind, **data)

    def _report(self, in_flight: int) -> None:
        best = self.tree.best_node()
        self.on_progress(
            Progress(
                self.tree,
                self.applied,
                self.config.budget,
                in_flight,
                None if best is None else best.value,
            )
        )


def _log_speedups(ev: Evaluation) -> dict[str, float]:
    return {w.name: math.log(w.speedup) for w in ev.workloads if w.speedup and w.speedup > 0}
