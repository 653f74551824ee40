"""Worker processes: started ahead, reused until a fault, health-checked after one, contained.

`Workers.run(lane, job, listener)` sends one job to a worker of a lane ("evaluate", or
"compile" for compiling ahead) and follows it under the phase deadlines, the memory cap
and the output cap, passing output frames and questions to the listener. A worker serves
jobs until one ends in a fault or it reaches its reuse limit, except that on the GPU an
evaluation worker times one candidate only (see `Workers.serves`). A spare is started ahead
when a worker takes its last job (on the GPU, every evaluation), and a faulted worker's
replacement as soon as the fault is seen, so a replacement seldom waits for Python, torch
and triton to load, and a run on the CPU does not spend a core on a spare it may not need.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ksearch import containment
from ksearch.evaluation import Status

if TYPE_CHECKING:
    from ksearch.harness import HarnessConfig

log = logging.getLogger(__name__)

#: Environment variables never passed to a candidate (API keys, tokens, passwords).
SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AUTH", re.IGNORECASE)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Seconds a worker may take to start (Python, torch and triton imports) before it is killed.
STARTUP_TIMEOUT = 120.0


class HarnessError(RuntimeError):
    """The harness itself cannot go on (the device is unusable), with a message for the user."""


class Listener(Protocol):
    """Receives what a worker sends during a job besides phases and the result."""

    def frame(self, header: dict[str, Any], payload: bytearray) -> None: ...

    def question(self, message: dict[str, Any]) -> bool: ...


@dataclass(slots=True)
class _Worker:
    proc: subprocess.Popen[bytes]
    read_fd: int
    log: Path
    lane: str
    jobs: int = 0


class Workers:
    """The worker processes of one harness."""

    def __init__(self, config: HarnessConfig, directory: Path) -> None:
        self.config = config
        self._dir = directory
        self._running: set[subprocess.Popen[bytes]] = set()
        self._idle: dict[str, list[_Worker]] = {"evaluate": [], "compile": []}
        self._ahead: dict[str, list[_Worker]] = {"evaluate": [], "compile": []}
        self._spawned = 0
        self._lock = threading.Lock()  # spawning and reaping must not interleave
        self._closed = False
        self._fault = False  # a worker was discarded after a fault: check the next one first
        #: worker processes started, and health checks run after faults
        self.started = 0
        self.health_checks = 0
        containment.become_subreaper()

    def close(self) -> None:
        """Kill every worker, running or waiting (whole groups); jobs in flight end."""
        self._closed = True
        for proc in list(self._running):
            containment.kill_group(proc)

    def shutdown(self) -> None:
        """After the jobs have ended: kill the idle and spare workers too."""
        self.close()
        with self._lock:
            for lanes in (self._idle, self._ahead):
                for workers in lanes.values():
                    for worker in workers:
                        self._discard(worker)
                    workers.clear()
            self._running.clear()

    def _spawn(self, lane: str) -> _Worker:
        """Start a worker process; it imports torch and triton, then waits for jobs."""
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(OSError, AttributeError):  # output frames pass through it
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, 1 << 20)
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
            self.started += 1
            log_path = self._dir / f"{lane}-{self._spawned}.log"
            with open(log_path, "wb") as out:
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
        return _Worker(proc, read_fd, log_path, lane)

    def _take(self, lane: str) -> _Worker:
        """An idle worker of `lane` if one is alive, else one started ahead, else a new one;
        and a spare started ahead if this is the worker's last job."""
        worker = None
        with self._lock:
            for pool in (self._idle[lane], self._ahead[lane]):
                while pool and worker is None:
                    w = pool.pop()
                    if w.proc.poll() is None:
                        worker = w
                    else:
                        self._discard(w)
        if worker is None:
            worker = self._spawn(lane)
        if worker.jobs + 1 >= self.serves(lane):
            self._start_ahead(lane)  # this is its last job
        return worker

    def _start_ahead(self, lane: str) -> None:
        """Start a spare of `lane` if none waits, so that the next job does not wait for
        Python, torch and triton to load."""
        if not self._closed and not self._ahead[lane]:
            ahead = self._spawn(lane)
            with self._lock:
                self._ahead[lane].append(ahead)

    def serves(self, lane: str) -> int:
        """Jobs a worker of `lane` serves before it is replaced. On the GPU an evaluation
        worker times one candidate: on an H100, the same kernel timed in a process that had
        already timed another candidate measured 12-20% slower on some workloads (Mixtral
        decode, DeepSeek-V3 at T=256), and the baseline up to 6% slower, while copies of one
        candidate each timed in a fresh process measured alike within 0.5%."""
        if lane == "evaluate" and self.config.mode == "gpu":
            return 1
        return self.config.reuse

    def _discard(self, worker: _Worker) -> None:
        containment.kill_group(worker.proc)
        self._running.discard(worker.proc)
        with contextlib.suppress(OSError):
            os.close(worker.read_fd)

    def _release(self, worker: _Worker, keep: bool) -> None:
        """After a job: keep the worker for the next one (its stray descendants killed), or
        kill it with its whole group; adopted orphans are killed either way."""
        proc = worker.proc
        with self._lock:
            if keep and not self._closed and proc.poll() is None:
                containment.kill_descendants(proc.pid)
                self._idle[worker.lane].append(worker)
            else:
                self._discard(worker)
            containment.reap_orphans(keep={p.pid for p in self._running})

    def _healthy(self, worker: _Worker) -> tuple[bool, str]:
        """Run the health job on a worker; (ok, what it reported)."""
        self.health_checks += 1
        result, why = self._exchange(worker, {"kind": "health", "mode": self.config.mode}, None)
        if result is None or "health" not in result:
            return False, why[1] if why else str(result)
        return bool(result["health"].get("ok")), json.dumps(result["health"])

    def run(
        self, lane: str, job: dict[str, Any], listener: Listener | None
    ) -> tuple[dict[str, Any] | None, Any]:
        """Run one job in a worker of `lane`; returns (result, None) or (None, (status,
        reason)). After a fault, the evaluation lane's next worker is health-checked first."""
        worker = self._take(lane)
        if lane == "evaluate" and self._fault:
            for attempt in range(3):
                ok, report = self._healthy(worker)
                if ok:
                    log.info("health check after a fault: %s", report)
                    self._fault = False
                    break
                self._release(worker, keep=False)
                if attempt == 2 or self._closed:
                    raise HarnessError(
                        f"the device failed three health checks after a fault: {report}"
                    )
                worker = self._take(lane)
        result, why = self._exchange(worker, job, listener)
        worker.jobs += 1
        fault = result is None or bool(result.get("retire")) or _faulted(result)
        if lane == "evaluate" and fault:
            self._fault = True
        self._release(worker, keep=not fault and worker.jobs < self.serves(lane))
        if fault:
            self._start_ahead(lane)  # its replacement starts now, not when the next job comes
        return result, why

    def _exchange(
        self, worker: _Worker, job: dict[str, Any], listener: Listener | None
    ) -> tuple[dict[str, Any] | None, Any]:
        proc = worker.proc
        if self._closed:
            containment.kill_group(proc)
        assert proc.stdin is not None
        job = dict(job, nonce=secrets.token_hex(16))
        try:
            proc.stdin.write(json.dumps({"job": job}).encode() + b"\n")
            proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass
        result, why = self._read(worker, listener, job["nonce"])
        if result is None and why is None:
            proc.wait()
            tail = worker.log.read_bytes()[-600:].decode(errors="replace").strip()
            exit_ = containment.describe_exit(proc.returncode)
            why = (Status.CRASHED, f"worker {exit_}: {tail[-300:]}")
        return result, why

    def _answer(self, proc: subprocess.Popen[bytes], go: bool) -> None:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ValueError):
            proc.stdin.write(json.dumps({"go": go}).encode() + b"\n")
            proc.stdin.flush()

    def _read(
        self, worker: _Worker, listener: Listener | None, nonce: str
    ) -> tuple[dict[str, Any] | None, Any]:
        """Follow the worker's phases, each under its own deadline: start-up (importing torch
        and triton), compile (loading the candidate and its first call), run (the rest).
        Output frames go to the listener (its time is not the candidate's), and so do the
        worker's questions."""
        proc, fd = worker.proc, worker.read_fd
        limits = {
            "start-up": STARTUP_TIMEOUT,
            "compile": self.config.compile_timeout,
            "run": self.config.run_timeout,
        }
        after = {"ready": "compile", "compiled": "run"}
        phase = "start-up"
        deadline = time.monotonic() + limits[phase]
        buf = bytearray()
        frame: dict[str, Any] | None = None
        next_poll, rss = 0.0, 0
        while True:
            if frame is not None and len(buf) >= frame["nbytes"]:
                payload = buf[: frame["nbytes"]]
                del buf[: frame["nbytes"]]
                began = time.monotonic()
                if listener is not None:
                    listener.frame(frame, payload)
                deadline += time.monotonic() - began
                frame = None
                continue
            if frame is None and b"\n" in buf:
                end = buf.index(b"\n")
                line = bytes(buf[:end])
                del buf[: end + 1]
                try:
                    message = json.loads(line)
                except ValueError:
                    return None, (Status.CRASHED, "the worker's reply channel was corrupted")
                if "result" in message:
                    if message.get("nonce") != nonce:
                        return None, (
                            Status.REJECTED,
                            "a reply on the worker's channel did not come from the harness "
                            "(a forged result)",
                        )
                    return message["result"], None
                if "frame" in message:
                    frame = message["frame"]
                elif "await" in message:
                    go = listener is not None and listener.question(message)
                    self._answer(proc, go)
                elif message.get("phase") in after:
                    phase = after[message["phase"]]
                    deadline = time.monotonic() + limits[phase]
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None, (Status.TIMEOUT, f"{phase} took longer than {limits[phase]:g} s")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            now = time.monotonic()
            if now >= next_poll:  # scanning /proc costs: at most once a second
                next_poll = now + 1.0
                rss = containment.group_rss(proc.pid)
            if rss > self.config.memory_mb << 20:
                return None, (
                    Status.CRASHED,
                    f"used {rss >> 20} MB of host memory, over the cap of "
                    f"{self.config.memory_mb} MB",
                )
            if not ready:
                continue
            chunk = os.read(fd, 1 << 22)
            if not chunk:
                return None, None
            buf += chunk


def _faulted(result: dict[str, Any]) -> bool:
    """Whether a job ended in a way that leaves its worker untrustworthy (a CUDA error may be
    sticky; a crash or a rejection may have left state behind)."""
    if "error" in result:
        return result["error"][0] != "compile_error"
    bad = {"runtime_error", "crashed", "timeout", "rejected"}
    return any(r.get("status") in bad for r in result.get("workloads", ()))
