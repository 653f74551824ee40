"""Running searches over synthetic landscapes with the shipped default settings."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir

from ksearch import config as C
from ksearch.loop import Search
from ksearch.store import Store
from worldmodel.builtin import BuiltinKnobs, BuiltinWorldModel

from landscape import SPACE, WORKLOADS, Landscape, LandscapeScorer, LandscapeTask

CONF = Path(__file__).resolve().parent.parent / "conf"


def defaults(strategy: str, seed: int, budget: int, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config", [f"search={strategy}", f"seed={seed}", f"search.budget={budget}", *overrides]
        )
    w = cfg.worldmodel
    knobs = BuiltinKnobs(
        temperature=w.temperature,
        optimism=w.optimism,
        default_std=w.default_std,
        context_std=w.context_std,
    )
    return C.search_config(cfg), knobs


def search(
    strategy: str,
    seed: int,
    budget: int,
    *,
    store: Store | None = None,
    workers: int = 1,
    scorer: LandscapeScorer | None = None,
    overrides: tuple[str, ...] = (),
):
    """Run one search on landscape `seed`; returns (tree, landscape, scorer)."""
    config, knobs = defaults(strategy, seed, budget, *overrides)
    landscape = Landscape.draw(seed)
    scorer = scorer or LandscapeScorer(landscape)
    wm = BuiltinWorldModel(LandscapeTask(), WORKLOADS, knobs=knobs)
    engine = Search(
        root=SPACE.root(),
        world_model=wm,
        scorer=scorer,
        store=store or Store(None),
        config=config,
        workers=workers,
    )
    return engine.run(), landscape, scorer


def evaluations_to_optimum(strategy: str, seed: int, budget: int) -> int:
    """The evaluation count at which the optimum was first measured, or budget + 1."""
    tree, landscape, _ = search(strategy, seed, budget)
    hits = [n.step for n in tree.nodes if n.value is not None and landscape.is_optimal(n.plan)]
    return min(hits) if hits else budget + 1
