"""The GPU tier: rendered rmsnorm candidates compile, pass and are timed on a CUDA device."""

import pytest

from ksearch.evaluation import Method, Status
from ksearch.harness import Harness, HarnessConfig
from tasks.rmsnorm import TASK
from tasks.rmsnorm.render import render

from test_rmsnorm import PLANS

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def harness():
    h = Harness(TASK, HarnessConfig(mode="gpu", suite="default", warmup=5, reps=20))
    yield h
    h.close()


@pytest.mark.parametrize("plan", PLANS[:6], ids=lambda p: p.key)
def test_rendered_plans_pass_and_are_timed(harness, plan):
    ev = harness.evaluate(render(plan))
    assert ev.status is Status.PASSED, ev.reason
    assert ev.method is Method.CUDA_EVENTS and ev.fingerprint["gpu"]
    for w in ev.workloads:
        assert w.latency_us > 0 and w.speedup > 0 and w.time_over_floor >= 1 / 2


def test_the_baseline_is_about_as_fast_as_itself(harness):
    ev = harness.evaluate(TASK.baseline.read_text())
    assert ev.status is Status.PASSED
    assert 0.7 < ev.score < 1.4
