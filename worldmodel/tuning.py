"""Constants an LLM-written candidate declares tunable, read and set without importing it.

A declaration is one line, `NAME = value  # ksearch: tune [v1, v2, ...]`, with Python
literals for the value and the list. The engine explores the values as child plans
(neighbours in the list, as for a task's knobs) without asking the LLM.
"""

from __future__ import annotations

import ast
import logging
import re

from ksearch.plan import Param, ParamKind, Value

log = logging.getLogger(__name__)

_LINE = re.compile(
    r"^(?P<name>[A-Za-z_]\w*)\s*=\s*(?P<value>[^#\n]+?)\s*#\s*ksearch:\s*tune\s*"
    r"(?P<values>\[[^\]\n]*\])\s*$",
    re.M,
)


def tunables(source: str) -> dict[str, tuple[Value, tuple[Value, ...]]]:
    """NAME -> (current value, the values it may take) for each declared constant; a
    declaration whose value or list is not a literal, or whose value is not in its list,
    is skipped (and logged)."""
    out: dict[str, tuple[Value, tuple[Value, ...]]] = {}
    for m in _LINE.finditer(source):
        try:
            value = ast.literal_eval(m["value"])
            values = tuple(ast.literal_eval(m["values"]))
        except (ValueError, SyntaxError):
            log.info("tunable %s: not a literal declaration, ignored", m["name"])
            continue
        if value not in values or not all(isinstance(v, str | int | bool) for v in values):
            log.info("tunable %s: %r is not one of %r, ignored", m["name"], value, values)
            continue
        out[m["name"]] = (value, values)
    return out


def neighbours(value: Value, values: tuple[Value, ...]) -> tuple[Value, ...]:
    """The values one move from `value`, as for a task's knob."""
    return Param("tunable", values, value, ParamKind.KNOB).moves(value)


def set_constant(source: str, name: str, value: Value) -> str:
    """`source` with the declared constant `name` set to `value`, the declaration kept."""
    found = False

    def replace(m: re.Match[str]) -> str:
        nonlocal found
        if m["name"] != name:
            return m[0]
        found = True
        return (
            m[0][: m.start("value") - m.start()] + repr(value) + m[0][m.end("value") - m.start() :]
        )

    out = _LINE.sub(replace, source)
    if not found:
        raise KeyError(f"no tunable constant {name!r} in the source")
    return out
