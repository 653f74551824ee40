"""Shared test set-up: the Triton interpreter in-process; the gpu tier skips without CUDA;
and the time guard that CI sets (KSEARCH_TEST_LIMIT_S), which fails a test run that took
longer and names its slowest tests."""

from __future__ import annotations

import os
import time

import pytest

# In-process kernels in the interpret tier need the interpreter chosen before triton is
# imported; workers get their own setting from the harness.
os.environ["TRITON_INTERPRET"] = "1"

#: seconds the whole test run may take (unset: no limit); .ci/run sets it
LIMIT_ENV = "KSEARCH_TEST_LIMIT_S"
#: how many of the slowest tests a run over its limit names
SLOWEST = 10


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip)


class TimeGuard:
    """Times the run in the process that reports it (the controller under xdist, which
    receives every worker's reports) and fails it when it took longer than its limit."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.start = time.monotonic()
        self.durations: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        elapsed = time.monotonic() - self.start
        if elapsed <= self.limit:
            return
        slowest = sorted(self.durations.items(), key=lambda kv: -kv[1])[:SLOWEST]
        lines = "\n".join(f"  {seconds:7.1f} s  {nodeid}" for nodeid, seconds in slowest)
        session.config.get_terminal_writer().line(
            f"\nthe tests took {elapsed:.0f} s, over the {self.limit:.0f} s that {LIMIT_ENV} "
            f"allows; the slowest:\n{lines}",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config: pytest.Config) -> None:
    limit = os.environ.get(LIMIT_ENV)
    if limit and not hasattr(config, "workerinput"):  # not inside an xdist worker
        try:
            seconds = float(limit)
        except ValueError:
            raise pytest.UsageError(f"{LIMIT_ENV} must be seconds, not {limit!r}") from None
        config.pluginmanager.register(TimeGuard(seconds), "ksearch-time-guard")
