"""Choosing the next plan to measure: PUCT with progressive widening, and two baselines.

All three strategies are pure functions of the tree and of `frontier(node_id)`,
the proposals not yet in the tree at a passed node, in the world model's order. They
return a `Choice` (expand this proposal under that node) or None when nothing
is left to try right now.

PUCT follows AlphaZero (Silver et al. 2018): `Q + c_puct · P · sqrt(N) / (1 + N_child)`,
with Q the best measured value in a child's subtree normalized to the run's
range (max-backup, as suits a search for one best kernel), and the world model's
predicted value standing in for Q at a child not yet measured. Progressive
widening (Coulom 2007; Chaslot et al. 2008) lets a node hold at most
`ceil(k · N^alpha)` children, so a node earns new children by being visited.
A failed evaluation is a visit that lowers its branch's Q by `fail_penalty` times
the branch's failure rate, never a value of minus infinity.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ksearch.plan import Action, Plan
from ksearch.tree import Node, NodeStatus, Tree


class Proposal(NamedTuple):
    """A child plan the world model suggests, with its predicted ln speedup over the parent.

    `prior` is the policy weight P in PUCT (the proposals of one node sum to 1);
    `infeasible` holds the reason when static checks rule the plan out. (A named tuple:
    a world model makes hundreds per plan.)
    """

    action: Action
    plan: Plan
    mean: float
    std: float
    prior: float
    difficulty: float = 1.0
    infeasible: str | None = None


@dataclass(frozen=True, slots=True)
class Choice:
    parent: int
    proposal: Proposal


Frontier = Callable[[int], Sequence[Proposal]]


#: how Q is normalized: over the run's range of values, relative to its best value (in
#: units of `q_scale` ln speedup), or by rank among its measured values
Q_NORMS = ("range", "best", "rank")


@dataclass(frozen=True, slots=True)
class MctsKnobs:
    """PUCT and widening constants (conf/search/mcts.yaml)."""

    c_puct: float = 0.5
    widen_k: float = 2.0
    widen_alpha: float = 0.5
    fail_penalty: float = 0.25
    optimism: float = 0.0
    q_norm: str = "range"
    q_scale: float = 0.02
    #: the spread (ln units) of one workload's measured time; above 0, a node's value in Q
    #: is its measured score combined by precision with its parent's value plus the change
    #: measured on the workloads the move can affect (where the world model says which)
    noise: float = 0.0
    #: a branch's Q is the best predicted value of a next move in its subtree (its best
    #: measured value where nothing is left to try there), so search goes where the best
    #: prospect is, and a measured child is not passed over for a sibling move it contains
    lookahead: bool = False

    def __post_init__(self) -> None:
        if self.q_norm not in Q_NORMS:
            raise ValueError(f"search.mcts.q_norm must be one of {Q_NORMS}, not {self.q_norm!r}")
        if self.q_scale <= 0:
            raise ValueError(f"search.mcts.q_scale must be positive, got {self.q_scale}")
        if self.noise < 0:
            raise ValueError(f"search.mcts.noise must be 0 or more, got {self.noise}")


@dataclass(frozen=True, slots=True)
class Values:
    """Estimates of measured nodes' ln scores that stand in for their measured values in
    Q: `of` each node, and `best` in each node's subtree."""

    of: dict[int, float]
    best: dict[int, float]


def _normalizer(tree: Tree, knobs: MctsKnobs, values: Values | None) -> Callable[[float], float]:
    """Q of a value (a measured or predicted ln score): 1 at the run's best value.

    `range` maps the run's lowest value to 0, so one disaster squeezes every gain;
    `best` counts ln speedup against the best in units of `q_scale`, so a 1% gain weighs
    the same however wide the range; `rank` is the share of measured values below."""
    known = sorted(
        values.of.values() if values else (n.value for n in tree.nodes if n.value is not None)
    )
    if not known:
        return lambda v: 0.5 + v
    lo, hi = known[0], known[-1]
    if knobs.q_norm == "best":
        return lambda v: 1.0 + (v - hi) / knobs.q_scale
    if knobs.q_norm == "rank":
        n = len(known)
        return lambda v: bisect.bisect_left(known, v + 1e-12) / n
    if hi - lo < 1e-12:
        return lambda v: 0.5 + v - lo
    return lambda v: (v - lo) / (hi - lo)


