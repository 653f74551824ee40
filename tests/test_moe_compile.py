"""moe_gemm's starting plan compiled for an H100 (sm_90) on the CPU: its GEMMs are
software-pipelined (asynchronous copies or TMA into one shared-memory buffer per stage),
which the interpreter cannot show."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.moe_gemm import TASK

from test_cli import PYTHONPATH

TESTS = Path(__file__).resolve().parent
pytestmark = pytest.mark.compile


@pytest.fixture(scope="module")
def compiled():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = PYTHONPATH
    out = subprocess.run(
        [sys.executable, str(TESTS / "moe_sm90.py")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_the_decode_matrix_vector_products_are_pipelined_on_tensor_cores(compiled):
    tiny = TASK.space.root().table()["tiny"]
    assert tiny["pair_mma"] and tiny["dispatch"] == "pair"
    k = compiled["tiny"]
    assert k["cp.async"] and k["mma.sync"]
    assert k["prefetch.global.L2"] == (tiny["PREFETCH2"] > 0)  # the down weights' L2 prefetch
    per_stage = (16 + 2 * tiny["BLOCK_N1"]) * tiny["BLOCK_K1"] * 2  # vector, gate, up tiles
    assert k["shared"] >= (tiny["num_stages1"] - 1) * per_stage


def test_an_early_down_gemm_loads_weights_before_it_waits_for_the_gate_up_gemm(compiled):
    k = compiled["early_down"]
    assert k["griddepcontrol.wait"] and k["loads before the wait"] and k["mma.sync"]
    assert not compiled["tiny"]["griddepcontrol.wait"]  # no dependent launch: no wait


def test_cuda_core_matrix_vector_loops_are_pipelined_too(compiled):
    k = compiled["cuda_cores"]
    assert k["cp.async"] and not k["mma.sync"]
    assert k["shared"] >= 2 * (2 * 32 * 256 * 2)  # two stages in flight of gate and up tiles


def test_the_prefill_gemm_streams_weights_by_tma_into_wgmma(compiled):
    huge = TASK.space.root().table()["huge"]
    k = compiled["huge"]
    assert k["cp.async.bulk.tensor"] and k["wgmma.mma_async"] and not k["mma.sync"]
    m, n, kk = huge["BLOCK_M"] + huge["TAIL_M"], huge["BLOCK_N1"], huge["BLOCK_K1"]
    assert k["shared"] >= huge["num_stages1"] * (m + 2 * n) * kk * 2


def test_the_routing_kernels_compile_for_the_gpu(compiled):
    assert sorted(compiled["routing"]) == ["count", "one program", "scatter", "tables"]
    assert all(k["shared"] < 64 * 1024 for k in compiled["routing"].values())
