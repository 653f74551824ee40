"""The LLM's edits of open plans are checked against the invariants one by one."""

from worldmodel.edits import apply_edits
from worldmodel.schemas import Edits, Step


def step(title, speedup=1.2):
    return Step(title=title, speedup=speedup, confidence=0.5, difficulty=2)


def test_edits_apply_within_the_rules_and_the_rest_are_rejected_with_reasons():
    steps = {"P": [step("a"), step("b")], "M": [step("m")]}
    open_ids = {"idA": ("P", "a"), "idB": ("P", "b")}
    measured = {"idP": "P"}
    edits = Edits.model_validate(
        {
            "edits": [
                {"op": "update", "plan": "idA", "speedup": 2.0},
                {"op": "prune", "plan": "idB"},
                {"op": "prune", "plan": "idROOT"},
                {"op": "insert", "plan": "idP", "title": "c", "speedup": 1.1, "confidence": 0.3},
                {"op": "insert", "plan": "idP", "title": "a", "speedup": 1.1, "confidence": 0.3},
                {"op": "insert", "plan": "idP", "title": "d", "speedup": 1.1, "confidence": 0.3},
                {"op": "insert", "plan": "idP", "title": "e", "speedup": 1.1, "confidence": 0.3},
                {"op": "insert", "plan": "idX", "title": "f", "speedup": 1.1, "confidence": 0.3},
                {"op": "insert", "plan": "idP", "title": "g"},
            ]
        }
    )
    out = apply_edits(edits, steps, open_ids=open_ids, measured_ids=measured, max_new=2)
    assert [s.title for s in steps["P"]] == ["a", "c", "d"]
    assert steps["P"][0].speedup == 2.0 and steps["M"] == [step("m")]
    assert out.applied == 4
    reasons = "\n".join(out.rejected)
    assert "prune idROOT: not an open plan" in reasons
    assert "insert 'a': that step is already proposed" in reasons
    assert "insert 'e': at most 2 new steps per revision" in reasons
    assert "insert under idX: only measured plans take new steps" in reasons
    assert "insert 'g'" in reasons and len(out.rejected) == 5
