"""One Triton kernel that writes the FlashIPA kernels' derived operands (QS, QH, QL, KH, KL, KN, KNORM, VPC;
layout in `triton_kernels.py`) from the inputs, in place of some forty small torch ops per call
(`launch.operands` calls it).

Per program: BLOCK_T tokens of one head. Each token's sequence, for its centre, is `tok // max_seqlen`
when all sequences are max_seqlen long (UNIFORM) and otherwise a binary search in cu_seqlens.
Hi + lo split of a float32 value x into the dot dtype: hi = x rounded to it (to tf32 for float32 dots,
round half away from zero on the bits), lo = x - hi rounded to it; without SPLIT (exact float32 dots)
hi = x and QL, KL are not written. Only the point columns are split: QL, KL are PLW wide, and the
bias columns keep their hi part alone (triton_kernels.py), after the points in QH, KH or, when BW > 0,
in a tile of their own at columns PBW ... PBW + BW of the same rows.
"""

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _to(x, DT: tl.constexpr, RNE_BITS: tl.constexpr):
    """float32 x rounded to DT, to nearest even. RNE_BITS: bf16 rounded on the bits first (Triton's
    interpreter truncates float32 to bfloat16; the GPU rounds to nearest)."""
    if RNE_BITS:
        bits = x.to(tl.int32, bitcast=True)
        x = ((bits + 0x7FFF + ((bits >> 16) & 1)) & -65536).to(tl.float32, bitcast=True)
    return x.to(DT)


@triton.jit
def _hi_lo(x, DT: tl.constexpr, SPLIT: tl.constexpr, RNE_BITS: tl.constexpr):
    """float32 x -> (hi, lo) in DT (lo = hi when not SPLIT)."""
    if DT == tl.float32:
        if SPLIT:
            bits = x.to(tl.int32, bitcast=True)
            hi = ((bits + 0x1000) & -0x2000).to(tl.float32, bitcast=True)
        else:
            hi = x
    else:
        hi = _to(x, DT, RNE_BITS)
    lo = hi
    if SPLIT:
        lo = _to(x - hi.to(tl.float32), DT, RNE_BITS)
    return hi, lo


@triton.jit
def _sequence_of(tok, CU_SEQLENS, max_seqlen, n_seq, UNIFORM: tl.constexpr, SEARCH_STEPS: tl.constexpr):
    """[BT] int32 sequence index of each token."""
    if UNIFORM:
        seq = tok // max_seqlen
    else:  # largest s with cu_seqlens[s] <= tok: lo <= hi, both in [0, n_seq - 1]
        lo = tl.zeros_like(tok)
        hi = tl.zeros_like(tok) + (n_seq - 1)
        for _ in tl.static_range(SEARCH_STEPS):
            mid = (lo + hi + 1) // 2
            go = tl.load(CU_SEQLENS + mid) <= tok
            lo = tl.where(go, mid, lo)
            hi = tl.where(go, hi, mid - 1)
        seq = lo
    return seq


@triton.jit
def _point_row(PTS, tok, ok, CENTRE, seq, h, H, pts_scale, P3: tl.constexpr, W: tl.constexpr):
    """[BT, W] float32: [pts_scale (pts - c), 0 ...] of head h (W >= P3)."""
    col = tl.arange(0, W)[None, :]
    rows = ok[:, None]
    c = tl.load(CENTRE + seq[:, None] * 3 + col % 3, mask=rows, other=0.0)  # [BT, W]
    pts = tl.load(
        PTS + tok[:, None] * (H * P3) + h * P3 + tl.minimum(col, P3 - 1), mask=rows & (col < P3), other=0.0
    ).to(tl.float32)
    return tl.where(col < P3, (pts - c) * pts_scale, 0.0)


@triton.jit
def _point_bias_row(
    PTS, BIAS, tok, ok, CENTRE, seq, h, H, pts_scale, bias_scale, P3: tl.constexpr, RB: tl.constexpr, PBW: tl.constexpr
):
    """[BT, PBW] float32: [pts_scale (pts - c), bias_scale bias, 0 ...] of head h."""
    col = tl.arange(0, PBW)[None, :]
    bias = tl.load(
        BIAS + tok[:, None] * (H * RB) + h * RB + tl.minimum(tl.maximum(col - P3, 0), RB - 1),
        mask=ok[:, None] & (col >= P3) & (col < P3 + RB),
        other=0.0,
    ).to(tl.float32)
    return _point_row(PTS, tok, ok, CENTRE, seq, h, H, pts_scale, P3, PBW) + bias * bias_scale


