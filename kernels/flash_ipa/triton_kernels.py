"""FlashIPA Triton kernels: forward, backward preprocess, dK/dV and dQ.

Reading order as in Triton's fused-attention tutorial: tile loaders, forward kernel, backward
preprocess (Delta), dK/dV kernel, dQ kernel. Host-side launch code, including the operands below,
lives in `launch.py`.

Layout. Every per-residue tensor is token-major and contiguous: a padded batch [B, L, ...] is read
as B * L tokens, and sequence s owns tokens cu_seqlens[s] .. cu_seqlens[s + 1] - 1 (varlen). Per
token and head the kernels read

    QS, K  [T, H, C]      QS = q * scalar_scale * log2(e): the logits come out in base 2
    V      [T, H, CV]     PK [T, RZ] (RZ = R C_z, no head axis)
    QH     [T, H, PBW]    [pw log2(e) (q_pts - c), W_L log2(e) bias_q, 0 ...] rounded to the dot dtype (hi)
    KH     [T, H, PBW]    [k_pts - c, bias_k, 0 ...], hi
                          (with BW > 0 the bias has a tile of its own: rows [points, 0 ... | bias, 0 ...],
                          PBW + BW wide, when that is narrower than one tile; launch.point_bias_widths)
    QL, KL [T, H, PLW]    lo parts of the point columns only (bias columns and padding are 0)
    KN     [H, T] fp32    -pw log2(e) |k_pts - c|^2 / 2 of the rounded points (kh + kl); -inf for
                          a masked key, so the key mask costs nothing inside the kernels
    VPC    [T, H, PVW]    centred value points v_pts - c

with c one centre per sequence and PBW, PLW = pad(3 P_q) <= PBW, PVW power-of-two widths (zero columns
in memory: rows 16-byte aligned, loads without column masks). `launch.py` writes these once per call.
With QHP, KHP the first PLW columns of QH, KH (a narrower load of the same rows), the logit, base 2, is

    s_ij = QS_i.K_j + QH_i.KH_j + QL_i.KHP_j + QHP_i.KL_j (+ QB_i.KB_j, the bias tiles) + KN_j

The three point dots are a hi/lo split (about 16 mantissa bits from 16-bit operands): the point
term cancels |k - c|^2 / 2 against (q - c).(k - c), and one bf16 rounding of the centred points
gives squared-distance errors near 1 A^2 on a 256-residue crop (docs/kernel_notes.md); the split
keeps them near 0.002 A^2. The bias columns cancel nothing and are rounded once, like q.k, so the lo
dots are PLW wide (32 for 8-10 points) however wide the bias (PBW 128 with content_relpos's rank 42).
The backward's point-gradient dots split ds the same way (hi for every column, lo on the point
columns). QL and KL are dropped (SPLIT = False) for exact float32 dots. Centring changes each row of
logits by a constant, which softmax ignores.

Every dot operand is a plain load, as in the tutorial: no operand of a dot is computed in registers
and stored to shared memory inside a loop (Triton 3.6 faulted on that pattern on Hopper). Key
loops run full tiles without masks and peel the last, partial tile (the `_*_step` helpers take
MASKED). Feature dims need not be powers of two: scalar tiles are padded in registers (the *_PAD
constexprs) with masked loads.
"""

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _operand(x, UPCAST: tl.constexpr):
    """A loaded dot operand as it is; with UPCAST held in float32 (Triton's interpreter multiplies
    bfloat16 dot operands as raw integers, so tests run 16-bit dots on exactly rounded float32)."""
    if UPCAST:  # one return: Triton 3.6 refuses returns of two dtypes from constexpr branches
        x = x.to(tl.float32)
    return x


@triton.jit
def _round(x, DT: tl.constexpr, UPCAST: tl.constexpr):
    """A register tile (probabilities, ds) rounded to the dot dtype DT; see _operand for UPCAST."""
    y = x.to(DT)
    if UPCAST:
        y = y.to(tl.float32)
    return y


@triton.jit
def _load_tile(
    ptr, tok, row_ok, stride_tok, col, ncol: tl.constexpr, PAD: tl.constexpr, ROWS: tl.constexpr, UPCAST: tl.constexpr
):
    """[ROWS, PAD] tile of a token-major tensor as a dot operand. Masked on rows only when ROWS (a
    partial tile), on columns only when ncol < PAD; zero where masked."""
    ptrs = ptr + tok[:, None] * stride_tok + col[None, :]
    if ROWS:
        if ncol < PAD:
            x = tl.load(ptrs, mask=row_ok[:, None] & (col[None, :] < ncol), other=0.0)
        else:
            x = tl.load(ptrs, mask=row_ok[:, None], other=0.0)
    else:
        if ncol < PAD:
            x = tl.load(ptrs, mask=col[None, :] < ncol, other=0.0)
        else:
            x = tl.load(ptrs)
    return _operand(x, UPCAST)


@triton.jit
def _load_row(ptr, tok, row_ok, other, ROWS: tl.constexpr):
    """[ROWS] float32 vector (KN, LSE, Delta) at tokens `tok`; `other` outside row_ok when ROWS."""
    if ROWS:
        return tl.load(ptr + tok, mask=row_ok, other=other)
    return tl.load(ptr + tok)


@triton.jit
def _logits(
    q_s, qh, ql, qhp, qb, k, kh, kl, khp, kb, kn, SPLIT: tl.constexpr, BW: tl.constexpr, PRECISION: tl.constexpr
):
    """[BM, BN] base-2 logits of a query tile against a key tile (k, kh: [BN, *], kl, khp: [BN, PLW],
    kb: [BN, BW] when BW > 0, kn: [BN])."""
    s = tl.dot(q_s, tl.trans(k), input_precision=PRECISION)
    s = tl.dot(qh, tl.trans(kh), s, input_precision=PRECISION)
    if SPLIT:
        s = tl.dot(ql, tl.trans(khp), s, input_precision=PRECISION)
        s = tl.dot(qhp, tl.trans(kl), s, input_precision=PRECISION)
    if BW > 0:
        s = tl.dot(qb, tl.trans(kb), s, input_precision=PRECISION)
    return s + kn[None, :]


