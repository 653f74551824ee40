"""Candidates that cheat, crash, hang or flood, scored beside honest ones (interpreter tier).

Each bad candidate must get a non-passing status whose reason names what went wrong, the
harness must survive all of them, and honest candidates in the same suite must pass.
"""

import textwrap

import pytest
from test_harness import alive

from ksearch.evaluation import Status
from ksearch.harness import Harness, HarnessConfig
from tasks.rmsnorm import TASK

pytestmark = pytest.mark.interpret

REF = """
import torch

def _ref(x, weight, eps):
    xf = x.float()
    return xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
"""

BAD = {
    "partial_write": (
        """
        def run(x, weight, eps):
            y = _ref(x, weight, eps).to(x.dtype)
            y[x.shape[0] // 2:] = 0
            return y
    """,
        Status.INCORRECT,
        "elements off",
    ),
    "skipped_tail": (
        """
        def run(x, weight, eps):
            y = _ref(x, weight, eps).to(x.dtype)
            n = x.shape[1] - x.shape[1] % 16
            y[:, n:] = 0
            return y
    """,
        Status.INCORRECT,
        "elements off",
    ),
    "nan": (
        """
        def run(x, weight, eps):
            y = _ref(x, weight, eps).to(x.dtype)
            y[0, 0] = float("nan")
            return y
    """,
        Status.INCORRECT,
        "NaN or Inf",
    ),
    "inf": (
        """
        def run(x, weight, eps):
            y = _ref(x, weight, eps).to(x.dtype)
            y[-1, -1] = float("inf")
            return y
    """,
        Status.INCORRECT,
        "NaN or Inf",
    ),
    "wrong_dtype": (
        """
        def run(x, weight, eps):
            return _ref(x, weight, eps)
    """,
        Status.INCORRECT,
        "dtype",
    ),
    "aliases_input": (
        """
        def run(x, weight, eps):
            return x.copy_(_ref(x, weight, eps).to(x.dtype))
    """,
        Status.REJECTED,
        "aliases input x",
    ),
    "mutates_input": (
        """
        def run(x, weight, eps):
            y = _ref(x, weight, eps).to(x.dtype)
            weight.zero_()
            return y
    """,
        Status.REJECTED,
        "input weight was modified",
    ),
    "os_exit": (
        """
        import os
        def run(x, weight, eps):
            os._exit(7)
    """,
        Status.CRASHED,
        "exited with code 7",
    ),
    "system_exit": (
        """
        def run(x, weight, eps):
            raise SystemExit(0)
    """,
        Status.CRASHED,
        "exited with code 0",
    ),
    "hang_in_run": (
        """
        import time
        calls = []
        def run(x, weight, eps):
            calls.append(1)
            if len(calls) > 1:
                time.sleep(600)
            return _ref(x, weight, eps).to(x.dtype)
    """,
        Status.TIMEOUT,
        "run took longer",
    ),
    "huge_allocation": (
        """
        def run(x, weight, eps):
            hog = bytearray(3 << 30)
            hog[::4096] = b"x" * len(hog[::4096])
            return _ref(x, weight, eps).to(x.dtype)
    """,
        Status.CRASHED,
        "host memory",
    ),
    "output_flood": (
        """
        import sys
        def run(x, weight, eps):
            for _ in range(10_000):
                sys.stdout.write("spam " * 10_000)
            return _ref(x, weight, eps).to(x.dtype)
    """,
        Status.RUNTIME_ERROR,
        "more output than allowed",
    ),
    "lying_subclass": (
        """
        import torch
        class Always(torch.Tensor):
            def __eq__(self, other):
                return True
            def allclose(self, *a, **k):
                return True
        def run(x, weight, eps):
            return torch.zeros_like(x).as_subclass(Always)
    """,
        Status.REJECTED,
        "not a plain torch.Tensor",
    ),
    "cached_by_pointer": (
        """
        cache = {}
        def run(x, weight, eps):
            key = (x.data_ptr(), weight.data_ptr())
            if key not in cache:
                cache[key] = _ref(x, weight, eps).to(x.dtype)
            return cache[key].clone()
    """,
        Status.INCORRECT,
        "elements off",
    ),
    "gc_scan_for_expected": (
        """
        import gc
        import torch
        def run(x, weight, eps):
            for o in gc.get_objects():
                if type(o) is torch.Tensor and o.shape == x.shape and o.dtype == torch.float32:
                    if o.data_ptr() != x.data_ptr():
                        return o.to(x.dtype).clone()
            return torch.zeros_like(x)
    """,
        Status.INCORRECT,
        "elements off",
    ),
    "replaces_a_harness_function": (
        """
        import torch
        torch.equal = lambda a, b: True
        def run(x, weight, eps):
            y = _ref(x, weight, eps).to(x.dtype)
            weight.zero_()
            return y
    """,
        Status.REJECTED,
        "replaced torch.equal",
    ),
    "forged_result": (
        """
        import json, os, stat
        def run(x, weight, eps):
            fake = {"workloads": [], "method": "estimate", "fingerprint": {}}
            for fd in range(3, 64):
                try:
                    if stat.S_ISFIFO(os.fstat(fd).st_mode):
                        os.write(fd, json.dumps({"result": fake}).encode() + b"\\n")
                except OSError:
                    pass
            return _ref(x, weight, eps).to(x.dtype)
    """,
        Status.REJECTED,
        "forged result",
    ),
}


