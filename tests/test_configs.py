"""Every config group option composes and builds typed settings."""

import itertools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ksearch import config as C

CONF = Path(__file__).resolve().parent.parent / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize(
    ("task", "search", "worldmodel", "scorer"),
    list(
        itertools.product(
            options("task"), options("search"), options("worldmodel"), options("scorer")
        )
    ),
)
def test_every_combination_composes(task, search, worldmodel, scorer):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            [f"task={task}", f"search={search}", f"worldmodel={worldmodel}", f"scorer={scorer}"],
        )
    assert C.search_config(cfg).strategy == search
    assert C.task(cfg).name == task
    mode = "interpret" if scorer != "gpu" else "gpu"
    assert C.harness_config(cfg, mode).suite == ("default" if mode == "gpu" else "smoke")


def test_evaluate_config_composes():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("evaluate", ["candidate=x.py"])
    assert cfg.candidate == "x.py" and cfg.task.name == "rmsnorm"


def test_only_budget_display_and_timeouts_may_change_on_resume():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        a = compose("config", ["search.budget=10", "scorer.run_timeout=5", "display=none"])
        b = compose(
            "config",
            ["search.budget=99", "scorer.run_timeout=50", "display=log", "search.time_limit=60"],
        )
        c = compose("config", ["search.mcts.c_puct=2"])
    C.check_resume(C.identity(a, "interpret"), C.identity(b, "interpret"))
    stored_with_time_limit = C.identity(a, "interpret")
    stored_with_time_limit["search"]["time_limit"] = 420.0  # stored before it was mutable
    C.check_resume(stored_with_time_limit, C.identity(b, "interpret"))
    with pytest.raises(C.ConfigError, match=r"search\.mcts\.c_puct"):
        C.check_resume(C.identity(a, "interpret"), C.identity(c, "interpret"))
    with pytest.raises(C.ConfigError, match=r"scorer\.mode"):
        C.check_resume(C.identity(a, "interpret"), C.identity(a, "gpu"))
