"""MCTS with the built-in world model against random and greedy search on known landscapes.

The landscapes (tests/landscape.py) have a known optimum behind a non-monotonic step;
the world model starts from weak default priors that know nothing of them. The count
is the number of evaluations until the optimum is first measured (budget + 1 if never),
with the shipped default settings of conf/.
"""

import statistics

from search_helpers import evaluations_to_optimum

SEEDS = range(12)
BUDGET = 150


def test_mcts_reaches_the_optimum_in_fewer_evaluations_than_random_and_greedy():
    counts = {
        s: [evaluations_to_optimum(s, seed, BUDGET) for seed in SEEDS]
        for s in ("mcts", "greedy", "random")
    }
    medians = {s: statistics.median(c) for s, c in counts.items()}
    print("evaluations to the optimum:", counts, "medians:", medians)
    assert medians["mcts"] < medians["greedy"], counts
    assert medians["mcts"] < medians["random"], counts
