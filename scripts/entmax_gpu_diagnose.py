"""Where the alpha-entmax kernels go wrong on a GPU: the failing test cases of tests/test_entmax_kernel.py
run stage by stage (threshold pass: tau, passes, block mask; forward outputs) against the interpreter's
values of the same tiles and against the float64 dense reference.

    # on the CPU, the interpreter's values at the GPU's tiles:
    TRITON_INTERPRET=1 ENTMAX_IPA_BLOCK=64,32,8 python scripts/entmax_gpu_diagnose.py --save ref.pt
    # on the GPU, per tile setting (ENTMAX_IPA_BLOCK is read at import: one process each):
    ENTMAX_IPA_BLOCK=64,32,4 python scripts/entmax_gpu_diagnose.py --compare ref.pt
Prints one line per case and stage: relative errors and the count of differing block-mask entries.
--logits: the threshold kernel's logit tile (query block 0 against key block 0, head 0) from the packed
operands, against the same logits in float64 torch.
--trace: the threshold search of every row, pass by pass (launch.threshold's trace); --save keeps it (also on
the GPU, to compare here), --compare prints row 0 of both side by side and the rows whose search differs.
"""

import argparse
import math
import os

import torch
import triton
import triton.language as tl

from flashipa_kernels.entmax_ipa import dense_entmax_ipa_attention, entmax_ipa_attention, entmax_ipa_threshold_stats
from flashipa_kernels.entmax_ipa import triton_kernels as tk
from flashipa_kernels.entmax_ipa.packing import dims, point_operands, sequence_centres
from flashipa_kernels.flash_ipa.attention import token_major
from flashipa_kernels.flash_ipa.launch import W_L
from flashipa_kernels.flash_ipa.testing import ENTMAX_ODD_DIMS, IPADims, chain_inputs, random_ipa_inputs, relative_error

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ODD_DIMS = ENTMAX_ODD_DIMS


def cases():
    """(name, inputs on the CPU in float64, mask or None, alpha, dtype, allow_tf32) of the failing tests."""
    torch.manual_seed(0)
    B, L = 2, 37
    inputs = random_ipa_inputs(B, L, ODD_DIMS, torch.float64)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, 29:] = False
    yield "padding_mask_fp32", inputs, mask, torch.tensor([1.5, 2.0]), torch.float32, False
    yield "no_mask_fp32", inputs, None, torch.tensor([1.5, 2.0]), torch.float32, False
    yield "alpha_1.5_fp32", inputs, None, torch.tensor([1.5, 1.5]), torch.float32, False
    even = IPADims(heads=2, c=16, c_v=16, p_q=4, p_v=4, r_bias=4, r_pair=2, c_z=8)  # no padded columns
    yield (
        "even_dims_fp32",
        random_ipa_inputs(B, L, even, torch.float64),
        None,
        torch.tensor([1.5, 2.0]),
        torch.float32,
        False,
    )
    yield "chain64_fp32", chain_inputs(64, ODD_DIMS, seed=1), None, torch.tensor([1.5, 1.75]), torch.float32, False


def run(inputs, mask, alpha, dtype, allow_tf32):
    x = [t.to(DEVICE, dtype) for t in inputs]
    m = None if mask is None else mask.to(DEVICE)
    a = alpha.to(DEVICE)
    stats = entmax_ipa_threshold_stats(*x, a, m, allow_tf32=allow_tf32, dense_mask=True)
    with torch.no_grad():
        outs = entmax_ipa_attention(*x, a, m, allow_tf32=allow_tf32)
    return dict(
        tau=stats["tau"].cpu(),
        passes=stats["passes"].cpu(),
        block_mask=stats["block_mask"].cpu(),
        outs=[o.cpu() for o in outs],
    )


