"""FP8 (e4m3) forward kernel of FlashIPA for sampling (inference only); host side in `fp8.py`.

Per token and head the kernel reads (layout as in `triton_kernels.py`, plus):

    Q8, K8  [T, H, C_PAD] e4m3   q and k rotated by one random orthogonal Hadamard matrix (or not, in
                                 the per-tensor mode), divided by their block scales
    SQ, SK  [H, T] fp32          the block scale of each token's row (SQ also carries W_L / sqrt(C)
                                 log2(e)): scalar logit = (Q8_i . K8_j) SQ_i SK_j
    QH, QL, KH, KL, KN           the point-bias operands of the 16-bit kernel (hi + lo in bf16 or fp16):
                                 the point term cancels large squared distances, 3 mantissa bits would
                                 lose it
    VT      [H, DV, TP] e4m3     value columns [v | v_pts - c | pair_k], transposed (tokens contiguous:
                                 wgmma takes fp8 operands K-major), each column divided by its scale SV;
                                 sequence s from column VSTART[s], a multiple of 16 (16-byte aligned
                                 rows: the key tiles' loads become asynchronous copies)
    SV      [H, DV] fp32

Probabilities enter the value dot as e4m3 scaled by 2^8 (exp2 of s - m + 8): e4m3's subnormals start
at 2^-6, so unscaled the many small probabilities of a long sequence would round to a few levels;
the row sum carries the same 2^8, which cancels in the normalisation. The running maxima are rounded
up to integers, so every rescaling is by a power of two and e4m3's rounding of a probability does not
depend on which key tile set the maximum: the result does not depend on the tiling (up to float32
sums), and `fp8.emulate` reproduces it.
"""

import triton
import triton.language as tl

from flashipa_kernels.flash_ipa.triton_kernels import _load_row, _load_tile, _point_tiles, _sequence_bounds

P_SHIFT = tl.constexpr(8.0)  # log2 of the probabilities' scale in e4m3


@triton.jit
def _fp8_operand(x, UPCAST: tl.constexpr):
    """An e4m3 dot operand; with UPCAST (interpreter) held in float32, exactly."""
    if UPCAST:
        x = x.to(tl.float32)
    return x


@triton.jit
def _to_e4m3(x, UPCAST: tl.constexpr):
    """float32 x >= 0 rounded to e4m3 as a dot operand. With UPCAST (interpreter) held in float32, and
    Triton's interpreter corrected: it rounds values at the top of a binade down to the binade's
    start (125.7 -> 64, not 128), so a result below x / 1.5 is doubled."""
    y = x.to(tl.float8e4nv)
    if UPCAST:
        y = y.to(tl.float32)
        y = tl.where(y * 1.5 < x, 2.0 * y, y)
    return y


