"""Landscapes and the study command: scores from a landscape, perturbed landscapes, and a
study of strategies end to end on rmsnorm with a landscape of this test's own."""

import itertools
import json
import math
from pathlib import Path

import pytest

from ksearch.landscape import LandscapeScorer, load, model, perturbed
from ksearch.study import evals_to
from tasks.rmsnorm import TASK

from study_landscapes import rows_landscape
from test_cli import ksearch

TESTS = Path(__file__).resolve().parent

SMOKE = TASK.suites["smoke"]


def test_a_landscape_scores_each_workload_as_its_function_says():
    scorer = LandscapeScorer(TASK, rows_landscape, SMOKE, noise=0.0)
    plan = TASK.space.root().with_value("ROWS", 4, ("long",))
    ev = scorer.submit(TASK.render(plan)).result()
    long = {w.name for w in SMOKE if w["N"] >= 2048}
    assert ev.passed and ev.method.value == "estimate"
    for row in ev.workloads:
        assert row.speedup == pytest.approx(4.0 if row.name in long else 1.0)
    assert ev.score == pytest.approx(4.0 ** (len(long) / len(SMOKE)))
    assert scorer.true_score(plan) == pytest.approx(ev.score)


def test_noise_is_log_normal_per_candidate_and_workload_and_repeatable():
    root = TASK.render(TASK.space.root())
    a = LandscapeScorer(TASK, rows_landscape, SMOKE, noise=0.05, seed=1)
    b = LandscapeScorer(TASK, rows_landscape, SMOKE, noise=0.05, seed=2)
    first, again = a.submit(root).result(), a.submit(root).result()
    assert [r.latency_us for r in first.workloads] == [r.latency_us for r in again.workloads]
    logs = [math.log(r.latency_us / 100.0) for r in first.workloads]
    assert len(set(logs)) == len(logs) and all(abs(x) < 0.25 for x in logs)  # 5 sigma
    other = b.submit(root).result()
    assert [r.latency_us for r in other.workloads] != [r.latency_us for r in first.workloads]


def test_code_without_a_plan_header_fails_to_compile_on_a_landscape():
    scorer = LandscapeScorer(TASK, rows_landscape, SMOKE)
    ev = scorer.submit(TASK.baseline.read_text()).result()
    assert ev.status.value == "compile_error" and "no plan header" in ev.reason


def test_a_perturbed_landscape_differs_from_the_model_by_draw_within_its_spread():
    plan = TASK.space.root().table()
    w = SMOKE[-1]
    base = model(TASK)(plan, w.params)
    one, two = perturbed(TASK, 1)(plan, w.params), perturbed(TASK, 2)(plan, w.params)
    assert one == perturbed(TASK, 1)(plan, w.params)  # the same draw, the same landscape
    assert len({base, one, two}) == 3
    # seven settings in the row, each exp(N(0, 0.02)): 6 sigma of their sum is under 0.5
    assert all(abs(math.log(t / base)) < 0.5 for t in (one, two))
    assert perturbed(TASK, 1)(None, w.params) == model(TASK)(None, w.params)  # the baseline


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("flat", "use model, perturbed:DRAW or MODULE:FUNCTION"),
        ("no_such_module:f", "cannot be loaded"),
        ("study_landscapes:NOT_HERE", "cannot be loaded"),
        ("study_landscapes:NOT_CALLABLE", "not callable"),
    ],
)
def test_a_landscape_that_cannot_be_loaded_is_refused_with_a_reason(spec, words):
    with pytest.raises(ValueError, match=words):
        load(spec, TASK)


def test_evaluations_to_a_target_count_from_one_and_never_is_budget_plus_one():
    curve = [1.0, 1.2, 1.2, 1.5]
    assert evals_to(curve, 1.2, 4) == 2
    assert evals_to(curve, 1.5, 4) == 4
    assert evals_to(curve, 1.6, 4) == 5


def test_a_study_compares_strategies_on_a_landscape_and_ends_with_json(tmp_path):
    out = ksearch(
        "task=rmsnorm",
        "study.strategies=[mcts,random,tpe]",
        "study.seeds=2",
        "study.suite=smoke",
        "study.landscape=study_landscapes:rows_landscape",
        "search.budget=12",
        f"study.out={tmp_path / 'study.json'}",
        module="ksearch.study",
        cwd=TESTS,  # where study_landscapes is found
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == json.loads((tmp_path / "study.json").read_text())
    # rmsnorm's starting plan has ROWS=1 everywhere: every workload at the baseline's time
    assert result["target"] == pytest.approx(1.0)
    assert set(result["strategies"]) == {"mcts", "random", "tpe"}
    assert result["strategies"]["tpe"]["infeasible_draws"][0] > 0  # hoisted weights
    for r in result["strategies"].values():
        assert len(r["curve"]) == len(r["final"]) == len(r["evals_to_100"]) == 2
        assert all(len(c) == 12 for c in r["curve"])
        assert all(c[0] == pytest.approx(1.0) for c in r["curve"])  # the root, measured first
        assert all(b >= a for c in r["curve"] for a, b in itertools.pairwise(c))
        assert r["evals_to_100"] == [1, 1]
        assert all(1.0 <= f <= 16.0 for f in r["final"])  # ROWS tops out at 16
    assert "true score, median over seeds" in out.stderr


def test_a_study_with_bad_settings_says_what_is_wrong():
    out = ksearch("task=rmsnorm", "study.root=tuned", module="ksearch.study")
    assert out.returncode == 2 and "study.root must be start or untuned" in out.stderr
    out = ksearch("task=rmsnorm", "study.landscape=flat", module="ksearch.study")
    assert out.returncode == 2 and "unknown landscape 'flat'" in out.stderr


def test_a_study_can_aim_at_the_truly_fastest_plan_where_every_row_can_be_tried():
    out = ksearch(
        "task=rmsnorm",
        "study.strategies=[greedy]",
        "study.seeds=1",
        "study.suite=smoke",
        "study.target=best",
        "study.landscape=study_landscapes:rows_landscape",
        "search.budget=6",
        module="ksearch.study",
        cwd=TESTS,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["target"] == pytest.approx(16.0)  # ROWS=16 in both regimes
    out = ksearch("task=moe_gemm", "study.target=best", module="ksearch.study")
    assert out.returncode == 2 and "use study.target=start" in out.stderr
