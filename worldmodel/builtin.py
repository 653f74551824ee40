"""The built-in world model: typed actions over a task's design space, Bayesian beliefs.

It needs no LLM. Proposals are every one-move edit of a plan (see
`ksearch.plan.actions`); each is predicted from the posteriors of its action
kind in the regimes it touches, weighted by the share of the suite's
workloads in each regime, and statically infeasible ones are flagged so they
never reach a worker. Every measured child-versus-parent pair updates the
posteriors, so evidence gathered at one node re-ranks proposals everywhere.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import cast

from ksearch.evaluation import Evaluation, Status
from ksearch.mcts import Proposal
from ksearch.plan import Action, ParamKind, Plan, Value, actions
from ksearch.protocols import Evidence
from ksearch.task import Prior, Task, Workload
from worldmodel.beliefs import Beliefs, Posterior

log = logging.getLogger(__name__)

#: The regime key of posteriors pooled over all regimes.
ANY_REGIME = "*"

#: Failures that say the implementation broke, not that the plan was slow.
IMPLEMENTATION_FAILURES = frozenset(
    {Status.COMPILE_ERROR, Status.RUNTIME_ERROR, Status.INCORRECT, Status.CRASHED, Status.TIMEOUT}
)


@dataclass(frozen=True, slots=True)
class BuiltinKnobs:
    """How predictions become PUCT priors (conf/worldmodel/builtin.yaml).

    Args:
        temperature: softmax temperature over predicted ln speedups.
        optimism: weight of the prediction's std in the prior (optimism under uncertainty).
        default_std: prior std (ln units) of an action kind the task says nothing about.
        context_std: how much an action's effect varies between structural contexts (ln units).
    """

    temperature: float = 0.1
    optimism: float = 0.0
    default_std: float = 0.3
    context_std: float = 0.1


class _RecordingMap:
    """`get` on a mapping that remembers each key read and the value it held."""

    def __init__(self, mapping: Mapping[tuple[str, str], Posterior]) -> None:
        self.mapping = mapping
        self.read: list[tuple[tuple[str, str], Posterior | None]] = []

    def get(self, key: tuple[str, str]) -> Posterior | None:
        value = self.mapping.get(key)
        self.read.append((key, value))
        return value


class _Recorder:
    """A view of beliefs that remembers the entries a prediction read."""

    def __init__(self, beliefs: Beliefs) -> None:
        self.beliefs = beliefs
        self.effects = _RecordingMap(beliefs.effects)
        self.failures: list[tuple[str, tuple[int, int] | None]] = []

    def fail_chance(self, kind: str) -> float:
        self.failures.append((kind, self.beliefs.failures.get(kind)))
        return self.beliefs.fail_chance(kind)


@dataclass(frozen=True, slots=True)
class _Scored:
    """A child's proposal under some beliefs, and the belief entries it was computed from
    (posteriors are replaced, never changed, so an entry is stale when one is another)."""

    move: tuple[Action, Plan, str | None]
    logit: float
    proposal: Proposal
    effects: tuple[tuple[tuple[str, str], Posterior | None], ...]
    failures: tuple[tuple[str, tuple[int, int] | None], ...]

    def fresh(self, beliefs: Beliefs) -> bool:
        return all(beliefs.effects.get(k) is v for k, v in self.effects) and all(
            beliefs.failures.get(k) == v for k, v in self.failures
        )


class BuiltinWorldModel:
    """World model over a task's design space, with beliefs per action kind and regime."""

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
        self._children: dict[str, list[tuple[Action, Plan, str | None]]] = {}
        self._priors: dict[tuple[str, Value, Value, str], Posterior] = {}
        #: per plan: its children's predictions, and its proposals
        self._scored: dict[str, tuple[list[_Scored], list[Proposal]]] = {}
        self.decisions = [p for p in self.space.params if p.kind is ParamKind.DECISION]

    def root(self) -> Plan:
        return self.space.root()

    def initial_beliefs(self) -> Beliefs:
        return Beliefs()

    def context(self, plan: Plan, regime: str, param: str) -> str:
        """The structural decisions around an action: its effect is learned per context too."""
        return ",".join(
            f"{p.name}={plan.get(p.name, regime)}" for p in self.decisions if p.name != param
        )

    def posterior(self, beliefs: Beliefs, action: Action, plan: Plan, regime: str) -> Posterior:
        """The effect of `action` on ln(latency) in `regime`, in the plan's structural context.

        A hierarchical model with known spreads between its levels: the posterior of the
        action kind in this context and regime if it has evidence; else, as that posterior's
        prior, the kind in this context pooled over regimes if that has evidence, or the kind
        in this regime pooled over contexts, widened by `context_std`.
        """
        kind = action.kind(plan, regime)
        local_kind = f"{kind}|{self.context(plan, regime, action.param)}"
        local = beliefs.effects.get((local_kind, regime))
        if local is not None:
            return local
        pooled = beliefs.effects.get((local_kind, ANY_REGIME))
        base = pooled if pooled is not None else self.shared(beliefs, action, plan, regime)
        return Posterior.from_prior(base.m, math.hypot(base.std, self.knobs.context_std))

    def shared(self, beliefs: Beliefs, action: Action, plan: Plan, regime: str) -> Posterior:
        """The kind's posterior pooled over all contexts, starting from the task's prior."""
        post = beliefs.effects.get((action.kind(plan, regime), regime))
        if post is not None:
            return post
        key = (action.param, plan.get(action.param, regime), action.value, regime)
        if key not in self._priors:
            prior = self.task.prior(*key)
            if prior is None:
                prior = Prior(0.0, self.knobs.default_std)
            self._priors[key] = Posterior.from_prior(prior.mean, prior.std)
        return self._priors[key]

    def children(self, plan: Plan) -> list[tuple[Action, Plan, str | None]]:
        """Each one-move child of `plan` with the reason it is infeasible, if it is (cached).
        A move whose settings take no effect (the task renders the child as `plan`) is none."""
        if plan.key not in self._children:
            out = []
            same = self.task.canonical(plan)
            for action in actions(self.space, plan):
                child = action.apply(plan)
                if child != plan and self.task.canonical(child) != same:
                    out.append((action, child, self.task.infeasible(child)))
            self._children[plan.key] = out
        return self._children[plan.key]

    def predict(self, plan: Plan, action: Action, beliefs: Beliefs) -> tuple[float, float]:
        """Predicted ln(t_parent / t_child) and its std, over the regimes the action touches."""
        mean, var = 0.0, 0.0
        for r in action.regimes(plan):
            w = self.weights.get(r, 0.0)
            if w == 0.0 or plan.get(action.param, r) == action.value:
                continue
            post = self.posterior(beliefs, action, plan, r)
            mean -= w * post.m
            var += (w * post.std) ** 2
        return mean, math.sqrt(var)

    def _score(
        self, plan: Plan, move: tuple[Action, Plan, str | None], beliefs: Beliefs
    ) -> _Scored:
        """One child's prediction and logit, with the belief entries they were read from."""
        action, child, reason = move
        seen = _Recorder(beliefs)
        view = cast(Beliefs, seen)
        mean, std = self.predict(plan, action, view)
        p_fail = max(view.fail_chance(action.kind(plan, r)) for r in action.regimes(plan))
        logit = (mean + self.knobs.optimism * std) / self.knobs.temperature
        logit += math.log(max(1.0 - p_fail, 1e-6))
        proposal = Proposal(action, child, mean, std, 0.0, infeasible=reason)
        return _Scored(move, logit, proposal, tuple(seen.effects.read), tuple(seen.failures))

    def propose(self, plan: Plan, beliefs: Beliefs) -> list[Proposal]:
        """All one-move children of `plan`, best prior first; infeasible ones last, flagged.

        Predictions are kept per plan and computed again only where a belief entry they
        read has changed since, so proposing under each new beliefs version costs a look-up
        per child, not a prediction."""
        cached = self._scored.get(plan.key)
        if cached is None:
            entries = [self._score(plan, move, beliefs) for move in self.children(plan)]
        else:
            entries = [
                e if e.fresh(beliefs) else self._score(plan, e.move, beliefs) for e in cached[0]
            ]
            if all(a is b for a, b in zip(entries, cached[0], strict=True)):
                return list(cached[1])
        scored = [
            (e.logit, e.proposal)
            for e in entries
            if not (e.proposal.mean == 0.0 and e.proposal.std == 0.0)
        ]  # a child that touches only regimes with no workloads in the suite is none
        feasible = [(lg, p) for lg, p in scored if p.infeasible is None]
        top = max((lg for lg, _ in feasible), default=0.0)
        weights = [math.exp(lg - top) for lg, _ in feasible]
        z = sum(weights) or 1.0
        out = [
            Proposal(p.action, p.plan, p.mean, p.std, w / z)
            for w, (_, p) in zip(weights, feasible, strict=True)
        ]
        out.sort(key=lambda p: (-p.prior, p.action.describe()))
        out += [p for _, p in scored if p.infeasible is not None]
        self._scored[plan.key] = (entries, out)
        return list(out)

    def instantiate(self, plan: Plan, parent_source: str | None) -> str:
        return self.task.render(plan)

    def repair(self, plan: Plan, source: str, evaluation: Evaluation) -> str | None:
        """Templates render the same code every time: there is nothing to repair."""
        return None

    def revise(self, beliefs: Beliefs, evidence: Evidence) -> Beliefs:
        """Update the action kind's posteriors from one child-versus-parent measurement."""
        plan, action = evidence.parent_plan, evidence.action
        regimes = [r for r in action.regimes(plan) if plan.get(action.param, r) != action.value]
        failed = evidence.status in IMPLEMENTATION_FAILURES
        for r in regimes:
            beliefs = beliefs.with_outcome(action.kind(plan, r), failed)
        if evidence.status is Status.PASSED:
            for r in regimes:
                ratios = [
                    math.log(evidence.child_latency[w] / t)
                    for w, t in evidence.parent_latency.items()
                    if self.regime_of.get(w) == r and w in evidence.child_latency
                ]
                if ratios:
                    y = sum(ratios) / len(ratios)
                    kind = action.kind(plan, r)
                    local = f"{kind}|{self.context(plan, r, action.param)}"
                    post = self.posterior(beliefs, action, plan, r)
                    beliefs = beliefs.with_effect(local, r, post.observe(y))
                    shared = self.shared(beliefs, action, plan, r)
                    beliefs = beliefs.with_effect(kind, r, shared.observe(y))
                    pooled = beliefs.effects.get((local, ANY_REGIME), post)
                    beliefs = beliefs.with_effect(local, ANY_REGIME, pooled.observe(y))
        return replace(beliefs, version=beliefs.version + 1)

    def beliefs_json(self, beliefs: Beliefs) -> str:
        return beliefs.to_json()
