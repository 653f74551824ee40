"""moe_gemm's baseline estimate against the baseline measured on an H100."""

import statistics

from tasks.moe_gemm import TASK, calibration, cost


def test_the_baseline_estimate_is_within_15_percent_of_the_h100_per_cell():
    rows = calibration.measured()
    assert len(rows) == 16  # the headline cells
    errors = [abs(TASK.estimate(None, w) / t - 1) for w, t in rows]
    assert statistics.median(errors) <= 0.15, errors


def test_constants_fitted_without_a_cell_still_predict_it():
    held_out = calibration.leave_one_out(calibration.measured())
    assert statistics.median(held_out) <= 0.15, held_out


def test_a_refit_gives_the_constants_in_use():
    fitted = calibration.fit(calibration.measured())
    assert all(abs(a - b) <= 0.01 * abs(b) for a, b in zip(fitted, cost.BASELINE, strict=True))