def select_puct(
    tree: Tree,
    frontier: Frontier,
    *,
    knobs: MctsKnobs,
    values: Values | None = None,
    memo: dict[int, tuple[Sequence[Proposal], float | None]] | None = None,
) -> Choice | None:
    """Descend by PUCT from the root and return the proposal to expand, or None.

    At a node that may widen, the proposals not yet in the tree compete with its
    measured children, valued by their predicted ln speedup (plus `optimism` stds).
    `values`, where given, stand in for the measured values of the nodes they hold;
    `memo` keeps each node's best predicted move with the frontier it came from.
    """
    norm = _normalizer(tree, knobs, values)

    def value(node: Node) -> float | None:
        return values.of.get(node.id, node.value) if values else node.value

    ahead = {}
    if knobs.lookahead:
        ahead = _lookahead(tree, frontier, knobs, value, {} if memo is None else memo)

    def best(node: Node) -> float | None:
        measured = values.best.get(node.id, node.best) if values else node.best
        return ahead.get(node.id, measured) if measured is not None else None

    blocked: set[int] = set()
    node = tree.root
    if node.status is not NodeStatus.PASSED:
        return None
    while True:
        n_eff = node.visits + node.inflight
        sqrt_n = math.sqrt(max(n_eff, 1))
        kids = [c for c in tree.children(node.id) if c.status is not NodeStatus.PRUNED]
        scored: list[tuple[float, int, int | None]] = []
        for kid in kids:
            kid_best = best(kid)
            if kid.status is NodeStatus.PASSED and kid.id not in blocked and kid_best is not None:
                q = norm(kid_best) - knobs.fail_penalty * kid.failures / max(kid.visits, 1)
                bonus = knobs.c_puct * kid.prior * sqrt_n / (1 + kid.visits + kid.inflight)
                scored.append((q + bonus, -kid.id, kid.id))
        props = frontier(node.id)
        limit = math.ceil(knobs.widen_k * max(n_eff, 1) ** knobs.widen_alpha)
        pick_new: Proposal | None = None
        if props and (len(kids) < limit or not scored):
            best_score = -math.inf
            for p in props:
                v = norm((value(node) or 0.0) + p.mean + knobs.optimism * p.std)
                score = v + knobs.c_puct * p.prior * sqrt_n
                if score > best_score:
                    best_score, pick_new = score, p
            scored.append((best_score, 1, None))
        if not scored:
            blocked.add(node.id)
            if node.parent is None:
                return None
            node = tree[node.parent]
            continue
        _, _, pick = max(scored)
        if pick is None:
            assert pick_new is not None
            return Choice(node.id, pick_new)
        node = tree[pick]


def _lookahead(
    tree: Tree,
    frontier: Frontier,
    knobs: MctsKnobs,
    value: Callable[[Node], float | None],
    memo: dict[int, tuple[Sequence[Proposal], float | None]],
) -> dict[int, float]:
    """Per node, the best predicted value of a proposal anywhere in its subtree: a branch
    is worth what its measured plans are and what their best next moves are predicted to
    be, so a measured child is not passed over for a sibling move it already contains."""
    ahead: dict[int, float] = {}
    for node in reversed(tree.nodes):  # children come after their parents
        v = value(node) if node.status is NodeStatus.PASSED else None
        if v is not None:
            props = frontier(node.id)
            seen = memo.get(node.id)
            if seen is None or seen[0] is not props:
                top = max((p.mean + knobs.optimism * p.std for p in props), default=None)
                seen = memo[node.id] = (props, top)
            own = seen[1]
            if own is not None and v + own > ahead.get(node.id, -math.inf):
                ahead[node.id] = v + own
        above = ahead.get(node.parent, -math.inf) if node.parent is not None else math.inf
        if node.parent is not None and node.id in ahead and ahead[node.id] > above:
            ahead[node.parent] = ahead[node.id]
    return ahead


def select_greedy(
    tree: Tree,
    frontier: Frontier,
    memo: dict[int, tuple[Sequence[Proposal], Proposal | None]] | None = None,
) -> Choice | None:
    """Best-first on the predicted value, the way K-Search picks its next action.

    `memo` keeps each node's best proposal with the frontier it came from, so a node whose
    frontier is the same object as before is not scanned again."""
    memo = {} if memo is None else memo
    best: tuple[float, float, int] | None = None
    choice = None
    for node in tree.nodes:
        if node.status is not NodeStatus.PASSED or node.value is None:
            continue
        props = frontier(node.id)
        seen = memo.get(node.id)
        if seen is None or seen[0] is not props:
            top = max(props, key=lambda p: (p.mean, p.prior), default=None)
            seen = memo[node.id] = (props, top)
        p = seen[1]
        if p is None:
            continue
        key = (node.value + p.mean, p.prior, -node.id)
        if best is None or key > best:
            best, choice = key, Choice(node.id, p)
    return choice


def select_random(tree: Tree, frontier: Frontier, rng: random.Random) -> Choice | None:
    """A uniformly random passed node with proposals left, then a random proposal of it.

    The first node with proposals left in a random order of the passed nodes is uniform
    among those nodes, and asks the world model about one node, not about every one."""
    passed = [node.id for node in tree.nodes if node.status is NodeStatus.PASSED]
    rng.shuffle(passed)
    for node_id in passed:
        props = frontier(node_id)
        if props:
            return Choice(node_id, rng.choice(list(props)))
    return None
