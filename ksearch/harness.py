"""Scoring candidates in worker processes: timeouts, isolation, and the interpreter's estimates.

`Harness.submit(source)` returns a future of an `Evaluation`. Each candidate
runs in a fresh `python -m ksearch.worker` process in its own process group;
the parent kills the whole group when the compile or run timeout expires. The
interpreter scorer checks correctness for real and takes speed from the task's
analytic estimate of the plan in the candidate's header.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ksearch import containment
from ksearch.evaluation import Evaluation, Method, Status, WorkloadResult, failure, summarize
from ksearch.plan import read_plan
from ksearch.task import H100_CEILINGS, Task

log = logging.getLogger(__name__)

#: Environment variables never passed to a candidate (API keys, tokens, passwords).
SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AUTH", re.IGNORECASE)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Seconds a worker may take to start (Python, torch and triton imports) before it is killed.
STARTUP_TIMEOUT = 120.0


def content_hash(source: str) -> str:
    """A candidate's identity: 16 hex digits of the SHA-256 of its source."""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class HarnessConfig:
    """How candidates are scored (conf/scorer/*.yaml).

    Args:
        mode: "interpret" (Triton interpreter on the CPU) or "gpu".
        suite: workload suite the score is computed on.
        workers: evaluations run at once.
        compile_timeout: seconds to load the candidate, compile it and make the first call
            (after the worker has started, which may take STARTUP_TIMEOUT).
        run_timeout: seconds for everything after the first call.
        seeds: input seeds checked per workload.
        warmup, reps: timing calls per workload (gpu).
        memory_mb: resident host memory a worker and its children may use.
        output_mb: bytes a worker may write to any file, its log included.
    """

    mode: str = "interpret"
    suite: str = "smoke"
    workers: int = 1
    compile_timeout: float = 120.0
    run_timeout: float = 300.0
    seeds: tuple[int, ...] = (0, 1)
    warmup: int = 10
    reps: int = 50
    memory_mb: int = 16384
    output_mb: int = 64


@dataclass(frozen=True, slots=True)
class _Worker:
    proc: subprocess.Popen[bytes]
    read_fd: int
    log: Path


