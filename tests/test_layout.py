"""Dependencies point one way: the engine core imports no torch, triton, openai, sqlite, Hydra."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ["ksearch/plan.py", "ksearch/tree.py", "ksearch/mcts.py", "ksearch/evaluation.py"]
FORBIDDEN = {
    "torch",
    "triton",
    "openai",
    "sqlite3",
    "sqlite_utils",
    "hydra",
    "omegaconf",
    "tasks",
    "worldmodel",
}


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("module", CORE)
def test_the_core_is_pure(module):
    assert not imports(ROOT / module) & FORBIDDEN


def test_the_engine_knows_no_task_and_no_world_model():
    for path in (ROOT / "ksearch").glob("*.py"):
        top = {i for i in imports(path) if i in ("worldmodel", "tasks")}
        # the factory at the Hydra edge, and the loader that finds tasks by name
        allowed = {"config.py": {"worldmodel"}, "task.py": {"tasks"}}
        assert top <= allowed.get(path.name, set()), path.name


def test_modules_stay_small():
    for path in [
        *ROOT.glob("ksearch/*.py"),
        *ROOT.glob("worldmodel/*.py"),
        *ROOT.glob("tasks/*/*.py"),
    ]:
        assert len(path.read_text().splitlines()) <= 500, path
