"""Plans, design spaces and the typed actions that edit a plan.

A design space lists a task's parameters: structural decisions (unordered
choices such as one pass or two passes over a row) and tuning knobs (ordered
values such as a block size). A plan gives every parameter a value in every
workload regime, so a rendered candidate is a dispatch table over regimes. An
action sets one parameter to one value, in one regime or in all of them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

Value = str | int | bool
#: one regime's settings, (param, value) sorted by param
Row = tuple[tuple[str, Value], ...]
#: the regimes of a plan, each with its parameters
Shape = tuple[tuple[str, tuple[str, ...]], ...]

PLAN_HEADER = "# ksearch-plan: "


class ParamKind(StrEnum):
    DECISION = "decision"
    KNOB = "knob"


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a design space.

    Args:
        name: identifier used in plans and rendered code.
        values: the domain; ordered for knobs (moves go to a neighbour).
        default: the value of the starting plan.
        kind: decision (any other value is one move away) or knob (neighbours only).
        doc: one line for people and LLMs.
    """

    name: str
    values: tuple[Value, ...]
    default: Value
    kind: ParamKind = ParamKind.DECISION
    doc: str = ""

    def __post_init__(self) -> None:
        if self.default not in self.values:
            raise ValueError(f"param {self.name}: default {self.default!r} not in {self.values}")

    def moves(self, current: Value) -> tuple[Value, ...]:
        """Values one action away from `current`."""
        if self.kind is ParamKind.DECISION:
            return tuple(v for v in self.values if v != current)
        i = self.values.index(current)
        return tuple(self.values[j] for j in (i - 1, i + 1) if 0 <= j < len(self.values))


@dataclass(frozen=True, slots=True)
class DesignSpace:
    """A task's parameters and the workload regimes a plan may treat differently.

    Args:
        params: the parameters.
        regimes: the workload regimes; a plan gives every parameter a value in each.
        start: (regime, param, value) overrides of the defaults in the starting plan, for
            knowledge such as "large token counts start from large tiles".
        couples: pairs of parameters whose effects interact (a tile size and the warps
            that compute it): the built-in world model also moves both at once.
    """

    params: tuple[Param, ...]
    regimes: tuple[str, ...] = ("all",)
    start: tuple[tuple[str, str, Value], ...] = ()
    couples: tuple[tuple[str, str], ...] = ()
    _root: Plan = field(init=False, repr=False, compare=False)
    _names: frozenset[str] = field(init=False, repr=False, compare=False)
    _shape: Shape = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for regime, name, value in self.start:
            if regime not in self.regimes:
                raise ValueError(f"start: unknown regime {regime!r}; known: {self.regimes}")
            if value not in self.param(name).values:
                raise ValueError(f"start: {name}={value!r} @{regime} is not in its values")
        for a, b in self.couples:
            self.param(a), self.param(b)  # KeyError for an unknown parameter
        table = {r: {p.name: p.default for p in self.params} for r in self.regimes}
        for regime, name, value in self.start:
            table[regime][name] = value
        object.__setattr__(self, "_root", Plan.of(table))  # built once: plans are immutable
        object.__setattr__(self, "_names", frozenset(p.name for p in self.params))
        params = tuple(sorted(self._names))
        object.__setattr__(self, "_shape", tuple((r, params) for r in sorted(self.regimes)))

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"unknown parameter {name!r}; known: {[p.name for p in self.params]}")

    def complete(self, plan: Plan) -> Plan:
        """`plan` with each parameter it lacks at that parameter's default, in every regime
        (a regime it lacks gets a row of defaults): a plan written before a parameter was
        added keeps meaning the code it meant then."""
        shape = plan.shape()
        if shape is self._shape:
            return plan
        if shape == self._shape:
            plan._shape[0] = self._shape  # the next check is by identity
            return plan
        names = self._names
        if (
            len(plan.items) == len(plan.regimes) * len(names)
            and all(p in names for _, p, _ in plan.items)
            and set(self.regimes) <= set(plan.regimes)
        ):
            return plan  # (regime, param) pairs are unique, so every one is there
        table = plan.table()
        for regime in self.regimes:
            table.setdefault(regime, {})
        for row in table.values():
            for p in self.params:
                row.setdefault(p.name, p.default)
        return Plan.of(table)

    def root(self) -> Plan:
        """The starting plan: every parameter at its default, or its start value, per regime."""
        return self._root

    def untuned(self) -> Plan:
        """Every parameter at its default in every regime: the plan a search starts from
        when it is to find what the start values know."""
        return Plan.of({r: {p.name: p.default for p in self.params} for r in self.regimes})


