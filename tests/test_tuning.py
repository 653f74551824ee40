"""Tunable constants an LLM-written candidate declares: read and set without importing the
file, and explored by the engine as child plans without LLM calls."""

import json
import sqlite3

import pytest

from worldmodel.tuning import neighbours, set_constant, tunables

from llm_server import ScriptedServer
from test_llm_search import responder, run_against

SOURCE = """import triton
BLOCK = 64  # ksearch: tune [32, 64, 128]
MODE = 'a'   # ksearch: tune ['a', 'b']
STAGES = 3  # ksearch: tune [1, 2]
WARPS = 2 + 2  # ksearch: tune [4, 8]
PLAIN = 7
"""


def test_declared_constants_are_read_without_importing():
    assert tunables(SOURCE) == {"BLOCK": (64, (32, 64, 128)), "MODE": ("a", ("a", "b"))}
    assert neighbours(64, (32, 64, 128)) == (32, 128) and neighbours("a", ("a", "b")) == ("b",)


def test_setting_a_constant_changes_only_its_value():
    out = set_constant(SOURCE, "BLOCK", 128)
    assert "BLOCK = 128  # ksearch: tune [32, 64, 128]" in out
    assert out.replace("BLOCK = 128", "BLOCK = 64") == SOURCE
    with pytest.raises(KeyError, match="PLAIN"):
        set_constant(SOURCE, "PLAIN", 8)


def tunable_responder(body):
    step = responder(body)
    text = step.body["choices"][0]["message"]["content"]
    if "```python" in text:
        code = text.rsplit("```", 1)[0] + "SCALE = 1  # ksearch: tune [1, 2, 4]\n```"
        step.body["choices"][0]["message"]["content"] = code
    return step


@pytest.mark.interpret
def test_the_engine_tunes_declared_constants_without_asking_the_llm(tmp_path):
    with ScriptedServer(tunable_responder) as server:
        out = run_against(server, tmp_path, "search.budget=8", "worldmodel.temperature=5")
    assert out.returncode == 0, out.stderr
    db = sqlite3.connect(tmp_path / "run" / "search.db")
    rows = db.execute("select action, candidate from nodes where step is not null").fetchall()
    actions = [json.loads(a)["param"] for a, _ in rows if a]
    assert "tune:SCALE" in actions and "step" in actions
    purposes = dict(db.execute("select purpose, count(*) from llm_calls group by purpose"))
    assert purposes["instantiate"] == actions.count("step")  # tuned children cost no call
    tuned = next(c for a, c in rows if a and json.loads(a)["param"] == "tune:SCALE")
    source = db.execute("select source from candidates where hash = ?", [tuned]).fetchone()[0]
    assert "SCALE = 2  # ksearch: tune [1, 2, 4]" in source
