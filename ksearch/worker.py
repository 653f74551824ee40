"""The evaluation worker: a separate process that loads one candidate, checks it, times it.

The orchestrator never imports candidate code; it starts `python -m ksearch.worker`
in a new process group, writes one job (JSON) to its standard input and reads
phase lines and the result from the file descriptor named by KSEARCH_RESULT_FD.
Anything the candidate prints goes to the worker's stdout/stderr, never into
that channel.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import math
import os
import re
import sys
import traceback
from typing import Any

from ksearch.task import H100_CEILINGS, Task, Workload, load_task


class Channel:
    """The line protocol to the parent: {"phase": ...} lines, then {"result": ...}."""

    def __init__(self, fd: int) -> None:
        self.stream = os.fdopen(fd, "w", buffering=1)

    def send(self, **message: Any) -> None:
        self.stream.write(json.dumps(message) + "\n")
        self.stream.flush()


def load_candidate(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("candidate", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise AttributeError("the candidate does not define a function run(**inputs)")
    return module


def _tensors(inputs: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}


def refill(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`new`'s values in `old`'s tensors where shapes allow: the next check sees fresh values
    at the same addresses, so outputs cached by input pointer come out stale."""
    out = dict(new)
    for k, t in _tensors(new).items():
        prev = old.get(k)
        if prev is not None and prev.shape == t.shape and prev.dtype == t.dtype:
            out[k] = prev.copy_(t)
    return out


def check(task: Task, workload: Workload, out: Any, inputs: dict[str, Any], saved: dict[str, Any]):
    """Compare one output with the reference; returns (status, reason, max_error)."""
    import torch

    ref = task.reference(**inputs)
    if type(out) is not torch.Tensor:
        return "rejected", f"run returned {type(out).__name__}, not a plain torch.Tensor", None
    if out.shape != ref.shape or out.device != ref.device:
        return (
            "incorrect",
            f"output {tuple(out.shape)} on {out.device}, expected {tuple(ref.shape)}",
            None,
        )
    expected_dtype = next(iter(_tensors(inputs).values())).dtype
    if out.dtype != expected_dtype:
        return "incorrect", f"output dtype {out.dtype}, expected {expected_dtype}", None
    for name, t in _tensors(inputs).items():
        if out.untyped_storage().data_ptr() == t.untyped_storage().data_ptr():
            return "rejected", f"output aliases input {name}", None
        if not torch.equal(t, saved[name]):
            return "rejected", f"input {name} was modified", None
    got = out.float()
    finite = torch.isfinite(ref)
    if bool((~torch.isfinite(got) & finite).any()):
        return "incorrect", "NaN or Inf where the reference is finite", math.inf
    err = (got - ref).abs()
    max_error = float(err[finite].max()) if bool(finite.any()) else 0.0
    atol, rtol = task.tolerance(out.dtype)
    bad = err > atol + rtol * ref.abs()
    if bool(bad.any()):
        n_bad = int(bad.sum())
        return (
            "incorrect",
            f"{n_bad} of {bad.numel()} elements off (max error {max_error:.3g})",
            max_error,
        )
    return "passed", None, max_error


