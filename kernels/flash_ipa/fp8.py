"""FP8 (e4m3) forward of FlashIPA for sampling (inference only): quantised operands, launcher and a
torch emulation of the same arithmetic (tests on the CPU; kernel in `fp8_kernel.py`).

Two quantisations (FlashAttention-3's comparison):
  "block_hadamard"  q and k rotated by one random orthogonal Hadamard matrix R (q.k = qR.kR: the logits
                    do not change, outlier features are spread over all columns), then one scale per
                    block of `block` tokens and head; value columns one scale each (per head)
  "tensor"          plain FP8: one scale per tensor (q, k, v, v_pts, pair_k), no rotation
The scalar q.k logits and the probability x value dot run in e4m3 (2x the bf16 MMA rate on sm_89+);
the point-bias term keeps the 16-bit kernel's hi + lo operands (see fp8_kernel.py).
"""

import math

import torch
import torch.nn.functional as F
import triton

from flashipa_kernels.flash_ipa import launch
from flashipa_kernels.flash_ipa.attention import token_major

FP8 = torch.float8_e4m3fn
E4M3_MAX = 448.0
MODES = ("block_hadamard", "tensor")
P_SHIFT = 8.0  # fp8_kernel.P_SHIFT


def hadamard(n, seed=0, device="cpu"):
    """[n, n] float32 random orthogonal Hadamard matrix diag(s) H_n / sqrt(n), s random signs (n a power of 2)."""
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)])
    g = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (n,), generator=g, dtype=torch.float64) * 2 - 1
    return (signs[:, None] * h / math.sqrt(n)).float().to(device)


def quantise_rows(x, block):
    """x [T, H, D] float32 -> (x8 [T, H, D] e4m3, scale [H, T] float32) with x ~ x8 * scale: one scale
    per block of `block` tokens and head (None: one per tensor), its largest entry mapped to 448."""
    T, H, D = x.shape
    if block is None:
        amax = x.abs().amax().expand(H, T)
    else:
        nb = triton.cdiv(T, block)
        xb = F.pad(x, (0, 0, 0, 0, 0, nb * block - T)).view(nb, block, H, D)
        amax = xb.abs().amax(dim=(1, 3)).t().repeat_interleave(block, dim=1)[:, :T]  # [H, T]
    scale = amax.clamp_min(1e-30) / E4M3_MAX
    return (x / scale.t()[:, :, None]).to(FP8), scale.contiguous()


