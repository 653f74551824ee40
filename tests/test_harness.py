"""Worker processes: timeouts, crashes, secrets, and what comes back from them."""

import dataclasses
import textwrap
import time

import pytest
import torch

from ksearch.evaluation import Status
from ksearch.harness import Harness, HarnessConfig
from ksearch.workers import Workers
from tasks.rmsnorm import TASK
from tasks.rmsnorm.render import render

pytestmark = pytest.mark.interpret

HONEST = render(TASK.space.root())


CONFIG = HarnessConfig(
    mode="interpret", suite="smoke", compile_timeout=20, run_timeout=20, seeds=(0,)
)


@pytest.fixture(scope="module")
def harness():
    """One harness for the module: its workers serve test after test, as in a search."""
    h = Harness(TASK, CONFIG)
    yield h
    h.close()


@pytest.fixture
def fresh_harness():
    """A harness whose workers start in the test (for counts, and the environment)."""
    h = Harness(TASK, CONFIG)
    yield h
    h.close()


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for its reaper does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def candidate(body: str) -> str:
    return textwrap.dedent(body)


def test_an_honest_candidate_passes_with_estimated_speed(harness):
    ev = harness.evaluate(HONEST)
    assert ev.status is Status.PASSED and ev.method.value == "estimate"
    assert all(w.estimate_us and w.latency_us is None for w in ev.workloads)
    assert ev.score is not None and ev.fingerprint["device"].startswith("cpu")


def test_speed_can_be_estimated_on_other_shapes_than_correctness_is_checked_on(harness):
    checked = {w.name for w in TASK.suites["smoke"]}
    sized = {w.name for w in TASK.suites["default"]}
    h = Harness(TASK, dataclasses.replace(CONFIG, estimate_suite="default"))
    try:
        ev = h.evaluate(HONEST)
        broken = h.evaluate(HONEST.replace("tl.rsqrt(", "1.01 * tl.rsqrt("))
    finally:
        h.close()
    assert ev.status is Status.PASSED
    scored = {w.name for w in ev.workloads if w.speedup is not None}
    assert scored == sized and checked <= {w.name for w in ev.workloads}
    assert all(w.speedup is None for w in ev.workloads if w.name in checked - sized)
    assert ev.score != harness.evaluate(HONEST).score  # the smoke shapes are far smaller
    assert broken.status is Status.INCORRECT
    assert not {w.name for w in broken.workloads} & (sized - checked)  # no speed for it
    with pytest.raises(ValueError, match="no suite 'huge'"):
        Harness(TASK, dataclasses.replace(CONFIG, estimate_suite="huge"))


def test_hand_written_code_has_no_speed_under_the_interpreter(harness):
    ev = harness.evaluate(TASK.baseline.read_text())
    assert ev.status is Status.PASSED and ev.score is None


def test_a_crash_is_reported_and_the_next_candidate_passes(harness):
    ev = harness.evaluate(
        candidate("""
        import os
        def run(x, weight, eps):
            os._exit(3)
    """)
    )
    assert ev.status is Status.CRASHED and "code 3" in ev.reason
    assert harness.evaluate(HONEST).status is Status.PASSED


def test_a_worker_serves_candidates_until_a_fault_and_a_fault_costs_one_restart(fresh_harness):
    harness = fresh_harness
    for _ in range(3):
        assert harness.evaluate(HONEST).passed
    assert harness.workers.started == 1  # one served all three; it has jobs left, so no spare
    crash = candidate("""
        import os
        def run(x, weight, eps):
            os._exit(3)
    """)
    assert harness.evaluate(crash).status is Status.CRASHED
    assert harness.evaluate(HONEST).passed  # on the replacement, after its health check
    assert harness.workers.started == 2 and harness.workers.health_checks == 1