def table_json(table: Mapping[str, Mapping[str, Value]]) -> str:
    """A plan's table (or part of one) as the compact, key-sorted JSON plans are stored in."""
    return json.dumps(table, sort_keys=True, separators=(",", ":"))


#: rows made by an edit, by (row, edit): sibling plans share most rows, so the same edit
#: of the same row recurs across a search (bounded: cleared when it grows past this)
EDITED_ROWS = 100_000
_EDITED: dict[tuple[Row, tuple[tuple[str, Value], ...]], Row] = {}


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    """A value for every (regime, parameter): per regime in name order, its settings as
    (param, value) pairs in name order. Plans are equal when their settings are; a plan
    made from another shares the rows it does not change."""

    regime_rows: tuple[tuple[str, Row], ...]
    _lookup: dict[tuple[str, str], Value] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )
    _key: list[str] = field(default_factory=list, compare=False, hash=False, repr=False)
    _rows: dict[str, Row] = field(default_factory=dict, compare=False, hash=False, repr=False)
    _shape: list[Shape] = field(default_factory=list, compare=False, hash=False, repr=False)
    _hash: list[int] = field(default_factory=list, compare=False, hash=False, repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Plan):
            return NotImplemented
        return self is other or self.regime_rows == other.regime_rows

    def __hash__(self) -> int:
        if not self._hash:
            self._hash.append(hash(self.regime_rows))
        return self._hash[0]

    @staticmethod
    def of(table: Mapping[str, Mapping[str, Value]]) -> Plan:
        return Plan(tuple((r, tuple(sorted(table[r].items()))) for r in sorted(table)))

    @property
    def items(self) -> tuple[tuple[str, str, Value], ...]:
        """Every (regime, param, value), sorted."""
        return tuple((r, p, v) for r, row in self.regime_rows for p, v in row)

    @property
    def regimes(self) -> tuple[str, ...]:
        return tuple(r for r, _ in self.regime_rows)

    def get(self, param: str, regime: str) -> Value:
        # built at the first look-up: many plans are only compared or hashed
        lookup = self._lookup
        if not lookup:
            lookup.update(((r, p), v) for r, row in self.regime_rows for p, v in row)
        return lookup[(regime, param)]

    def table(self) -> dict[str, dict[str, Value]]:
        return {r: dict(row) for r, row in self.regime_rows}

    def with_value(self, param: str, value: Value, regimes: tuple[str, ...]) -> Plan:
        return self.with_values({param: value}, regimes)

    def with_values(self, values: Mapping[str, Value], regimes: tuple[str, ...]) -> Plan:
        """This plan with each of `values` set in each of `regimes`."""
        changed = [
            r for r in regimes if any(self.get(p, r) != v for p, v in values.items())
        ]  # KeyError for a setting the plan does not have
        rows = self.rows()
        change = tuple(values.items())
        new = {}
        for r in changed:
            key = (rows[r], change)
            row = _EDITED.get(key)
            if row is None:
                if len(_EDITED) > EDITED_ROWS:
                    _EDITED.clear()
                row = _EDITED[key] = tuple((p, values.get(p, v)) for p, v in rows[r])
            new[r] = row
        return self.with_rows(new)

    def with_rows(self, new: Mapping[str, Row]) -> Plan:
        """This plan with some regimes' rows replaced, each by a row of the same parameters
        in the same order (the plan made keeps this one's shape)."""
        plan = Plan(tuple((r, new.get(r, row)) for r, row in self.regime_rows))
        plan._shape.extend(self._shape)
        return plan

    def row(self, regime: str) -> Row:
        """One regime's settings as sorted (param, value) pairs, hashable."""
        return self.rows()[regime]

    def rows(self) -> dict[str, Row]:
        """Every regime's settings as sorted (param, value) pairs (the mapping is shared,
        not to be changed)."""
        if not self._rows:
            self._rows.update(self.regime_rows)
        return self._rows

    def shape(self) -> Shape:
        """The plan's regimes and each regime's parameters (computed once, and shared with
        the plans made from it by `with_rows`, which keep it)."""
        if not self._shape:
            self._shape.append(tuple((r, tuple(p for p, _ in row)) for r, row in self.regime_rows))
        return self._shape[0]

    def to_json(self) -> str:
        return table_json(self.table())

    @staticmethod
    def from_json(text: str) -> Plan:
        return Plan.of(json.loads(text))

    @property
    def key(self) -> str:
        """Content hash of the plan (16 hex digits), computed once."""
        if not self._key:
            self._key.append(hashlib.sha256(self.to_json().encode()).hexdigest()[:16])
        return self._key[0]


