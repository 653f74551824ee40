"""Rendered prompts are snapshot-tested: a change to a prompt shows up as a diff here.
Set KSEARCH_UPDATE_SNAPSHOTS=1 to rewrite the snapshots after a deliberate change."""

import os
from pathlib import Path

import pytest

from worldmodel.prompts import PromptError, render, variables

SNAPSHOTS = Path(__file__).parent / "snapshots"
SPEC = "# double\n\nWrite `run(x) -> 2 * x` for a float tensor x."
PATH = "1. route with one Triton program\n2. fuse SiLU·mul into the gate/up GEMM"
RESULTS = "E128_k8_H2048_I384_T1_bf16: 37.1 µs, 2.91× floor, 2.40× baseline"
SIGNATURE = "x, topk_ids, topk_weights, w1, w2"
SCHEMA = '{"steps": [{"title": "...", "speedup": 1.2, "confidence": 0.5, "difficulty": 2}]}'
CASES = {
    "propose": dict(spec=SPEC, path=PATH, results=RESULTS, count=4, schema=SCHEMA),
    "instantiate": dict(
        spec=SPEC, path=PATH, parent_source="def run(x):\n    return x", results=RESULTS,
        signature=SIGNATURE,
    ),
    "repair": dict(
        spec=SPEC, path=PATH, source="def run(x):\n    return x", status="incorrect",
        reason="E4_k2_H64_I48_T5_fp16: 120 of 320 elements off", signature=SIGNATURE,
    ),
    "revise": dict(
        spec=SPEC, evidence="node 3: predicted 1.30×, measured 1.05×",
        plans="4 (parent 3): persistent grid, 1.10×, 0.4", max_new=2, schema=SCHEMA,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_rendered_prompts_match_their_snapshots(name):
    text = render(name, **CASES[name])
    snapshot = SNAPSHOTS / f"prompt_{name}.txt"
    if os.environ.get("KSEARCH_UPDATE_SNAPSHOTS"):
        snapshot.write_text(text)
    assert snapshot.exists(), f"no snapshot {snapshot.name}: run with KSEARCH_UPDATE_SNAPSHOTS=1"
    assert text == snapshot.read_text()
    assert "$" not in text.replace("$" + "{", "")  # no placeholder left


def test_every_case_fills_exactly_the_prompts_variables():
    for name, values in CASES.items():
        assert variables(name) == set(values), name


def test_a_missing_or_unexpected_variable_is_refused():
    with pytest.raises(PromptError, match=r"missing \['schema'\]"):
        render("propose", **{k: v for k, v in CASES["propose"].items() if k != "schema"})
    with pytest.raises(PromptError, match=r"unexpected \['extra'\]"):
        render("propose", **CASES["propose"], extra=1)
    with pytest.raises(PromptError, match="no prompt 'nope'"):
        render("nope")