class Harness:
    """Submits candidates to worker processes and turns their output into Evaluations."""

    def __init__(self, task: Task, config: HarnessConfig) -> None:
        if config.mode not in ("interpret", "gpu"):
            raise ValueError(f"unknown scorer mode {config.mode!r}; expected interpret or gpu")
        if config.suite not in task.suites:
            raise ValueError(
                f"task {task.name} has no workload suite {config.suite!r}; "
                f"it has {', '.join(task.suites)}"
            )
        self.task = task
        self.config = config
        self.name = config.mode
        self.workloads = task.suites[config.suite]
        self._pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="worker")
        self._dir = tempfile.TemporaryDirectory(prefix="ksearch-")
        self._fingerprint: dict[str, Any] | None = None
        self._running: set[subprocess.Popen[bytes]] = set()
        self._ahead: list[_Worker] = []  # workers started ahead of their jobs
        self._spawned = 0
        self._lock = threading.Lock()  # spawning and reaping must not interleave
        self._closed = False
        containment.become_subreaper()

    def submit(self, source: str) -> Future[Evaluation]:
        return self._pool.submit(self.evaluate, source)

    def close(self) -> None:
        """Stop: cancel queued work and kill the workers still running (their whole groups)."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        for _ in range(2):  # again once the last jobs have ended: they may start one ahead
            for proc in list(self._running):
                containment.kill_group(proc)
            self._pool.shutdown(wait=True)
        with self._lock:
            for worker in self._ahead:
                os.close(worker.read_fd)
            self._ahead.clear()
            self._running.clear()
        self._dir.cleanup()

    def fingerprint(self) -> dict[str, Any]:
        """The device fingerprint as the last worker reported it, or as far as known before."""
        if self._fingerprint is not None:
            return self._fingerprint
        versions = {"torch": _version("torch"), "triton": _version("triton")}
        if self.config.mode == "gpu":
            import torch

            name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
            return {"gpu": name, "cuda": torch.version.cuda, **versions}
        return {"gpu": None, "cuda": None, "device": "cpu (Triton interpreter)", **versions}

    def evaluate(self, source: str) -> Evaluation:
        """Score one candidate source in a fresh worker process (blocking)."""
        candidate = content_hash(source)
        path = Path(self._dir.name) / f"{candidate}.py"
        path.write_text(source)
        job = {
            "task": self.task.name,
            "candidate": str(path),
            "baseline": str(self.task.baseline),
            "suite": self.config.suite,
            "workloads": [w.name for w in self.workloads],
            "mode": self.config.mode,
            "seeds": list(self.config.seeds),
            "timing": {"warmup": self.config.warmup, "reps": self.config.reps},
        }
        result, why = self._run_worker(job)
        fp = (result or {}).get("fingerprint") or self.fingerprint()
        if result is None:
            status, reason = why
            return failure(candidate, status, reason, fp)
        if "error" in result:
            status, reason = result["error"]
            return failure(candidate, Status(status), reason, fp)
        self._fingerprint = result["fingerprint"]
        rows = [WorkloadResult(**dict(r, status=Status(r["status"]))) for r in result["workloads"]]
        method = Method(result["method"])
        if method is Method.ESTIMATE:
            rows = self._estimate(source, rows)
        return summarize(candidate, rows, method=method, fingerprint=result["fingerprint"])

    def _estimate(self, source: str, rows: list[WorkloadResult]) -> list[WorkloadResult]:
        """Fill in analytic times for a candidate rendered from a plan (none for other code)."""
        plan = read_plan(source)
        by_name = {w.name: w for w in self.workloads}
        out = []
        for r in rows:
            if plan is None or self.task.space is None:
                out.append(r)
                continue
            w = by_name[r.name]
            est = self.task.estimate(plan, w)
            base = self.task.estimate(None, w)
            floor = self.task.floor(w, H100_CEILINGS)
            out.append(
                WorkloadResult(
                    **{
                        **{f: getattr(r, f) for f in r.__slots__},
                        "estimate_us": est,
                        "speedup": base / est,
                        "time_over_floor": est / floor,
                    }
                )
            )
        return out

    def _spawn(self) -> _Worker:
        """Start a worker process; it imports torch and triton, then waits for its job."""
        read_fd, write_fd = os.pipe()
        env = {k: v for k, v in os.environ.items() if not SECRET.search(k)}
        env["KSEARCH_RESULT_FD"] = str(write_fd)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])
        )
        env.pop("TRITON_INTERPRET", None)
        if self.config.mode == "interpret":
            env["TRITON_INTERPRET"] = "1"
        with self._lock:
            self._spawned += 1
            log = Path(self._dir.name) / f"worker-{self._spawned}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "ksearch.worker"],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    pass_fds=(write_fd,),
                    start_new_session=True,
                )
            self._running.add(proc)
        containment.limit_output(proc.pid, self.config.output_mb << 20)
        os.close(write_fd)
        return _Worker(proc, read_fd, log)

    def _take(self) -> _Worker:
        """A started worker (one started ahead if there is one), and another started ahead,
        so that the next evaluation does not wait for Python, torch and triton to load."""
        with self._lock:
            worker = self._ahead.pop() if self._ahead else None
        if worker is None or worker.proc.poll() is not None:
            worker = self._spawn()
        if not self._closed:
            ahead = self._spawn()
            with self._lock:
                self._ahead.append(ahead)
        return worker

    def _run_worker(self, job: dict[str, Any]) -> tuple[dict[str, Any] | None, Any]:
        """Run one job; returns (result, None) or (None, (status, reason))."""
        worker = self._take()
        proc = worker.proc
        if self._closed:
            containment.kill_group(proc)
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(job).encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        result, why = self._read(proc, worker.read_fd)
        containment.kill_group(proc)
        with self._lock:
            self._running.discard(proc)
            containment.reap_orphans(keep={p.pid for p in self._running})
        os.close(worker.read_fd)
        if result is None and why is None:
            tail = worker.log.read_bytes()[-600:].decode(errors="replace").strip()
            exit_ = containment.describe_exit(proc.returncode)
            why = (Status.CRASHED, f"worker {exit_}: {tail[-300:]}")
        return result, why

    def _read(self, proc: subprocess.Popen[bytes], fd: int) -> tuple[dict[str, Any] | None, Any]:
        """Follow the worker's phases, each under its own deadline: start-up (importing torch
        and triton), compile (loading the candidate and its first call), run (the rest)."""
        limits = {
            "start-up": STARTUP_TIMEOUT,
            "compile": self.config.compile_timeout,
            "run": self.config.run_timeout,
        }
        after = {"ready": "compile", "compiled": "run"}
        phase = "start-up"
        deadline = time.monotonic() + limits[phase]
        buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, (Status.TIMEOUT, f"{phase} took longer than {limits[phase]:g} s")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            rss = containment.group_rss(proc.pid)
            if rss > self.config.memory_mb << 20:
                return None, (
                    Status.CRASHED,
                    f"used {rss >> 20} MB of host memory, over the cap of "
                    f"{self.config.memory_mb} MB",
                )
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                proc.wait()
                return None, None
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                message = json.loads(line)
                if "result" in message:
                    return message["result"], None
                if message.get("phase") in after:
                    phase = after[message["phase"]]
                    deadline = time.monotonic() + limits[phase]


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
