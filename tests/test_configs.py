"""Every config group option composes and builds typed settings."""

import itertools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

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


def leaves(node: dict, prefix: str = ""):
    """(dotted key, value) of every setting in a nested group."""
    for key, value in node.items():
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def moved(value):
    """Another value of the same type, so that a setting left at its default is caught."""
    if isinstance(value, bool) or value is None or isinstance(value, str | list):
        return value
    return value + (1 if isinstance(value, int) else 0.25)


def moved_group(node: dict) -> dict:
    return {k: moved_group(v) if isinstance(v, dict) else moved(v) for k, v in node.items()}


@pytest.mark.parametrize(
    ("group", "option", "builder"),
    [("search", s, "search") for s in options("search")]
    + [("worldmodel", "builtin", "builtin"), ("worldmodel", "openai", "llm")]
    + [("scorer", "auto", "scorer")],
)
def test_every_setting_of_a_group_reaches_its_dataclass(group, option, builder):
    from worldmodel.builtin import BuiltinKnobs
    from worldmodel.llm_model import LlmKnobs

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", [f"{group}={option}"])
    node = moved_group(OmegaConf.to_container(cfg[group], resolve=True))
    built = {
        "search": lambda: C.build(C.SearchConfig, node, seed=0),
        "builtin": lambda: C.build(BuiltinKnobs, node, skip=("name",)),
        "llm": lambda: C.build(LlmKnobs, node, skip=("name",)),
        "scorer": lambda: C.build(C.HarnessConfig, node, skip=("mode", "suite"), mode="gpu"),
    }[builder]()
    skipped = {"name", "mode", "suite"}
    checked = 0
    for dotted, value in leaves(node):
        if dotted in skipped:
            continue
        got = built
        for part in dotted.split("."):
            got = getattr(got, part)
        assert got == (tuple(value) if isinstance(value, list) else value), dotted
        checked += 1
    assert checked >= 4


def test_a_setting_without_a_field_is_refused_by_name():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", ["+search.mcts.c_pcut=2"])
    with pytest.raises(C.ConfigError, match=r"'c_pcut' for MctsKnobs; it has c_puct"):
        C.search_config(cfg)
