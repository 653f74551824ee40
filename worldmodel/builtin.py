"""The built-in world model: typed actions over a task's design space, Bayesian beliefs.

It needs no LLM. Proposals are the children of a plan one action away (see
`ksearch.plan.actions`), plus compound actions: settings the space declares coupled,
moved together, and a regime's row set to a neighbouring regime's. Each child is the
exact plan that will render (the task's canonical form).

A child is predicted per regime it changes: the task's prior of that change, computed
around the plan being expanded (`Task.prior(parent, child, regime)`), plus what the
measurements say of the prior's error for that move. That error is learned in a small
hierarchy combined by precision: measurements of the same move in the same regime and
context count most, those in other contexts and other regimes less, and with none the
prior stands. So evidence gathered in one branch re-ranks the same move everywhere,
and a move that showed no effect in a context is not proposed there again. Regimes are
weighted by their share of the suite's workloads; statically infeasible children are
flagged so they never reach a worker.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from ksearch.evaluation import Evaluation, Status
from ksearch.mcts import Proposal
from ksearch.plan import Action, ParamKind, Plan, Value, actions
from ksearch.protocols import Evidence
from ksearch.task import Task, Workload
from worldmodel.beliefs import Beliefs, Key

log = logging.getLogger(__name__)

#: Failures that say the implementation broke, not that the plan was slow.
IMPLEMENTATION_FAILURES = frozenset(
    {Status.COMPILE_ERROR, Status.RUNTIME_ERROR, Status.INCORRECT, Status.CRASHED, Status.TIMEOUT}
)


@dataclass(frozen=True, slots=True)
class BuiltinKnobs:
    """How predictions are made and become PUCT priors (conf/worldmodel/builtin.yaml).

    Args:
        temperature: softmax temperature over predicted ln speedups.
        optimism: weight of the prediction's std in the prior (optimism under uncertainty).
        default_std: prior std (ln units) of a change the task says nothing about.
        noise_std: spread of one measured effect of a move around its effect (ln units).
        context_std: how much the error of a move's prior varies between contexts.
        regime_std: how much it varies between regimes.
        flat: a measured |effect| below this is no effect (ln units).
        compound: also propose coupled settings moved together, and neighbours' rows.
    """

    temperature: float = 0.1
    optimism: float = 0.0
    default_std: float = 0.3
    noise_std: float = 0.03
    context_std: float = 0.03
    regime_std: float = 0.15
    flat: float = 0.01
    compound: bool = True


@dataclass(frozen=True, slots=True)
class _Part:
    """What a child changes in one regime, known without beliefs: the belief keys of the
    move there (its kind with the direction of its values, pooled, per regime, per
    context), the sign that turns the kind's direction into this one, and the prior."""

    regime: str
    weight: float
    kind: str
    sign: int
    keys: tuple[Key, Key, Key]
    mean: float
    std: float


@dataclass(slots=True)
class _Child:
    action: Action
    plan: Plan
    reason: str | None
    parts: tuple[_Part, ...]
    proposal: Proposal | None = None  # under the beliefs last seen; None: not proposed
    logit: float = 0.0


