"""LLM output parsing: strict where it can be, tolerant where it must be, and a failure
is data that drives a bounded re-ask."""

import pytest
from pydantic import BaseModel, Field

from ksearch.store import Store
from worldmodel.llm import Llm, LlmSettings, Reply
from worldmodel.parse import ask_json, ask_source, parse_json, parse_source

from llm_server import ScriptedServer, completion


class Step(BaseModel):
    title: str
    speedup: float = Field(gt=0)
    confidence: float = Field(ge=0, le=1)


def reply(text, finish="stop"):
    return Reply("k", text, finish, 1, 1, 0.1, 0.0, recorded=False)


GOOD = '{"title": "fuse the epilogue", "speedup": 1.3, "confidence": 0.6}'


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        f"```json\n{GOOD}\n```",
        f"Here is my plan:\n{GOOD}\nThat should help.",
    ],
)
def test_json_is_found_in_plain_fenced_or_wrapped_answers(text):
    parsed = parse_json(reply(text), Step)
    assert parsed.error is None and parsed.value.speedup == 1.3


@pytest.mark.parametrize(
    ("text", "finish", "error"),
    [
        ('{"title": "x", "speedup": 1.3, "confidence": 1.5}', "stop", "confidence"),
        ('{"title": "x", "speedup": -2, "confidence": 0.5}', "stop", "speedup"),
        ('{"title": "x", "speedup": 1.3, "conf', "length", "cut off at the token limit"),
        ("I would rather not.", "stop", "no JSON object"),
        ("{'title': 'x'}", "stop", "invalid JSON"),
        ("I cannot help", "refusal", "refused"),
    ],
)
def test_bad_answers_are_errors_that_say_what_is_wrong(text, finish, error):
    parsed = parse_json(reply(text, finish), Step)
    assert parsed.value is None and error in parsed.error


def test_source_must_parse_and_define_run():
    ok = parse_source(reply("text\n```python\nimport torch\n\ndef run(x):\n    return x\n```"))
    assert ok.error is None and ok.value.source.startswith("import torch")
    assert "defines no top-level function run" in parse_source(reply("def go():\n  pass")).error
    cut = parse_source(reply("```python\ndef run(x):\n    return (x\n", "length"))
    assert "does not parse" in cut.error and "cut off" in cut.error


@pytest.fixture
def server():
    with ScriptedServer() as s:
        yield s


def test_a_malformed_answer_is_re_asked_with_its_error_and_recorded_invalid(server):
    store = Store(None)
    llm = Llm(LlmSettings(server.url, "scripted"), store)
    server.script.extend([completion('{"title": "x", "speedup": 1.3'), completion(GOOD)])
    answer = ask_json(llm, [{"role": "user", "content": "plan"}], Step, purpose="propose")
    assert answer.value.title == "fuse the epilogue" and len(answer.replies) == 2
    second = server.requests[1]["messages"]
    assert (
        second[-2]["role"] == "assistant"
        and "could not be used: invalid JSON" in (second[-1]["content"])
    )
    assert "invalid JSON" in store.llm_call(answer.replies[0].key)["parse_error"]
    assert store.llm_call(answer.replies[1].key)["parse_error"] is None


def test_re_asking_is_bounded_and_ends_in_an_error_not_an_exception(server):
    llm = Llm(LlmSettings(server.url, "scripted"), Store(None))
    server.script.extend([completion(None, refusal="no")] * 3)
    answer = ask_source(llm, [{"role": "user", "content": "code"}], purpose="instantiate")
    assert answer.value is None and "refused" in answer.error and len(answer.replies) == 3
