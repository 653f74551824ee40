"""`search=tpe`: Optuna's TPE sampler over a task's design space, the black-box peer of MCTS.

A plan is one categorical choice per (regime, parameter). Each regime's row is drawn by
a TPE study of its own (TPE models each parameter on its own, so this changes nothing
but what a failure is told to), and every study is told the plan's ln score. Each plan
becomes a child of the root (action `tpe=<trial number>`), rendered and scored like any
other node. The root plan is queued as trial 0. A row that cannot work (the root with
that row is `Task.infeasible`) is told as a failed trial and drawn again; a plan already
in the tree is told its known score and drawn again; neither spends the budget. At most
`MAX_DRAWS` draws are made per selection, so a mostly infeasible space cannot loop.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from ksearch.mcts import Choice, Proposal
from ksearch.plan import Action, Plan, Value
from ksearch.task import Task
from ksearch.tree import NodeStatus, Tree

log = logging.getLogger(__name__)

#: the action name of a TPE trial in the tree
TPE = "tpe"
#: row draws per selection before TPE gives up for this iteration
MAX_DRAWS = 2000


class TpeSampler:
    """Chooses plans with Optuna's TPE, seeded so that a seed determines the trials."""

    def __init__(self, task: Task, root: Plan, *, seed: int) -> None:
        import optuna

        if task.space is None:
            raise ValueError(f"task {task.name!r} has no design space for search=tpe")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.task = task
        self.space = task.space
        self.root = task.canonical(self.space.complete(root))
        self.studies = {}
        for i, regime in enumerate(self.space.regimes):
            study = optuna.create_study(
                direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed * 1000 + i)
            )
            study.enqueue_trial(dict(self.root.row(regime)))
            self.studies[regime] = study
        self.pending: dict[str, list[dict[str, Any]]] = {}  # plan key -> trials per regime
        self.trials = 0  # plans drawn
        self.infeasible = 0  # rows told as failed because they cannot work
        self.repeats = 0  # plans drawn that were in the tree already

    def _row(self, regime: str) -> tuple[Any, dict[str, Value]] | None:
        """A feasible row for `regime` and its trial, or None after `MAX_DRAWS` draws."""
        import optuna

        study = self.studies[regime]
        for _ in range(MAX_DRAWS):
            trial = study.ask()
            row = {
                p.name: cast(Value, trial.suggest_categorical(p.name, p.values))
                for p in self.space.params
            }
            alone = self.root.with_rows({regime: tuple(sorted(row.items()))})
            if self.task.infeasible(self.task.canonical(alone)) is None:
                return trial, row
            self.infeasible += 1
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return None

    def select(self, tree: Tree) -> Choice | None:
        """The next plan to measure, as a child of the root; None once `MAX_DRAWS` plans in
        a row were in the tree already, or a regime had no feasible row in as many draws."""
        for _ in range(MAX_DRAWS):
            drawn = {r: self._row(r) for r in self.space.regimes}
            if any(d is None for d in drawn.values()):
                break
            trials = {r: d[0] for r, d in drawn.items() if d is not None}
            rows = {r: d[1] for r, d in drawn.items() if d is not None}
            plan = self.task.canonical(Plan.of(rows))
            self.trials += 1
            self.pending.setdefault(plan.key, []).append(trials)
            if plan not in tree.plans:
                proposal = Proposal(Action(TPE, self.trials - 1), plan, 0.0, 0.0, 1.0)
                return Choice(tree.root.id, proposal)
            self.repeats += 1
            node = next(n for n in tree.nodes if n.plan == plan)
            if node.status is NodeStatus.PASSED:
                self.tell(plan, node.value)
            elif node.status not in (NodeStatus.OPEN, NodeStatus.PENDING):
                self.tell(plan, None)
        log.warning("TPE found no new feasible plan in %d draws", MAX_DRAWS)
        return None

    def tell(self, plan: Plan, value: float | None) -> None:
        """Tell every trial waiting for `plan` its ln score, or that it failed (None)."""
        import optuna

        for trials in self.pending.pop(plan.key, []):
            for regime, trial in trials.items():
                study = self.studies[regime]
                if value is None:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, value)