def test_on_the_gpu_each_evaluation_gets_a_fresh_worker_and_compile_workers_are_reused(
    tmp_path,
):
    # timings in a process that timed another candidate are not trusted; health jobs run on
    # the CPU here, so this needs no GPU
    workers = Workers(HarnessConfig(mode="gpu", reuse=16), tmp_path)
    job = {"kind": "health", "mode": "interpret"}
    try:
        for _ in range(3):
            result, why = workers.run("evaluate", job, None)
            assert why is None and result["health"]["ok"]
        assert workers.started == 4  # one per evaluation, and a spare started ahead
        for _ in range(3):
            result, why = workers.run("compile", job, None)
            assert why is None and result["health"]["ok"]
        assert workers.started == 5  # one that compiled all three (it has jobs left)
    finally:
        workers.shutdown()


def test_a_child_process_left_by_a_passing_candidate_is_killed_after_its_job(harness, tmp_path):
    marker = tmp_path / "child.pid"
    ev = harness.evaluate(
        HONEST
        + candidate(f"""
        import subprocess
        _p = subprocess.Popen(["sleep", "120"], start_new_session=True)
        open({str(marker)!r}, "w").write(str(_p.pid))
    """)
    )
    assert ev.passed
    time.sleep(0.5)
    assert not alive(int(marker.read_text()))


def test_an_exception_in_run_is_a_runtime_error_with_its_message(harness):
    ev = harness.evaluate(
        candidate("""
        def run(x, weight, eps):
            raise ValueError("block too large")
    """)
    )
    assert ev.status is Status.RUNTIME_ERROR and "block too large" in ev.reason


def test_a_syntax_error_is_a_compile_error(harness):
    ev = harness.evaluate("def run(x, weight, eps)\n    return x\n")
    assert ev.status is Status.COMPILE_ERROR and "SyntaxError" in ev.reason


def test_secrets_in_the_environment_do_not_reach_the_candidate(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-leak")
    harness = Harness(TASK, CONFIG)  # its workers start with the secret in the environment
    try:
        ev = harness.evaluate(
            candidate("""
        import os
        def run(x, weight, eps):
            leaked = [k for k, v in os.environ.items() if "sk-do-not-leak" in v]
            raise RuntimeError(f"visible: {leaked}")
    """)
        )
    finally:
        harness.close()
    assert "visible: []" in ev.reason


def test_untimed_workloads_say_why_timing_stopped():
    from types import SimpleNamespace

    from ksearch.checking import Verdict
    from ksearch.harness import Harness, HarnessConfig
    from tasks.rmsnorm import TASK as RMSNORM

    harness = Harness(RMSNORM, HarnessConfig(mode="gpu", suite="smoke"))
    try:
        names = [w.name for w in RMSNORM.suites["smoke"]]
        checker = SimpleNamespace(verdicts={n: Verdict(checks=1) for n in names})
        raw = [{"name": n, "status": "passed"} for n in names]
        raw[0].update(latency_us=1.0)
        rows = harness._merge(raw, checker)
        assert rows[1].reason == "not timed: behind the best on the screening workloads"
        raw[0].update(status="rejected", reason="impossible")
        rows = harness._merge(raw, checker)
        assert rows[1].reason == f"not timed: timing stopped at {names[0]} (rejected)"
    finally:
        harness.close()


@pytest.mark.parametrize("task_name", ["moe_gemm", "rmsnorm"])
def test_compile_workers_get_inputs_shaped_like_the_real_ones_but_not_drawn(task_name):
    """A compile worker runs beside the timing worker, so it must not draw gigabytes of
    random inputs on the device: same names, shapes and dtypes, integer tensors zero."""
    from ksearch.checking import shaped_inputs
    from ksearch.task import load_task

    task = load_task(task_name)
    w = task.suites["smoke"][0]
    real = task.make_inputs(w, 0, "cpu")
    shaped = shaped_inputs(task, w, "cpu")
    assert shaped.keys() == real.keys()
    for name, value in real.items():
        if isinstance(value, torch.Tensor):
            got = shaped[name]
            assert (got.shape, got.dtype, got.device) == (value.shape, value.dtype, value.device)
            if not value.is_floating_point():
                assert not got.any(), name
        else:
            assert shaped[name] == value
