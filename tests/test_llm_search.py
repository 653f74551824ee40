"""A search with worldmodel=openai against a scripted OpenAI-compatible server, on the CPU
with the interpreter scorer; then the same search with worldmodel=replay and no server."""

import json
import re

import pytest

from tasks.rmsnorm import TASK

from llm_server import ScriptedServer, completion, error
from test_cli import ksearch, tree_of

pytestmark = pytest.mark.interpret

#: the steps the scripted LLM knows, with the plan edit each one means
STEPS = {
    "one pass over each row": {"passes": "one"},
    "two rows per program": {"ROWS": 2},
    "eight warps": {"num_warps": 8},
    "persistent grid": {"grid": "persistent"},
}


def plan_for(path: list[str]):
    plan = TASK.space.root()
    for title in path:
        for name, value in STEPS.get(title, {}).items():
            plan = plan.with_value(name, value, plan.regimes)
    return plan


def responder(body):
    prompt = body["messages"][0]["content"]
    if prompt.startswith("You keep the open plans"):
        # prune the first open plan, add one step under the measured plan just reported
        opened = re.findall(r"^(\w{8}) \(parent", prompt.split("# Open plans", 1)[1], re.M)
        parent = re.findall(r"\(parent (\w{8})\)", prompt.split("# Open plans", 1)[0])[0]
        edits = [{"op": "prune", "plan": p} for p in opened[:1]]
        edits.append({"op": "insert", "plan": parent, "title": "persistent grid",
                      "speedup": 1.1, "confidence": 0.5})  # fmt: skip
        return completion(json.dumps({"edits": edits}))
    path = re.findall(r"^\d+\. (.+)$", prompt.split("# The plan", 1)[1], re.M)[1:]
    if prompt.startswith("You are planning"):
        steps = [
            {"title": t, "speedup": 1.3 - 0.1 * i, "confidence": 0.6, "difficulty": 2}
            for i, t in enumerate(t for t in STEPS if t not in path)
        ]
        return completion(json.dumps({"steps": steps[:3]}), prompt_tokens=900)
    source = TASK.render(plan_for(path))
    return completion(f"Here it is.\n```python\n{source}```", completion_tokens=1500)


def test_an_llm_search_completes_and_replays_to_the_same_tree_without_a_server(tmp_path):
    with ScriptedServer(responder) as server:
        server.script.append(error(429, "slow down", {"Retry-After": "0"}))
        common = ["task=rmsnorm", "scorer=interpret", "scorer.seeds=[0]", "display=log",
                  "search.finalists=1",
                  "search.budget=5", "llm.model=scripted"]  # fmt: skip
        live_dir, replay_dir = tmp_path / "live", tmp_path / "replay"
        live = ksearch(
            *common,
            "worldmodel=openai",
            f"llm.base_url={server.url}",
            "+llm.prices.scripted=[3.0,15.0]",
            f"hydra.run.dir={live_dir}",
        )
    assert live.returncode == 0, live.stderr
    assert "winner" in live.stderr
    calls = len(server.requests)
    assert calls >= 5  # the 429, proposals and code for four children at least
    replay = ksearch(
        *common,
        "worldmodel=replay",
        f"worldmodel.calls_from={live_dir / 'search.db'}",
        "llm.base_url=http://127.0.0.1:9/v1",  # nothing listens there
        f"hydra.run.dir={replay_dir}",
    )
    assert replay.returncode == 0, replay.stderr
    assert tree_of(replay_dir) == tree_of(live_dir)
    assert "not recorded" not in replay.stderr
    counterfactual = ksearch(
        *[c for c in common if not c.startswith("search.budget")],
        "search.budget=8",
        "worldmodel=replay",
        f"worldmodel.calls_from={live_dir / 'search.db'}",
        f"hydra.run.dir={tmp_path / 'counterfactual'}",
    )
    assert counterfactual.returncode == 0, counterfactual.stderr
    assert re.search(r"replay: \d+ calls were not recorded", counterfactual.stderr)
    shown = ksearch(str(live_dir / "search.db"), module="ksearch.replay")
    assert re.search(r"LLM: \d+ calls \(instantiate \d+, propose \d+, revise \d+\)", shown.stdout)
    usage = json.loads(
        ksearch(str(live_dir / "search.db"), "--json", module="ksearch.replay").stdout
    )["llm"]
    assert usage["dollars"] == pytest.approx(
        (usage["prompt_tokens"] * 3.0 + usage["completion_tokens"] * 15.0) / 1e6
    )


