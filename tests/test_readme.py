"""The README stays true: its two commands exist, and its command lines run."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def blocks() -> list[str]:
    return re.findall(r"```\n(.*?)```", README, re.S)


def test_exactly_two_commands_each_a_make_target():
    commands = [line.split("#")[0].strip() for line in blocks()[0].splitlines()]
    assert commands == ["make search", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    for target in ("search", "test"):
        assert re.search(rf"^{target}:", makefile, re.M)
    assert "make test" in (ROOT / ".ci/run").read_text()


@pytest.mark.interpret
def test_the_usage_lines_run(tmp_path):
    lines = [line.split("  #")[0].strip() for line in blocks()[1].splitlines()]
    search, sweep, evaluate, replay, bench, study = lines
    run_dir = tmp_path / "run"
    common = ["scorer=interpret", "scorer.seeds=[0]", "display=log", "search.finalists=1"]

    def run(line: str, *extra: str) -> subprocess.CompletedProcess:
        args = shlex.split(re.sub(r"\[[^\]]*\]", "", line))  # optional parts left out
        assert args[:2] == ["python", "-m"]
        out = subprocess.run(
            [sys.executable, *args[1:], *extra],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr
        return out

    run(search.replace("search.budget=30", "search.budget=2"), *common, f"hydra.run.dir={run_dir}")
    assert sweep.split()[:4] == ["python", "-m", "ksearch", "-m"]
    run(evaluate.replace("runs/.../winner.py", str(run_dir / "winner.py")), *common[:2])
    out = run(replay.replace("runs/.../search.db", str(run_dir / "search.db")), "--step", "1")
    assert "1 evaluations" in out.stdout
    out = run(bench.replace("runs/.../winner.py", str(run_dir / "winner.py")), *common[:2])
    entries = json.loads(out.stdout.strip().splitlines()[-1])["entries"]
    assert set(entries) == {"winner", "baseline"}  # no peer imports on a CPU machine
    assert entries["winner"]["status"] == "passed"
    out = run(study, "study.seeds=1", "study.strategies=[mcts]", "search.budget=5")
    assert json.loads(out.stdout.strip().splitlines()[-1])["strategies"]["mcts"]["final"]
