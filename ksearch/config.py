"""The Hydra edge: the one module that reads a DictConfig and builds typed parts from it."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import typing
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from ksearch.harness import Harness, HarnessConfig
from ksearch.loop import SearchConfig
from ksearch.plan import Plan
from ksearch.protocols import WorldModel
from ksearch.store import Store
from ksearch.task import Task, Workload, load_task
from ksearch.tpe import TpeSampler

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Settings that may change when a run is resumed; everything else must match the database.
MUTABLE = (
    "search.budget",
    "search.time_limit",
    "display",
    "scorer.compile_timeout",
    "scorer.run_timeout",
    "llm.timeout",
    "llm.retries",
    "llm.max_calls",
    "llm.max_tokens",
    "llm.max_dollars",
)


class ConfigError(ValueError):
    """A configuration that cannot be run, with a message meant for the user."""


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def scorer_mode(cfg: DictConfig) -> str:
    """The scorer mode after resolving `auto` (gpu with CUDA, interpret otherwise)."""
    mode = str(cfg.scorer.mode)
    if mode == "auto":
        return "gpu" if cuda_available() else "interpret"
    if mode == "gpu" and not cuda_available():
        raise ConfigError("scorer=gpu needs a CUDA device; use scorer=interpret or scorer=auto")
    if mode not in ("gpu", "interpret"):
        raise ConfigError(f"unknown scorer mode {mode!r}; use auto, gpu or interpret")
    return mode


def build(cls: type[T], node: Any, *, skip: Collection[str] = (), **given: Any) -> T:
    """A settings dataclass from a config group, key by key, so that no setting is dropped:
    a key the dataclass has no field for is a ConfigError naming the fields it has. Lists
    become tuples and a field whose type is a dataclass is built from its own group.

    Args:
        cls: the dataclass.
        node: the group (a DictConfig or a plain dict).
        skip: keys the caller reads itself (a group's `name`, a mode resolved elsewhere).
        given: fields that do not come from the group.
    """
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    assert isinstance(values, dict)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    out = dict(given)
    for key, value in values.items():
        if key in skip:
            continue
        if key not in names or key in given:
            raise ConfigError(
                f"unknown setting {key!r} for {cls.__name__}; it has {', '.join(names)}"
            )
        hint = hints[key]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = build(hint, value)
        elif isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return cls(**out)


def harness_config(cfg: DictConfig, mode: str, suite: str | None = None) -> HarnessConfig:
    chosen = suite or cfg.scorer.suite or ("default" if mode == "gpu" else "smoke")
    return build(HarnessConfig, cfg.scorer, skip=("mode", "suite"), mode=mode, suite=str(chosen))


def scoring(cfg: DictConfig, candidates: Sequence[Path]) -> tuple[str, Harness]:
    """Scorer mode and harness (its `task` included) for a command that scores candidate files
    (`workloads=SUITE` picks the suite); a missing file is a ConfigError."""
    for path in candidates:
        if not path.is_file():
            raise ConfigError(f"candidate file {path} does not exist")
    t = task(cfg)
    mode = scorer_mode(cfg)
    suite = None if cfg.workloads is None else str(cfg.workloads)
    return mode, Harness(t, harness_config(cfg, mode, suite))


def search_config(cfg: DictConfig) -> SearchConfig:
    return build(SearchConfig, cfg.search, seed=int(cfg.seed))


def sampler(t: Task, root: Plan, config: SearchConfig) -> TpeSampler | None:
    """The TPE sampler that `search=tpe` chooses plans with; None for other strategies."""
    if config.strategy != "tpe":
        return None
    from ksearch.tpe import TpeSampler

    try:
        return TpeSampler(t, root, seed=config.seed)
    except ValueError as e:
        raise ConfigError(str(e)) from e


def task(cfg: DictConfig) -> Task:
    try:
        return load_task(str(cfg.task.name))
    except LookupError as e:
        raise ConfigError(str(e)) from e


def world_model(cfg: DictConfig, t: Task, harness: Harness, store: Store) -> WorldModel:
    name = str(cfg.worldmodel.name)
    if name in ("openai", "replay"):
        return _llm_world_model(cfg, t, harness, store)
    if name == "builtin":
        return builtin_world_model(cfg, t, harness.scored)
    raise ConfigError(f"unknown world model {name!r}; available: builtin, openai, replay")


def builtin_world_model(cfg: DictConfig, t: Task, workloads: Sequence[Workload]) -> WorldModel:
    """The built-in world model with the settings of the `worldmodel` group."""
    from worldmodel.builtin import BuiltinKnobs, BuiltinWorldModel

    knobs = build(BuiltinKnobs, cfg.worldmodel, skip=("name",))
    try:
        return BuiltinWorldModel(t, workloads, knobs=knobs)
    except ValueError as e:
        raise ConfigError(str(e)) from e


def _llm_world_model(cfg: DictConfig, t: Task, harness: Harness, store: Store) -> WorldModel:
    from worldmodel.llm import Llm, LlmSettings, ReplayLog
    from worldmodel.llm_model import LlmKnobs, LlmWorldModel, start_of

    w, m = cfg.worldmodel, cfg.llm
    if m.model is None:
        raise ConfigError("worldmodel=openai needs llm.model (and llm.base_url)")
    settings = LlmSettings(
        base_url=str(m.base_url),
        model=str(m.model),
        timeout=float(m.timeout),
        retries=int(m.retries),
        max_calls=None if m.max_calls is None else int(m.max_calls),
        max_tokens=None if m.max_tokens is None else int(m.max_tokens),
        max_dollars=None if m.max_dollars is None else float(m.max_dollars),
        prices={str(k): (float(v[0]), float(v[1])) for k, v in (m.prices or {}).items()},
        temperature=float(m.temperature),
    )
    if str(w.name) == "replay":
        source = Path(str(w.calls_from))
        if w.calls_from is None or not source.is_file():
            raise ConfigError(
                f"worldmodel=replay needs worldmodel.calls_from=DB; {source} is not one"
            )
        llm = Llm(settings, ReplayLog(Store(source, readonly=True), store), mode="replay")
    else:
        llm = Llm(settings, store)
    knobs = build(LlmKnobs, w, skip=("name", "calls_from"))
    start, signature = start_of(t)
    return LlmWorldModel(
        t, llm, harness.scored, knobs=knobs, start_source=start, signature=signature
    )


def identity(cfg: DictConfig, mode: str) -> dict[str, Any]:
    """The settings that define a run: the whole config less what may change on resume."""
    plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    plain.pop("hydra", None)
    _drop_mutable(plain)
    plain["scorer"]["mode"] = mode
    if plain.get("worldmodel", {}).get("name") == "builtin":
        plain.pop("llm", None)  # endpoint settings mean nothing to the built-in model
    return plain


def _drop_mutable(plain: dict[str, Any]) -> None:
    for dotted in MUTABLE:
        head, _, leaf = dotted.rpartition(".")
        (plain.get(head, {}) if head else plain).pop(leaf, None)


def check_resume(stored: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to continue a run whose stored config differs from the current one (settings
    that may change are left out of both, so runs stored before one became mutable match)."""
    stored = copy.deepcopy(stored)
    _drop_mutable(stored)
    if stored == current:
        return
    diffs = sorted(_diff(stored, current))
    lines = "\n".join(f"  {k}: stored {a!r}, now {b!r}" for k, a, b in diffs[:10])
    raise ConfigError(
        "this run directory holds a run with another configuration:\n"
        f"{lines}\nonly {', '.join(MUTABLE)} may change on resume; "
        "choose another hydra.run.dir to start a new run"
    )


def _diff(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [(prefix.rstrip("."), a, b)]


def fingerprint_key(fp: dict[str, Any]) -> str:
    """The parts of a device fingerprint that make speedups comparable."""
    keys = ("gpu", "device", "cuda", "torch", "triton")
    return json.dumps({k: fp.get(k) for k in keys}, sort_keys=True)
