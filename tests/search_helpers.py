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
    return C.search_config(cfg), C.build(BuiltinKnobs, cfg.worldmodel, skip=("name",))


def search(
    strategy: str,
    seed: int,
    budget: int,
    *,
    store: Store | None = None,
    workers: int = 1,
    scorer: LandscapeScorer | None = None,
    overrides: tuple[str, ...] = (),
    on_progress=None,
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
        on_progress=on_progress,
    )
    return engine.run(), landscape, scorer


class _Found(Exception):
    """Ends a search once it has measured the optimum, at evaluation `step`."""

    def __init__(self, step: int) -> None:
        self.step = step


def evaluations_to_optimum(strategy: str, seed: int, budget: int) -> int:
    """The evaluation count at which the optimum was first measured, or budget + 1; the
    search stops there, since nothing after it changes the count."""
    landscape = Landscape.draw(seed)
    checked: set[int] = set()

    def watch(progress) -> None:
        for n in progress.tree.nodes:
            if n.value is not None and n.id not in checked:
                checked.add(n.id)
                if landscape.is_optimal(n.plan):
                    raise _Found(n.step)

    try:
        search(strategy, seed, budget, on_progress=watch)
    except _Found as found:
        return found.step
    return budget + 1