def time_call(fn: Any, inputs: dict[str, Any], *, warmup: int, reps: int) -> tuple[float, float]:
    """Median time in µs of `fn(**inputs)` on the GPU, and the relative spread (IQR / median).

    L2 is flushed before every call and the device is synchronized before each end
    event, so work launched on other streams is counted.
    """
    import torch

    flush = torch.empty(64 * 1024 * 1024, dtype=torch.int8, device="cuda")
    for _ in range(warmup):
        fn(**inputs)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(**inputs)
        torch.cuda.synchronize()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3)
    times.sort()
    med = times[len(times) // 2]
    iqr = times[(3 * len(times)) // 4] - times[len(times) // 4]
    return med, iqr / med if med > 0 else 0.0


def measure_ceilings() -> dict[str, float]:
    """Copy bandwidth (bytes/s, read + write) and bf16 matmul FLOP/s of this GPU."""
    import torch

    a = torch.empty(512 * 1024 * 1024, dtype=torch.int8, device="cuda")
    b = torch.empty_like(a)
    m = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    copy = time_call(lambda: b.copy_(a), {}, warmup=3, reps=10)[0]
    mm = time_call(lambda: m @ m, {}, warmup=3, reps=10)[0]
    return {"bytes": 2 * a.numel() / (copy * 1e-6), "flops": 2 * 8192**3 / (mm * 1e-6)}


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


def evaluate_job(job: dict[str, Any], channel: Channel) -> dict[str, Any]:
    """Run one job; returns {"workloads": [...], "fingerprint": ..., "method": ...}."""
    import torch

    task = load_task(job["task"])
    device = "cuda" if job["mode"] == "gpu" else "cpu"
    suite = {w.name: w for w in task.suites[job["suite"]]}
    workloads = [suite[name] for name in job["workloads"]]
    try:
        module = load_candidate(job["candidate"])
    except SyntaxError as e:
        return {"error": ("compile_error", f"SyntaxError: {e.msg} (line {e.lineno})")}
    except Exception as e:
        return {"error": ("compile_error", f"import failed: {type(e).__name__}: {e}")}
    baseline = load_candidate(job["baseline"]) if device == "cuda" else None
    ceilings = measure_ceilings() if device == "cuda" else H100_CEILINGS
    channel.send(phase="loaded")
    rows = []
    for i, w in enumerate(workloads):
        row: dict[str, Any] = {"name": w.name, "status": "passed"}
        try:
            inputs: dict[str, Any] = {}
            for seed in job["seeds"]:
                inputs = refill(inputs, task.make_inputs(w, seed + 1000 * i, device))
                saved = {k: v.clone() for k, v in _tensors(inputs).items()}
                out = module.run(**inputs)
                if device == "cuda":
                    torch.cuda.synchronize()
                status, reason, err = check(task, w, out, inputs, saved)
                row["max_error"] = (
                    err if row.get("max_error") is None else max(row["max_error"], err or 0)
                )
                if status != "passed":
                    row.update(status=status, reason=f"seed {seed}: {reason}")
                    break
                if i == 0 and seed == job["seeds"][0]:
                    channel.send(phase="compiled")
            if row["status"] == "passed" and baseline is not None:
                inputs = task.make_inputs(w, 7, device)
                t, spread = time_call(module.run, inputs, **job["timing"])
                tb, _ = time_call(baseline.run, inputs, **job["timing"])
                floor = task.floor(w, ceilings)
                row.update(latency_us=t, spread=spread, speedup=tb / t, time_over_floor=t / floor)
                if t < floor / task.impossible_margin:
                    row.update(
                        status="rejected", reason=f"{t:.2f} µs is impossible: floor {floor:.2f} µs"
                    )
        except torch.cuda.OutOfMemoryError as e:
            row.update(status="runtime_error", reason=f"out of memory: {str(e)[:200]}")
        except Exception as e:
            tb_line = traceback.format_exception_only(e)[-1].strip()
            if isinstance(e, OSError) and e.errno == errno.EFBIG:
                tb_line = "wrote more output than allowed (scorer.output_mb)"
            row.update(
                status="runtime_error", reason=tb_line[:500], error=traceback.format_exc()[-2000:]
            )
        rows.append(row)
        if row["status"] != "passed" and device == "cuda":
            break  # a CUDA error is sticky: the rest of this process is not to be trusted
    method = "cuda_events" if device == "cuda" else "estimate"
    return {"workloads": rows, "fingerprint": fingerprint(device), "method": method}


def main() -> None:
    channel = Channel(int(os.environ["KSEARCH_RESULT_FD"]))
    # Start-up cost, not the candidate's: paid before the job arrives (a worker may be
    # started ahead of its job) and before the compile clock starts.
    import torch  # noqa: F401
    import triton  # noqa: F401

    job = json.loads(sys.stdin.read())
    channel.send(phase="ready")
    try:
        result = evaluate_job(job, channel)
    except Exception as e:
        result = {"error": ("crashed", f"worker failed: {type(e).__name__}: {e}")}
    channel.send(result=result)


if __name__ == "__main__":
    main()
