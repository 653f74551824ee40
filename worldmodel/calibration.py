"""Beliefs of the LLM world model: a calibration of the LLM's predictions against what was
measured, and posteriors of the effect of each move of a tunable constant."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

#: prior std (ln units) of the effect of a tunable constant's move: weak, as DESIGN.md says
TUNE_STD = 0.1
#: the spread of a move's effect between plans assumed before any evidence (ln units)
PRIOR_NOISE = 0.1


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
class Calibration:
    """observed ≈ slope · predicted + intercept (ln speedups), a least-squares fit shrunk
    towards the identity by `prior` pseudo-observations, with its residual spread."""

    n: int = 0
    sx: float = 0.0
    sy: float = 0.0
    sxx: float = 0.0
    sxy: float = 0.0
    syy: float = 0.0
    prior: float = 3.0

    def observe(self, x: float, y: float) -> Calibration:
        return replace(
            self,
            n=self.n + 1,
            sx=self.sx + x,
            sy=self.sy + y,
            sxx=self.sxx + x * x,
            sxy=self.sxy + x * y,
            syy=self.syy + y * y,
        )

    @property
    def slope_intercept(self) -> tuple[float, float]:
        # normal equations with `prior` pseudo-points on y = x at x = ±0.2
        k, px = self.prior, 0.2
        n, sx, sy = self.n + k, self.sx, self.sy
        sxx, sxy = self.sxx + k * px * px, self.sxy + k * px * px
        det = n * sxx - sx * sx
        slope = (n * sxy - sx * sy) / det if det > 1e-12 else 1.0
        return slope, (sy - slope * sx) / n

    def apply(self, x: float) -> float:
        slope, intercept = self.slope_intercept
        return slope * x + intercept

    @property
    def residual(self) -> float:
        """Root-mean-square error of the fit on what was observed (0 before any)."""
        if self.n == 0:
            return 0.0
        slope, intercept = self.slope_intercept
        sse = (
            self.syy
            - 2 * slope * self.sxy
            - 2 * intercept * self.sy
            + slope**2 * self.sxx
            + 2 * slope * intercept * self.sx
            + self.n * intercept**2
        )
        return math.sqrt(max(sse, 0.0) / self.n)


@dataclass(frozen=True, slots=True)
class LlmBeliefs:
    """The calibration of the LLM's predictions, and posteriors of the effect on ln latency
    of each move of a tunable constant (`tune:NAME:old->new`)."""

    version: int = 0
    calibration: Calibration = field(default_factory=Calibration)
    effects: Mapping[str, Posterior] = field(default_factory=dict)

    def effect(self, kind: str) -> Posterior:
        return self.effects.get(kind) or Posterior.from_prior(0.0, TUNE_STD)

    def to_json(self) -> str:
        c = self.calibration
        slope, intercept = c.slope_intercept
        return json.dumps(
            {
                "version": self.version,
                "calibration": {
                    "n": c.n,
                    "slope": slope,
                    "intercept": intercept,
                    "residual": c.residual,
                    "sums": [c.sx, c.sy, c.sxx, c.sxy, c.syy],
                },
                "effects": {k: [p.m, p.std, p.n] for k, p in sorted(self.effects.items())},
            }
        )
