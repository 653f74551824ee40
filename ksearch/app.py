"""The search command: build the parts from the config, run or resume, declare the winner."""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from rich.console import Console

from ksearch import config as C
from ksearch.harness import Harness
from ksearch.live import view
from ksearch.loop import Search
from ksearch.protocols import WorldModelError
from ksearch.store import Store, StoreError
from ksearch.winner import finish
from ksearch.workers import HarnessError

log = logging.getLogger("ksearch")
console = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    sys.exit(2)


def search(cfg: DictConfig) -> None:
    """Run the search the config describes in Hydra's run directory, resuming if it exists."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        task = C.task(cfg)
        mode = C.scorer_mode(cfg)
        harness = Harness(task, C.harness_config(cfg, mode))
        search_cfg = C.search_config(cfg)
    except (C.ConfigError, ValueError) as e:
        return fail(str(e))
    if mode == "interpret" and cfg.scorer.mode == "auto":
        estimated = harness.config.estimate_suite or harness.config.suite
        console.print(
            "no CUDA device: scorer=auto checks candidates under the Triton interpreter "
            f"on the {harness.config.suite} suite; speeds are analytic estimates of an "
            f"H100 on the {estimated} suite's shapes, not measurements"
        )
    try:
        store = Store(run_dir / "search.db")
        wm = C.world_model(cfg, task, harness, store)
    except (StoreError, C.ConfigError) as e:
        harness.close()
        return fail(str(e))
    ident = C.identity(cfg, mode)
    fp = harness.fingerprint()
    stored = store.run()
    try:
        if stored is None:
            store.start_run(config=ident, seed=search_cfg.seed, task=task.name, fingerprint=fp)
        else:
            C.check_resume(json.loads(stored["config"]), ident)
            if C.fingerprint_key(json.loads(stored["fingerprint"])) != C.fingerprint_key(fp):
                raise C.ConfigError(
                    f"this run was measured on another device ({stored['fingerprint']}); "
                    "speedups from different devices are not compared: use a new hydra.run.dir"
                )
            console.print(
                f"resuming the run in {run_dir} ({store.evaluation_count()} evaluations recorded)"
            )
    except C.ConfigError as e:
        harness.close()
        return fail(str(e))

    title = f"{task.name} · {search_cfg.strategy} · seed {search_cfg.seed}"
    context, on_progress = view(str(cfg.display), title, search_cfg.budget)
    root = wm.root()
    if search_cfg.root == "untuned":
        if task.space is None:
            harness.close()
            return fail(f"search.root=untuned needs a design space, and {task.name} has none")
        root = task.space.untuned()
    engine = Search(
        root=root,
        world_model=wm,
        scorer=harness,
        store=store,
        config=search_cfg,
        workers=harness.capacity,
        on_progress=on_progress,
        sampler=C.sampler(task, root, search_cfg),
    )
    try:
        with context:
            tree = engine.run()
        if tree.root.status.value != "passed":
            return fail(
                f"the starting plan did not pass ({tree.root.status.value}: "
                f"{tree.root.reason}); nothing to search from"
            )
        outcome = finish(tree, store, harness, run_dir, search_cfg.finalists, say=console.print)
    except (HarnessError, WorldModelError) as e:
        store.event(engine.iteration, "stopped", reason=str(e))
        return fail(f"{e}; run the same command again to resume from {run_dir}")
    except KeyboardInterrupt:
        store.event(engine.iteration, "interrupted")
        console.print(f"interrupted; run the same command again to resume from {run_dir}")
        sys.exit(130)
    finally:
        harness.close()
    summary = getattr(wm, "summary", None)
    note = summary() if callable(summary) else None
    if note:
        console.print(note, highlight=False)
        store.event(engine.iteration, "world_model", note=note)
    best = tree.best_node()
    console.print(
        f"{store.evaluation_count()} evaluations, {len(tree)} nodes; "
        f"database {run_dir / 'search.db'}"
    )
    if outcome is None or best is None:
        return fail("no candidate passed")
    method = outcome.evaluation.method.value if outcome.evaluation.method else "?"
    console.print(
        f"winner: node {outcome.node}, {outcome.evaluation.score:.3f}× over the baseline "
        f"({method}), written to {outcome.path}; best during search "
        f"{math.exp(best.value or 0.0):.3f}×",
        highlight=False,
    )
