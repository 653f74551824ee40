"""The GPU tier of the LLM world model: a short moe_gemm search against a scripted
OpenAI-compatible server, whose code declares tunable constants that the engine tunes
without asking the LLM."""

import json
import re

import pytest

from ksearch.store import Store
from tasks.moe_gemm import TASK

from llm_server import ScriptedServer, completion
from test_cli import ksearch

pytestmark = pytest.mark.gpu

#: the constants the scripted LLM declares, appended to the starting plan's code
TUNABLES = """

# Tile settings of the decode and prefill steps, open to the engine's tuning.
DECODE_BLOCK_N1 = 32  # ksearch: tune [16, 32, 64]
DECODE_SPLIT_K = 2  # ksearch: tune [1, 2, 4]
PREFILL_BLOCK_N2 = 128  # ksearch: tune [64, 128, 256]
CONFIGS["tiny"]["BLOCK_N1"] = DECODE_BLOCK_N1
CONFIGS["tiny"]["SPLIT_K"] = DECODE_SPLIT_K
CONFIGS["huge"]["BLOCK_N2"] = PREFILL_BLOCK_N2
"""


def responder(body):
    prompt = body["messages"][0]["content"]
    if prompt.startswith("You keep the open plans"):
        return completion(json.dumps({"edits": []}))
    path = re.findall(r"^\d+\. (.+)$", prompt.split("# The plan", 1)[1], re.M)[1:]
    if prompt.startswith("You are planning"):
        if path:  # nothing the scripted LLM expects much of below its one step
            step = {"title": "unroll the K loop", "speedup": 0.9, "confidence": 0.9}
        else:
            step = {"title": "expose the tile settings", "speedup": 1.05, "confidence": 0.5}
        return completion(json.dumps({"steps": [{**step, "difficulty": 1}]}), prompt_tokens=4000)
    source = TASK.render(TASK.space.root()) + TUNABLES
    return completion(f"```python\n{source}```", completion_tokens=9000)


def test_a_moe_gemm_search_tunes_the_constants_the_llm_declared(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    search_tunes_declared_constants(tmp_path, "scorer.suite=cells")


def search_tunes_declared_constants(tmp_path, *scoring):
    with ScriptedServer(responder) as server:
        run = tmp_path / "run"
        out = ksearch(
            "task=moe_gemm", "worldmodel=openai", f"llm.base_url={server.url}",
            "llm.model=scripted", "+llm.prices.scripted=[3.0,15.0]", *scoring,
            "scorer.seeds=[0]", "search.budget=10", "search.finalists=2", "display=log",
            f"hydra.run.dir={run}",
        )  # fmt: skip
    assert out.returncode == 0, out.stderr
    nodes = json.loads(ksearch(str(run / "search.db"), "--json", module="ksearch.replay").stdout)[
        "nodes"
    ]
    tuned = [n for n in nodes if "tune" in n["plan"] and n["status"] == "passed"]
    asked = [r for r in server.requests if "# The plan" in r["messages"][0]["content"]]
    writes = [r for r in asked if not r["messages"][0]["content"].startswith("You are planning")]
    print("\nLLM calls:", len(server.requests), "code written:", len(writes))
    for n in sorted(nodes, key=lambda n: n["step"] or 0):
        if n["score"] is not None:
            print(f"{n['id']:>3} {n['status']:<9} {n['score']:.3f}  {n['plan'].get('tune', '')}")
    assert len(tuned) >= 3, [n["plan"] for n in nodes]
    assert all(n["score"] > 0 for n in tuned)
    # each tuned child is its parent's code with one constant changed, written with no call
    steps = [n for n in nodes if "01" in n["plan"]["path"] and "tune" not in n["plan"]]
    assert len(writes) == len(steps) >= 1
    store = Store(run / "search.db", readonly=True)
    by_id = {n["id"]: n for n in nodes}
    for n in tuned:
        parent = store.source(by_id[n["parent"]]["candidate"])
        child = store.source(n["candidate"])
        changed = [
            (a, b) for a, b in zip(parent.splitlines(), child.splitlines(), strict=True) if a != b
        ]
        assert len(changed) == 1 and "# ksearch: tune" in changed[0][1], changed
        name, value = changed[0][1].split("  #")[0].split(" = ")
        assert n["plan"]["tune"][name] == int(value)
    assert store.llm_usage()["dollars"] > 0
