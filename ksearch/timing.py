"""Timing on the GPU: CUDA-graph capture, event-timed calls with L2 flushed, ceilings.

Runs in the worker process; the orchestrator never imports torch for timing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: bytes read before every timed call: five times an H100's 50 MB L2
FLUSH_BYTES = 256 << 20
#: GPU clock cycles (about 100 µs) held per queued graph replay before timing starts
SLEEP_CYCLES_PER_REP = 200_000


def l2_flusher() -> Callable[[], Any]:
    """A call that evicts L2 by reading FLUSH_BYTES, leaving it full of clean lines.

    Zero-filling a buffer (as triton.testing does) leaves L2 full of dirty lines, which
    the timed call then writes back as its own reads evict them: on an H100 that added
    5-10 µs to every memory-bound call (a third of a 25 µs MoE decode step).
    """
    import torch

    buf = torch.zeros(FLUSH_BYTES // 8, dtype=torch.int64, device="cuda")
    sink = torch.empty((), dtype=torch.int64, device="cuda")
    return lambda: torch.sum(buf, dim=0, out=sink)


def capture(fn: Callable[..., Any], inputs: dict[str, Any]) -> tuple[Any, Any] | None:
    """A CUDA graph of one call `fn(**inputs)` and its (static) output, or None if the call
    cannot be captured (host synchronization, unjoined streams, allocation outside the pool)."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn(**inputs)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            out = fn(**inputs)
        torch.cuda.synchronize()
    except Exception:
        try:
            torch.cuda.synchronize()
        except Exception:
            raise  # the context is broken: the worker must go
        return None
    return graph, out


def replayer(captured: tuple[Any, Any]) -> Callable[[], Any]:
    """A call that replays a graph from `capture` and returns its static output."""
    graph, static = captured

    def replay() -> Any:
        graph.replay()
        return static

    return replay


@dataclass(frozen=True, slots=True)
class Timed:
    """One call to time: graph replays (`sync_each=False`) or eager calls, and hooks that run
    outside the timed span before call i and after it, with its output."""

    call: Callable[[], Any]
    sync_each: bool
    before: Callable[[int], None] | None = None
    after: Callable[[int, Any], None] | None = None


def schedule(calls: int, reps: int, rounds: int) -> list[tuple[int, range]]:
    """The blocks of an interleaved timing, in order: (which call, its call indices).

    The reps of every call are split into `rounds` runs of consecutive indices; each round
    times every call once, and the call that goes first rotates from round to round, so no
    call always follows the same one or always comes first after warm-up."""
    if calls < 1 or reps < 1 or rounds < 1:
        raise ValueError(
            f"need calls, reps and rounds of at least 1, not {calls}, {reps}, {rounds}"
        )
    rounds = min(rounds, reps)
    cuts = [reps * r // rounds for r in range(rounds + 1)]
    return [
        ((r + j) % calls, range(cuts[r], cuts[r + 1])) for r in range(rounds) for j in range(calls)
    ]


def time_interleaved(
    timed: Sequence[Timed], *, warmup: int, reps: int, rounds: int, flush: Callable[[], Any]
) -> list[tuple[float, float]]:
    """Median time in µs of each call and its relative spread (IQR / median), the calls timed
    in alternating rounds (`schedule`), so that a drift of the device over the timing (clocks,
    temperature, what ran before) weighs on all of them alike.

    `flush()` evicts L2 before every call. Graph replays are queued back to back behind a
    GPU sleep, so launch latency is not timed; a graph holds all of its streams' work, so the
    end event covers it. Eager calls synchronize the device after the flush and before the
    end event, so work launched on other streams is counted and cannot hide under the flush.
    """
    import torch

    for t in timed:
        for _ in range(warmup):
            t.call()
    torch.cuda.synchronize()

    def span() -> tuple[Any, Any]:
        return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    events = [[span() for _ in range(reps)] for _ in timed]
    for which, indices in schedule(len(timed), reps, rounds):
        t = timed[which]
        if not t.sync_each:
            # hold the GPU while the host queues the block, so no call waits for its launch
            torch.cuda._sleep(len(indices) * SLEEP_CYCLES_PER_REP)
        for i in indices:
            if t.before is not None:
                t.before(i)
            flush()
            if t.sync_each:
                # nothing may run under the flush: work on another stream would hide there
                torch.cuda.synchronize()
            start, end = events[which][i]
            start.record()
            out = t.call()
            if t.sync_each:
                torch.cuda.synchronize()
            end.record()
            if t.after is not None:
                t.after(i, out)
    torch.cuda.synchronize()
    return [_median_spread([s.elapsed_time(e) * 1e3 for s, e in pairs]) for pairs in events]


def _median_spread(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    med = times[len(times) // 2]
    iqr = times[(3 * len(times)) // 4] - times[len(times) // 4]
    return med, iqr / med if med > 0 else 0.0


def time_reps(
    call: Callable[[], Any],
    *,
    warmup: int,
    reps: int,
    flush: Callable[[], Any],
    sync_each: bool,
    before: Callable[[int], None] | None = None,
    after: Callable[[int, Any], None] | None = None,
) -> tuple[float, float]:
    """Median time in µs of `call()` and its relative spread, timed alone
    (`time_interleaved` with one call and one round)."""
    only = Timed(call, sync_each, before, after)
    return time_interleaved([only], warmup=warmup, reps=reps, rounds=1, flush=flush)[0]


def measure_ceilings(flush: Callable[[], Any]) -> dict[str, float]:
    """Copy bandwidth (bytes/s, read + write) and bf16 matmul FLOP/s of this GPU."""
    import torch

    a = torch.empty(512 * 1024 * 1024, dtype=torch.int8, device="cuda")
    b = torch.empty_like(a)
    m = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    copy = time_reps(lambda: b.copy_(a), warmup=3, reps=10, flush=flush, sync_each=False)[0]
    mm = time_reps(lambda: m @ m, warmup=3, reps=10, flush=flush, sync_each=False)[0]
    return {"bytes": 2 * a.numel() / (copy * 1e-6), "flops": 2 * 8192**3 / (mm * 1e-6)}
