"""The LLM call layer against a real HTTP server: answers recorded and never paid twice,
Retry-After honoured, retries bounded, clear errors, caps, replay, structured outputs."""

import pytest

from ksearch.store import Store
from worldmodel.llm import BudgetExhausted, Llm, LlmError, LlmSettings, ReplayMiss, retry_after

from llm_server import ScriptedServer, completion, error

PRICES = {"scripted": (2.0, 8.0)}  # dollars per million prompt / completion tokens
ASK = [{"role": "user", "content": "propose a plan"}]


@pytest.fixture
def server():
    with ScriptedServer() as s:
        yield s


def make(server, store=None, **settings):
    waits = []
    llm = Llm(
        LlmSettings(server.url, "scripted", timeout=2.0, prices=PRICES, **settings),
        store or Store(None),
        sleep=waits.append,
    )
    return llm, waits


def test_an_answer_is_recorded_with_tokens_and_cost_and_never_paid_twice(server):
    store = Store(None)
    llm, _ = make(server, store)
    server.script.append(completion("plan A", prompt_tokens=1000, completion_tokens=500))
    first = llm.chat(ASK, purpose="propose")
    assert first.text == "plan A" and not first.recorded
    assert first.cost == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1e6)
    again = llm.chat(ASK, purpose="propose")
    assert again.text == "plan A" and again.recorded and again.cost == 0.0
    assert len(server.requests) == 1
    row = store.llm_call(first.key)
    assert row["purpose"] == "propose" and row["prompt_tokens"] == 1000
    assert store.llm_totals() == {"calls": 1, "tokens": 1500, "dollars": pytest.approx(0.006)}


def test_a_rate_limit_is_waited_out_as_the_server_asks(server):
    llm, waits = make(server)
    server.script.extend([error(429, "slow down", {"Retry-After": "7"}), completion("ok")])
    assert llm.chat(ASK, purpose="propose").text == "ok"
    assert waits == [7.0] and len(server.requests) == 2


def test_server_errors_are_retried_with_backoff_then_reported(server):
    llm, waits = make(server, retries=2, backoff=0.5)
    server.script.extend([error(500, "boom"), error(503, "busy"), error(502, "bad")])
    with pytest.raises(LlmError, match="failed 3 times"):
        llm.chat(ASK, purpose="propose")
    assert waits == [0.5, 1.0]


def test_a_timeout_is_retried(server):
    waits = []
    llm = Llm(LlmSettings(server.url, "scripted", timeout=0.3), Store(None), sleep=waits.append)
    late = completion("late")
    late.delay = 1.0
    server.script.extend([late, completion("ok")])
    assert llm.chat(ASK, purpose="propose").text == "ok"
    assert len(waits) == 1


@pytest.mark.parametrize(
    ("status", "message"), [(401, "refused the key"), (404, "does not serve model")]
)
def test_an_unusable_endpoint_is_a_clear_error_without_retries(server, status, message):
    llm, waits = make(server)
    server.script.append(error(status, "no"))
    with pytest.raises(LlmError, match=message):
        llm.chat(ASK, purpose="propose")
    assert waits == [] and len(server.requests) == 1


def test_caps_stop_new_calls_but_not_recorded_ones(server):
    llm, _ = make(server, max_calls=1)
    server.script.append(completion("one"))
    llm.chat(ASK, purpose="propose")
    with pytest.raises(BudgetExhausted, match="1 calls of 1"):
        llm.chat([{"role": "user", "content": "another"}], purpose="propose")
    assert llm.chat(ASK, purpose="propose").recorded


def test_a_dollar_cap_counts_what_was_spent(server):
    llm, _ = make(server, max_dollars=0.001)
    server.script.append(completion("pricey", prompt_tokens=10_000, completion_tokens=0))
    llm.chat(ASK, purpose="propose")
    with pytest.raises(BudgetExhausted, match="dollars"):
        llm.chat([{"role": "user", "content": "more"}], purpose="propose")


def test_replay_answers_from_the_record_and_counts_misses(server):
    store = Store(None)
    live, _ = make(server, store)
    server.script.append(completion("recorded"))
    live.chat(ASK, purpose="propose")
    replay = Llm(LlmSettings("http://127.0.0.1:9/v1", "scripted"), store, mode="replay")
    assert replay.chat(ASK, purpose="propose").text == "recorded"
    with pytest.raises(ReplayMiss):
        replay.chat([{"role": "user", "content": "new"}], purpose="propose")
    assert replay.misses == 1 and len(server.requests) == 1


def test_a_server_without_structured_outputs_gets_plain_requests(server):
    llm, _ = make(server)
    schema = {"type": "object", "properties": {"plan": {"type": "string"}}}
    server.script.extend([error(400, "response_format is not supported"), completion("{}")])
    assert llm.chat(ASK, purpose="propose", schema=schema).text == "{}"
    assert "response_format" in server.requests[0] and "response_format" not in server.requests[1]
    server.script.append(completion("{}"))
    llm.chat([{"role": "user", "content": "again"}], purpose="propose", schema=schema)
    assert "response_format" not in server.requests[2] and not llm.structured


def test_a_refusal_is_an_answer_that_says_so(server):
    llm, _ = make(server)
    server.script.append(completion(None, refusal="I cannot help with that"))
    reply = llm.chat(ASK, purpose="propose")
    assert reply.finish_reason == "refusal" and "cannot" in reply.text


def test_retry_after_reads_seconds_milliseconds_and_dates():
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after({}) is None and retry_after(None) is None


def test_a_runs_tokens_and_cost_are_in_its_database_and_shown_by_replay(server, tmp_path):
    import io

    from rich.console import Console

    from ksearch.replay import load, render

    db = tmp_path / "search.db"
    llm, _ = make(server, Store(db))
    server.script.extend(
        [
            completion("a", prompt_tokens=1000, completion_tokens=100),
            completion("b", prompt_tokens=2000, completion_tokens=300),
        ]
    )
    llm.chat(ASK, purpose="propose")
    llm.chat([{"role": "user", "content": "write it"}], purpose="instantiate")
    data = load(db, None)
    usage = data["llm"]
    assert usage["calls"] == 2 and usage["prompt_tokens"] == 3000
    assert usage["completion_tokens"] == 400
    assert usage["dollars"] == pytest.approx((3000 * 2.0 + 400 * 8.0) / 1e6)
    assert usage["by_purpose"] == {"instantiate": 1, "propose": 1}
    data["nodes"] = [{"id": 0, "parent": None, "status": "passed", "score": 1.0,
                      "predicted": {"mean": None, "std": None}, "observed": None,
                      "action": None, "reason": None, "step": 1}]  # fmt: skip
    out = io.StringIO()
    render(data, Console(file=out, width=200))
    assert "LLM: 2 calls (instantiate 1, propose 1), 3000 prompt + 400 completion tokens" in (
        out.getvalue()
    )
