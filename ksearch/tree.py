"""The search tree: frozen nodes of plans and pure functions that return new trees."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from ksearch.plan import Action, Plan


class NodeStatus(StrEnum):
    OPEN = "open"
    PENDING = "pending"
    PRUNED = "pruned"
    FAILED = "failed"
    PASSED = "passed"
    INCORRECT = "incorrect"
    RUNTIME_ERROR = "runtime_error"
    COMPILE_ERROR = "compile_error"
    TIMEOUT = "timeout"
    CRASHED = "crashed"
    REJECTED = "rejected"

    @property
    def measured(self) -> bool:
        return self not in (NodeStatus.OPEN, NodeStatus.PENDING, NodeStatus.PRUNED)


@dataclass(frozen=True, slots=True)
class Node:
    """A plan in the tree.

    `value` is the measured ln speedup over the baseline (None unless passed);
    `best` is the largest value in the subtree; `visits` and `failures` count the
    evaluations in the subtree and those of them that did not pass; `pred_mean`/`pred_std` are the
    world model's prediction of ln(t_parent / t_child) made when it proposed
    the node; `step` is the evaluation count after the node's result applied.
    """

    id: int
    parent: int | None
    plan: Plan
    action: Action | None = None
    status: NodeStatus = NodeStatus.OPEN
    reason: str | None = None
    prior: float = 1.0
    pred_mean: float = 0.0
    pred_std: float = 0.0
    value: float | None = None
    best: float | None = None
    visits: int = 0
    failures: int = 0
    inflight: int = 0
    candidate: str | None = None
    step: int | None = None
    children: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Tree:
    """All nodes by id (expansion order, root 0) and an index of plans already present."""

    nodes: tuple[Node, ...]
    plans: frozenset[Plan] = field(default_factory=frozenset)

    @staticmethod
    def start(root: Plan) -> Tree:
        return Tree((Node(0, None, root),), frozenset({root}))

    @property
    def root(self) -> Node:
        return self.nodes[0]

    def __getitem__(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def __len__(self) -> int:
        return len(self.nodes)

    def children(self, node_id: int) -> list[Node]:
        return [self.nodes[c] for c in self.nodes[node_id].children]

    def path(self, node_id: int) -> list[int]:
        """Ids from the root down to `node_id`."""
        out = []
        n: int | None = node_id
        while n is not None:
            out.append(n)
            n = self.nodes[n].parent
        return out[::-1]

    def measured(self) -> list[Node]:
        return [n for n in self.nodes if n.status.measured]

    def value_range(self) -> tuple[float, float] | None:
        values = [n.value for n in self.nodes if n.value is not None]
        return (min(values), max(values)) if values else None

    def best_node(self) -> Node | None:
        passed = [n for n in self.nodes if n.value is not None]
        return max(passed, key=lambda n: (n.value, -n.id)) if passed else None


def add_child(
    tree: Tree,
    parent: int,
    action: Action,
    *,
    plan: Plan,
    prior: float,
    pred_mean: float,
    pred_std: float,
    status: NodeStatus = NodeStatus.OPEN,
    reason: str | None = None,
) -> tuple[Tree, int]:
    """Append a child of `parent`; returns the new tree and the child's id."""
    child = Node(
        len(tree.nodes),
        parent,
        plan,
        action,
        status=status,
        reason=reason,
        prior=prior,
        pred_mean=pred_mean,
        pred_std=pred_std,
    )
    p = tree.nodes[parent]
    nodes = list(tree.nodes)
    nodes[parent] = replace(p, children=(*p.children, child.id))
    nodes.append(child)
    return Tree(tuple(nodes), tree.plans | {plan}), child.id


def update(tree: Tree, node_id: int, **changes: object) -> Tree:
    nodes = list(tree.nodes)
    nodes[node_id] = replace(nodes[node_id], **changes)  # type: ignore[arg-type]
    return replace(tree, nodes=tuple(nodes))


def mark_pending(tree: Tree, leaf: int) -> Tree:
    """Put `leaf` in flight and add a virtual loss on its ancestors."""
    nodes = list(tree.nodes)
    nodes[leaf] = replace(nodes[leaf], status=NodeStatus.PENDING)
    for i in tree.path(leaf)[:-1]:
        nodes[i] = replace(nodes[i], inflight=nodes[i].inflight + 1)
    return replace(tree, nodes=tuple(nodes))


def backup(
    tree: Tree,
    leaf: int,
    *,
    status: NodeStatus,
    value: float | None,
    candidate: str | None,
    step: int,
    reason: str | None = None,
) -> Tree:
    """Record a leaf's outcome and back it up: one visit on the path, max of values.

    A failure is a visit that raises no ancestor's best, so its branch's
    exploration bonus shrinks without a value of minus infinity.
    """
    nodes = list(tree.nodes)
    ids = tree.path(leaf)
    for i in ids:
        n = nodes[i]
        best = n.best
        if value is not None:
            best = value if best is None else max(best, value)
        inflight = n.inflight - 1 if i != leaf and n.inflight > 0 else n.inflight
        failures = n.failures + (status is not NodeStatus.PASSED)
        nodes[i] = replace(n, visits=n.visits + 1, failures=failures, best=best, inflight=inflight)
    nodes[leaf] = replace(
        nodes[leaf], status=status, value=value, candidate=candidate, step=step, reason=reason
    )
    return replace(tree, nodes=tuple(nodes))
