"""Compile the FlashIPA kernels for sm_90 on any machine (no GPU needed) and print, per kernel and
config, shared memory (and launch.shared_bytes's estimate), registers, spill stack, the count of Hopper
matrix instructions and the warp layouts of its matrix products.

    PYTHONPATH=. python -m flashipa_kernels.flash_ipa.resource_report 128,32,8,2 32,128,8,2
    DIMS=trunk PYTHONPATH=. python -m flashipa_kernels.flash_ipa.resource_report 64,128,8,2

DIMS picks the dims: `anchor` (the benchmark's: 8 points, bias rank 2, PBW 32) or `trunk` (the trained
trunk's default, model/attention=flash_ipa: 9 points with the self-conditioned one, bias rank 26 + 16 of
content_relpos = 42: PBW 32 and a bias tile of 64, the default layout; `trunk_one_tile`: points and bias in one
tile, PBW 128, as FLASHIPA_BIAS_TILE=0 lays it out).

Reads ptxas's verdict through the cuobjdump bundled with Triton. Dims as DIMS says, bf16 (points
split hi + lo), pointers 16-byte aligned (as Triton specializes torch allocations). `rows ok` checks the
rule in launch.py: every wgmma layout spans exactly the program's row tile (no replicated warp
groups). Compile with the Triton of the GPU image (3.6) for conclusions about it: a separate
install, e.g. `pip install --target /tmp/t36 triton==3.6.0` and PYTHONPATH=/tmp/t36:.
"""

import os
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from flashipa_kernels.flash_ipa import launch
from flashipa_kernels.flash_ipa import triton_kernels as tk

ANCHOR_DIMS = dict(
    C=128, C_PAD=128, CV=128, CV_PAD=128, P3=24, RB=2, PBW=32, BW=0, PV3=36, PVW=64, RZ=64, RZ_PAD=64, PLW=32
)
TRUNK_DIMS = dict(ANCHOR_DIMS, P3=27, RB=42, PBW=32, BW=64)  # the bias in a tile of its own (launch.point_bias_widths)
TRUNK_ONE_TILE_DIMS = dict(ANCHOR_DIMS, P3=27, RB=42, PBW=128)  # the same with points and bias in one tile (v4)
DIMS = {"anchor": ANCHOR_DIMS, "trunk": TRUNK_DIMS, "trunk_one_tile": TRUNK_ONE_TILE_DIMS}
FP32_ARGS = {"LSE", "DELTA", "OPC", "CENTRE", "DPK_H", "DPW_Q", "PW", "KN", "KNORM", "QP", "OP", "DKP", "DQP", "DVP"}
KERNELS = {
    "fwd": tk._ipa_fwd_kernel,
    "dk": tk._ipa_bwd_dk_kernel,
    "dv": tk._ipa_bwd_dv_kernel,
    "dq": tk._ipa_bwd_dq_kernel,
}


def _signature(fn, constexprs):
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name in ("H", "T", "L_BUCKET"):
            sig[name] = "i32"
        elif name in ("scalar_scale", "bias_scale"):
            sig[name] = "fp32"
        elif name in FP32_ARGS:
            sig[name] = "*fp32"
        elif name == "CU_SEQLENS":
            sig[name] = "*i32"
        else:
            sig[name] = "*bf16"
    return sig


def report(name, block_m, block_n, num_warps, num_stages):
    fn = KERNELS[name]
    dims = DIMS[os.environ.get("DIMS", "anchor")]
    constexprs = dict(dims, SPLIT=True, PRECISION="tf32", UPCAST=False, BLOCK_M=block_m, BLOCK_N=block_n)
    signature = _signature(fn, constexprs)
    aligned = {(i,): [["tt.divisibility", 16]] for i, arg in enumerate(fn.arg_names) if signature[arg].startswith("*")}
    kernel = triton.compile(
        ASTSource(fn, signature, constexprs, aligned),
        target=GPUTarget("cuda", 90, 32),
        options=dict(num_warps=num_warps, num_stages=num_stages),
    )
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        usage = subprocess.run([cuobjdump, "-res-usage", f.name], capture_output=True, text=True).stdout
        sass = subprocess.run([cuobjdump, "-sass", f.name], capture_output=True, text=True).stdout
    regs = next((line.strip() for line in usage.splitlines() if "REG:" in line), "?")
    # wgmma layouts: warpsPerCTA [rows, cols]; 16 rows per warp along the rows
    layouts = re.findall(r"versionMajor = 3, versionMinor = 0, warpsPerCTA = \[(\d+), (\d+)\]", kernel.asm["ttgir"])
    row_tile = block_n if name in ("dk", "dv") else block_m
    rows_ok = all(16 * int(rows) == row_tile for rows, _ in layouts)
    return (
        f"triton {triton.__version__} {name} {(block_m, block_n, num_warps, num_stages)} "
        f"smem {kernel.metadata.shared} "
        f"(estimate {launch.shared_bytes(name, block_m, block_n, num_stages, dims, True, 2)}) {regs} "
        f"HGMMA {sass.count('HGMMA')} HMMA {sass.count('HMMA')} LDL {sass.count('LDL')} "
        f"wgmma warps {sorted(set(layouts))} rows ok {rows_ok}"
    )


def main(argv=None):
    configs = [tuple(int(x) for x in c.split(",")) for c in (argv or sys.argv[1:])] or [(64, 32, 8, 2)]
    for name in os.environ.get("KERNELS", "fwd,dk,dv,dq").split(","):
        for config in configs:
            print(report(name, *config), flush=True)


if __name__ == "__main__":
    main()