@triton.jit
def _logit_probe_kernel(
    Q,
    K,
    QPB,
    KPB,
    PW,
    ALPHA,
    Z,
    n,
    H,
    scalar_scale,
    PRECISION: tl.constexpr,
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    P3: tl.constexpr,
    PB: tl.constexpr,
    PB_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    offs_m = tl.arange(0, BLOCK_M)
    m_ok = offs_m < n
    pw = tl.load(PW).to(tl.float32)
    am1 = tl.load(ALPHA).to(tl.float32) - 1.0
    q = tk._load_tile(Q, offs_m, m_ok, H * C, tl.arange(0, C_PAD), C)
    qpb = tk._load_tile(QPB, offs_m, m_ok, H * PB, tl.arange(0, PB_PAD), PB)
    z, _ = tk._key_tile_logits(
        q,
        qpb,
        K,
        KPB,
        K,
        0,
        0,
        n,
        0,
        H,
        pw,
        am1,
        scalar_scale,
        False,
        PRECISION,
        False,
        C,
        C_PAD,
        P3,
        PB,
        PB_PAD,
        BLOCK_N,
    )
    offs_n = tl.arange(0, BLOCK_N)
    tl.store(Z + offs_m[:, None] * BLOCK_N + offs_n[None, :], tl.where(z > -1e30, z, -1e30))


def logit_probe(inputs, alpha, block_m=32, block_n=32):
    """Query block 0 against key block 0, head 0, of batch row 0: kernel logits vs float64 torch."""
    x = [t[:1].to(DEVICE, torch.float32) for t in inputs]
    q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, pw = x[:9] + [inputs[9].to(DEVICE, torch.float32)]
    tokens, key_mask, cu_seqlens, max_seqlen = token_major(q, None, None, None)
    q, k, q_pts, k_pts, v_pts, bias_q, bias_k = (tokens(t) for t in (q, k, q_pts, k_pts, v_pts, bias_q, bias_k))
    d = dims(q, tokens(v), q_pts, v_pts, bias_q, tokens(pair_k))
    centres = sequence_centres(k_pts, key_mask, cu_seqlens)
    qpb, kpb, _ = point_operands(q_pts, k_pts, v_pts, bias_q, bias_k, pw, centres, cu_seqlens, q.dtype)
    a = alpha.to(DEVICE, torch.float32)
    z = torch.full((block_m, block_n), float("nan"), device=DEVICE)
    n = q.shape[0]
    scale = W_L / math.sqrt(d["C"])
    _logit_probe_kernel[(1,)](
        q,
        k,
        qpb,
        kpb,
        pw,
        a,
        z,
        n,
        q.shape[1],
        scale,
        "ieee",
        **{key: d[key] for key in ("C", "C_PAD", "P3", "PB", "PB_PAD")},
        BLOCK_M=block_m,
        BLOCK_N=block_n,
    )
    m, nk = min(block_m, n), min(block_n, n)
    q64, k64, qpb64, kpb64 = (t[:, 0].double().cpu() for t in (q, k, qpb, kpb))
    s = q64[:m] @ k64[:nk].T * scale + qpb64[:m] @ kpb64[:nk].T
    s = s - 0.5 * pw[0].double().cpu() * (kpb64[:nk, : d["P3"]] ** 2).sum(-1)[None, :]
    ref = s * (a[0].double().cpu() - 1.0)
    got = z[:m, :nk].double().cpu()
    print(
        f"{DEVICE} logit probe: rel err {relative_error(got, ref):.1e}, max |diff| {(got - ref).abs().max():.2e}, "
        f"|ref| max {ref.abs().max():.2e}; row 0 got {got[0, :4].tolist()} ref {ref[0, :4].tolist()}",
        flush=True,
    )


def threshold_trace(inputs, mask, alpha):
    """[MAX_ITER + 1, rows, 8] float32 trace of the threshold search of every row (launch.threshold): row
    (sequence * H + head) * NQB * BLOCK_M + query position."""
    from flashipa_kernels.entmax_ipa.launch import BLOCKS, MAX_ITER

    x = [t.to(DEVICE, torch.float32) for t in inputs]
    m = None if mask is None else mask.to(DEVICE)
    B, L, H = inputs[0].shape[:3]
    rows = B * H * triton.cdiv(L, BLOCKS[0]) * BLOCKS[0]
    trace = torch.full((MAX_ITER + 1, rows, 8), float("nan"), device=DEVICE)
    entmax_ipa_threshold_stats(*x, alpha.to(DEVICE), m, allow_tf32=False, trace=trace)
    return trace.cpu()


def last_pass(trace):
    """[rows, 8] each row's last traced pass (tau, S0, S1, S2, f, lo, hi, done); NaN for untraced rows."""
    passes = trace[1:]
    seen = ~torch.isnan(passes[..., 0])  # [MAX_ITER, rows]
    last = (seen.cumsum(0) == seen.sum(0, keepdim=True)) & seen
    idx = last.float().argmax(0)  # [rows]
    return passes[idx, torch.arange(passes.shape[1])]


def trace_differences(got, ref, heads):
    """Which rows' searches differ between two traces: count, and the first few (program, row, record 0)."""
    from flashipa_kernels.entmax_ipa.launch import BLOCKS

    a, b = last_pass(got), last_pass(ref)
    both = ~torch.isnan(a[:, 0]) & ~torch.isnan(b[:, 0])
    r0 = (got[0] - ref[0]).abs().amax(-1)
    differ = both & (((a[:, 0] - b[:, 0]).abs() > 1e-4 * b[:, 0].abs().clamp(min=1.0)) | (r0 > 1e-4))
    rows = differ.nonzero().flatten().tolist()
    out = f"rows whose search differs: {len(rows)} of {int(both.sum())}"
    for r in rows[:6]:
        prog, i = divmod(r, BLOCKS[0])  # prog = (sequence * H + head) * NQB + query block
        out += (
            f"\n    row {r} (program {prog}, query {i}): rec0 {got[0, r, :4].tolist()} vs {ref[0, r, :4].tolist()};"
            f" last {[round(v, 5) for v in a[r].tolist()]} vs {[round(v, 5) for v in b[r].tolist()]}"
        )
    return out + f" (heads {heads})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--save")
    parser.add_argument("--compare")
    parser.add_argument("--logits", action="store_true")
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args()
    if args.trace:
        saved = torch.load(args.compare) if args.compare else {}
        traces = {}
        for name, inputs, mask, alpha, _, _ in cases():
            traces[name] = t = threshold_trace(inputs, mask, alpha)
            ref = saved.get("trace_" + name)
            print(
                f"{name}: z_max, n_real, kb_lo, kb_hi {t[0, 0, :4].tolist()}"
                + (f" (interpreter {ref[0, 0, :4].tolist()})" if ref is not None else "")
            )
            for it in range(1, t.shape[0]):
                if torch.isnan(t[it, 0, 0]):
                    break
                line = " ".join(f"{v:.6g}" for v in t[it, 0].tolist())
                if ref is not None:
                    line += " | interp " + " ".join(f"{v:.6g}" for v in ref[it, 0].tolist())
                print(f"  pass {it} tau S0 S1 S2 f lo hi done: {line}")
            if ref is not None:
                print("  " + trace_differences(t, ref, inputs[0].shape[2]))
        if args.save:
            results = torch.load(args.save) if os.path.exists(args.save) else {}
            results.update({"trace_" + n: t for n, t in traces.items()})
            torch.save(results, args.save)
        return
    if args.logits:
        for name, inputs, _, alpha, _, _ in cases():
            print(name, end=": ")
            logit_probe(inputs, alpha)
        return
    saved = {} if args.save else torch.load(args.compare) if args.compare else {}
    blocks = os.environ.get("ENTMAX_IPA_BLOCK", "default")
    results = {}
    for name, inputs, mask, alpha, dtype, tf32 in cases():
        got = run(inputs, mask, alpha, dtype, tf32)
        results[name] = got
        ref = dense_entmax_ipa_attention(*inputs, alpha.double(), mask)
        line = f"{DEVICE} blocks {blocks} {name}: out vs float64 " + " ".join(
            f"{relative_error(o, r):.1e}" for o, r in zip(got["outs"], ref)
        )
        if name in saved and saved[name]["block_mask"].shape != got["block_mask"].shape:  # other tiles
            s = saved[name]
            finite = torch.isfinite(s["tau"]) & torch.isfinite(got["tau"])
            line += f"; vs interpreter: tau {relative_error(got['tau'][finite], s['tau'][finite]):.1e}"
        elif name in saved:
            s = saved[name]
            finite = torch.isfinite(s["tau"]) & torch.isfinite(got["tau"])
            line += (
                f"; vs interpreter: tau {relative_error(got['tau'][finite], s['tau'][finite]):.1e}"
                f" (inf differ {(torch.isfinite(s['tau']) != torch.isfinite(got['tau'])).sum().item()})"
                f", passes max {got['passes'].max().item()} vs {s['passes'].max().item()}"
                f", block mask differs in {(got['block_mask'] != s['block_mask']).sum().item()}"
                f" of {s['block_mask'].numel()}"
                f" (kept {got['block_mask'].sum().item()} vs {s['block_mask'].sum().item()})"
                f", outs " + " ".join(f"{relative_error(o, r):.1e}" for o, r in zip(got["outs"], s["outs"]))
            )
        print(line, flush=True)
    if args.save:
        torch.save(results, args.save)


if __name__ == "__main__":
    main()
