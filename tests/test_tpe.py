"""search=tpe: Optuna's TPE through the search loop, on a landscape of this test's own."""

import pytest

from ksearch.landscape import LandscapeScorer
from ksearch.loop import Search, SearchConfig
from ksearch.store import Store
from ksearch.tpe import TPE, TpeSampler
from ksearch.tree import NodeStatus
from tasks.rmsnorm import TASK
from worldmodel.builtin import BuiltinKnobs, BuiltinWorldModel

from study_landscapes import rows_landscape

SMOKE = TASK.suites["smoke"]


def tpe_search(seed: int, budget: int = 20) -> Search:
    root = TASK.space.root()
    config = SearchConfig(strategy="tpe", budget=budget, seed=seed)
    engine = Search(
        root=root,
        world_model=BuiltinWorldModel(TASK, SMOKE, knobs=BuiltinKnobs()),
        scorer=LandscapeScorer(TASK, rows_landscape, SMOKE, noise=0.0),
        store=Store(None),
        config=config,
        sampler=TpeSampler(TASK, root, seed=seed),
    )
    engine.run()
    return engine


def test_tpe_spends_its_budget_on_distinct_feasible_plans_under_the_root():
    engine = tpe_search(0)
    tree, sampler = engine.tree, engine.sampler
    measured = [n for n in tree.nodes if n.status is NodeStatus.PASSED]
    assert len(measured) == 20
    assert len({n.plan for n in measured}) == 20
    assert all(TASK.infeasible(n.plan) is None for n in tree.nodes)
    assert all(n.parent == 0 and n.action.param == TPE for n in tree.nodes[1:])
    # rmsnorm forbids a hoisted weight outside persistent one-pass rows: drawn, told, not run
    assert sampler is not None and sampler.infeasible > 0
    assert sampler.repeats >= 1  # trial 0 is the root, already measured
    # more rows per program is faster on this landscape: TPE finds some of it in 20 plans
    assert max(n.value for n in measured) > tree.root.value + 0.5


def test_a_seed_determines_the_plans_tpe_draws():
    a, b, c = (tpe_search(s, budget=8).tree for s in (3, 3, 4))
    assert [n.plan for n in a.nodes] == [n.plan for n in b.nodes]
    assert [n.plan for n in a.nodes] != [n.plan for n in c.nodes]


def test_only_search_tpe_takes_a_sampler():
    with pytest.raises(ValueError, match="search=tpe"):
        Search(
            root=TASK.space.root(),
            world_model=BuiltinWorldModel(TASK, SMOKE, knobs=BuiltinKnobs()),
            scorer=LandscapeScorer(TASK, rows_landscape, SMOKE),
            store=Store(None),
            config=SearchConfig(strategy="tpe"),
        )