@triton.jit
def _fp8_step(
    acc,
    m_i,
    l_i,
    q8,
    sq,
    qh,
    ql,
    qhp,
    K8,
    SK,
    KH,
    KL,
    KN,
    VT,
    h,
    H,
    T,
    TP,
    start,
    vstart,
    n,
    start_n,
    MASKED: tl.constexpr,
    SPLIT: tl.constexpr,
    UPCAST: tl.constexpr,
    C_PAD: tl.constexpr,
    PBW: tl.constexpr,
    PLW: tl.constexpr,
    DV: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """One key tile of the online softmax; acc [BM, DV] float32."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    tok_n = start + offs_n
    row_n = offs_n < n
    k8 = _fp8_operand(
        _load_tile(K8 + h * C_PAD, tok_n, row_n, H * C_PAD, tl.arange(0, C_PAD), C_PAD, C_PAD, MASKED, False), UPCAST
    )  # [BN, C_PAD]
    sk = _load_row(SK + h * T, tok_n, row_n, 0.0, MASKED)  # [BN]
    # [BN, PBW], [BN, PLW], [BN, PLW]
    kh, kl, khp, _ = _point_tiles(KH + h * PBW, KL + h * PLW, tok_n, row_n, H, PBW, PLW, 0, MASKED, SPLIT, UPCAST)
    kn = _load_row(KN + h * T, tok_n, row_n, float("-inf"), MASKED)  # [BN]
    s = tl.dot(q8, tl.trans(k8)) * (sq[:, None] * sk[None, :])  # [BM, BN]
    s = tl.dot(qh, tl.trans(kh), s)
    if SPLIT:
        s = tl.dot(ql, tl.trans(khp), s)
        s = tl.dot(qhp, tl.trans(kl), s)
    s = s + kn[None, :]
    m_new = tl.maximum(m_i, tl.ceil(tl.max(s, axis=1)))  # integer maxima: see the module docstring
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.exp2(s - (m_safe - P_SHIFT)[:, None])  # 2^8 times the probabilities of the running max
    alpha = tl.exp2(m_i - m_safe)
    l_i = l_i * alpha + tl.sum(p, axis=1)
    c_dv = tl.arange(0, DV)
    vt_ptrs = VT + h * DV * TP + c_dv[:, None] * TP + (vstart + offs_n)[None, :]
    if MASKED:
        vt = tl.load(vt_ptrs, mask=row_n[None, :], other=0.0)
    else:
        vt = tl.load(vt_ptrs)  # [DV, BN]
    acc = tl.dot(_to_e4m3(p, UPCAST), tl.trans(_fp8_operand(vt, UPCAST)), acc * alpha[:, None])
    return acc, m_new, l_i


@triton.jit
def _ipa_fwd_fp8_kernel(
    Q8,
    SQ,
    K8,
    SK,
    QH,
    QL,
    KH,
    KL,
    KN,
    VT,
    SV,
    VSTART,
    CENTRE,
    CU_SEQLENS,
    O,
    OP,
    OZ,
    H,
    T,
    TP,
    L_BUCKET,
    SPLIT: tl.constexpr,
    UPCAST: tl.constexpr,
    C_PAD: tl.constexpr,
    CV: tl.constexpr,
    CV_PAD: tl.constexpr,
    PBW: tl.constexpr,
    PLW: tl.constexpr,
    PV3: tl.constexpr,
    PVW: tl.constexpr,
    RZ: tl.constexpr,
    DV: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """One program: BLOCK_M queries of one sequence and one head, online softmax over all keys.
    L_BUCKET (unused here) is an autotune key."""
    pid_m = tl.program_id(0)
    pid_sh = tl.program_id(1)
    seq = pid_sh // H
    h = pid_sh % H
    start, n = _sequence_bounds(CU_SEQLENS, seq)
    if pid_m * BLOCK_M >= n:
        return
    vstart = tl.multiple_of(tl.load(VSTART + seq), 16)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = offs_m < n
    tok_m = start + offs_m
    q8 = _fp8_operand(
        _load_tile(Q8 + h * C_PAD, tok_m, m_ok, H * C_PAD, tl.arange(0, C_PAD), C_PAD, C_PAD, True, False), UPCAST
    )  # [BM, C_PAD]
    sq = tl.load(SQ + h * T + tok_m, mask=m_ok, other=0.0)  # [BM]
    # [BM, PBW], [BM, PLW], [BM, PLW]
    qh, ql, qhp, _ = _point_tiles(QH + h * PBW, QL + h * PLW, tok_m, m_ok, H, PBW, PLW, 0, True, SPLIT, UPCAST)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, DV], tl.float32)
    n_full = (n // BLOCK_N) * BLOCK_N
    for start_n in range(0, n_full, BLOCK_N):
        acc, m_i, l_i = _fp8_step(
            acc,
            m_i,
            l_i,
            q8,
            sq,
            qh,
            ql,
            qhp,
            K8,
            SK,
            KH,
            KL,
            KN,
            VT,
            h,
            H,
            T,
            TP,
            start,
            vstart,
            n,
            start_n,
            False,
            SPLIT,
            UPCAST,
            C_PAD,
            PBW,
            PLW,
            DV,
            BLOCK_N,
        )
    if n_full < n:
        acc, m_i, l_i = _fp8_step(
            acc,
            m_i,
            l_i,
            q8,
            sq,
            qh,
            ql,
            qhp,
            K8,
            SK,
            KH,
            KL,
            KN,
            VT,
            h,
            H,
            T,
            TP,
            start,
            vstart,
            n,
            n_full,
            True,
            SPLIT,
            UPCAST,
            C_PAD,
            PBW,
            PLW,
            DV,
            BLOCK_N,
        )

    # a real query (its own KN is finite) with at least one real key
    q_ok = m_ok & (tl.load(KN + h * T + tok_m, mask=m_ok, other=float("-inf")) > float("-inf")) & (l_i > 0.0)
    inv_l = tl.where(q_ok, 1.0 / tl.where(q_ok, l_i, 1.0), 0.0)
    c_dv = tl.arange(0, DV)
    out = acc * inv_l[:, None] * tl.load(SV + h * DV + c_dv)[None, :]  # [BM, DV]
    rows = m_ok[:, None]
    # columns [0, CV) -> O, [CV_PAD, CV_PAD + PV3) -> OP (plus the centre), [CV_PAD + PVW, + RZ) -> OZ
    tl.store(
        O + h * CV + tok_m[:, None] * (H * CV) + tl.minimum(c_dv, CV - 1)[None, :],
        out.to(O.dtype.element_ty),
        mask=rows & (c_dv[None, :] < CV),
    )
    c_p = tl.maximum(c_dv - CV_PAD, 0)
    centre = tl.load(CENTRE + seq * 3 + c_p % 3)  # [DV]
    op = tl.where(q_ok[:, None], out + centre[None, :], 0.0)
    tl.store(
        OP + h * PV3 + tok_m[:, None] * (H * PV3) + tl.minimum(c_p, PV3 - 1)[None, :],
        op.to(OP.dtype.element_ty),
        mask=rows & (c_dv[None, :] >= CV_PAD) & (c_dv[None, :] < CV_PAD + PV3),
    )
    c_z = tl.maximum(c_dv - CV_PAD - PVW, 0)
    tl.store(
        OZ + h * RZ + tok_m[:, None] * (H * RZ) + tl.minimum(c_z, RZ - 1)[None, :],
        out.to(OZ.dtype.element_ty),
        mask=rows & (c_dv[None, :] >= CV_PAD + PVW) & (c_z[None, :] < RZ),
    )