@triton.jit
def _ipa_prep_kernel(
    Q,
    QPTS,
    KPTS,
    VPTS,
    BQ,
    BK,
    PW,
    CENTRE,
    CU_SEQLENS,
    KMASK,
    QS,
    QH,
    QL,
    KH,
    KL,
    KN,
    KNORM,
    VPC,
    T,
    H,
    max_seqlen,
    n_seq,
    qs_scale,
    bias_scale,
    HAS_MASK: tl.constexpr,
    SPLIT: tl.constexpr,
    UNIFORM: tl.constexpr,
    SEARCH_STEPS: tl.constexpr,
    RNE_BITS: tl.constexpr,
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    P3: tl.constexpr,
    RB: tl.constexpr,
    PBW: tl.constexpr,
    PLW: tl.constexpr,
    BW: tl.constexpr,
    PV3: tl.constexpr,
    PVW: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    DT = QH.dtype.element_ty
    tok = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    h = tl.program_id(1)
    ok = tok < T
    rows = ok[:, None]
    seq = _sequence_of(tok, CU_SEQLENS, max_seqlen, n_seq, UNIFORM, SEARCH_STEPS)
    pw = tl.load(PW + h).to(tl.float32)

    c_qk = tl.arange(0, C_PAD)[None, :]
    q = tl.load(Q + tok[:, None] * (H * C) + h * C + c_qk, mask=rows & (c_qk < C), other=0.0).to(tl.float32)
    tl.store(QS + tok[:, None] * (H * C) + h * C + c_qk, _to(q * qs_scale, DT, RNE_BITS), mask=rows & (c_qk < C))

    c_pb = tl.arange(0, PBW)[None, :]
    row_off = tok[:, None] * (H * (PBW + BW)) + h * (PBW + BW)  # [BT, 1]
    pb_off = row_off + c_pb
    if BW > 0:  # points alone in the hi tile, the bias in its own tile after them
        qp = _point_row(QPTS, tok, ok, CENTRE, seq, h, H, pw * LOG2E, P3, PBW)
        kp = _point_row(KPTS, tok, ok, CENTRE, seq, h, H, 1.0, P3, PBW)
        c_b = tl.arange(0, BW)[None, :]
        b_in = tok[:, None] * (H * RB) + h * RB + tl.minimum(c_b, RB - 1)
        b_ok = rows & (c_b < RB)
        qb = tl.load(BQ + b_in, mask=b_ok, other=0.0).to(tl.float32) * bias_scale
        kb = tl.load(BK + b_in, mask=b_ok, other=0.0).to(tl.float32)
        tl.store(QH + row_off + PBW + c_b, _hi_lo(qb, DT, SPLIT, RNE_BITS)[0], mask=rows)
        tl.store(KH + row_off + PBW + c_b, _hi_lo(kb, DT, SPLIT, RNE_BITS)[0], mask=rows)
    else:
        qp = _point_bias_row(QPTS, BQ, tok, ok, CENTRE, seq, h, H, pw * LOG2E, bias_scale, P3, RB, PBW)
        kp = _point_bias_row(KPTS, BK, tok, ok, CENTRE, seq, h, H, 1.0, 1.0, P3, RB, PBW)
    qh, _ = _hi_lo(qp, DT, SPLIT, RNE_BITS)
    tl.store(QH + pb_off, qh, mask=rows)
    kh, _ = _hi_lo(kp, DT, SPLIT, RNE_BITS)
    tl.store(KH + pb_off, kh, mask=rows)
    # the point columns again, PLW wide, for the lo parts and the key norms
    c_pl = tl.arange(0, PLW)[None, :]
    pl_off = tok[:, None] * (H * PLW) + h * PLW + c_pl
    khp, kl = _hi_lo(_point_row(KPTS, tok, ok, CENTRE, seq, h, H, 1.0, P3, PLW), DT, SPLIT, RNE_BITS)
    k_seen = khp.to(tl.float32)  # the key points as the dots see them
    if SPLIT:
        _, ql = _hi_lo(_point_row(QPTS, tok, ok, CENTRE, seq, h, H, pw * LOG2E, P3, PLW), DT, SPLIT, RNE_BITS)
        tl.store(QL + pl_off, ql, mask=rows)
        tl.store(KL + pl_off, kl, mask=rows)
        k_seen += kl.to(tl.float32)
    knorm = tl.sum(k_seen * k_seen, axis=1)  # [BT]; columns from P3 on are 0
    tl.store(KNORM + h * T + tok, knorm, mask=ok)
    kn = knorm * (-0.5 * LOG2E * pw)
    if HAS_MASK:
        kn = tl.where(tl.load(KMASK + tok, mask=ok, other=0) != 0, kn, float("-inf"))
    tl.store(KN + h * T + tok, kn, mask=ok)

    c_pv = tl.arange(0, PVW)[None, :]
    vc = tl.load(CENTRE + seq[:, None] * 3 + c_pv % 3, mask=rows, other=0.0)
    vp = tl.load(
        VPTS + tok[:, None] * (H * PV3) + h * PV3 + tl.minimum(c_pv, PV3 - 1), mask=rows & (c_pv < PV3), other=0.0
    ).to(tl.float32)
    tl.store(
        VPC + tok[:, None] * (H * PVW) + h * PVW + c_pv,
        _to(tl.where(c_pv < PV3, vp - vc, 0.0), DT, RNE_BITS),
        mask=rows,
    )
