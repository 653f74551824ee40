"""The evaluation worker: a process that runs candidates, sends their outputs out, times them.

The orchestrator never imports candidate code. It starts `python -m ksearch.worker` in a new
process group and talks to it over two pipes: JSON lines on the worker's standard input
(jobs, and go/stop answers), and on the descriptor named by KSEARCH_RESULT_FD the worker's
replies: phase lines, output frames (a JSON header line, then the raw bytes of one output
tensor), questions ({"await": ...}) and one {"result": ...} per job. Anything the candidate
prints goes to the worker's stdout/stderr, never into that channel.

Expected outputs never exist here: every output is sent to the orchestrator, which computes
the reference from the same seed and compares (ksearch.checking). A worker serves jobs until
one ends badly; it keeps its baseline and the ceilings between jobs.
"""

from __future__ import annotations

import builtins
import errno
import gc
import importlib.util
import json
import os
import random
import re
import sys
import threading
import traceback
from typing import Any

from ksearch.checking import checksum, poison, refill, shaped_inputs, tensors, validate
from ksearch.task import Task, Workload, load_task
from ksearch.timing import (
    Timed,
    capture,
    l2_flusher,
    measure_ceilings,
    replayer,
    time_interleaved,
)

#: outputs re-checked at random calls while timing, with fresh inputs
RECHECKS = 2


class Channel:
    """Replies to the parent: JSON lines, and output frames (header line + raw bytes)."""

    def __init__(self, fd: int) -> None:
        self.stream = os.fdopen(fd, "wb")

    def send(self, **message: Any) -> None:
        self.stream.write(json.dumps(message).encode() + b"\n")
        self.stream.flush()

    def send_tensor(self, header: dict[str, Any], tensor: Any) -> None:
        import torch

        t = tensor.detach().contiguous().cpu()
        data = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        shape, dtype = list(t.shape), str(t.dtype).removeprefix("torch.")
        frame = dict(header, shape=shape, dtype=dtype, nbytes=len(data))
        self.stream.write(json.dumps({"frame": frame}).encode() + b"\n")
        self.stream.write(data)
        self.stream.flush()


class Control:
    """Messages from the parent on a private copy of stdin (fd 0 itself points at /dev/null)."""

    def __init__(self) -> None:
        fd = os.dup(0)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        self.stream = os.fdopen(fd, "rb")

    def receive(self) -> dict[str, Any] | None:
        line = self.stream.readline()
        return json.loads(line) if line.strip() else None

    def go(self) -> bool:
        answer = self.receive()
        return bool(answer and answer.get("go"))


def load_candidate(path: str, name: str = "candidate") -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise AttributeError("the candidate does not define a function run(**inputs)")
    return module


class Guard:
    """Functions the harness relies on, remembered at start-up: a candidate that replaces one
    (to fake a timer, a copy or a comparison) is caught after its job."""

    def __init__(self) -> None:
        import torch

        self.watched: dict[str, tuple[Any, str, Any]] = {}
        for owner, names in (
            (torch, ("equal", "isfinite", "empty", "randn", "sum")),
            (torch.cuda, ("synchronize", "Event", "CUDAGraph", "graph", "Stream")),
            (torch.cuda.Event, ("record", "elapsed_time", "synchronize")),
            (torch.cuda.CUDAGraph, ("replay", "capture_begin", "capture_end")),
            (torch.Tensor, ("clone", "copy_", "zero_", "cpu", "contiguous", "view", "numpy")),
            (builtins, ("sorted", "float", "type", "isinstance")),
            (json, ("dumps", "loads")),
            (os, ("write", "read", "dup")),
        ):
            for name in names:
                if hasattr(owner, name):
                    self.watched[f"{getattr(owner, '__name__', owner)}.{name}"] = (
                        owner,
                        name,
                        getattr(owner, name),
                    )
        for module_name, functions in (
            ("ksearch.checking", ("validate", "checksum", "refill")),
            ("ksearch.timing", ("time_interleaved", "time_reps", "schedule", "capture")),
            ("ksearch.timing", ("measure_ceilings", "l2_flusher")),
            ("ksearch.worker", ("Channel", "Control", "Worker", "time_interleaved", "capture")),
            ("ksearch.worker", ("validate", "checksum", "refill", "measure_ceilings")),
        ):
            # this module runs as __main__ in a worker process
            module = sys.modules[__name__ if module_name == "ksearch.worker" else module_name]
            for name in functions:
                self.watched[f"{module_name}.{name}"] = (module, name, getattr(module, name))

    def changed(self) -> list[str]:
        return [
            key
            for key, (owner, name, original) in self.watched.items()
            if getattr(owner, name, None) is not original
        ]


