"""Calibration of the LLM's predictions against measurements, and its use when ranking."""

import math
import random

import pytest

from tasks.rmsnorm import TASK
from worldmodel.calibration import Calibration, LlmBeliefs
from worldmodel.llm_model import LlmKnobs, LlmWorldModel
from worldmodel.schemas import Step


def fitted(pairs):
    c = Calibration()
    for x, y in pairs:
        c = c.observe(x, y)
    return c


def test_without_measurements_predictions_are_taken_as_they_are():
    c = Calibration()
    assert c.apply(0.3) == pytest.approx(0.3) and c.residual == 0.0


def test_an_llm_that_claims_twice_what_it_delivers_is_discounted():
    rng = random.Random(0)
    xs = [rng.uniform(-0.5, 0.8) for _ in range(40)]
    c = fitted((x, 0.5 * x) for x in xs)
    slope, intercept = c.slope_intercept
    assert slope == pytest.approx(0.5, abs=0.05) and abs(intercept) < 0.02
    assert c.apply(math.log(2.0)) == pytest.approx(0.5 * math.log(2.0), abs=0.03)


def test_few_measurements_move_the_calibration_only_part_of_the_way():
    one = fitted([(0.4, 0.0)])
    assert 0.0 < one.apply(0.4) < 0.4
    many = fitted([(0.4, 0.0), (-0.4, 0.0)] * 20)
    assert abs(many.apply(0.4)) < abs(one.apply(0.4))


def test_the_residual_is_the_spread_of_what_the_fit_misses():
    rng = random.Random(1)
    pairs = [(x, x + rng.gauss(0.0, 0.2)) for x in (rng.uniform(-1, 1) for _ in range(400))]
    assert fitted(pairs).residual == pytest.approx(0.2, abs=0.03)
    assert fitted((x, x) for x, _ in pairs).residual < 1e-6


def test_proposals_are_ranked_by_calibrated_predictions():
    wm = LlmWorldModel(TASK, None, [], knobs=LlmKnobs(), start_source="", signature="x")  # type: ignore[arg-type]
    root = wm.root()
    wm._steps[root.key] = [
        Step(title="bold", speedup=2.0, confidence=0.9, difficulty=1),
        Step(title="modest", speedup=1.2, confidence=0.9, difficulty=1),
    ]
    naive = {p.action.value: p for p in wm.propose(root, LlmBeliefs())}
    # measured: the bold kind of claim delivered nothing, the modest kind what it said
    learned = fitted([(math.log(2.0), 0.0), (math.log(1.2), math.log(1.2))] * 10)
    calibrated = {p.action.value: p for p in wm.propose(root, LlmBeliefs(calibration=learned))}
    assert naive["bold"].mean == pytest.approx(math.log(2.0))
    assert naive["bold"].prior > naive["modest"].prior
    assert calibrated["bold"].mean == pytest.approx(learned.apply(math.log(2.0)))
    assert calibrated["bold"].prior < calibrated["modest"].prior
    assert calibrated["bold"].std > naive["bold"].std  # the fit's residual is added