def value_columns(cu_seqlens, T, max_seqlen):
    """Where each token's values sit along VT's token axis: every sequence starts at a multiple of 16
    (the kernel's key tiles then load 16-byte aligned rows of e4m3, as asynchronous copies).
    Returns vstart [S] int32 (each sequence's first column), vcol [T] long, and TP (VT's length)."""
    S = cu_seqlens.shape[0] - 1
    cu = cu_seqlens.long()
    lengths = cu[1:] - cu[:-1]
    vstart = torch.cat([cu.new_zeros(1), ((lengths + 15) // 16 * 16).cumsum(0)[:-1]])  # [S]
    tok = torch.arange(T, device=cu.device)
    seq = tok // max_seqlen if T == S * max_seqlen else torch.searchsorted(cu[1:], tok, right=True)
    return vstart.to(torch.int32), tok - cu[seq] + vstart[seq], triton.cdiv(T, 16) * 16 + 16 * S


def quantise_columns(x, segments, vcol, tp):
    """x [T, H, DV] float32 -> (xt [H, DV, tp] e4m3, tokens contiguous at columns vcol [T]; scale [H, DV]
    float32): one scale per head and column, or with `segments` (column bounds) one per segment of
    columns (per tensor)."""
    T, H, DV = x.shape
    amax = x.abs().amax(dim=0)  # [H, DV]
    if segments is not None:
        amax = torch.cat([x[:, :, a:b].abs().amax().expand(H, b - a) for a, b in segments], dim=1)
    scale = amax.clamp_min(1e-30) / E4M3_MAX
    xt = torch.zeros(H, DV, tp, dtype=FP8, device=x.device)
    xt[:, :, vcol] = (x / scale).to(FP8).permute(1, 2, 0)
    return xt, scale.contiguous()


def operands_fp8(
    q,
    k,
    v,
    q_pts,
    k_pts,
    v_pts,
    bias_q,
    bias_k,
    pair_k,
    point_weights,
    key_mask,
    cu_seqlens,
    max_seqlen,
    mode,
    block=64,
    seed=0,
):
    """Token-major inputs -> the FP8 kernel's operands (dict, names as in fp8_kernel.py) and dims."""
    if mode not in MODES:
        raise ValueError(f"kernels/flash_ipa/fp8.py: mode {mode!r} is not one of {MODES}")
    T, H, C = q.shape
    d = launch.dims(q, v, q_pts, v_pts, bias_q, pair_k, bias_tile=False)  # the FP8 kernel reads one point-bias tile
    centres = launch.sequence_centres(k_pts, key_mask, cu_seqlens, max_seqlen)  # [S, 3]
    dot16 = q if q.dtype in (torch.bfloat16, torch.float16) else q.to(torch.bfloat16)  # points' dot dtype
    base = launch.operands(
        dot16, q_pts, k_pts, v_pts, bias_q, bias_k, point_weights, key_mask, centres, cu_seqlens, max_seqlen, True, d
    )
    # padded tokens zeroed: their contents must not set any scale
    real = torch.ones(T, 1, 1, device=q.device) if key_mask is None else key_mask.view(T, 1, 1).float()
    qf = F.pad(q.float() * real, (0, d["C_PAD"] - C))  # [T, H, C_PAD]
    kf = F.pad(k.float() * real, (0, d["C_PAD"] - C))
    blocked = mode == "block_hadamard"
    if blocked:
        rot = hadamard(d["C_PAD"], seed, q.device)
        qf, kf = qf @ rot, kf @ rot
    q8, sq = quantise_rows(qf, block if blocked else None)
    k8, sk = quantise_rows(kf, block if blocked else None)
    c = launch.token_centres(centres, cu_seqlens, T, max_seqlen)[:, None, None, :]  # [T, 1, 1, 3]
    values = (
        torch.cat(
            [
                F.pad(v.float(), (0, d["CV_PAD"] - d["CV"])),
                F.pad((v_pts.float() - c).flatten(2), (0, d["PVW"] - d["PV3"])),
                F.pad(pair_k.float().flatten(1), (0, d["RZ_PAD"] - d["RZ"]))[:, None, :].expand(T, H, d["RZ_PAD"]),
            ],
            dim=-1,
        )
        * real
    )
    values = F.pad(values, (0, triton.next_power_of_2(values.shape[-1]) - values.shape[-1]))  # [T, H, DV]
    cv, pvw = d["CV_PAD"], d["PVW"]
    segments = None if blocked else ((0, cv), (cv, cv + pvw), (cv + pvw, values.shape[-1]))
    vstart, vcol, tp = value_columns(cu_seqlens, T, max_seqlen)
    vt, sv = quantise_columns(values, segments, vcol, tp)
    sq = sq * (launch.W_L / math.sqrt(C) / math.log(2.0))
    ops = dict(
        Q8=q8,
        SQ=sq.contiguous(),
        K8=k8,
        SK=sk,
        QH=base["QH"],
        QL=base["QL"],
        KH=base["KH"],
        KL=base["KL"],
        KN=base["KN"],
        VT=vt,
        SV=sv,
        VSTART=vstart,
        VCOL=vcol,
        CENTRE=centres,
        SPLIT=base["SPLIT"],
    )
    return ops, d


def _configs():
    """128 queries x 64 keys, 8 warps (the 16-bit forward's rule, launch._configs), 3 or 2 stages; both
    tried even with FLASHIPA_AUTOTUNE=0. ptxas for sm_90 (Triton 3.6, anchor dims): no spill in the key
    loop (136 B of stack in the peeled tile and the epilogue); 128 x 128 spills 1472 B, 64 x 64 on
    4 warps 592 B."""
    if launch.INTERPRETED:
        return [triton.Config({"BLOCK_M": 32, "BLOCK_N": 32}, num_warps=4, num_stages=1)]
    return [triton.Config({"BLOCK_M": 128, "BLOCK_N": 64}, num_warps=8, num_stages=s) for s in (3, 2)]


_kernel = None


def _fwd_kernel():
    global _kernel
    if _kernel is None:  # fp8_kernel imports triton.language names only present with fp8 support
        from flashipa_kernels.flash_ipa import fp8_kernel

        _kernel = triton.autotune(_configs(), key=["C_PAD", "CV", "PBW", "PV3", "RZ", "DV", "SPLIT", "L_BUCKET"])(
            fp8_kernel._ipa_fwd_fp8_kernel
        )
    return _kernel


def forward(ops, d, cu_seqlens, max_seqlen, T, H, out_dtypes, device):
    """Launch the FP8 forward on prepared operands; returns o [T, H, CV], o_pts [T, H, PV3], o_pair [T, H, RZ]."""
    o = torch.empty(T, H, d["CV"], dtype=out_dtypes[0], device=device)
    o_pts = torch.empty(T, H, d["PV3"], dtype=out_dtypes[1], device=device)
    o_pair = torch.empty(T, H, d["RZ"], dtype=out_dtypes[2], device=device)
    n_seq = cu_seqlens.shape[0] - 1
    dv = ops["VT"].shape[1]
    grid = lambda meta: (triton.cdiv(max_seqlen, meta["BLOCK_M"]), n_seq * H)  # noqa: E731
    _fwd_kernel()[grid](
        ops["Q8"],
        ops["SQ"],
        ops["K8"],
        ops["SK"],
        ops["QH"],
        ops["QL"],
        ops["KH"],
        ops["KL"],
        ops["KN"],
        ops["VT"],
        ops["SV"],
        ops["VSTART"],
        ops["CENTRE"],
        cu_seqlens,
        o,
        o_pts,
        o_pair,
        H,
        T,
        ops["VT"].shape[2],
        max(1024, launch.next_power_of_2(max_seqlen)),
        SPLIT=ops["SPLIT"],
        UPCAST=launch.INTERPRETED,
        C_PAD=d["C_PAD"],
        CV=d["CV"],
        CV_PAD=d["CV_PAD"],
        PBW=d["PBW"],
        PLW=d["PLW"],
        PV3=d["PV3"],
        PVW=d["PVW"],
        RZ=d["RZ"],
        DV=dv,
    )
    return o, o_pts, o_pair


def flash_ipa_attention_fp8(
    q,
    k,
    v,
    q_pts,
    k_pts,
    v_pts,
    bias_q,
    bias_k,
    pair_k,
    point_weights,
    mask: torch.Tensor | None = None,
    *,
    cu_seqlens=None,
    max_seqlen=None,
    mode="block_hadamard",
    block=64,
    seed=0,
):
    """`flash_ipa_attention`'s forward (same arguments and outputs) with e4m3 dots, inference only.
    mode: "block_hadamard" or "tensor" (module docstring); block: tokens per scale of q and k; seed: of
    the Hadamard rotation's signs. The point-bias operands take q's dtype (bf16 for float32 inputs)."""
    if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v, q_pts, k_pts, v_pts)):
        raise RuntimeError(
            "kernels/flash_ipa/fp8.py: the FP8 forward has no backward; call it under "
            "torch.no_grad() (sampling) or use flash_ipa_attention"
        )
    B, L, H = q.shape[:3]
    tokens, key_mask, cu_seqlens, max_seqlen = token_major(q, mask, cu_seqlens, max_seqlen)
    pw = point_weights.contiguous()
    ops, d = operands_fp8(
        tokens(q),
        tokens(k),
        tokens(v),
        tokens(q_pts),
        tokens(k_pts),
        tokens(v_pts),
        tokens(bias_q),
        tokens(bias_k),
        tokens(pair_k),
        pw,
        key_mask,
        cu_seqlens,
        max_seqlen,
        mode,
        block,
        seed,
    )
    o, o_pts, o_pair = forward(ops, d, cu_seqlens, max_seqlen, B * L, H, (v.dtype, v_pts.dtype, pair_k.dtype), q.device)
    return o.view(B, L, H, -1), o_pts.view(B, L, H, -1, 3), o_pair.view(B, L, H, *pair_k.shape[-2:])


def emulate(ops, d, T, H, round_p=True):
    """The FP8 kernel's arithmetic in float64 torch (one sequence, no mask: tests on the CPU); round_p
    False leaves the probabilities unrounded. Returns o [T, H, CV], o_pts [T, H, PV3], o_pair [T, H, RZ] float64."""
    f = torch.float64
    q8 = ops["Q8"].to(f) * ops["SQ"].t().to(f)[:, :, None]  # [T, H, C_PAD], logit scale included
    k8 = ops["K8"].to(f) * ops["SK"].t().to(f)[:, :, None]
    lo_pad = (0, d["PBW"] - d["PLW"])  # the lo parts cover the point columns only
    qp = ops["QH"].to(f) + (F.pad(ops["QL"].to(f), lo_pad) if ops["SPLIT"] else 0.0)  # [T, H, PBW]
    kp = ops["KH"].to(f) + (F.pad(ops["KL"].to(f), lo_pad) if ops["SPLIT"] else 0.0)
    s = torch.einsum("ihc,jhc->hij", q8, k8) + torch.einsum("ihc,jhc->hij", qp, kp)
    s = s + ops["KN"].to(f)[:, None, :]  # [H, T, T], base 2
    p = torch.exp2(s - s.amax(-1, keepdim=True).ceil() + P_SHIFT)  # the kernel's integer row maxima
    l_sum = p.sum(-1, keepdim=True)
    if round_p:
        p = p.to(FP8).to(f)
    vt = ops["VT"][:, :, ops["VCOL"]].to(f) * ops["SV"].to(f)[:, :, None]  # [H, DV, T]
    out = (p @ vt.transpose(1, 2) / l_sum).permute(1, 0, 2)  # [T, H, DV]
    cv, pvw = d["CV_PAD"], d["PVW"]
    o_pts = out[..., cv : cv + d["PV3"]] + ops["CENTRE"].to(f)[0].repeat(d["PV3"] // 3)
    return out[..., : d["CV"]], o_pts, out[..., cv + pvw : cv + pvw + d["RZ"]]
