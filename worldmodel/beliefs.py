"""Beliefs of the built-in world model: Bayesian posteriors of action effects per regime.

Each action kind (`param:old->new`) has, in each workload regime, a
Normal-inverse-gamma posterior over its effect on ln(latency) (Murphy 2007,
"Conjugate Bayesian analysis of the Gaussian distribution", §3): the mean is
the effect, the inverse-gamma part learns how much that effect varies from one
plan to another. Failures of an action kind are counted separately (a Beta
posterior of the chance that it breaks the implementation), since a failed
implementation says nothing about the size of the effect.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

#: The spread of an action's effect between contexts assumed before any evidence (ln units).
PRIOR_NOISE = 0.1
#: Beta(a, b) prior of the failure chance of an action kind.
FAIL_PRIOR = (0.2, 2.0)


@dataclass(frozen=True, slots=True)
class Posterior:
    """Normal-inverse-gamma over (effect, variance): mean m, pseudo-count kappa, alpha, beta."""

    m: float
    kappa: float
    alpha: float
    beta: float
    n: int = 0

    @staticmethod
    def from_prior(mean: float, std: float, noise: float = PRIOR_NOISE) -> Posterior:
        """A prior whose effect has the given mean and std and whose noise is `noise`."""
        std = max(std, 1e-3)
        return Posterior(m=mean, kappa=noise**2 / std**2, alpha=2.0, beta=noise**2)

    def observe(self, y: float) -> Posterior:
        """The posterior after one observed effect `y` (ln of child over parent time)."""
        k = self.kappa + 1.0
        return Posterior(
            m=(self.kappa * self.m + y) / k,
            kappa=k,
            alpha=self.alpha + 0.5,
            beta=self.beta + self.kappa * (y - self.m) ** 2 / (2.0 * k),
            n=self.n + 1,
        )

    @property
    def std(self) -> float:
        """Standard deviation of the effect's mean: sqrt(beta / ((alpha - 1) kappa))."""
        return math.sqrt(self.beta / ((self.alpha - 1.0) * self.kappa))


@dataclass(frozen=True, slots=True)
class Beliefs:
    """Posteriors that differ from the task's priors, failure counts, and a version number."""

    version: int = 0
    effects: Mapping[tuple[str, str], Posterior] = field(default_factory=dict)
    failures: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def fail_chance(self, kind: str) -> float:
        fails, tries = self.failures.get(kind, (0, 0))
        a, b = FAIL_PRIOR
        return (fails + a) / (tries + a + b)

    def with_effect(self, kind: str, regime: str, post: Posterior) -> Beliefs:
        return replace(self, effects={**self.effects, (kind, regime): post})

    def with_outcome(self, kind: str, failed: bool) -> Beliefs:
        fails, tries = self.failures.get(kind, (0, 0))
        return replace(self, failures={**self.failures, kind: (fails + int(failed), tries + 1)})

    def to_json(self) -> str:
        effects = [
            {
                "kind": k,
                "regime": r,
                "m": p.m,
                "kappa": p.kappa,
                "alpha": p.alpha,
                "beta": p.beta,
                "n": p.n,
            }
            for (k, r), p in sorted(self.effects.items())
        ]
        failures = {k: list(v) for k, v in sorted(self.failures.items())}
        return json.dumps({"version": self.version, "effects": effects, "failures": failures})

    @staticmethod
    def from_json(text: str) -> Beliefs:
        d: dict[str, Any] = json.loads(text)
        effects = {
            (e["kind"], e["regime"]): Posterior(e["m"], e["kappa"], e["alpha"], e["beta"], e["n"])
            for e in d["effects"]
        }
        failures = {k: (int(v[0]), int(v[1])) for k, v in d["failures"].items()}
        return Beliefs(d["version"], effects, failures)