@dataclass(frozen=True, slots=True)
class Action:
    """Set `param` to `value` in `regime`, or in every regime when `regime` is None; a
    compound action also sets each (param, value) of `also` there."""

    param: str
    value: Value
    regime: str | None = None
    also: tuple[tuple[str, Value], ...] = ()

    @property
    def changes(self) -> dict[str, Value]:
        """Every (param, value) the action sets."""
        return {self.param: self.value, **dict(self.also)}

    def regimes(self, plan: Plan) -> tuple[str, ...]:
        return plan.regimes if self.regime is None else (self.regime,)

    def apply(self, plan: Plan) -> Plan:
        return plan.with_values(self.changes, self.regimes(plan))

    def kind(self, plan: Plan, regime: str) -> str:
        """The belief key of this action in one regime: `param:old->new`, joined by `+` for
        each setting a compound action changes there."""
        return "+".join(
            f"{p}:{old}->{v}" for p, v in self.changes.items() if (old := plan.get(p, regime)) != v
        )

    def describe(self) -> str:
        where = "" if self.regime is None else f" @{self.regime}"
        return ",".join(f"{p}={v}" for p, v in self.changes.items()) + where

    def to_dict(self) -> dict[str, Value | list[list[Value]] | None]:
        out: dict[str, Value | list[list[Value]] | None] = {
            "param": self.param,
            "value": self.value,
            "regime": self.regime,
        }
        if self.also:
            out["also"] = [[p, v] for p, v in self.also]
        return out


def actions(space: DesignSpace, plan: Plan) -> Iterator[Action]:
    """Every action one move away from `plan`, global ones first, without no-ops."""
    for p in space.params:
        currents = [plan.get(p.name, r) for r in space.regimes]
        targets: dict[Value, None] = {}
        for c in currents:
            targets.update(dict.fromkeys(p.moves(c)))
        for v in targets:
            yield Action(p.name, v)
        if len(space.regimes) > 1:
            for r, c in zip(space.regimes, currents, strict=True):
                for v in p.moves(c):
                    yield Action(p.name, v, r)


def header(plan: Plan) -> str:
    """The first line of a candidate rendered from `plan`."""
    return f"{PLAN_HEADER}{plan.to_json()}\n"


def read_plan(source: str) -> Plan | None:
    """The plan in a candidate's header, or None for hand-written code; never imports it."""
    first = source.split("\n", 1)[0]
    if not first.startswith(PLAN_HEADER):
        return None
    try:
        return Plan.from_json(first[len(PLAN_HEADER) :])
    except (ValueError, AttributeError):
        return None
