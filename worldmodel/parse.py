"""All LLM output is parsed here, strictly, into typed values.

A failure to parse is data (the error text), never an exception: the caller re-asks a
bounded number of times with the error in the conversation, then records the answer as
invalid and goes on. JSON answers are validated by pydantic models, whose JSON schemas
are also what structured outputs ask the server for.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from worldmodel.llm import Llm, Message, Reply

T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\n(.*?)```", re.S)


@dataclass(frozen=True, slots=True)
class Parsed(Generic[T]):
    """A parse result: the value, or why there is none."""

    value: T | None
    error: str | None = None


def parse_json(reply: Reply, model: type[T]) -> Parsed[T]:
    """The reply as `model`: strict JSON first, then the first fenced block, then the
    outermost {...} of the text; truncated and refused answers say so."""
    if reply.finish_reason == "refusal":
        return Parsed(None, f"the model refused: {reply.text[:200]}")
    text = reply.text.strip()
    if "{" not in text:
        return Parsed(None, "no JSON object in the answer")
    candidates = [text, *_FENCE.findall(text)]
    first, last = text.find("{"), text.rfind("}")
    if 0 <= first < last:
        candidates.append(text[first : last + 1])
    error = ""
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError as e:
            error = f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}"
            continue
        try:
            return Parsed(model.model_validate(data))
        except ValidationError as e:
            return Parsed(None, "the JSON does not match the schema: " + _errors(e))
    if reply.finish_reason == "length":
        error = "the answer was cut off at the token limit: " + error
    return Parsed(None, error)


def parse_source(reply: Reply) -> Parsed[Source]:
    """A candidate file from the reply: the last fenced block (or the whole text) must be
    Python that compiles and defines `run`."""
    if reply.finish_reason == "refusal":
        return Parsed(None, f"the model refused: {reply.text[:200]}")
    blocks = _FENCE.findall(reply.text)
    source = (blocks[-1] if blocks else reply.text).strip() + "\n"
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        cut = (
            " (the answer was cut off at the token limit)"
            if reply.finish_reason == "length"
            else ""
        )
        return Parsed(None, f"the code does not parse: {e.msg} at line {e.lineno}{cut}")
    if not any(isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body):
        return Parsed(None, "the code defines no top-level function run(...)")
    return Parsed(Source(source=source))


class Source(BaseModel):
    """A candidate file's text."""

    source: str


def _errors(e: ValidationError) -> str:
    parts = [f"{'.'.join(map(str, err['loc'])) or '(root)'}: {err['msg']}" for err in e.errors()]
    return "; ".join(parts[:5])


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """What a bounded conversation produced: a value, or the last error, and its calls."""

    value: T | None
    error: str | None
    replies: tuple[Reply, ...]


def ask_json(
    llm: Llm, messages: Sequence[Message], model: type[T], *, purpose: str, reasks: int = 2
) -> Answer[T]:
    """Ask for JSON matching `model`; on a parse failure, re-ask up to `reasks` times with
    the error, marking each unusable answer invalid in the call log."""
    return _ask(llm, messages, lambda r: parse_json(r, model), purpose, reasks, model)


def ask_source(
    llm: Llm, messages: Sequence[Message], *, purpose: str, reasks: int = 2
) -> Answer[Source]:
    """Ask for a candidate file, re-asking on code that does not parse or lacks `run`."""
    return _ask(llm, messages, parse_source, purpose, reasks, None)


def _ask(
    llm: Llm,
    messages: Sequence[Message],
    parse: Callable[[Reply], Parsed[Any]],
    purpose: str,
    reasks: int,
    model: type[BaseModel] | None,
) -> Answer[Any]:
    schema = None if model is None else model.model_json_schema()
    conversation = list(messages)
    replies: list[Reply] = []
    error: str | None = None
    for _ in range(reasks + 1):
        reply = llm.chat(conversation, purpose=purpose, schema=schema)
        replies.append(reply)
        parsed = parse(reply)
        if parsed.error is None:
            return Answer(parsed.value, None, tuple(replies))
        error = parsed.error
        llm.log_to.mark_llm_invalid(reply.key, error)
        conversation += [
            {"role": "assistant", "content": reply.text},
            {
                "role": "user",
                "content": f"Your answer could not be used: {error}. "
                "Answer again, in the requested format only.",
            },
        ]
    return Answer(None, error, tuple(replies))
