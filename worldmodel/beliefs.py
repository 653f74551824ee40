"""Beliefs of the built-in world model: what measurements said about the task's priors.

The task's prior predicts what a move does (`Task.prior`); the beliefs hold the evidence
of where that prediction was wrong. Each measured child-versus-parent pair adds, per
regime it changed, its observed effect on ln(latency) and its residual (observed minus
the prior's mean) under three keys: the move's kind (`param:old->new`) pooled over
regimes, the kind in the regime, and the kind in the regime in one context (the
settings around the move). The world model combines them with the prior by precision
(`worldmodel.builtin`). Failures of a move's kind are counted separately (a Beta
posterior of the chance that it breaks the implementation), since a failed
implementation says nothing about the size of the effect.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

#: Beta(a, b) prior of the failure chance of an action kind.
FAIL_PRIOR = (0.2, 2.0)

#: (kind,), (kind, regime) or (kind, regime, context)
Key = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Stats:
    """Evidence under one key: count, sum of residuals, sum of observed effects."""

    n: int = 0
    residual: float = 0.0
    observed: float = 0.0

    def add(self, observed: float, predicted: float) -> Stats:
        return Stats(self.n + 1, self.residual + observed - predicted, self.observed + observed)


@dataclass(frozen=True, slots=True)
class Beliefs:
    """Evidence that differs from the task's priors, failure counts, and a version number."""

    version: int = 0
    evidence: Mapping[Key, Stats] = field(default_factory=dict)
    failures: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def fail_chance(self, kind: str) -> float:
        fails, tries = self.failures.get(kind, (0, 0))
        a, b = FAIL_PRIOR
        return (fails + a) / (tries + a + b)

    def with_evidence(self, keys: tuple[Key, ...], observed: float, predicted: float) -> Beliefs:
        """These beliefs with one observed effect (and the prior's mean for it) under keys."""
        evidence = dict(self.evidence)
        for key in keys:
            evidence[key] = evidence.get(key, Stats()).add(observed, predicted)
        return replace(self, evidence=evidence)

    def with_outcome(self, kind: str, failed: bool) -> Beliefs:
        fails, tries = self.failures.get(kind, (0, 0))
        return replace(self, failures={**self.failures, kind: (fails + int(failed), tries + 1)})

    def to_json(self) -> str:
        evidence = [
            {"key": list(k), "n": s.n, "residual": s.residual, "observed": s.observed}
            for k, s in sorted(self.evidence.items())
        ]
        failures = {k: list(v) for k, v in sorted(self.failures.items())}
        return json.dumps({"version": self.version, "evidence": evidence, "failures": failures})

    @staticmethod
    def from_json(text: str) -> Beliefs:
        d: dict[str, Any] = json.loads(text)
        evidence = {
            tuple(e["key"]): Stats(int(e["n"]), float(e["residual"]), float(e["observed"]))
            for e in d["evidence"]
        }
        failures = {k: (int(v[0]), int(v[1])) for k, v in d["failures"].items()}
        return Beliefs(d["version"], evidence, failures)
