"""Worker processes: timeouts, crashes, secrets, and what comes back from them."""

import textwrap

import pytest

from ksearch.evaluation import Status
from ksearch.harness import Harness, HarnessConfig
from tasks.rmsnorm import TASK
from tasks.rmsnorm.render import render

pytestmark = pytest.mark.interpret

HONEST = render(TASK.space.root())


@pytest.fixture
def harness():
    h = Harness(
        TASK,
        HarnessConfig(
            mode="interpret", suite="smoke", compile_timeout=20, run_timeout=20, seeds=(0,)
        ),
    )
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


def test_hand_written_code_has_no_speed_under_the_interpreter(harness):
    ev = harness.evaluate(TASK.baseline.read_text())
    assert ev.status is Status.PASSED and ev.score is None


def test_a_hang_at_import_is_killed_at_the_compile_timeout(tmp_path):
    h = Harness(TASK, HarnessConfig(mode="interpret", compile_timeout=4, run_timeout=4))
    marker = tmp_path / "child.pid"
    ev = h.evaluate(
        candidate(f"""
        import subprocess, time
        p = subprocess.Popen(["sleep", "120"])
        open({str(marker)!r}, "w").write(str(p.pid))
        time.sleep(120)
        def run(x, weight, eps):
            return x
    """)
    )
    h.close()
    assert ev.status is Status.TIMEOUT and "compile took longer than 4 s" in ev.reason
    assert not alive(int(marker.read_text()))  # the candidate's own child died with it


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


def test_secrets_in_the_environment_do_not_reach_the_candidate(harness, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-leak")
    ev = harness.evaluate(
        candidate("""
        import os
        def run(x, weight, eps):
            leaked = [k for k, v in os.environ.items() if "sk-do-not-leak" in v]
            raise RuntimeError(f"visible: {leaked}")
    """)
    )
    assert "visible: []" in ev.reason