@triton.jit
def _logits_t(
    k, kh, kl, khp, kb, q_s, qh, ql, qhp, qb, kn, SPLIT: tl.constexpr, BW: tl.constexpr, PRECISION: tl.constexpr
):
    """[BN, BM] transposed logits for the key-side kernels (kn: [BN], the rows)."""
    s = tl.dot(k, tl.trans(q_s), input_precision=PRECISION)
    s = tl.dot(kh, tl.trans(qh), s, input_precision=PRECISION)
    if SPLIT:
        s = tl.dot(khp, tl.trans(ql), s, input_precision=PRECISION)
        s = tl.dot(kl, tl.trans(qhp), s, input_precision=PRECISION)
    if BW > 0:
        s = tl.dot(kb, tl.trans(qb), s, input_precision=PRECISION)
    return s + kn[:, None]


@triton.jit
def _point_tiles(
    XH,
    XL,
    tok,
    row_ok,
    H,
    PBW: tl.constexpr,
    PLW: tl.constexpr,
    BW: tl.constexpr,
    ROWS: tl.constexpr,
    SPLIT: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """hi [R, PBW], lo [R, PLW], hi's point columns [R, PLW] and the bias tile [R, BW] of a point-bias
    operand (XH, XL already offset to the head; rows of XH PBW + BW wide); without SPLIT lo is not
    loaded (the hi tile stands in), without a bias tile (BW 0) hi's point columns stand in for it."""
    xh = _load_tile(XH, tok, row_ok, H * (PBW + BW), tl.arange(0, PBW), PBW, PBW, ROWS, UPCAST)
    xhp = xh
    if PLW < PBW:
        xhp = _load_tile(XH, tok, row_ok, H * (PBW + BW), tl.arange(0, PLW), PLW, PLW, ROWS, UPCAST)
    xl = xhp
    if SPLIT:
        xl = _load_tile(XL, tok, row_ok, H * PLW, tl.arange(0, PLW), PLW, PLW, ROWS, UPCAST)
    xb = xhp
    if BW > 0:
        xb = _load_tile(XH + PBW, tok, row_ok, H * (PBW + BW), tl.arange(0, BW), BW, BW, ROWS, UPCAST)
    return xh, xl, xhp, xb


@triton.jit
def _point_grad_dots(
    ds,
    yh,
    yl,
    yhp,
    acc,
    acc_l,
    DT: tl.constexpr,
    SPLIT: tl.constexpr,
    PBW: tl.constexpr,
    PLW: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """acc [R, PBW] += hi(ds) @ yh; acc_l [R, PLW] += lo(ds) @ yhp + hi(ds) @ yl: ds (float32) split
    hi + lo in 16-bit dots (about 16 mantissa bits) on the point columns, where the point gradient
    cancels against the centre (docs/kernel_notes.md, v4); hi alone on the bias columns. With
    PLW == PBW acc_l is left alone and acc takes everything."""
    ds_hi = _round(ds, DT, UPCAST)
    acc = tl.dot(ds_hi, yh, acc, input_precision=PRECISION)
    if DT != tl.float32:
        ds_lo = _round(ds - ds_hi.to(tl.float32), DT, UPCAST)
        if PLW < PBW:
            acc_l = tl.dot(ds_lo, yhp, acc_l, input_precision=PRECISION)
        else:
            acc = tl.dot(ds_lo, yhp, acc, input_precision=PRECISION)
    if SPLIT:
        if PLW < PBW:
            acc_l = tl.dot(ds_hi, yl, acc_l, input_precision=PRECISION)
        else:
            acc = tl.dot(ds_hi, yl, acc, input_precision=PRECISION)
    return acc, acc_l


@triton.jit
def _point_columns(acc, acc_l, PBW: tl.constexpr, PLW: tl.constexpr):
    """[R, PLW] float32: the point columns of acc [R, PBW] plus acc_l, once per program (Triton has no
    column slice: the row is cut into PBW / PLW groups and the first kept)."""
    out = acc  # one return: Triton 3.6 refuses returns of two shapes from constexpr branches
    if PLW < PBW:
        groups = tl.reshape(acc, [acc.shape[0], PBW // PLW, PLW])  # [R, PBW / PLW, PLW]
        first = tl.arange(0, PBW // PLW)[None, :, None] == 0
        out = tl.sum(tl.where(first, groups, 0.0), axis=1) + acc_l
    return out


@triton.jit
def _sequence_bounds(CU_SEQLENS, seq):
    start = tl.load(CU_SEQLENS + seq)  # int32 offsets: launch.py checks T * H * dim < 2^31
    n = tl.load(CU_SEQLENS + seq + 1) - start
    return start, n


@triton.jit
def _fwd_step(
    acc_v,
    acc_p,
    acc_z,
    m_i,
    l_i,
    q_s,
    qh,
    ql,
    qhp,
    qb,
    K,
    KH,
    KL,
    KN,
    V,
    VPC,
    PK,
    h,
    H,
    T,
    start,
    n,
    start_n,
    MASKED: tl.constexpr,
    SPLIT: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    CV: tl.constexpr,
    CV_PAD: tl.constexpr,
    PBW: tl.constexpr,
    PLW: tl.constexpr,
    BW: tl.constexpr,
    PVW: tl.constexpr,
    RZ: tl.constexpr,
    RZ_PAD: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """One key tile of the forward's online softmax."""
    DT = K.dtype.element_ty
    offs_n = start_n + tl.arange(0, BLOCK_N)
    tok_n = start + offs_n
    row_n = offs_n < n
    c_qk = tl.arange(0, C_PAD)
    k = _load_tile(K + h * C, tok_n, row_n, H * C, c_qk, C, C_PAD, MASKED, UPCAST)  # [BN, C_PAD]
    # [BN, PBW], [BN, PLW], [BN, PLW], [BN, BW]
    kh, kl, khp, kb = _point_tiles(
        KH + h * (PBW + BW), KL + h * PLW, tok_n, row_n, H, PBW, PLW, BW, MASKED, SPLIT, UPCAST
    )
    kn = _load_row(KN + h * T, tok_n, row_n, float("-inf"), MASKED)  # [BN]
    s = _logits(q_s, qh, ql, qhp, qb, k, kh, kl, khp, kb, kn, SPLIT, BW, PRECISION)  # [BM, BN]
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.exp2(s - m_safe[:, None])
    alpha = tl.exp2(m_i - m_safe)
    l_i = l_i * alpha + tl.sum(p, axis=1)
    v = _load_tile(V + h * CV, tok_n, row_n, H * CV, tl.arange(0, CV_PAD), CV, CV_PAD, MASKED, UPCAST)
    vp = _load_tile(VPC + h * PVW, tok_n, row_n, H * PVW, tl.arange(0, PVW), PVW, PVW, MASKED, UPCAST)
    pk = _load_tile(PK, tok_n, row_n, RZ, tl.arange(0, RZ_PAD), RZ, RZ_PAD, MASKED, UPCAST)  # shared by heads
    pd = _round(p, DT, UPCAST)
    acc_v = tl.dot(pd, v, acc_v * alpha[:, None], input_precision=PRECISION)
    acc_p = tl.dot(pd, vp, acc_p * alpha[:, None], input_precision=PRECISION)
    acc_z = tl.dot(pd, pk, acc_z * alpha[:, None], input_precision=PRECISION)
    return acc_v, acc_p, acc_z, m_new, l_i


@triton.jit
def _ipa_fwd_kernel(
    QS,
    K,
    V,
    QH,
    QL,
    KH,
    KL,
    KN,
    VPC,
    PK,
    CENTRE,
    CU_SEQLENS,
    O,
    OP,
    OPC,
    OZ,
    LSE,
    H,
    T,
    L_BUCKET,
    SPLIT: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    CV: tl.constexpr,
    CV_PAD: tl.constexpr,
    P3: tl.constexpr,
    RB: tl.constexpr,
    PBW: tl.constexpr,
    PLW: tl.constexpr,
    BW: tl.constexpr,
    PV3: tl.constexpr,
    PVW: tl.constexpr,
    RZ: tl.constexpr,
    RZ_PAD: tl.constexpr,
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
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = offs_m < n
    tok_m = start + offs_m
    c_qk = tl.arange(0, C_PAD)
    c_v = tl.arange(0, CV_PAD)
    c_pv = tl.arange(0, PVW)
    c_z = tl.arange(0, RZ_PAD)

    q_s = _load_tile(QS + h * C, tok_m, m_ok, H * C, c_qk, C, C_PAD, True, UPCAST)  # [BM, C_PAD]
    # [BM, PBW], [BM, PLW], [BM, PLW], [BM, BW]
    qh, ql, qhp, qb = _point_tiles(QH + h * (PBW + BW), QL + h * PLW, tok_m, m_ok, H, PBW, PLW, BW, True, SPLIT, UPCAST)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc_v = tl.zeros([BLOCK_M, CV_PAD], tl.float32)
    acc_p = tl.zeros([BLOCK_M, PVW], tl.float32)
    acc_z = tl.zeros([BLOCK_M, RZ_PAD], tl.float32)
    n_full = (n // BLOCK_N) * BLOCK_N
    for start_n in range(0, n_full, BLOCK_N):
        acc_v, acc_p, acc_z, m_i, l_i = _fwd_step(
            acc_v,
            acc_p,
            acc_z,
            m_i,
            l_i,
            q_s,
            qh,
            ql,
            qhp,
            qb,
            K,
            KH,
            KL,
            KN,
            V,
            VPC,
            PK,
            h,
            H,
            T,
            start,
            n,
            start_n,
            False,
            SPLIT,
            PRECISION,
            UPCAST,
            C,
            C_PAD,
            CV,
            CV_PAD,
            PBW,
            PLW,
            BW,
            PVW,
            RZ,
            RZ_PAD,
            BLOCK_N,
        )
    if n_full < n:
        acc_v, acc_p, acc_z, m_i, l_i = _fwd_step(
            acc_v,
            acc_p,
            acc_z,
            m_i,
            l_i,
            q_s,
            qh,
            ql,
            qhp,
            qb,
            K,
            KH,
            KL,
            KN,
            V,
            VPC,
            PK,
            h,
            H,
            T,
            start,
            n,
            n_full,
            True,
            SPLIT,
            PRECISION,
            UPCAST,
            C,
            C_PAD,
            CV,
            CV_PAD,
            PBW,
            PLW,
            BW,
            PVW,
            RZ,
            RZ_PAD,
            BLOCK_N,
        )

    # a real query (its own KN is finite) with at least one real key
    q_ok = m_ok & (tl.load(KN + h * T + tok_m, mask=m_ok, other=float("-inf")) > float("-inf")) & (l_i > 0.0)
    inv_l = tl.where(q_ok, 1.0 / tl.where(q_ok, l_i, 1.0), 0.0)
    m_safe = tl.where(m_i == float("-inf"), 0.0, m_i)
    lse = tl.where(q_ok, m_safe + tl.log2(tl.where(q_ok, l_i, 1.0)), float("inf"))
    tl.store(LSE + h * T + tok_m, lse, mask=m_ok)
    o = acc_v * inv_l[:, None]
    tl.store(
        O + h * CV + tok_m[:, None] * (H * CV) + c_v[None, :],
        o.to(O.dtype.element_ty),
        mask=m_ok[:, None] & (c_v[None, :] < CV),
    )
    op_c = acc_p * inv_l[:, None]  # centred value points
    c = tl.load(CENTRE + seq * 3 + c_pv % 3)  # [PVW] the centre's x, y or z per column
    op = tl.where(q_ok[:, None], op_c + c[None, :], 0.0)
    pv_mask = m_ok[:, None] & (c_pv[None, :] < PV3)
    pv_off = h * PV3 + tok_m[:, None] * (H * PV3) + c_pv[None, :]
    tl.store(OP + pv_off, op.to(OP.dtype.element_ty), mask=pv_mask)
    tl.store(OPC + pv_off, op_c, mask=pv_mask)
    oz = acc_z * inv_l[:, None]
    tl.store(
        OZ + h * RZ + tok_m[:, None] * (H * RZ) + c_z[None, :],
        oz.to(OZ.dtype.element_ty),
        mask=m_ok[:, None] & (c_z[None, :] < RZ),
    )


@triton.jit
def _ipa_bwd_preprocess_kernel(
    O,
    OPC,
    OZ,
    DO,
    DOP,
    DOZ,
    DELTA,
    H,
    T,
    CV: tl.constexpr,
    CV_PAD: tl.constexpr,
    PV3: tl.constexpr,
    PV3_PAD: tl.constexpr,
    RZ: tl.constexpr,
    RZ_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """Delta[h, t] = rowsum(dO * O) over all value features (points centred, in float32)."""
    tok = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    h = tl.program_id(1)
    ok = tok < T
    c_v = tl.arange(0, CV_PAD)
    c_pv = tl.arange(0, PV3_PAD)
    c_z = tl.arange(0, RZ_PAD)
    o = _load_tile(O + h * CV, tok, ok, H * CV, c_v, CV, CV_PAD, True, True)
    do = _load_tile(DO + h * CV, tok, ok, H * CV, c_v, CV, CV_PAD, True, True)
    delta = tl.sum(o * do, axis=1)
    o = _load_tile(OPC + h * PV3, tok, ok, H * PV3, c_pv, PV3, PV3_PAD, True, True)
    do = _load_tile(DOP + h * PV3, tok, ok, H * PV3, c_pv, PV3, PV3_PAD, True, True)
    delta += tl.sum(o * do, axis=1)
    o = _load_tile(OZ + h * RZ, tok, ok, H * RZ, c_z, RZ, RZ_PAD, True, True)
    do = _load_tile(DOZ + h * RZ, tok, ok, H * RZ, c_z, RZ, RZ_PAD, True, True)
    delta += tl.sum(o * do, axis=1)
    tl.store(DELTA + h * T + tok, delta, mask=ok)


@triton.jit
def _query_tiles(
    QS,
    QH,
    QL,
    LSE,
    DO,
    DOP,
    DOZ,
    h,
    H,
    T,
    start,
    n,
    start_m,
    MASKED: tl.constexpr,
    SPLIT: tl.constexpr,
    UPCAST: tl.constexpr,
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    CV: tl.constexpr,
    CV_PAD: tl.constexpr,
    PBW: tl.constexpr,
    PLW: tl.constexpr,
    BW: tl.constexpr,
    PV3: tl.constexpr,
    PVW: tl.constexpr,
    RZ: tl.constexpr,
    RZ_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """The query-side tiles a backward program reads per query tile."""
    offs_m = start_m + tl.arange(0, BLOCK_M)
    m_ok = offs_m < n
    tok_m = start + offs_m
    q_s = _load_tile(QS + h * C, tok_m, m_ok, H * C, tl.arange(0, C_PAD), C, C_PAD, MASKED, UPCAST)
    # [BM, PBW], [BM, PLW], [BM, PLW], [BM, BW]
    qh, ql, qhp, qb = _point_tiles(
        QH + h * (PBW + BW), QL + h * PLW, tok_m, m_ok, H, PBW, PLW, BW, MASKED, SPLIT, UPCAST
    )
    lse = _load_row(LSE + h * T, tok_m, m_ok, float("inf"), MASKED)  # [BM]; inf: p = 0
    do = _load_tile(DO + h * CV, tok_m, m_ok, H * CV, tl.arange(0, CV_PAD), CV, CV_PAD, MASKED, UPCAST)
    dop = _load_tile(DOP + h * PV3, tok_m, m_ok, H * PV3, tl.arange(0, PVW), PV3, PVW, MASKED, UPCAST)
    doz = _load_tile(DOZ + h * RZ, tok_m, m_ok, H * RZ, tl.arange(0, RZ_PAD), RZ, RZ_PAD, MASKED, UPCAST)
    return tok_m, m_ok, q_s, qh, ql, qhp, qb, lse, do, dop, doz


@triton.jit
def _dk_step(
    dk,
    dkpb,
    dkpl,
    dkb,
    ds_sum,
    k,
    kh,
    kl,
    khp,
    kb,
    kn,
    v,
    vp,
    pk,
    QS,
    QH,
    QL,
    LSE,
    DELTA,
    DO,
    DOP,
    DOZ,
    h,
    H,
    T,
    start,
    n,
    start_m,
    MASKED: tl.constexpr,
    SPLIT: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    CV: tl.constexpr,
    CV_PAD: tl.constexpr,
    PBW: tl.constexpr,
    PLW: tl.constexpr,
    BW: tl.constexpr,
    PV3: tl.constexpr,
    PVW: tl.constexpr,
    RZ: tl.constexpr,
    RZ_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    DT = QS.dtype.element_ty
    tok_m, m_ok, q_s, qh, ql, qhp, qb, lse, do, dop, doz = _query_tiles(
        QS,
        QH,
        QL,
        LSE,
        DO,
        DOP,
        DOZ,
        h,
        H,
        T,
        start,
        n,
        start_m,
        MASKED,
        SPLIT,
        UPCAST,
        C,
        C_PAD,
        CV,
        CV_PAD,
        PBW,
        PLW,
        BW,
        PV3,
        PVW,
        RZ,
        RZ_PAD,
        BLOCK_M,
    )
    delta = _load_row(DELTA + h * T, tok_m, m_ok, 0.0, MASKED)
    # [BN, BM]
    p_t = tl.exp2(_logits_t(k, kh, kl, khp, kb, q_s, qh, ql, qhp, qb, kn, SPLIT, BW, PRECISION) - lse[None, :])
    dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
    dp_t = tl.dot(vp, tl.trans(dop), dp_t, input_precision=PRECISION)
    dp_t = tl.dot(pk, tl.trans(doz), dp_t, input_precision=PRECISION)
    ds_t = p_t * (dp_t - delta[None, :])  # [BN, BM], d loss / d natural logit
    ds_sum += tl.sum(ds_t, axis=1)
    dk = tl.dot(_round(ds_t, DT, UPCAST), q_s, dk, input_precision=PRECISION)
    dkpb, dkpl = _point_grad_dots(ds_t, qh, ql, qhp, dkpb, dkpl, DT, SPLIT, PBW, PLW, UPCAST, PRECISION)
    if BW > 0:  # the bias tile: hi alone, like q.k
        dkb = tl.dot(_round(ds_t, DT, UPCAST), qb, dkb, input_precision=PRECISION)
    return dk, dkpb, dkpl, dkb, ds_sum


@triton.jit
def _key_tiles(
    K,
    KH,
    KL,
    KN,
    h,
    H,
    T,
    start,
    n,
    pid_n,
    SPLIT: tl.constexpr,
    UPCAST: tl.constexpr,
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    PBW: tl.constexpr,
    PLW: tl.constexpr,
    BW: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """The key-side logit tiles of a key-side backward program (loop invariant)."""
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_n = offs_n < n
    tok_n = start + offs_n
    k = _load_tile(K + h * C, tok_n, row_n, H * C, tl.arange(0, C_PAD), C, C_PAD, True, UPCAST)
    # [BN, PBW], [BN, PLW], [BN, PLW], [BN, BW]
    kh, kl, khp, kb = _point_tiles(
        KH + h * (PBW + BW), KL + h * PLW, tok_n, row_n, H, PBW, PLW, BW, True, SPLIT, UPCAST
    )
    kn = tl.load(KN + h * T + tok_n, mask=row_n, other=float("-inf"))  # [BN]
    return tok_n, row_n, k, kh, kl, khp, kb, kn


@triton.jit
def _ipa_bwd_dk_kernel(
    QS,
    K,
    V,
    QH,
    QL,
    KH,
    KL,
    KN,
    VPC,
    PK,
    PW,
    CU_SEQLENS,
    DO,
    DOP,
    DOZ,
    LSE,
    DELTA,
    DK,
    DKP,
    DBK,
    H,
    T,
    L_BUCKET,
    SPLIT: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    CV: tl.constexpr,
    CV_PAD: tl.constexpr,
    P3: tl.constexpr,
    RB: tl.constexpr,
    PBW: tl.constexpr,
    PLW: tl.constexpr,
    BW: tl.constexpr,
    PV3: tl.constexpr,
    PVW: tl.constexpr,
    RZ: tl.constexpr,
    RZ_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """One program: BLOCK_N keys of one sequence and one head, looping over all queries; writes
    dk, d k_pts and d bias_k."""
    pid_n = tl.program_id(0)
    pid_sh = tl.program_id(1)
    seq = pid_sh // H
    h = pid_sh % H
    start, n = _sequence_bounds(CU_SEQLENS, seq)
    if pid_n * BLOCK_N >= n:
        return
    tok_n, row_n, k, kh, kl, khp, kb, kn = _key_tiles(
        K, KH, KL, KN, h, H, T, start, n, pid_n, SPLIT, UPCAST, C, C_PAD, PBW, PLW, BW, BLOCK_N
    )
    v = _load_tile(V + h * CV, tok_n, row_n, H * CV, tl.arange(0, CV_PAD), CV, CV_PAD, True, UPCAST)
    vp = _load_tile(VPC + h * PVW, tok_n, row_n, H * PVW, tl.arange(0, PVW), PVW, PVW, True, UPCAST)
    pk = _load_tile(PK, tok_n, row_n, RZ, tl.arange(0, RZ_PAD), RZ, RZ_PAD, True, UPCAST)
    dk = tl.zeros([BLOCK_N, C_PAD], tl.float32)
    dkpb = tl.zeros([BLOCK_N, PBW], tl.float32)
    dkpl = tl.zeros([BLOCK_N, PLW], tl.float32)  # the lo dots of the point columns (used when PLW < PBW)
    dkb = dkpl  # d bias_k when the bias has its own tile (BW > 0)
    if BW > 0:
        dkb = tl.zeros([BLOCK_N, BW], tl.float32)
    ds_sum = tl.zeros([BLOCK_N], tl.float32)
    n_full = (n // BLOCK_M) * BLOCK_M
    for start_m in range(0, n_full, BLOCK_M):
        dk, dkpb, dkpl, dkb, ds_sum = _dk_step(
            dk,
            dkpb,
            dkpl,
            dkb,
            ds_sum,
            k,
            kh,
            kl,
            khp,
            kb,
            kn,
            v,
            vp,
            pk,
            QS,
            QH,
            QL,
            LSE,
            DELTA,
            DO,
            DOP,
            DOZ,
            h,
            H,
            T,
            start,
            n,
            start_m,
            False,
            SPLIT,
            PRECISION,
            UPCAST,
            C,
            C_PAD,
            CV,
            CV_PAD,
            PBW,
            PLW,
            BW,
            PV3,
            PVW,
            RZ,
            RZ_PAD,
            BLOCK_M,
        )
    if n_full < n:
        dk, dkpb, dkpl, dkb, ds_sum = _dk_step(
            dk,
            dkpb,
            dkpl,
            dkb,
            ds_sum,
            k,
            kh,
            kl,
            khp,
            kb,
            kn,
            v,
            vp,
            pk,
            QS,
            QH,
            QL,
            LSE,
            DELTA,
            DO,
            DOP,
            DOZ,
            h,
            H,
            T,
            start,
            n,
            n_full,
            True,
            SPLIT,
            PRECISION,
            UPCAST,
            C,
            C_PAD,
            CV,
            CV_PAD,
            PBW,
            PLW,
            BW,
            PV3,
            PVW,
            RZ,
            RZ_PAD,
            BLOCK_M,
        )

    rows = row_n[:, None]
    c_qk = tl.arange(0, C_PAD)
    c_pb = tl.arange(0, PBW)
    c_pl = tl.arange(0, PLW)
    # QS, QH and QL carry log2(e) (base-2 logits); the gradients are of the natural logit
    tl.store(
        DK + h * C + tok_n[:, None] * (H * C) + c_qk[None, :],
        (dk * (1.0 / LOG2E)).to(DK.dtype.element_ty),
        mask=rows & (c_qk[None, :] < C),
    )
    dkpb = dkpb * (1.0 / LOG2E)
    # -|k - c|^2 / 2 term: d/dk = -pw (k - c) * sum_i ds_ij, with the points as the logits saw them
    pw = tl.load(PW + h).to(tl.float32)
    k_c = khp.to(tl.float32)
    if SPLIT:
        k_c += kl.to(tl.float32)
    dkp = _point_columns(dkpb, dkpl * (1.0 / LOG2E), PBW, PLW) - pw * k_c * ds_sum[:, None]  # [BN, PLW]
    tl.store(
        DKP + h * P3 + tok_n[:, None] * (H * P3) + c_pl[None, :],
        dkp.to(DKP.dtype.element_ty),
        mask=rows & (c_pl[None, :] < P3),
    )
    if BW > 0:
        c_b = tl.arange(0, BW)
        tl.store(
            DBK + h * RB + tok_n[:, None] * (H * RB) + c_b[None, :],
            (dkb * (1.0 / LOG2E)).to(DBK.dtype.element_ty),
            mask=rows & (c_b[None, :] < RB),
        )
    else:
        bias_col = tl.maximum(c_pb - P3, 0)
        tl.store(
            DBK + h * RB + tok_n[:, None] * (H * RB) + bias_col[None, :],
            dkpb.to(DBK.dtype.element_ty),
            mask=rows & (c_pb[None, :] >= P3) & (c_pb[None, :] < P3 + RB),
        )


@triton.jit
def _dv_step(
    dv,
    dvp,
    dz,
    k,
    kh,
    kl,
    khp,
    kb,
    kn,
    QS,
    QH,
    QL,
    LSE,
    DO,
    DOP,
    DOZ,
    h,
    H,
    T,
    start,
    n,
    start_m,
    MASKED: tl.constexpr,
    SPLIT: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    CV: tl.constexpr,
    CV_PAD: tl.constexpr,
    PBW: tl.constexpr,
    PLW: tl.constexpr,
    BW: tl.constexpr,
    PV3: tl.constexpr,
    PVW: tl.constexpr,
    RZ: tl.constexpr,
    RZ_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    DT = QS.dtype.element_ty
    tok_m, m_ok, q_s, qh, ql, qhp, qb, lse, do, dop, doz = _query_tiles(
        QS,
        QH,
        QL,
        LSE,
        DO,
        DOP,
        DOZ,
        h,
        H,
        T,
        start,
        n,
        start_m,
        MASKED,
        SPLIT,
        UPCAST,
        C,
        C_PAD,
        CV,
        CV_PAD,
        PBW,
        PLW,
        BW,
        PV3,
        PVW,
        RZ,
        RZ_PAD,
        BLOCK_M,
    )
    # [BN, BM]
    p_t = tl.exp2(_logits_t(k, kh, kl, khp, kb, q_s, qh, ql, qhp, qb, kn, SPLIT, BW, PRECISION) - lse[None, :])
    pd_t = _round(p_t, DT, UPCAST)
    dv = tl.dot(pd_t, do, dv, input_precision=PRECISION)
    dvp = tl.dot(pd_t, dop, dvp, input_precision=PRECISION)
    dz = tl.dot(pd_t, doz, dz, input_precision=PRECISION)
    return dv, dvp, dz


@triton.jit
def _ipa_bwd_dv_kernel(
    QS,
    K,
    QH,
    QL,
    KH,
    KL,
    KN,
    CU_SEQLENS,
    DO,
    DOP,
    DOZ,
    LSE,
    DV,
    DVP,
    DPK_H,
    H,
    T,
    L_BUCKET,
    SPLIT: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    CV: tl.constexpr,
    CV_PAD: tl.constexpr,
    P3: tl.constexpr,
    RB: tl.constexpr,
    PBW: tl.constexpr,
    PLW: tl.constexpr,
    BW: tl.constexpr,
    PV3: tl.constexpr,
    PVW: tl.constexpr,
    RZ: tl.constexpr,
    RZ_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """One program: BLOCK_N keys of one sequence and one head, looping over all queries; writes dv,
    d v_pts and this head's share of d pair_k (float32 [T, H, RZ], summed over heads on the host)."""
    pid_n = tl.program_id(0)
    pid_sh = tl.program_id(1)
    seq = pid_sh // H
    h = pid_sh % H
    start, n = _sequence_bounds(CU_SEQLENS, seq)
    if pid_n * BLOCK_N >= n:
        return
    tok_n, row_n, k, kh, kl, khp, kb, kn = _key_tiles(
        K, KH, KL, KN, h, H, T, start, n, pid_n, SPLIT, UPCAST, C, C_PAD, PBW, PLW, BW, BLOCK_N
    )
    c_v = tl.arange(0, CV_PAD)
    c_pv = tl.arange(0, PVW)
    c_z = tl.arange(0, RZ_PAD)
    dv = tl.zeros([BLOCK_N, CV_PAD], tl.float32)
    dvp = tl.zeros([BLOCK_N, PVW], tl.float32)
    dz = tl.zeros([BLOCK_N, RZ_PAD], tl.float32)
    n_full = (n // BLOCK_M) * BLOCK_M
    for start_m in range(0, n_full, BLOCK_M):
        dv, dvp, dz = _dv_step(
            dv,
            dvp,
            dz,
            k,
            kh,
            kl,
            khp,
            kb,
            kn,
            QS,
            QH,
            QL,
            LSE,
            DO,
            DOP,
            DOZ,
            h,
            H,
            T,
            start,
            n,
            start_m,
            False,
            SPLIT,
            PRECISION,
            UPCAST,
            C,
            C_PAD,
            CV,
            CV_PAD,
            PBW,
            PLW,
            BW,
            PV3,
            PVW,
            RZ,
            RZ_PAD,
            BLOCK_M,
        )
    if n_full < n:
        dv, dvp, dz = _dv_step(
            dv,
            dvp,
            dz,
            k,
            kh,
            kl,
            khp,
            kb,
            kn,
            QS,
            QH,
            QL,
            LSE,
            DO,
            DOP,
            DOZ,
            h,
            H,
            T,
            start,
            n,
            n_full,
            True,
            SPLIT,
            PRECISION,
            UPCAST,
            C,
            C_PAD,
            CV,
            CV_PAD,
            PBW,
            PLW,
            BW,
            PV3,
            PVW,
            RZ,
            RZ_PAD,
            BLOCK_M,
        )

    rows = row_n[:, None]
    tl.store(
        DV + h * CV + tok_n[:, None] * (H * CV) + c_v[None, :],
        dv.to(DV.dtype.element_ty),
        mask=rows & (c_v[None, :] < CV),
    )
    tl.store(
        DVP + h * PV3 + tok_n[:, None] * (H * PV3) + c_pv[None, :],
        dvp.to(DVP.dtype.element_ty),
        mask=rows & (c_pv[None, :] < PV3),
    )
    tl.store(DPK_H + h * RZ + tok_n[:, None] * (H * RZ) + c_z[None, :], dz, mask=rows & (c_z[None, :] < RZ))


@triton.jit
def _dq_step(
    dq,
    dqpb,
    dqpl,
    dqb,
    ds_knorm,
    ds_sum,
    p_kpb,
    p_knorm,
    q_s,
    qh,
    ql,
    qhp,
    qb,
    lse,
    delta,
    do,
    dop,
    doz,
    K,
    KH,
    KL,
    KN,
    KNORM,
    V,
    VPC,
    PK,
    h,
    H,
    T,
    start,
    n,
    start_n,
    MASKED: tl.constexpr,
    SPLIT: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    CV: tl.constexpr,
    CV_PAD: tl.constexpr,
    PBW: tl.constexpr,
    PLW: tl.constexpr,
    BW: tl.constexpr,
    PVW: tl.constexpr,
    RZ: tl.constexpr,
    RZ_PAD: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    DT = K.dtype.element_ty
    offs_n = start_n + tl.arange(0, BLOCK_N)
    tok_n = start + offs_n
    row_n = offs_n < n
    k = _load_tile(K + h * C, tok_n, row_n, H * C, tl.arange(0, C_PAD), C, C_PAD, MASKED, UPCAST)
    # [BN, PBW], [BN, PLW], [BN, PLW], [BN, BW]
    kh, kl, khp, kb = _point_tiles(
        KH + h * (PBW + BW), KL + h * PLW, tok_n, row_n, H, PBW, PLW, BW, MASKED, SPLIT, UPCAST
    )
    kn = _load_row(KN + h * T, tok_n, row_n, float("-inf"), MASKED)  # [BN]
    knorm = _load_row(KNORM + h * T, tok_n, row_n, 0.0, MASKED)  # [BN] |k - c|^2
    # [BM, BN]
    p = tl.exp2(_logits(q_s, qh, ql, qhp, qb, k, kh, kl, khp, kb, kn, SPLIT, BW, PRECISION) - lse[:, None])
    v = _load_tile(V + h * CV, tok_n, row_n, H * CV, tl.arange(0, CV_PAD), CV, CV_PAD, MASKED, UPCAST)
    vp = _load_tile(VPC + h * PVW, tok_n, row_n, H * PVW, tl.arange(0, PVW), PVW, PVW, MASKED, UPCAST)
    pk = _load_tile(PK, tok_n, row_n, RZ, tl.arange(0, RZ_PAD), RZ, RZ_PAD, MASKED, UPCAST)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
    dp = tl.dot(dop, tl.trans(vp), dp, input_precision=PRECISION)
    dp = tl.dot(doz, tl.trans(pk), dp, input_precision=PRECISION)
    ds = p * (dp - delta[:, None])  # [BM, BN], d loss / d natural logit
    ds_knorm += tl.sum(ds * knorm[None, :], axis=1)
    ds_sum += tl.sum(ds, axis=1)
    p_knorm += tl.sum(p * knorm[None, :], axis=1)
    p_kpb = tl.dot(_round(p, DT, UPCAST), khp, p_kpb, input_precision=PRECISION)
    dq = tl.dot(_round(ds, DT, UPCAST), k, dq, input_precision=PRECISION)
    # the key points' low part too: d q_pts and d point_weights keep their precision
    dqpb, dqpl = _point_grad_dots(ds, kh, kl, khp, dqpb, dqpl, DT, SPLIT, PBW, PLW, UPCAST, PRECISION)
    if BW > 0:  # the bias tile: hi alone, like q.k
        dqb = tl.dot(_round(ds, DT, UPCAST), kb, dqb, input_precision=PRECISION)
    return dq, dqpb, dqpl, dqb, ds_knorm, ds_sum, p_kpb, p_knorm


@triton.jit
def _ipa_bwd_dq_kernel(
    QS,
    K,
    V,
    QH,
    QL,
    KH,
    KL,
    KN,
    KNORM,
    VPC,
    QP,
    PK,
    PW,
    CENTRE,
    CU_SEQLENS,
    DO,
    DOP,
    DOZ,
    LSE,
    DELTA,
    DQ,
    DQP,
    DBQ,
    DPW_Q,
    H,
    T,
    L_BUCKET,
    scalar_scale,
    bias_scale,
    SPLIT: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    CV: tl.constexpr,
    CV_PAD: tl.constexpr,
    P3: tl.constexpr,
    RB: tl.constexpr,
    PBW: tl.constexpr,
    PLW: tl.constexpr,
    BW: tl.constexpr,
    PV3: tl.constexpr,
    PVW: tl.constexpr,
    RZ: tl.constexpr,
    RZ_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """One program: BLOCK_M queries of one sequence and one head, looping over all keys. Writes dq,
    d q_pts, d bias_q and each query's share of d point_weights ([H, T])."""
    pid_m = tl.program_id(0)
    pid_sh = tl.program_id(1)
    seq = pid_sh // H
    h = pid_sh % H
    start, n = _sequence_bounds(CU_SEQLENS, seq)
    if pid_m * BLOCK_M >= n:
        return
    pw = tl.load(PW + h).to(tl.float32)
    tok_m, m_ok, q_s, qh, ql, qhp, qb, lse, do, dop, doz = _query_tiles(
        QS,
        QH,
        QL,
        LSE,
        DO,
        DOP,
        DOZ,
        h,
        H,
        T,
        start,
        n,
        pid_m * BLOCK_M,
        True,
        SPLIT,
        UPCAST,
        C,
        C_PAD,
        CV,
        CV_PAD,
        PBW,
        PLW,
        BW,
        PV3,
        PVW,
        RZ,
        RZ_PAD,
        BLOCK_M,
    )
    delta = tl.load(DELTA + h * T + tok_m, mask=m_ok, other=0.0)

    dq = tl.zeros([BLOCK_M, C_PAD], tl.float32)
    dqpb = tl.zeros([BLOCK_M, PBW], tl.float32)
    dqpl = tl.zeros([BLOCK_M, PLW], tl.float32)  # the lo dots of the point columns (used when PLW < PBW)
    dqb = dqpl  # d bias_q when the bias has its own tile (BW > 0)
    if BW > 0:
        dqb = tl.zeros([BLOCK_M, BW], tl.float32)
    ds_knorm = tl.zeros([BLOCK_M], tl.float32)  # sum_j ds_ij |k_j - c|^2
    # for re-centring ds per row (see the end): sum_j ds_ij, sum_j p_ij kp_j, sum_j p_ij |k_j - c|^2
    ds_sum = tl.zeros([BLOCK_M], tl.float32)
    p_kpb = tl.zeros([BLOCK_M, PLW], tl.float32)  # the point columns
    p_knorm = tl.zeros([BLOCK_M], tl.float32)
    n_full = (n // BLOCK_N) * BLOCK_N
    for start_n in range(0, n_full, BLOCK_N):
        dq, dqpb, dqpl, dqb, ds_knorm, ds_sum, p_kpb, p_knorm = _dq_step(
            dq,
            dqpb,
            dqpl,
            dqb,
            ds_knorm,
            ds_sum,
            p_kpb,
            p_knorm,
            q_s,
            qh,
            ql,
            qhp,
            qb,
            lse,
            delta,
            do,
            dop,
            doz,
            K,
            KH,
            KL,
            KN,
            KNORM,
            V,
            VPC,
            PK,
            h,
            H,
            T,
            start,
            n,
            start_n,
            False,
            SPLIT,
            PRECISION,
            UPCAST,
            C,
            C_PAD,
            CV,
            CV_PAD,
            PBW,
            PLW,
            BW,
            PVW,
            RZ,
            RZ_PAD,
            BLOCK_N,
        )
    if n_full < n:
        dq, dqpb, dqpl, dqb, ds_knorm, ds_sum, p_kpb, p_knorm = _dq_step(
            dq,
            dqpb,
            dqpl,
            dqb,
            ds_knorm,
            ds_sum,
            p_kpb,
            p_knorm,
            q_s,
            qh,
            ql,
            qhp,
            qb,
            lse,
            delta,
            do,
            dop,
            doz,
            K,
            KH,
            KL,
            KN,
            KNORM,
            V,
            VPC,
            PK,
            h,
            H,
            T,
            start,
            n,
            n_full,
            True,
            SPLIT,
            PRECISION,
            UPCAST,
            C,
            C_PAD,
            CV,
            CV_PAD,
            PBW,
            PLW,
            BW,
            PVW,
            RZ,
            RZ_PAD,
            BLOCK_N,
        )

    # sum_j ds_ij is 0 in exact arithmetic, but Delta comes from the forward's output (probabilities
    # rounded to DT, O stored in DT): the row sum is off by a small error e_i, which reaches the
    # point gradient as e_i sum_j p_ij kp_j and d point_weights as e_i times the row's mean point logit
    # (large for points far apart: a 1.4% error at L = 16384). Re-centring ds_ij to ds_ij - p_ij e_i
    # removes it from both, at the cost of one [BM, BN] x [BN, PLW] dot per key tile. The bias columns,
    # like q.k, cancel nothing and are not re-centred.
    dqp = _point_columns(dqpb, dqpl, PBW, PLW) - ds_sum[:, None] * p_kpb  # [BM, PLW]
    ds_knorm -= ds_sum * p_knorm
    rows = m_ok[:, None]
    c_qk = tl.arange(0, C_PAD)
    c_pb = tl.arange(0, PBW)
    c_pl = tl.arange(0, PLW)
    tl.store(
        DQ + h * C + tok_m[:, None] * (H * C) + c_qk[None, :],
        (dq * scalar_scale).to(DQ.dtype.element_ty),
        mask=rows & (c_qk[None, :] < C),
    )
    tl.store(
        DQP + h * P3 + tok_m[:, None] * (H * P3) + c_pl[None, :],
        (dqp * pw).to(DQP.dtype.element_ty),
        mask=rows & (c_pl[None, :] < P3),
    )
    if BW > 0:
        c_b = tl.arange(0, BW)
        tl.store(
            DBQ + h * RB + tok_m[:, None] * (H * RB) + c_b[None, :],
            (dqb * bias_scale).to(DBQ.dtype.element_ty),
            mask=rows & (c_b[None, :] < RB),
        )
    else:
        bias_col = tl.maximum(c_pb - P3, 0)
        tl.store(
            DBQ + h * RB + tok_m[:, None] * (H * RB) + bias_col[None, :],
            (dqpb * bias_scale).to(DBQ.dtype.element_ty),
            mask=rows & (c_pb[None, :] >= P3) & (c_pb[None, :] < P3 + RB),
        )
    # d point_weights per query: sum_j ds_ij ((q_i - c).(k_j - c) - |k_j - c|^2 / 2), both parts of a
    # row combined here (they cancel: a key split between rows and columns lost a digit in float32)
    pt_ok = rows & (c_pl[None, :] < P3)
    q_c = tl.load(QP + h * P3 + tok_m[:, None] * (H * P3) + c_pl[None, :], mask=pt_ok, other=0.0).to(tl.float32)
    q_c = tl.where(pt_ok, q_c - tl.load(CENTRE + seq * 3 + c_pl % 3)[None, :], 0.0)
    dpw = tl.sum(q_c * dqp, axis=1) - 0.5 * ds_knorm
    tl.store(DPW_Q + h * T + tok_m, dpw, mask=m_ok)