class BuiltinWorldModel:
    """World model over a task's design space, learning where the task's priors are wrong."""

    def __init__(self, task: Task, workloads: Sequence[Workload], *, knobs: BuiltinKnobs) -> None:
        if task.space is None:
            raise ValueError(f"task {task.name!r} has no design space for the built-in world model")
        self.task = task
        self.space = task.space
        self.knobs = knobs
        self.regime_of = {w.name: task.regime(w) for w in workloads}
        counts = Counter(self.regime_of.values())
        total = sum(counts.values()) or 1
        #: share of the suite's workloads in each regime; a regime with none weighs nothing
        self.weights = {r: counts.get(r, 0) / total for r in self.space.regimes}
        self.decisions = tuple(p.name for p in self.space.params if p.kind is ParamKind.DECISION)
        self.partners: dict[str, tuple[str, ...]] = {}
        for a, b in self.space.couples:
            self.partners[a] = (*self.partners.get(a, ()), b)
            self.partners[b] = (*self.partners.get(b, ()), a)
        self._order = {p.name: {v: i for i, v in enumerate(p.values)} for p in self.space.params}
        self._children: dict[str, list[_Child]] = {}
        self._proposals: dict[str, list[Proposal]] = {}
        #: which children read each belief entry: key -> [(plan key, child index)]
        self._readers: dict[Key, list[tuple[str, int]]] = {}
        self._stale: dict[str, set[int]] = {}
        self._seen = Beliefs()
        self._contexts: dict[tuple[object, ...], str] = {}

    def root(self) -> Plan:
        return self.space.root()

    def initial_beliefs(self) -> Beliefs:
        return Beliefs()

    # -- children, and what is known of them without beliefs ------------------------------------

    def moves(self, plan: Plan) -> Iterator[Action]:
        """Every action to consider at `plan`: one setting; with `compound`, two coupled
        settings together in one regime, and a regime's row set to a neighbour's."""
        yield from actions(self.space, plan)
        if not self.knobs.compound:
            return
        regimes = [r for r in self.space.regimes if self.weights.get(r, 0.0) > 0.0]
        for a, b in self.space.couples:
            pa, pb = self.space.param(a), self.space.param(b)
            for r in regimes:
                for va in pa.moves(plan.get(a, r)):
                    for vb in pb.moves(plan.get(b, r)):
                        yield Action(a, va, r, also=((b, vb),))
        order = self.space.regimes
        for r in regimes:
            i = order.index(r)
            for j in (i - 1, i + 1):
                if 0 <= j < len(order):
                    diff = [
                        (p.name, plan.get(p.name, order[j]))
                        for p in self.space.params
                        if plan.get(p.name, order[j]) != plan.get(p.name, r)
                    ]
                    if len(diff) > 1:
                        yield Action(*diff[0], r, also=tuple(diff[1:]))

    def children(self, plan: Plan) -> list[_Child]:
        """Each distinct child of `plan` as it will render, with the reason it is infeasible
        if it is (cached). A move that renders `plan` again, or touches only regimes with no
        workloads in the suite, makes none."""
        if plan.key not in self._children:
            base = self.task.canonical(plan)
            seen = {base}
            out = []
            for action in self.moves(base):
                child = self.task.canonical(action.apply(base))
                if child in seen:
                    continue
                seen.add(child)
                parts = self._parts(base, action, child)
                if parts:
                    reason = self.task.infeasible(child)
                    out.append(_Child(action, child, reason, parts))
            self._children[plan.key] = out
        return self._children[plan.key]

    def _parts(self, base: Plan, action: Action, child: Plan) -> tuple[_Part, ...]:
        out = []
        for r in action.regimes(base):
            w = self.weights.get(r, 0.0)
            changes = [
                (p, old, v) for p, v in action.changes.items() if (old := base.get(p, r)) != v
            ]
            if w == 0.0 or not changes:
                continue
            kind, sign = self._kind(changes)
            context = self.context(base, r, tuple(p for p, _, _ in changes))
            prior = self.task.prior(base, child, r)
            mean, std = (0.0, self.knobs.default_std) if prior is None else (prior.mean, prior.std)
            keys = ((kind,), (kind, r), (kind, r, context))
            out.append(_Part(r, w, kind, sign, keys, mean, max(std, 1e-3)))
        return tuple(out)

    def _kind(self, changes: list[tuple[str, Value, Value]]) -> tuple[str, int]:
        """A move's kind, `param:old->new` (joined by `+` for several settings), with the
        values of a single setting in the order of its domain, and the sign of this
        direction: the error of a move's prior is the negative of its reverse's."""
        if len(changes) == 1:
            p, old, new = changes[0]
            order = self._order.get(p, {})
            if order.get(old, 0) > order.get(new, 0):
                return f"{p}:{new}->{old}", -1
            return f"{p}:{old}->{new}", 1
        return "+".join(sorted(f"{p}:{old}->{new}" for p, old, new in changes)), 1

    def context(self, plan: Plan, regime: str, moved: tuple[str, ...]) -> str:
        """The settings around a move: the structural decisions and the settings coupled
        with the moved ones, as they are in `plan` (the move's effect is learned per
        context too)."""
        row = plan.row(regime)
        key = (row, moved)
        if key not in self._contexts:
            around = [d for d in self.decisions if d not in moved]
            around += [q for p in moved for q in self.partners.get(p, ()) if q not in moved]
            values = dict(row)
            self._contexts[key] = ",".join(f"{q}={values[q]}" for q in dict.fromkeys(around))
        return self._contexts[key]

    def unaffected(self, parent: Plan, child: Plan) -> frozenset[str]:
        """The suite's workloads whose regime has the same settings in both plans as they
        render: a move between them cannot change those workloads' times."""
        a, b = self.task.canonical(parent), self.task.canonical(child)
        same = {r for r in self.space.regimes if a.row(r) == b.row(r)}
        return frozenset(w for w, r in self.regime_of.items() if r in same)

    # -- predictions under beliefs -------------------------------------------------------------

    def error(self, beliefs: Beliefs, part: _Part) -> tuple[float, float]:
        """The posterior mean and std of the prior's error for this part's move, in its
        direction: evidence in the same context counts with the noise's variance, in other
        contexts and other regimes with the spreads between them added, all combined by
        precision with the error's prior N(0, prior std)."""
        k = self.knobs
        stats = [beliefs.evidence.get(key) for key in part.keys]
        n = [s.n if s else 0 for s in stats]
        total = [s.residual if s else 0.0 for s in stats]
        v_same = k.noise_std**2
        v_context = v_same + k.context_std**2
        v_regime = v_same + k.regime_std**2
        precision = (
            1.0 / part.std**2 + n[2] / v_same + (n[1] - n[2]) / v_context + (n[0] - n[1]) / v_regime
        )
        mean = (
            total[2] / v_same + (total[1] - total[2]) / v_context + (total[0] - total[1]) / v_regime
        ) / precision
        return part.sign * mean, 1.0 / math.sqrt(precision)

    def _flat(self, beliefs: Beliefs, part: _Part) -> bool:
        """Whether the move was measured in this regime and context and did nothing."""
        s = beliefs.evidence.get(part.keys[2])
        return s is not None and abs(s.observed / s.n) < self.knobs.flat

    def _predicted(self, parts: tuple[_Part, ...], beliefs: Beliefs) -> tuple[float, float]:
        """ln(t_parent / t_child) and its std: the prior plus its learned error, per regime
        the child changes, weighted by the regime's share of the suite."""
        mean, var = 0.0, 0.0
        for part in parts:
            err, std = self.error(beliefs, part)
            mean -= part.weight * (part.mean + err)
            var += (part.weight * std) ** 2
        return mean, math.sqrt(var)

    def _score(self, c: _Child, beliefs: Beliefs) -> None:
        """Predict one child under `beliefs`: its proposal and logit, or none if every
        regime it changes showed no effect."""
        if all(self._flat(beliefs, part) for part in c.parts):
            c.proposal = None
            return
        mean, std = self._predicted(c.parts, beliefs)
        p_fail = max(beliefs.fail_chance(part.kind) for part in c.parts)
        c.logit = (mean + self.knobs.optimism * std) / self.knobs.temperature
        c.logit += math.log(max(1.0 - p_fail, 1e-6))
        c.proposal = Proposal(c.action, c.plan, mean, std, 0.0, infeasible=c.reason)

    def predict(self, plan: Plan, action: Action, beliefs: Beliefs) -> tuple[float, float]:
        """Predicted ln(t_parent / t_child) and its std for `action` at `plan`."""
        base = self.task.canonical(plan)
        child = self.task.canonical(action.apply(base))
        return self._predicted(self._parts(base, action, child), beliefs)

    def _sync(self, beliefs: Beliefs) -> None:
        """Mark stale the children whose belief entries differ from the beliefs last seen."""
        old = self._seen
        if beliefs is old:
            return
        changed: set[Key] = set()
        for mine, theirs in ((beliefs.evidence, old.evidence), (old.evidence, beliefs.evidence)):
            changed.update(k for k, v in mine.items() if theirs.get(k) is not v)
        for mine_f, theirs_f in (
            (beliefs.failures, old.failures),
            (old.failures, beliefs.failures),
        ):
            changed.update((k,) for k, v in mine_f.items() if theirs_f.get(k) != v)
        for key in changed:
            for plan_key, i in self._readers.get(key, ()):
                self._stale.setdefault(plan_key, set()).add(i)
        self._seen = beliefs

    def propose(self, plan: Plan, beliefs: Beliefs) -> list[Proposal]:
        """The children of `plan` in a fixed order; infeasible ones last, flagged. The list
        is shared until beliefs change what it holds: not to be changed by the caller.

        Predictions are kept per child and computed again only where a belief entry they
        read has changed, so proposing under each new beliefs version costs a look-up for
        most children, not a prediction."""
        self._sync(beliefs)
        kids = self.children(plan)
        cached = self._proposals.get(plan.key)
        if cached is None:
            for i, c in enumerate(kids):
                self._score(c, beliefs)
                for part in c.parts:
                    for key in part.keys:
                        self._readers.setdefault(key, []).append((plan.key, i))
        else:
            stale = self._stale.pop(plan.key, set())
            if not stale:
                return cached
            for i in stale:
                self._score(kids[i], beliefs)
        self._stale.pop(plan.key, None)
        feasible = [c for c in kids if c.proposal is not None and c.reason is None]
        top = max((c.logit for c in feasible), default=0.0)
        weights = [math.exp(c.logit - top) for c in feasible]
        z = sum(weights) or 1.0
        out = [
            Proposal(p.action, p.plan, p.mean, p.std, w / z)
            for w, c in zip(weights, feasible, strict=True)
            if (p := c.proposal) is not None
        ]
        out += [c.proposal for c in kids if c.reason is not None and c.proposal is not None]
        self._proposals[plan.key] = out
        return out

    # -- code and evidence -----------------------------------------------------------------------

    def instantiate(self, plan: Plan, parent_source: str | None) -> str:
        return self.task.render(plan)

    def repair(self, plan: Plan, source: str, evaluation: Evaluation) -> str | None:
        """Templates render the same code every time: there is nothing to repair."""
        return None

    def revise(self, beliefs: Beliefs, evidence: Evidence) -> Beliefs:
        """Add one child-versus-parent measurement: per regime the move changed, its
        observed effect against the prior's prediction, and whether it broke."""
        base = self.task.canonical(evidence.parent_plan)
        child = self.task.canonical(evidence.action.apply(base))
        parts = self._parts(base, evidence.action, child)
        failed = evidence.status in IMPLEMENTATION_FAILURES
        for part in parts:
            beliefs = beliefs.with_outcome(part.kind, failed)
        if evidence.status is Status.PASSED:
            for part in parts:
                ratios = [
                    math.log(evidence.child_latency[w] / t)
                    for w, t in evidence.parent_latency.items()
                    if self.regime_of.get(w) == part.regime and w in evidence.child_latency
                ]
                if ratios:
                    y = sum(ratios) / len(ratios)
                    beliefs = beliefs.with_evidence(part.keys, part.sign * y, part.sign * part.mean)
        return replace(beliefs, version=beliefs.version + 1)

    def beliefs_json(self, beliefs: Beliefs) -> str:
        return beliefs.to_json()
