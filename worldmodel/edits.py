"""Revisions of open plans by the LLM: edit operations checked against invariants.

Open plans are the proposed steps not yet instantiated. An edit may `update` an open
step's prediction, `prune` an open step, or `insert` a new step under a measured plan.
The root and every instantiated plan are fixed, and a revision inserts at most
`max_new` steps; an edit that breaks a rule is rejected with its reason and the others
still apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from worldmodel.schemas import Edits, Step


@dataclass(frozen=True, slots=True)
class Outcome:
    applied: int
    rejected: tuple[str, ...]


def apply_edits(
    edits: Edits,
    steps: dict[str, list[Step]],
    *,
    open_ids: Mapping[str, tuple[str, str]],
    measured_ids: Mapping[str, str],
    max_new: int,
) -> Outcome:
    """Apply `edits` to `steps` (parent plan key -> its proposed steps) in place.

    Args:
        open_ids: id of each open plan -> (its parent's key, its step title).
        measured_ids: id of each measured plan -> its key (where steps may be inserted).
        max_new: the most steps one revision may insert.
    """
    applied, rejected, inserted = 0, [], 0
    for e in edits.edits:
        if e.op in ("update", "prune"):
            if e.plan not in open_ids:
                rejected.append(f"{e.op} {e.plan}: not an open plan (measured, root or unknown)")
                continue
            parent, title = open_ids[e.plan]
            index = next(i for i, s in enumerate(steps[parent]) if s.title == title)
            if e.op == "prune":
                del steps[parent][index]
            else:
                old = steps[parent][index]
                steps[parent][index] = old.model_copy(
                    update={
                        k: v
                        for k, v in (
                            ("speedup", e.speedup),
                            ("confidence", e.confidence),
                            ("difficulty", e.difficulty),
                        )
                        if v is not None
                    }
                )
            applied += 1
            continue
        if e.plan not in measured_ids:
            rejected.append(f"insert under {e.plan}: only measured plans take new steps")
        elif inserted >= max_new:
            rejected.append(f"insert {e.title!r}: at most {max_new} new steps per revision")
        elif not e.title or e.speedup is None or e.confidence is None:
            rejected.append(f"insert {e.title!r}: a new step needs a title, speedup, confidence")
        elif any(s.title == e.title for s in steps.setdefault(measured_ids[e.plan], [])):
            rejected.append(f"insert {e.title!r}: that step is already proposed")
        else:
            steps[measured_ids[e.plan]].append(
                Step(
                    title=e.title,
                    speedup=e.speedup,
                    confidence=e.confidence,
                    difficulty=e.difficulty or 3,
                )
            )
            inserted += 1
            applied += 1
    return Outcome(applied, tuple(rejected))
