"""The command line end to end, under the Triton interpreter: search, resume, sweep, errors."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ksearch.plan import Plan
from ksearch.store import Store
from tasks.moe_gemm import TASK

ROOT = Path(__file__).resolve().parent.parent
#: the project first, then whatever the environment adds (e.g. packages outside site-packages)
PYTHONPATH = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
pytestmark = pytest.mark.interpret

#: one input seed per workload: these tests check the command line, the harness tests the seeds
FAST = [
    "task=rmsnorm", "scorer=interpret", "scorer.seeds=[0]", "display=log", "search.finalists=1",
]  # fmt: skip


def ksearch(*args: str, module: str = "ksearch", cwd: Path = ROOT, **kw):
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


def tree_of(run_dir: Path) -> list[tuple]:
    out = ksearch(str(run_dir / "search.db"), "--json", module="ksearch.replay")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    return [(n["id"], n["parent"], n["status"], n["candidate"]) for n in data["nodes"]]


def count(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("select count(*) from evaluations").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_search_writes_winner_summary_and_the_same_seed_gives_the_same_tree(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        out = ksearch(*FAST, "search.budget=5", "seed=3", f"hydra.run.dir={d}")
        assert out.returncode == 0, out.stderr
    assert tree_of(a) == tree_of(b)
    summary_text = (a / "summary.json").read_text()
    again = ksearch(*FAST, "search.budget=5", "seed=3", f"hydra.run.dir={a}")
    assert again.returncode == 0, again.stderr
    assert "re-measured when this run last ended; kept" in again.stderr
    assert (a / "summary.json").read_text() == summary_text
    with sqlite3.connect(a / "search.db") as conn:
        assert conn.execute("select max(round) from finals").fetchone()[0] == 1
    summary = json.loads(summary_text)
    assert summary["evaluations"] == 5 and summary["winner"]["method"] == "estimate"
    winner = (a / "winner.py").read_text()
    assert winner.startswith("# ksearch-plan: ")
    check = ksearch(
        "task=rmsnorm",
        "scorer=interpret",
        f"candidate={a / 'winner.py'}",
        module="ksearch.evaluate",
    )
    assert json.loads(check.stdout.strip().splitlines()[-1])["status"] == "passed"


def test_a_killed_run_resumes_without_losing_or_repeating_work(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    args = [*FAST, "search.budget=8", "seed=1"]
    assert ksearch(*args, f"hydra.run.dir={whole}").returncode == 0
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ksearch", *args, f"hydra.run.dir={killed}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while count(killed / "search.db") < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = count(killed / "search.db")
    assert 3 <= before < 8
    out = ksearch(*args, f"hydra.run.dir={killed}")
    assert out.returncode == 0, out.stderr
    assert "resuming" in out.stderr
    with sqlite3.connect(killed / "search.db") as conn:
        rows = conn.execute("select candidate, number from evaluations").fetchall()
    assert len(rows) == 8 == len({c for c, _ in rows})  # nothing lost, nothing twice
    assert tree_of(killed) == tree_of(whole)


def test_a_multirun_makes_one_database_per_job(tmp_path):
    out = ksearch(
        "-m",
        *FAST,
        "search.budget=2",
        "search.mcts.c_puct=0.5,1.0",
        "seed=0,1",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert out.returncode == 0, out.stderr
    dbs = sorted(tmp_path.glob("*/search.db"))
    assert len(dbs) == 4
    configs = set()
    for db in dbs:
        assert count(db) == 2
        with sqlite3.connect(db) as conn:
            configs.add(conn.execute("select config from run").fetchone()[0])
    assert len(configs) == 4


def test_another_config_in_the_same_run_directory_is_refused(tmp_path):
    assert ksearch(*FAST, "search.budget=1", f"hydra.run.dir={tmp_path}").returncode == 0
    before = (tmp_path / "search.db").read_bytes()
    out = ksearch(*FAST, "search.budget=1", "search.mcts.c_puct=3", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 2
    assert "another configuration" in out.stderr and "search.mcts.c_puct" in out.stderr
    assert count(tmp_path / "search.db") == 1 and (tmp_path / "search.db").read_bytes() == before


def test_a_corrupt_database_is_reported_and_kept(tmp_path):
    (tmp_path / "search.db").write_bytes(b"garbage" * 1000)
    out = ksearch(*FAST, "search.budget=1", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 2 and "not a usable SQLite database" in out.stderr
    assert (tmp_path / "search.db").read_bytes() == b"garbage" * 1000
    replay = ksearch(str(tmp_path / "search.db"), module="ksearch.replay")
    assert replay.returncode == 2 and "not a usable SQLite database" in replay.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("task=nosuch", "Could not find 'task/nosuch'"),
        ("search.nosuch=1", "nosuch"),
        ("search.budget=0", "search.budget must be at least 1"),
        ("scorer.suite=nosuch", "has no workload suite 'nosuch'"),
        ("scorer.estimate_suite=nosuch", "no suite 'nosuch' to estimate on"),
        ("search.root=tuned", "search.root must be start or untuned"),
        ("search.mcts.q_norm=max", "search.mcts.q_norm must be one of"),
    ],
)
def test_bad_settings_get_a_clear_message(tmp_path, override, message):
    out = ksearch(*FAST, override, f"hydra.run.dir={tmp_path}")
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "search.db").exists() or count(tmp_path / "search.db") == 0


def test_evaluate_reports_a_candidate_without_run(tmp_path):
    cand = tmp_path / "c.py"
    cand.write_text("import torch\n\ndef forward(x, weight, eps):\n    return x\n")
    out = ksearch(
        "task=rmsnorm", "scorer=interpret", f"candidate={cand}", module="ksearch.evaluate"
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "compile_error"
    assert "does not define a function run" in result["reason"]
    missing = ksearch(
        "task=rmsnorm", f"candidate={tmp_path / 'nope.py'}", module="ksearch.evaluate"
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_replay_of_a_missing_database_is_an_error(tmp_path):
    out = ksearch(str(tmp_path / "none.db"), module="ksearch.replay")
    assert out.returncode == 2 and "does not exist" in out.stderr


def test_the_selftest_says_it_needs_a_gpu_where_there_is_none():
    out = subprocess.run(
        [sys.executable, "-m", "ksearch.selftest"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2 and "needs a CUDA device" in out.stdout


def test_bench_refuses_a_missing_candidate_with_a_clear_message(tmp_path):
    out = ksearch("task=moe_gemm", f"candidate=[{tmp_path / 'nope.py'}]", module="ksearch.bench")
    assert out.returncode == 2 and "does not exist" in out.stderr


def test_a_search_can_start_from_the_untuned_plan(tmp_path):
    out = ksearch(
        "task=moe_gemm", "scorer=interpret", "scorer.seeds=[0]", "search.budget=1",
        "search.root=untuned", f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    root = Store(tmp_path / "search.db").nodes()[0]
    assert Plan.from_json(root["plan"]) == TASK.canonical(TASK.space.untuned())
