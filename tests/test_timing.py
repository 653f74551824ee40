"""The order in which the GPU times a candidate and its baseline, and the timing settings'
checks (the timing itself runs in the GPU tier)."""

import pytest

from ksearch.harness import Harness, HarnessConfig
from ksearch.timing import schedule
from tasks.rmsnorm import TASK


def test_every_call_is_timed_at_every_index_once_in_order():
    blocks = schedule(2, 50, 5)
    for which in (0, 1):
        indices = [i for w, block in blocks if w == which for i in block]
        assert indices == list(range(50))


def test_the_call_that_goes_first_alternates_from_round_to_round():
    blocks = schedule(2, 50, 5)
    assert [w for w, _ in blocks] == [0, 1, 1, 0, 0, 1, 1, 0, 0, 1]
    rounds = [blocks[j : j + 2] for j in range(0, 10, 2)]
    for (_, a), (_, b) in rounds:
        assert a == b and len(a) == 10  # both calls of a round take the same indices


def test_three_calls_rotate_and_uneven_reps_are_spread():
    blocks = schedule(3, 7, 3)
    assert [w for w, _ in blocks] == [0, 1, 2, 1, 2, 0, 2, 0, 1]
    assert [len(b) for w, b in blocks if w == 0] == [2, 2, 3]


def test_more_rounds_than_reps_time_one_call_per_round():
    blocks = schedule(2, 3, 10)
    assert [(w, list(b)) for w, b in blocks] == [
        (0, [0]), (1, [0]), (1, [1]), (0, [1]), (0, [2]), (1, [2]),
    ]  # fmt: skip


def test_one_call_in_one_round_is_timed_as_before():
    assert schedule(1, 20, 1) == [(0, range(20))]


@pytest.mark.parametrize(("calls", "reps", "rounds"), [(0, 5, 1), (1, 0, 1), (2, 5, 0)])
def test_a_schedule_with_nothing_to_time_is_refused(calls, reps, rounds):
    with pytest.raises(ValueError, match="at least 1"):
        schedule(calls, reps, rounds)


@pytest.mark.parametrize(
    "settings", [{"reps": 0}, {"rounds": 0}, {"warmup": -1}], ids=["reps", "rounds", "warmup"]
)
def test_timing_settings_that_cannot_time_are_refused_by_name(settings):
    with pytest.raises(ValueError, match=r"scorer\.reps and scorer\.rounds must be at least 1"):
        Harness(TASK, HarnessConfig(mode="interpret", **settings))