def run_against(server, tmp_path, *extra):
    return ksearch(
        "task=rmsnorm", "scorer=interpret", "scorer.seeds=[0]", "display=log",
        "search.finalists=1", "search.budget=6", "llm.model=scripted", "worldmodel=openai",
        f"llm.base_url={server.url}", f"hydra.run.dir={tmp_path / 'run'}", *extra,
    )  # fmt: skip


def test_a_spent_call_cap_ends_the_search_with_a_winner_and_says_why(tmp_path):
    with ScriptedServer(responder) as server:
        out = run_against(server, tmp_path, "llm.max_calls=2")
    assert out.returncode == 0, out.stderr
    assert len(server.requests) == 2
    assert "the LLM budget is spent: 2 calls of 2" in out.stderr and "winner" in out.stderr


def test_an_endpoint_that_refuses_the_key_stops_the_run_with_a_message(tmp_path):
    with ScriptedServer(lambda body: error(401, "invalid api key")) as server:
        out = run_against(server, tmp_path)
    assert out.returncode == 2
    assert "refused the key (set OPENAI_API_KEY)" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_resumed_llm_run_never_pays_twice_for_a_recorded_call(tmp_path):
    with ScriptedServer(responder) as server:
        first = run_against(server, tmp_path, "search.budget=3")
        asked_first = [json.dumps(r["messages"]) for r in server.requests]
        server.requests.clear()
        resumed = run_against(server, tmp_path, "search.budget=6")
        asked_again = [json.dumps(r["messages"]) for r in server.requests]
    assert first.returncode == 0 and resumed.returncode == 0, resumed.stderr
    assert "resuming the run" in resumed.stderr
    assert asked_again and not set(asked_first) & set(asked_again)


def broken_first(body):
    """The responder, except that the first code written fails at import."""
    prompt = body["messages"][0]["content"]
    answer = responder(body)
    if prompt.startswith("You write Triton kernels. Implement") and not broken_first.done:
        broken_first.done = True
        text = answer.body["choices"][0]["message"]["content"]
        source = text.split("```python\n", 1)[1].split("```", 1)[0]
        source += "\nraise RuntimeError('broken on purpose')\n"
        return completion(f"```python\n{source}```")
    return answer


def test_a_failed_candidate_is_repaired_by_the_llm(tmp_path):
    broken_first.done = False
    with ScriptedServer(broken_first) as server:
        out = run_against(server, tmp_path, "search.repair_attempts=1")
    assert out.returncode == 0, out.stderr
    repairs = [r for r in server.requests if "failed; fix it" in r["messages"][0]["content"]]
    assert len(repairs) == 1 and "broken on purpose" in repairs[0]["messages"][0]["content"]
    nodes = json.loads(
        ksearch(str(tmp_path / "run" / "search.db"), "--json", module="ksearch.replay").stdout
    )["nodes"]
    assert sum(n["status"] == "passed" for n in nodes) >= 2  # the root and the repaired child


def test_a_cap_reached_by_a_repair_ends_the_search_with_a_winner(tmp_path):
    broken_first.done = False
    with ScriptedServer(broken_first) as server:
        out = run_against(server, tmp_path, "search.repair_attempts=1", "llm.max_calls=2")
    assert out.returncode == 0, out.stderr
    assert len(server.requests) == 2
    assert "the LLM budget is spent: 2 calls of 2" in out.stderr and "winner" in out.stderr
