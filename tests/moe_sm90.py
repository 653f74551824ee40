"""Compile the starting moe_gemm plan's kernels for an H100 (sm_90) on the CPU and print, as
JSON, whether each is software-pipelined. Run without TRITON_INTERPRET (triton's own jitted
helpers must be compiled, not interpreted), so tests call it in a child process."""

import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from tasks.moe_gemm import TASK

#: element types of the kernels' pointer arguments (others are int32 tables)
POINTERS = {
    "x_ptr": "*bf16",
    "w_ptr": "*bf16",
    "w2_ptr": "*bf16",
    "h_ptr": "*bf16",
    "weight_ptr": "*fp32",
    "y_ptr": "*fp32",
    "out_ptr": "*bf16",
}


def compile_sm90(fn, constexprs, desc=None, **options):
    """PTX and shared memory of `fn` for sm_90, its arguments typed and aligned the way a
    launch on the default suite specializes them (pointers, H and I divisible by 16)."""
    signature = {}
    for name in fn.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name == "w_desc":
            signature[name] = desc or "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = POINTERS.get(name, "*i32")
        else:
            signature[name] = "i32"
    if desc is None and "w_desc" in fn.arg_names:
        constexprs = {**constexprs, "w_desc": None}
    aligned = {
        (i,): [["tt.divisibility", 16]]
        for i, name in enumerate(fn.arg_names)
        if name.endswith("_ptr") or name in ("H", "I")
    }
    source = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=aligned)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)
    ptx = compiled.asm["ptx"]
    markers = (
        "cp.async.bulk.tensor",
        "cp.async",
        "wgmma.mma_async",
        "mma.sync",
        "prefetch.global.L2",
    )
    wait = ptx.find("griddepcontrol.wait")
    loads = ptx.find("ld.global.v4")
    return {
        "shared": compiled.metadata.shared,
        **{m: m in ptx for m in markers},
        "griddepcontrol.wait": wait >= 0,
        # a weight load issued before the wait for the kernel this one depends on
        "loads before the wait": 0 <= loads < wait,
    }


def main() -> None:
    table = TASK.space.root().table()
    tiny, huge = table["tiny"], table["huge"]
    path = Path(tempfile.mkdtemp()) / "candidate.py"
    path.write_text(TASK.render(TASK.space.root()))
    spec = importlib.util.spec_from_file_location("candidate", path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    pair = dict(FUSED=True, DESC=False, ZERO=False, PREFETCH=False, PDL=False)
    out = {
        "tiny": compile_sm90(
            m._pair_gemm1,
            dict(
                pair,
                BLOCK_N=tiny["BLOCK_N1"],
                BLOCK_K=tiny["BLOCK_K1"],
                MMA=tiny["pair_mma"],
                STAGES=tiny["num_stages1"],
                PREFETCH=tiny["PREFETCH2"] > 0,
            ),
            num_warps=tiny["num_warps1"],
            num_stages=tiny["num_stages1"],
        ),
        "early_down": compile_sm90(
            m._pair_gemm2,
            dict(
                BLOCK_N=tiny["BLOCK_N2"],
                BLOCK_K=tiny["BLOCK_K2"],
                DESC=False,
                COMBINE=2,
                SPLIT_K=tiny["SPLIT_K"],
                MMA=True,
                ROWS=16,
                FINISH=True,
                STAGES=tiny["num_stages2"],
                EARLY=True,
                PDL=True,
            ),
            num_warps=tiny["num_warps2"],
            num_stages=tiny["num_stages2"],
        ),
        "cuda_cores": compile_sm90(
            m._pair_gemm1,
            dict(pair, BLOCK_N=32, BLOCK_K=256, MMA=False, STAGES=3),
            num_warps=4,
            num_stages=3,
        ),
        "huge": compile_sm90(
            m._gemm1,
            dict(
                BLOCK_M=huge["BLOCK_M"],
                BLOCK_N=huge["BLOCK_N1"],
                BLOCK_K=huge["BLOCK_K1"],
                GROUP_M=huge["GROUP_M"],
                TILEMAP=huge["dispatch"] == "tilemap",
                FUSED=True,
                SWAP=False,
                DESC=True,
                ZERO=False,
                TAIL_M=huge["TAIL_M"],
            ),
            desc=f"tensordesc<bf16[{huge['BLOCK_N1']}, {huge['BLOCK_K1']}]>",
            num_warps=huge["num_warps1"],
            num_stages=huge["num_stages1"],
        ),
    }
    # the routing-metadata kernels, whose only other run is the interpreter's (which lets
    # through what the compiler refuses, such as a global that is not a constexpr)
    routing = dict(BLOCK_M=64, E_POW2=128, TAIL_M=16)
    out["routing"] = {
        "one program": compile_sm90(m._route, dict(routing, TILEMAP=False, CHUNK_P=2048)),
        "count": compile_sm90(m._route_count, dict(E_POW2=128, CHUNK=1024)),
        "tables": compile_sm90(m._route_plan, dict(routing, TILEMAP=True, CHUNKS_POW2=32)),
        "scatter": compile_sm90(m._route_scatter, dict(CHUNK=1024)),
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
