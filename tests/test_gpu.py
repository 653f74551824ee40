"""The GPU tier: rendered rmsnorm candidates compile, pass and are timed on a CUDA device;
candidates that cheat in ways only a GPU shows are caught."""

import textwrap

import pytest

from ksearch.evaluation import Method, Status
from ksearch.harness import Harness, HarnessConfig
from tasks.rmsnorm import TASK
from tasks.rmsnorm.render import render

from test_rmsnorm import PLANS

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def harness():
    h = Harness(TASK, HarnessConfig(mode="gpu", suite="default", warmup=5, reps=20))
    yield h
    h.close()


@pytest.mark.parametrize("plan", PLANS[:6], ids=lambda p: p.key)
def test_rendered_plans_pass_and_are_timed(harness, plan):
    ev = harness.evaluate(render(plan))
    assert ev.status is Status.PASSED, ev.reason
    assert ev.method is Method.CUDA_GRAPH and ev.fingerprint["gpu"]
    for w in ev.workloads:
        assert w.latency_us > 0 and w.speedup > 0 and w.time_over_floor >= 1 / 2


def test_the_baseline_is_about_as_fast_as_itself(harness):
    ev = harness.evaluate(TASK.baseline.read_text())
    assert ev.status is Status.PASSED
    assert 0.7 < ev.score < 1.4


def test_moe_gemm_s_baseline_timed_against_itself_reads_alike_on_every_cell():
    # on an H100 the same graph read 6% faster as the candidate when timed after the
    # baseline on a copy of the weights, and 5% slower when the two took turns on that copy
    from tasks.moe_gemm import TASK as MOE

    h = Harness(MOE, HarnessConfig(mode="gpu", suite="cells", seeds=(0,), screen=0.0))
    try:
        ev = h.evaluate(MOE.baseline.read_text())
    finally:
        h.close()
    assert ev.status is Status.PASSED, ev.reason
    off = {w.name: round(w.speedup, 3) for w in ev.workloads if abs(w.speedup - 1) > 0.06}
    assert not off, off
    assert abs(ev.score - 1) < 0.015


BASELINE = TASK.baseline.read_text()


def _passes_after(harness, source):
    """Score `source`, then check that an honest candidate still passes after it."""
    ev = harness.evaluate(source, screen=False)
    assert harness.evaluate(BASELINE + "\n# after\n", screen=False).passed
    return ev


def test_the_side_stream_cheat_is_not_faster_than_its_honest_twin(harness):
    from ksearch.selftest import SIDE_STREAM

    honest = harness.evaluate(BASELINE, screen=False)
    cheat = harness.evaluate(BASELINE + SIDE_STREAM, screen=False)
    assert honest.passed
    if cheat.passed:
        h, c = honest.latencies(), cheat.latencies()
        assert min(c[n] / h[n] for n in h) > 0.8
    else:
        assert cheat.status in (Status.INCORRECT, Status.REJECTED), cheat.reason


def test_work_skipped_after_warm_up_is_caught_by_the_checks_during_timing(harness):
    # honest for the first three calls on each shape (the checks and the capture's
    # warm-up), then the last output again: a graph of nothing, timed as near-free
    lazy = BASELINE + textwrap.dedent("""
        _honest = run
        _seen = {}

        def run(x, weight, eps):
            calls, out = _seen.get(x.shape, (0, None))
            if calls >= 3:
                return out
            out = _honest(x, weight, eps)
            _seen[x.shape] = (calls + 1, out)
            return out
    """)
    ev = _passes_after(harness, lazy)
    # caught on the first workload timed; a later one may also be rejected as impossible
    assert ev.status in (Status.INCORRECT, Status.REJECTED), ev.reason
    assert "fresh inputs" in (ev.workloads[0].reason or ""), ev.workloads[0]


def test_a_gc_scan_finds_no_expected_output_on_the_gpu(harness):
    ev = harness.evaluate(
        "import gc, torch\n\ndef run(x, weight, eps):\n"
        "    for o in gc.get_objects():\n"
        "        if type(o) is torch.Tensor and o.shape == x.shape and o.dtype == torch.float32:\n"
        "            return o.to(x.dtype)\n"
        "    return torch.zeros_like(x)\n"
    )
    assert ev.status is Status.INCORRECT


def test_an_illegal_address_is_contained_and_the_device_checked(harness):
    before = harness.workers.health_checks
    ev = _passes_after(
        harness,
        "import torch, triton, triton.language as tl\n\n@triton.jit\n"
        "def _k(p):\n    tl.store(p + (1 << 40), 1.0)\n\n"
        "def run(x, weight, eps):\n    _k[(1,)](x)\n    torch.cuda.synchronize()\n    return x\n",
    )
    assert ev.status in (Status.RUNTIME_ERROR, Status.CRASHED), ev.reason
    assert harness.workers.health_checks == before + 1


def test_a_device_out_of_memory_is_a_runtime_error(harness):
    ev = _passes_after(
        harness,
        "import torch\n\ndef run(x, weight, eps):\n"
        "    return torch.empty(1 << 41, device='cuda')\n",
    )
    assert ev.status is Status.RUNTIME_ERROR and "out of memory" in ev.reason


def test_a_candidate_clearly_behind_is_screened_out(harness):
    from dataclasses import replace

    fast = TASK.render(TASK.space.root())
    h = Harness(TASK, replace(harness.config, screen=1.5))
    try:
        assert h.evaluate(fast).passed
        slow = (
            BASELINE + "\n_honest = run\n\ndef run(x, weight, eps):\n"
            "    torch.cuda._sleep(2_000_000)\n    return _honest(x, weight, eps)\n"
        )
        ev = h.evaluate(slow)
    finally:
        h.close()
    assert ev.passed and ev.score is not None
    untimed = [w for w in ev.workloads if w.latency_us is None]
    assert untimed and all("not timed" in w.reason for w in untimed)


def test_an_output_whose_tail_is_never_written_reads_poison_not_old_results(harness):
    ev = harness.evaluate(
        BASELINE
        + textwrap.dedent("""
        _honest = run

        def run(x, weight, eps):
            y = torch.empty_like(x)
            n = x.shape[1] - x.shape[1] % 64 - 1
            y[:, :n] = _honest(x, weight, eps)[:, :n]
            return y
    """)
    )
    assert ev.status is Status.INCORRECT, ev.reason


def test_the_flush_evicts_l2_and_leaves_it_clean():
    """A 32 MB read straight after itself hits L2; after the flush it comes from DRAM, and
    no slower than after a zero-fill of the same size (whose dirty lines it must write back)."""
    import torch

    from ksearch.timing import FLUSH_BYTES, l2_flusher, time_reps

    data = torch.ones(32 << 20, dtype=torch.int8, device="cuda").view(torch.int64)
    sink = torch.empty((), dtype=torch.int64, device="cuda")
    dirty = torch.empty(FLUSH_BYTES, dtype=torch.int8, device="cuda")

    def read():
        torch.sum(data, dim=0, out=sink)

    kw = {"warmup": 3, "reps": 50, "sync_each": False}
    warm = time_reps(read, flush=lambda: None, **kw)[0]
    flushed = time_reps(read, flush=l2_flusher(), **kw)[0]
    after_zero_fill = time_reps(read, flush=dirty.zero_, **kw)[0]
    assert warm < 0.8 * flushed, (warm, flushed)
    assert flushed < after_zero_fill, (flushed, after_zero_fill)