HONEST = REF + "\ndef run(x, weight, eps):\n    return _ref(x, weight, eps).to(x.dtype)\n"


@pytest.fixture(scope="module")
def harness():
    h = Harness(
        TASK,
        HarnessConfig(
            mode="interpret",
            suite="smoke",
            compile_timeout=30,
            run_timeout=8,
            seeds=(0, 1),
            memory_mb=1024,
            output_mb=8,
        ),
    )
    yield h
    h.close()


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_candidate_gets_a_named_failure_and_the_next_honest_one_passes(harness, name):
    body, status, words = BAD[name]
    ev = harness.evaluate(REF + textwrap.dedent(body))
    assert ev.status is status, ev.reason
    assert words in ev.reason
    assert harness.evaluate(HONEST).status is Status.PASSED


def test_a_detached_process_does_not_outlive_its_evaluation(harness, tmp_path):
    marker = tmp_path / "grandchild.pid"
    ev = harness.evaluate(
        REF
        + textwrap.dedent(f"""
        import os, time
        def run(x, weight, eps):
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    open({str(marker)!r}, "w").write(str(os.getpid()))
                    time.sleep(300)
                os._exit(0)
            time.sleep(0.5)
            return _ref(x, weight, eps).to(x.dtype)
    """)
    )
    assert ev.status is Status.PASSED  # detaching is not wrong in itself; outliving us is
    assert not alive(int(marker.read_text()))


def test_a_hang_at_import_is_killed_at_the_compile_timeout(tmp_path):
    h = Harness(TASK, HarnessConfig(mode="interpret", compile_timeout=4, run_timeout=4))
    marker = tmp_path / "child.pid"
    ev = h.evaluate(
        textwrap.dedent(f"""
        import subprocess, time
        p = subprocess.Popen(["sleep", "120"])
        open({str(marker)!r}, "w").write(str(p.pid))
        time.sleep(120)
        def run(x, weight, eps):
            return x
    """)
    )
    assert ev.status is Status.TIMEOUT and "compile took longer than 4 s" in ev.reason
    assert not alive(int(marker.read_text()))  # the candidate's own child died with it
    assert h.evaluate(HONEST).passed
    h.close()


def test_honest_candidates_pass(harness):
    assert harness.evaluate(TASK.baseline.read_text()).status is Status.PASSED
    assert harness.evaluate(
        REF + "\ndef run(x, weight, eps):\n    return _ref(x, weight, eps).to(x.dtype)\n"
    ).passed
