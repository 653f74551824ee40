"""The LLM world model: plans are paths of steps an LLM proposes; the LLM writes each step
as code from its parent and repairs code that failed; its predictions are calibrated
against what was measured and ranked by the calibrated values.

A plan is stored as {"path": {"00": "start", "01": "first step", ...}}, so the engine's
tree, store and replay treat it like any other plan. Proposals are asked for once per
plan (the answer is kept), so re-ranking after new evidence costs no call.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ksearch.evaluation import Evaluation, Status
from ksearch.mcts import Proposal
from ksearch.plan import Action, Plan, Value
from ksearch.protocols import Evidence
from ksearch.task import Task, Workload
from worldmodel import prompts
from worldmodel.calibration import LlmBeliefs
from worldmodel.edits import apply_edits
from worldmodel.llm import BudgetExhausted, Llm, ReplayMiss
from worldmodel.parse import Answer, ask_json, ask_source
from worldmodel.schemas import Edits, Step, Steps
from worldmodel.tuning import neighbours, set_constant, tunables

log = logging.getLogger(__name__)

PATH = "path"
STEP = "step"
TUNE = "tune"


@dataclass(frozen=True, slots=True)
class LlmKnobs:
    """conf/worldmodel/openai.yaml.

    Args:
        proposals: steps asked for per plan.
        reasks: re-asks after an unusable answer.
        temperature: softmax temperature of priors over calibrated ln speedups.
        max_std: the std (ln units) of a prediction made with zero confidence.
        revise_every: measurements between two revisions of the open plans (0: never).
        max_new: the most steps one revision may insert.
    """

    proposals: int = 4
    reasks: int = 2
    temperature: float = 0.2
    max_std: float = 0.5
    revise_every: int = 4
    max_new: int = 2


def start_of(task: Task) -> tuple[str, str]:
    """The code a search starts from (the task's starting plan rendered, or its baseline)
    and the parameters of its `run`, for prompts."""
    import ast

    source = task.render(task.space.root()) if task.space else task.baseline.read_text()
    tree = ast.parse(task.baseline.read_text())
    run = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run")
    return source, ", ".join(a.arg for a in run.args.args)


def path(plan: Plan) -> list[str]:
    """The steps of a plan, the start first."""
    table = plan.table().get(PATH, {})
    return [str(table[k]) for k in sorted(table)]


def extend(plan: Plan, title: str) -> Plan:
    """The plan one LLM step further (its code starts from the parent's, tuned constants
    included, so the tuning is not carried in the plan)."""
    steps = path(plan)
    return Plan.of({PATH: {f"{i:02d}": s for i, s in enumerate([*steps, title])}})


def tuned(plan: Plan, name: str, value: Value) -> Plan:
    table = plan.table()
    return Plan.of({**table, TUNE: {**table.get(TUNE, {}), name: value}})


def tune_kind(name: str, old: Value, new: Value) -> str:
    return f"{TUNE}:{name}:{old}->{new}"


class LlmWorldModel:
    """World model over an OpenAI-compatible LLM (see the module docstring)."""

    def __init__(
        self,
        task: Task,
        llm: Llm,
        workloads: Sequence[Workload],
        *,
        knobs: LlmKnobs,
        start_source: str,
        signature: str,
    ) -> None:
        self.task, self.llm, self.knobs = task, llm, knobs
        self.workloads = [w.name for w in workloads]
        self.start_source = start_source
        self.signature = signature
        self.spec = task.spec.read_text()
        self._steps: dict[str, list[Step]] = {}
        self._latency: dict[str, Mapping[str, float]] = {}
        self.invalid = 0
        self.spent: str | None = None  # why no more calls may be made, once a cap is reached
        self._sources: dict[str, str] = {}  # each instantiated plan's code, for its tunables
        self._moves: dict[str, list[tuple[str, Value, Value]]] = {}  # tune_moves per plan
        self._measured = 0
        self._asked: dict[str, Plan] = {}
        self.revisions = {"applied": 0, "rejected": 0}

    def root(self) -> Plan:
        return Plan.of({PATH: {"00": "start"}})

    def initial_beliefs(self) -> LlmBeliefs:
        return LlmBeliefs()

    # -- proposing ---------------------------------------------------------------------------

    def steps(self, plan: Plan) -> list[Step]:
        """The LLM's proposed next steps of `plan`, asked for once."""
        if plan.key not in self._steps:
            self._asked[plan.key] = plan
            steps: list[Step] = []
            answer, _ = self._ask(
                ask_json,
                self._messages(
                    "propose",
                    spec=self.spec,
                    path=self._path_text(plan),
                    results=self._results(plan),
                    count=self.knobs.proposals,
                    schema=json.dumps(Steps.model_json_schema()),
                ),
                Steps,
                purpose="propose",
            )
            proposed = None if answer is None else answer.value
            if answer is not None and proposed is None:
                self.invalid += 1
                log.warning("no usable proposals for plan %s: %s", plan.key, answer.error)
            if proposed is not None:
                titles = set(path(plan))
                for s in proposed.steps[: self.knobs.proposals]:
                    if s.title not in titles:
                        titles.add(s.title)
                        steps.append(s)
            self._steps[plan.key] = steps
        return self._steps[plan.key]

    def _prediction(self, step: Step, beliefs: LlmBeliefs) -> tuple[float, float]:
        raw = math.log(step.speedup)
        std = self.knobs.max_std * (1.0 - step.confidence) + 0.05
        return beliefs.calibration.apply(raw), math.hypot(std, beliefs.calibration.residual)

    def _tune_prediction(
        self, beliefs: LlmBeliefs, name: str, old: Value, new: Value
    ) -> tuple[float, float]:
        post = beliefs.effect(tune_kind(name, old, new))  # the effect on ln latency
        return -post.m, post.std

    def tune_moves(self, plan: Plan) -> list[tuple[str, Value, Value]]:
        """(NAME, old, new) for each neighbouring value of each constant the plan's code
        declares tunable (read from the code once); no LLM call."""
        if plan.key not in self._moves:
            source = self._sources.get(plan.key)
            if source is None:
                return []
            self._moves[plan.key] = [
                (name, value, new)
                for name, (value, values) in sorted(tunables(source).items())
                for new in neighbours(value, values)
            ]
        return self._moves[plan.key]

    def propose(self, plan: Plan, beliefs: LlmBeliefs) -> list[Proposal]:
        """The LLM's next steps and the moves of the plan's tunable constants, one softmax
        over their calibrated (steps) or posterior (constants) predictions."""
        scored: list[tuple[float, Action, Plan, float, float, float]] = []
        for step in self.steps(plan):
            mean, std = self._prediction(step, beliefs)
            action = Action(STEP, step.title)
            scored.append((mean, action, extend(plan, step.title), mean, std, step.difficulty))
        for name, old, new in self.tune_moves(plan):
            mean, std = self._tune_prediction(beliefs, name, old, new)
            action = Action(f"{TUNE}:{name}", new)
            scored.append((mean, action, tuned(plan, name, new), mean, std, 1.0))
        if not scored:
            return []
        top = max(s for s, *_ in scored)
        weights = [math.exp((s - top) / self.knobs.temperature) for s, *_ in scored]
        z = sum(weights)
        out = [
            Proposal(action, child, mean, std, w / z, difficulty=float(difficulty))
            for w, (_, action, child, mean, std, difficulty) in zip(weights, scored, strict=True)
        ]
        out.sort(key=lambda p: (-p.prior, p.action.describe()))
        return out

    def predict(self, plan: Plan, action: Action, beliefs: LlmBeliefs) -> tuple[float, float]:
        for name, old, new in self.tune_moves(plan):
            if action.param == f"{TUNE}:{name}" and action.value == new:
                return self._tune_prediction(beliefs, name, old, new)
        for step in self.steps(plan):
            if step.title == action.value:
                return self._prediction(step, beliefs)
        return 0.0, self.knobs.max_std

    # -- code ----------------------------------------------------------------------------------

    def instantiate(self, plan: Plan, parent_source: str | None) -> str:
        source = self._instantiate(plan, parent_source)
        self._sources[plan.key] = source
        self._moves.pop(plan.key, None)
        return source

    def _instantiate(self, plan: Plan, parent_source: str | None) -> str:
        if parent_source is None or plan == self.root():
            return self.start_source
        tune = plan.table().get(TUNE, {})
        if tune:  # a move of a tunable constant: the parent's code with one value changed
            current = tunables(parent_source)
            for name, value in tune.items():
                if name in current and current[name][0] != value:
                    parent_source = set_constant(parent_source, name, value)
            return parent_source
        parent = Plan.of({PATH: dict(list(plan.table()[PATH].items())[:-1])})
        answer, why = self._ask(
            ask_source,
            self._messages(
                "instantiate",
                spec=self.spec,
                path=self._path_text(plan),
                parent_source=parent_source,
                results=self._results(parent),
                signature=self.signature,
            ),
            purpose="instantiate",
        )
        if answer is None:
            return self._source_or_failure(None, why)
        return self._source_or_failure(answer.value, answer.error)

    def repair(self, plan: Plan, source: str, evaluation: Evaluation) -> str | None:
        if self.spent is not None:
            return None
        answer, _ = self._ask(
            ask_source,
            self._messages(
                "repair",
                spec=self.spec,
                path=self._path_text(plan),
                source=source,
                status=evaluation.status.value,
                reason=evaluation.reason or "",
                signature=self.signature,
            ),
            purpose="repair",
        )
        return None if answer is None or answer.value is None else answer.value.source

    def _ask(
        self, ask: Callable[..., Answer[Any]], *args: Any, purpose: str
    ) -> tuple[Answer[Any] | None, str]:
        """`ask(llm, *args)` with the re-asks of the settings, or (None, why) when no call may
        be made: a cap is reached (remembered: no further calls are tried, the search ends
        with what it measured) or a replay lacks the call (logged; a counterfactual goes on)."""
        try:
            return ask(self.llm, *args, purpose=purpose, reasks=self.knobs.reasks), ""
        except BudgetExhausted as e:
            self.spent = str(e)
            return None, str(e)
        except ReplayMiss as e:
            log.info("replay: %s", e)
            return None, str(e)

    def _source_or_failure(self, value: object, error: str | None) -> str:
        """The source, or a file that fails at import with the LLM's error as its reason, so
        the node is recorded as failed and the search goes on."""
        source = getattr(value, "source", None)
        if source is not None:
            return str(source)
        self.invalid += 1
        return f"raise RuntimeError({('the LLM gave no usable code: ' + str(error))!r})\n"

    # -- learning ------------------------------------------------------------------------------

    def revise(self, beliefs: LlmBeliefs, evidence: Evidence) -> LlmBeliefs:
        """Learn from one measurement; every `revise_every` measurements, let the LLM edit
        the open plans."""
        beliefs = self._learn(beliefs, evidence)
        self._measured += 1
        every = self.knobs.revise_every
        if every > 0 and self._measured % every == 0 and self.spent is None:
            self._revise_plans(evidence)
        return beliefs

    def _learn(self, beliefs: LlmBeliefs, evidence: Evidence) -> LlmBeliefs:
        """Keep the measured times for later prompts; calibrate predictions on passed ones."""
        parent, action = evidence.parent_plan, evidence.action
        if action.param.startswith(f"{TUNE}:"):
            return self._revise_tune(beliefs, evidence)
        child = extend(parent, str(evidence.action.value))
        self._latency.setdefault(parent.key, evidence.parent_latency)
        if evidence.status is Status.PASSED:
            self._latency[child.key] = evidence.child_latency
            observed = evidence.log_speedup()
            raw = next(
                (
                    math.log(s.speedup)
                    for s in self.steps(parent)
                    if s.title == evidence.action.value
                ),
                None,
            )
            if observed is not None and raw is not None:
                return LlmBeliefs(beliefs.version + 1, beliefs.calibration.observe(raw, observed))
        return replace(beliefs, version=beliefs.version + 1)

    def _revise_tune(self, beliefs: LlmBeliefs, evidence: Evidence) -> LlmBeliefs:
        name = evidence.action.param.split(":", 1)[1]
        child = tuned(evidence.parent_plan, name, evidence.action.value)
        old = tunables(self._sources.get(evidence.parent_plan.key, "")).get(name, (None,))[0]
        if evidence.status is not Status.PASSED or old is None:
            return replace(beliefs, version=beliefs.version + 1)
        self._latency[child.key] = evidence.child_latency
        speedup = evidence.log_speedup()
        if speedup is None:
            return replace(beliefs, version=beliefs.version + 1)
        kind = tune_kind(name, old, evidence.action.value)
        post = beliefs.effect(kind).observe(-speedup)  # the effect on ln latency
        return replace(
            beliefs, version=beliefs.version + 1, effects={**beliefs.effects, kind: post}
        )

    def _revise_plans(self, evidence: Evidence) -> None:
        if evidence.action.param.startswith(f"{TUNE}:"):
            return  # a constant's move says nothing the open plans should change for
        plans = {p.key: p for p in self._asked.values()}
        open_ids: dict[str, tuple[str, str]] = {}
        lines = []
        for key, steps in self._steps.items():
            for step in steps:
                child = extend(plans[key], step.title)
                if child.key not in self._sources:
                    open_ids[child.key[:8]] = (key, step.title)
                    lines.append(
                        f"{child.key[:8]} (parent {key[:8]}): {step.title}, "
                        f"×{step.speedup:.2f}, {step.confidence:.2f}"
                    )
        measured = {k[:8]: k for k in self._latency if k in self._steps}
        child = extend(evidence.parent_plan, str(evidence.action.value))
        speedup = evidence.log_speedup()
        observed = (
            evidence.status.value if speedup is None else f"measured ×{math.exp(speedup):.2f}"
        )
        text = (
            f"{child.key[:8]} (parent {evidence.parent_plan.key[:8]}): "
            f"{evidence.action.value}: predicted ×{math.exp(evidence.predicted_mean):.2f}, "
            f"{observed}"
        )
        answer, _ = self._ask(
            ask_json,
            self._messages(
                "revise",
                spec=self.spec,
                evidence=text,
                plans="\n".join(lines) or "none",
                max_new=self.knobs.max_new,
                schema=json.dumps(Edits.model_json_schema()),
            ),
            Edits,
            purpose="revise",
        )
        if answer is None:
            return
        if answer.value is None:
            self.invalid += 1
            return
        outcome = apply_edits(
            answer.value,
            self._steps,
            open_ids=open_ids,
            measured_ids=measured,
            max_new=self.knobs.max_new,
        )
        self.revisions["applied"] += outcome.applied
        self.revisions["rejected"] += len(outcome.rejected)
        for reason in outcome.rejected:
            log.info("revision rejected: %s", reason)

    def beliefs_json(self, beliefs: LlmBeliefs) -> str:
        return beliefs.to_json()

    def summary(self) -> str | None:
        """What a user should know at the end of a run, if anything."""
        parts = []
        if self.spent:
            parts.append(f"{self.spent}; the search ended with what it had measured")
        if self.invalid:
            parts.append(f"{self.invalid} LLM answers were unusable after re-asking")
        if self.revisions["rejected"]:
            parts.append(f"{self.revisions['rejected']} plan edits broke a rule and were rejected")
        if self.llm.misses:
            parts.append(
                f"replay: {self.llm.misses} calls were not recorded (these settings went "
                "where the recorded run did not)"
            )
        return "; ".join(parts) or None

    # -- prompt parts ----------------------------------------------------------------------------

    def _messages(self, name: str, **values: object) -> list[dict[str, str]]:
        return [{"role": "user", "content": prompts.render(name, **values)}]

    def _path_text(self, plan: Plan) -> str:
        return "\n".join(f"{i}. {s}" for i, s in enumerate(path(plan)))

    def _results(self, plan: Plan) -> str:
        times = self._latency.get(plan.key)
        if not times:
            return "not measured yet"
        return "\n".join(f"{w}: {t:.2f} µs" for w, t in times.items())
