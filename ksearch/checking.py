"""Correctness. The orchestrator's half: the candidate's outputs arrive as frames, the
reference is computed here from the same seed, and the two are compared element by element.
The worker's half (`validate`, `refill`, `checksum`, and `shaped_inputs` for compile
workers) needs no reference.

The candidate's worker never holds an expected output, so there is nothing for it to find
(in the garbage collector, on the disk, in a cache) and copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ksearch.task import Task, Workload


@dataclass(slots=True)
class Verdict:
    """What the checker concluded about one workload so far."""

    status: str = "passed"
    reason: str | None = None
    max_error: float = 0.0
    checks: int = 0


@dataclass
class Checker:
    """Rebuilds inputs from seeds, computes references, and compares outputs with them."""

    task: Task
    device: str
    verdicts: dict[str, Verdict] = field(default_factory=dict)

    def reset(self) -> None:
        self.verdicts = {}

    def verdict(self, name: str) -> Verdict:
        return self.verdicts.setdefault(name, Verdict())

    @property
    def all_passed(self) -> bool:
        return all(v.status == "passed" for v in self.verdicts.values())

    def receive(self, workload: Workload, header: dict[str, Any], payload: bytearray) -> Verdict:
        """Judge one output frame; the first failure of a workload is the one kept."""
        import torch

        v = self.verdict(workload.name)
        if v.status != "passed":
            return v
        seed, call = header["seed"], header["call"]
        dtype = getattr(torch, header["dtype"], None)
        if not isinstance(dtype, torch.dtype):
            v.status, v.reason = "rejected", f"{call}: unknown output dtype {header['dtype']!r}"
            return v
        inputs = self.task.make_inputs(workload, seed, self.device)
        if not math.isclose(checksum(inputs), header["checksum"], rel_tol=1e-9, abs_tol=1e-6):
            raise RuntimeError(
                f"the checker rebuilt different inputs for {workload.name} seed {seed} "
                "than the worker (is make_inputs deterministic?)"
            )
        out = torch.frombuffer(payload, dtype=torch.uint8) if payload else None
        out = (
            torch.empty(header["shape"], dtype=dtype)
            if out is None
            else out.view(dtype).reshape(header["shape"])
        )
        status, reason, err = compare(self.task, out.to(self.device), inputs)
        v.checks += 1
        if err is not None and not math.isinf(err):
            v.max_error = max(v.max_error, err)
        if status != "passed":
            label = f"seed {seed}" if call == "check" else f"{call} (fresh inputs, seed {seed})"
            v.status, v.reason = status, f"{label}: {reason}"
            if err is not None:
                v.max_error = err
        return v


def compare(task: Task, out: Any, inputs: dict[str, Any]) -> tuple[str, str | None, float | None]:
    """(status, reason, max_error) of `out` against the task's reference for `inputs`."""
    import torch

    ref = task.reference(**inputs)
    if out.shape != ref.shape:
        return "incorrect", f"output shape {tuple(out.shape)}, expected {tuple(ref.shape)}", None
    tensors = [t for t in inputs.values() if isinstance(t, torch.Tensor)]
    expected_dtype = tensors[0].dtype
    if out.dtype != expected_dtype:
        return "incorrect", f"output dtype {out.dtype}, expected {expected_dtype}", None
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


def judge(
    task: Task, out: Any, inputs: dict[str, Any], saved: dict[str, Any]
) -> tuple[str, str | None, float | None]:
    """Both halves of the checks in one process: the worker's (a plain tensor, no aliasing,
    inputs unchanged against `saved`) and the checker's. For testing a task's checks."""
    import torch

    device = next(t for t in inputs.values() if isinstance(t, torch.Tensor)).device.type
    bad = validate(out, inputs, saved, device)
    if bad is not None:
        return bad[0], bad[1], None
    return compare(task, out, inputs)


# -- the worker's half: what can be judged without the reference --------------------


def tensors(inputs: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}


def refill(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`new`'s values in `old`'s tensors where shapes allow: the next check sees fresh values
    at the same addresses, so outputs cached by input pointer come out stale."""
    out = dict(new)
    for k, t in tensors(new).items():
        prev = old.get(k)
        if prev is not None and prev.shape == t.shape and prev.dtype == t.dtype:
            out[k] = prev.copy_(t)
    return out


def checksum(inputs: dict[str, Any]) -> float:
    """A sum over a strided sample (about 64k elements) of every input tensor, so the checker
    can confirm it rebuilt the same inputs without copying gigabytes of weights."""
    total = 0.0
    for t in tensors(inputs).values():
        flat = t.reshape(-1)
        step = max(1, flat.numel() // 65536)
        total += float(flat[::step].double().sum())
    return total


def poison(inputs: dict[str, Any]) -> None:
    """Fill memory the GPU allocator may hand the candidate next with NaN, so an output
    element it never writes reads NaN rather than an earlier correct value."""
    import torch

    big = [t for t in tensors(inputs).values() if t.is_cuda]
    if big:
        nbytes = min(max(t.nbytes for t in big) * 2, 1 << 30)
        torch.empty(nbytes, dtype=torch.uint8, device=big[0].device).fill_(0xFF)


def validate(out: Any, inputs: dict[str, Any], saved: dict[str, Any], device: str):
    """What can be judged without the reference: a plain tensor on the device, not an input's
    storage, inputs untouched. Returns (status, reason) or None."""
    import torch

    if type(out) is not torch.Tensor:
        return "rejected", f"run returned {type(out).__name__}, not a plain torch.Tensor"
    if out.device.type != device:
        return "incorrect", f"output on {out.device}, expected {device}"
    for name, t in tensors(inputs).items():
        if out.untyped_storage().data_ptr() == t.untyped_storage().data_ptr():
            return "rejected", f"output aliases input {name}"
        if not torch.equal(t, saved[name]):
            return "rejected", f"input {name} was modified"
    return None


def shaped_inputs(task: Task, w: Workload, device: str) -> dict[str, Any]:
    """Inputs with the shapes, dtypes and device of `task.make_inputs`, drawn by no kernel:
    floating tensors left uninitialized, integer ones zero. A compile worker calls the
    candidate on these while another worker times, and drawing gigabytes of random weights
    there took memory bandwidth from the timed calls (a baseline measured 3.5× slower)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    try:
        with FakeTensorMode():
            fake = task.make_inputs(w, 0, device)
    except Exception:
        return task.make_inputs(w, 0, device)  # drawn in a way fake tensors cannot follow
    inputs: dict[str, Any] = {}
    for name, value in fake.items():
        if isinstance(value, torch.Tensor):
            make = torch.empty if value.is_floating_point() else torch.zeros
            value = make(value.shape, dtype=value.dtype, device=device)
        inputs[name] = value
    return inputs
