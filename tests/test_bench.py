"""`ksearch.bench` with repeated runs: per-workload medians, failures kept, and the command."""

import json

import pytest

from ksearch.bench import median_evaluation
from ksearch.evaluation import Evaluation, Method, Status, WorkloadResult
from ksearch.harness import Harness, HarnessConfig
from tasks.rmsnorm import TASK
from tasks.rmsnorm.render import render

from test_cli import ksearch


def run(times, speedups, status=Status.PASSED, errors=(1e-3, 1e-3)):
    rows = tuple(
        WorkloadResult(
            name=f"w{i}",
            status=status if i == 1 else Status.PASSED,
            reason="wrong" if status is not Status.PASSED and i == 1 else None,
            latency_us=t,
            speedup=s,
            time_over_floor=t / 10,
            baseline_us=t * s,
            max_error=e,
            method="cuda_graph",
        )
        for i, (t, s, e) in enumerate(zip(times, speedups, errors, strict=True))
    )
    score = None
    if status is Status.PASSED:
        score = (speedups[0] * speedups[1]) ** 0.5
    return Evaluation(status, "abc", Method.CUDA_GRAPH, rows, None, score, {"gpu": "H100"})


def test_repeated_runs_give_each_workload_the_median_of_its_numbers():
    runs = [run((10, 20), (2.0, 1.0)), run((12, 30), (1.0, 1.5)), run((20, 22), (1.6, 1.2))]
    ev = median_evaluation(runs)
    assert ev.status is Status.PASSED
    assert [w.latency_us for w in ev.workloads] == [12, 22]
    assert [w.speedup for w in ev.workloads] == [1.6, 1.2]
    assert [w.time_over_floor for w in ev.workloads] == [1.2, 2.2]
    assert ev.score == pytest.approx((1.6 * 1.2) ** 0.5)  # over the medians, not any run's


def test_the_largest_error_of_the_runs_is_kept():
    runs = [run((10, 20), (1, 1), errors=(1e-3, 5e-2)), run((10, 20), (1, 1), errors=(2e-3, 0))]
    assert [w.max_error for w in median_evaluation(runs).workloads] == [2e-3, 5e-2]


def test_a_run_that_failed_is_what_the_entry_shows():
    bad = run((10, 20), (1, 1), status=Status.INCORRECT)
    runs = [run((10, 20), (2, 2)), bad, run((10, 20), (2, 2))]
    assert median_evaluation(runs) is bad


def test_a_single_run_is_shown_as_it_is():
    only = run((10, 20), (2, 2))
    assert median_evaluation([only]) is only


def test_bench_repeats_every_entry_on_other_inputs_and_lists_each_run(tmp_path):
    cand = tmp_path / "start.py"
    cand.write_text(render(TASK.space.root()))
    out = tmp_path / "bench.json"
    done = ksearch(
        "task=rmsnorm", f"candidate=[{cand}]", "repeat=2", "scorer=interpret", "peers=false",
        "scorer.seeds=[0]", f"out={out}", module="ksearch.bench",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "run 2 of 2: timing baseline" in done.stderr and "median of 2 runs" in done.stderr
    result = json.loads(out.read_text())
    assert result["repeat"] == 2
    start = result["entries"]["start"]
    assert start["status"] == "passed" and len(start["speedup_runs"]) == 2
    assert "start: speedup in each run" in done.stderr


def test_another_draw_checks_and_times_on_other_inputs():
    jobs = []
    h = Harness(TASK, HarnessConfig(mode="interpret", seeds=(0,)))
    real = h.workers.run

    def spy(lane, job, listener):
        jobs.append(job)
        return real(lane, job, listener)

    h.workers.run = spy
    source = render(TASK.space.root())
    try:
        for draw in (0, 1, 0):
            assert h.evaluate(source, screen=False, draw=draw).passed
    finally:
        h.close()
    seeds = [(job["seeds"], job["timing_seed"]) for job in jobs if job.get("seeds")]
    assert len(seeds) == 3 and seeds[0] == seeds[2]
    assert seeds[1][1] != seeds[0][1]
    assert all(a != b for a, b in zip(seeds[0][0].values(), seeds[1][0].values(), strict=True))


def test_bench_refuses_a_repeat_below_one(tmp_path):
    cand = tmp_path / "start.py"
    cand.write_text(render(TASK.space.root()))
    done = ksearch("task=rmsnorm", f"candidate=[{cand}]", "repeat=0", module="ksearch.bench")
    assert done.returncode == 2 and "repeat must be at least 1, not 0" in done.stderr