def fingerprint(device: str) -> dict[str, Any]:
    import torch
    import triton

    out: dict[str, Any] = {"torch": torch.__version__, "triton": triton.__version__}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        out.update(gpu=props.name, cuda=torch.version.cuda, driver=_driver_version())
    else:
        out.update(gpu=None, cuda=None, driver=None, device="cpu (Triton interpreter)")
    return out


def _driver_version() -> str | None:
    """The NVIDIA driver version from /proc (e.g. "580.159.03"), or None."""
    try:
        with open("/proc/driver/nvidia/version") as f:
            match = re.search(r"\b(\d+\.\d+(?:\.\d+)?)\b", f.readline())
    except OSError:
        return None
    return match.group(1) if match else None


def _error_row(e: BaseException) -> dict[str, Any]:
    import torch

    if isinstance(e, torch.cuda.OutOfMemoryError):
        return {"status": "runtime_error", "reason": f"out of memory: {str(e)[:200]}"}
    line = traceback.format_exception_only(e)[-1].strip()
    if isinstance(e, OSError) and e.errno == errno.EFBIG:
        line = "wrote more output than allowed (scorer.output_mb)"
    trace = traceback.format_exc()[-2000:]
    return {"status": "runtime_error", "reason": line[:500], "error": trace}


class Worker:
    """One worker process's state between jobs: the task, its baseline, the ceilings."""

    def __init__(self, channel: Channel, control: Control) -> None:
        self.channel = channel
        self.control = control
        self.guard = Guard()
        self.task: Task | None = None
        self.baseline: Any = None
        self.ceilings: dict[str, float] | None = None
        self.flush: Any = None
        self.jobs = 0

    def serve(self) -> None:
        while (message := self.control.receive()) is not None:
            job = message["job"]
            self.channel.send(phase="ready")
            self.jobs += 1
            try:
                result = self.run(job)
            except Exception as e:
                result = {"error": ("crashed", f"worker failed: {type(e).__name__}: {e}")}
            changed = self.guard.changed()
            if changed:
                names = ", ".join(changed)
                result = {
                    "error": ("rejected", f"the candidate replaced {names}, which the harness uses")
                }
            retire = self.retire_reasons()
            if retire:
                result["retire"] = retire
            self.channel.send(result=result, nonce=job.get("nonce"))
            if retire:
                return

    def retire_reasons(self) -> list[str]:
        """Why this process should not serve another job, if it should not."""
        reasons = []
        changed = self.guard.changed()
        if changed:
            reasons.append(f"the candidate replaced {', '.join(changed)}")
        threads = [t for t in threading.enumerate() if t is not threading.main_thread()]
        if threads:
            reasons.append(f"the candidate left {len(threads)} thread(s) running")
        return reasons

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        kind = job.get("kind", "evaluate")
        if kind == "health":
            return self.health(job)
        task = load_task(job["task"])
        if self.task is not None and self.task.name != task.name:
            raise RuntimeError("a worker serves one task")
        self.task = task
        device = "cuda" if job["mode"] == "gpu" else "cpu"
        suite = {w.name: w for w in task.suites[job["suite"]]}
        workloads = [suite[name] for name in job["workloads"]]
        try:
            module = load_candidate(job["candidate"], f"candidate_{self.jobs}")
        except SyntaxError as e:
            return {"error": ("compile_error", f"SyntaxError: {e.msg} (line {e.lineno})")}
        except Exception as e:
            return {"error": ("compile_error", f"import failed: {type(e).__name__}: {e}")}
        try:
            if kind == "compile":
                return self.compile_only(
                    module, task, workloads, device, job.get("memory_fraction")
                )
            return self.evaluate(job, module, task, workloads, device)
        finally:
            sys.modules.pop(module.__name__, None)
            del module
            gc.collect()

    def health(self, job: dict[str, Any]) -> dict[str, Any]:
        """A known computation on the device, after a fault: is the device usable?"""
        import torch

        device = "cuda" if job["mode"] == "gpu" else "cpu"
        a = torch.randn(512, 512, device=device)
        b = (a @ torch.eye(512, device=device)).cpu()
        ok = bool(torch.allclose(b, a.cpu(), atol=1e-2))
        info: dict[str, Any] = {"ok": ok}
        if device == "cuda":
            free, total = torch.cuda.mem_get_info()
            info.update(free_mb=free >> 20, total_mb=total >> 20)
        return {"health": info}

    def compile_only(
        self,
        module: Any,
        task: Task,
        workloads: list[Workload],
        device: str,
        memory_fraction: float | None = None,
    ) -> dict[str, Any]:
        """Call the candidate once per workload with Triton's launches turned into compiles,
        filling the kernel cache the timing worker reads; nothing is checked or timed. On
        the GPU it holds at most `memory_fraction` of the device's memory and gives its
        cached blocks back after each workload (a workload that does not fit is left to
        the evaluation to compile)."""
        import torch
        from triton.runtime.jit import JITFunction

        cuda = device == "cuda"
        if cuda and memory_fraction:
            torch.cuda.set_per_process_memory_fraction(memory_fraction)

        original = JITFunction.run

        def compile_instead(self: Any, *args: Any, grid: Any, warmup: bool, **kwargs: Any) -> Any:
            return original(self, *args, grid=grid, warmup=True, **kwargs)

        JITFunction.run = compile_instead
        done, errors = 0, []
        try:
            for w in workloads:
                try:
                    module.run(**shaped_inputs(task, w, device))
                    done += 1
                except Exception as e:
                    errors.append(f"{w.name}: {type(e).__name__}: {e}"[:200])
                if cuda:
                    torch.cuda.empty_cache()
        finally:
            JITFunction.run = original
        return {"compiled": done, "errors": errors}

    def evaluate(
        self,
        job: dict[str, Any],
        module: Any,
        task: Task,
        workloads: list[Workload],
        device: str,
    ) -> dict[str, Any]:
        import torch

        seeds: dict[str, list[int]] = job["seeds"]
        rows: list[dict[str, Any]] = []
        first = True
        for w in workloads:
            row: dict[str, Any] = {"name": w.name, "status": "passed"}
            rows.append(row)
            try:
                inputs: dict[str, Any] = {}
                for seed in seeds[w.name]:
                    inputs = refill(inputs, task.make_inputs(w, seed, device))
                    saved = {k: v.clone() for k, v in tensors(inputs).items()}
                    total = checksum(inputs)
                    poison(inputs)
                    out = module.run(**inputs)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    if first:
                        self.channel.send(phase="compiled")
                        first = False
                    bad = validate(out, inputs, saved, device)
                    if bad is not None:
                        row.update(status=bad[0], reason=f"seed {seed}: {bad[1]}")
                        break
                    header = {"workload": w.name, "seed": seed, "checksum": total, "call": "check"}
                    self.channel.send_tensor(header, out)
                    del out
            except Exception as e:
                row.update(_error_row(e))
            if row["status"] != "passed" and device == "cuda":
                break  # a CUDA error is sticky: the rest of this process is not to be trusted
        self.channel.send(**{"await": "checks"})
        passed = all(r["status"] == "passed" for r in rows)
        if not self.control.go() or not passed or device != "cuda":
            method = "cuda_events" if device == "cuda" else "estimate"
            return {"workloads": rows, "fingerprint": fingerprint(device), "method": method}
        return self.time_all(job, module, task, workloads, rows)

    def time_all(
        self,
        job: dict[str, Any],
        module: Any,
        task: Task,
        workloads: list[Workload],
        rows: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """Time candidate and baseline per workload (screening workloads first), with outputs
        re-checked at random calls on fresh inputs."""

        if self.flush is None:
            self.flush = l2_flusher()
        if self.baseline is None:
            self.baseline = load_candidate(job["baseline"], "baseline")
        if self.ceilings is None:
            self.ceilings = measure_ceilings(self.flush)
        timing = job["timing"]
        screen = int(job.get("screen", 0))
        methods = set()
        for i, (w, row) in enumerate(zip(workloads, rows, strict=True)):
            try:
                self.time_one(job, module, task, w, row, timing)
            except Exception as e:
                row.update(_error_row(e))
                break
            methods.add(row["method"])
            if row["status"] != "passed":
                break
            if i + 1 == screen and screen < len(workloads):
                latencies = {r["name"]: r["latency_us"] for r in rows[:screen]}
                self.channel.send(**{"await": "screen", "latencies": latencies})
                if not self.control.go():
                    break
        method = "cuda_graph" if methods == {"cuda_graph"} else "cuda_events"
        return {
            "workloads": rows,
            "fingerprint": fingerprint("cuda"),
            "method": method,
            "ceilings": self.ceilings,
        }

    def time_one(
        self,
        job: dict[str, Any],
        module: Any,
        task: Task,
        w: Workload,
        row: dict[str, Any],
        timing: dict[str, int],
    ) -> None:
        seed = job["timing_seed"] + 7919 * job["workloads"].index(w.name)
        inputs = task.make_inputs(w, seed, "cuda")
        rng = random.Random(seed)
        reps = timing["reps"]
        points = sorted(rng.sample(range(reps), min(RECHECKS, reps)))
        recheck = {i: j + 1 for j, i in enumerate(points)}
        fresh = {i: task.make_inputs(w, seed + j, "cuda") for i, j in recheck.items()}
        sums = {i: checksum(f) for i, f in fresh.items()}
        # the timed inputs come back after each recheck, so every other call (and the
        # baseline, and the floor) sees the same values; the baseline reads the candidate's
        # tensors, not copies: on an H100 the same graph timed on a copy of a decode step's
        # 350 MB of weights read 5% apart from the original, either way
        timed = (
            {**inputs, **{k: v.clone() for k, v in tensors(inputs).items()}} if fresh else inputs
        )
        kept: dict[int, Any] = {}
        holds_fresh = False

        def before_baseline(i: int) -> None:
            nonlocal holds_fresh
            if holds_fresh:
                refill(inputs, timed)
                holds_fresh = False

        def before(i: int) -> None:
            nonlocal holds_fresh
            if i in fresh:
                refill(inputs, fresh[i])
                holds_fresh = True
            else:
                before_baseline(i)

        def after(i: int, out: Any) -> None:
            if i in fresh:
                kept[i] = out.clone()

        graph = capture(module.run, inputs)
        base = capture(self.baseline.run, inputs) if graph is not None else None
        if graph is not None and base is not None:
            method, call, base_call = "cuda_graph", replayer(graph), replayer(base)
        else:
            method = "cuda_events"
            call = lambda: module.run(**inputs)  # noqa: E731
            base_call = lambda: self.baseline.run(**inputs)  # noqa: E731
        eager = method != "cuda_graph"
        (t, spread), (tb, _) = time_interleaved(
            [Timed(call, eager, before, after), Timed(base_call, eager, before_baseline)],
            warmup=timing["warmup"],
            reps=reps,
            rounds=timing["rounds"],
            flush=self.flush,
        )
        del graph, base, call, base_call
        for i, out in sorted(kept.items()):
            header = {
                "workload": w.name,
                "seed": seed + recheck[i],
                "checksum": sums[i],
                "call": f"timed call {i + 1} of {reps}",
            }
            self.channel.send_tensor(header, out)
        assert self.ceilings is not None
        floor = task.floor(w, self.ceilings, timed)
        row.update(
            latency_us=t,
            spread=spread,
            speedup=tb / t,
            time_over_floor=t / floor,
            baseline_us=tb,
            method=method,
        )
        if t < floor / task.impossible_margin:
            row.update(status="rejected", reason=f"{t:.2f} µs is impossible: floor {floor:.2f} µs")


def main() -> None:
    fd = int(os.environ.pop("KSEARCH_RESULT_FD"))
    channel = Channel(fd)
    control = Control()
    # Start-up cost, not the candidate's: paid before the job arrives (a worker may be
    # started ahead of its job) and before the compile clock starts.
    import torch  # noqa: F401
    import triton  # noqa: F401

    Worker(channel, control).serve()


if __name__ == "__main__":
    main()
