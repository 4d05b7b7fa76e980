"""FlashIPA Triton kernels: forward, backward preprocess, dK/dV and dQ.

Reading order as in Triton's fused-attention tutorial: tile loaders, forward kernel, backward
preprocess (Delta), dK/dV kernel, dQ kernel. Host-side launch code, including the point operands
below, lives in `launch.py`.

Layout. Every per-residue tensor is token-major and contiguous: a padded batch [B, L, ...] is read
as B * L tokens, and sequence s owns tokens cu_seqlens[s] .. cu_seqlens[s + 1] - 1 (varlen). Per
token and head the kernels read

    q, k  [T, H, C]        v      [T, H, CV]      pair_k [T, RZ] (RZ = R C_z, no head axis)
    qpb, kpb [T, H, PB]    "point-bias" operands, PB = P3 + RB columns:
                           qpb = [pw (q_pts - c), bias_scale bias_q], kpb = [k_pts - c, bias_k]
    vpc   [T, H, PV3]      centred value points v_pts - c

with P3 = 3 P_q (flattened xyz) and c one centre per sequence. `launch.point_operands` writes qpb,
kpb and vpc once per call, already rounded to the dtype of the dot that reads them (PDT: float16
for bfloat16 inputs, else the input dtype), so that every dot operand is a plain load, as in the
tutorial: no operand of a dot is computed in registers and stored to shared memory inside a loop
(Triton 3.6 faulted on that pattern on Hopper, docs/kernel_notes.md), and every key-side load can
be pipelined. The backward also reads DT copies (the input dtype) of qpb, kpb and the value points
where a dot has a DT operand on the other side.

Dims need not be powers of two: tiles are padded in registers (the *_PAD constexprs) with masked
loads, never in memory. The logit, in natural units, is

    s_ij = scalar_scale q_i.k_j + qpb_i.kpb_j - pw_h |kp_j - c|^2 / 2

Centring changes each row of logits by a constant, which softmax ignores, and keeps the large
|kp|^2 vs 2 qp.kp cancellation of points far from the origin out of low-precision arithmetic. Key
norms are computed in the kernel from the loaded kpb tile. Softmax runs in base 2 (exp2); the saved
log-sum-exp is in base-2 units.
"""

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _operand(x, UPCAST: tl.constexpr):
    """A loaded dot operand as it is; with UPCAST held in float32 (Triton's interpreter multiplies
    bfloat16 dot operands as raw integers, so tests run 16-bit dots on exactly rounded float32)."""
    if UPCAST:
        return x.to(tl.float32)
    return x


@triton.jit
def _round(x, DT: tl.constexpr, UPCAST: tl.constexpr):
    """A register tile (probabilities, ds) rounded to the dot dtype DT; see _operand for UPCAST."""
    if UPCAST:
        return x.to(DT).to(tl.float32)
    return x.to(DT)


@triton.jit
def _split_dot(a, b, DT: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """a @ b with float32 register tile `a` split into two DT operands, hi + lo (about 16 mantissa bits
    for bf16), so that 16-bit matrix units keep more of a than one rounding would. `b` is loaded."""
    if DT == tl.float32:
        return tl.dot(a, b, input_precision=PRECISION)
    hi = _round(a, DT, UPCAST)
    lo = _round(a - hi.to(tl.float32), DT, UPCAST)
    return tl.dot(hi, b, input_precision=PRECISION) + tl.dot(lo, b, input_precision=PRECISION)


@triton.jit
def _load_tile(ptr, tok, row_ok, stride_tok, col, ncol):
    """[ROWS, PAD] tile of a token-major tensor, zero outside rows `row_ok` and columns < ncol."""
    mask = row_ok[:, None] & (col[None, :] < ncol)
    return tl.load(ptr + tok[:, None] * stride_tok + col[None, :], mask=mask, other=0.0)


@triton.jit
def _point_norms(kpb, col, P3: tl.constexpr):
    """|k_pts - c|^2 per row [ROWS] from a point-bias tile (as rounded for the dot)."""
    x = kpb.to(tl.float32)
    return tl.sum(tl.where(col[None, :] < P3, x * x, 0.0), axis=1)


@triton.jit
def _centre_columns(CENTRE, seq, col):
    """[PAD] float32: the sequence centre's x, y or z for each flattened xyz column."""
    xyz = col % 3
    return tl.load(CENTRE + seq * 3 + xyz)


@triton.jit
def _sequence_bounds(CU_SEQLENS, seq):
    start = tl.load(CU_SEQLENS + seq)  # int32 offsets: launch.py checks T * H * dim < 2^31
    n = tl.load(CU_SEQLENS + seq + 1) - start
    return start, n


@triton.jit
def _key_ok(KEY_MASK, tok_n, n_ok, HAS_MASK: tl.constexpr):
    if HAS_MASK:
        n_ok = n_ok & (tl.load(KEY_MASK + tok_n, mask=n_ok, other=0) != 0)
    return n_ok


@triton.jit
def _ipa_fwd_kernel(
    Q, K, V, QPB, KPB, VPC, PK, PW, CENTRE, KEY_MASK, CU_SEQLENS,
    O, OP, OPC, OZ, LSE,
    H, T, scalar_scale,
    HAS_MASK: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    C: tl.constexpr, C_PAD: tl.constexpr, CV: tl.constexpr, CV_PAD: tl.constexpr,
    P3: tl.constexpr, RB: tl.constexpr, PB: tl.constexpr, PB_PAD: tl.constexpr,
    PV3: tl.constexpr, PV3_PAD: tl.constexpr, RZ: tl.constexpr, RZ_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """One program: BLOCK_M queries of one sequence and one head, online softmax over all keys."""
    pid_m = tl.program_id(0)
    pid_sh = tl.program_id(1)
    seq = pid_sh // H
    h = pid_sh % H
    start, n = _sequence_bounds(CU_SEQLENS, seq)
    if pid_m * BLOCK_M >= n:
        return
    DT = Q.dtype.element_ty
    PDT = VPC.dtype.element_ty
    pw = tl.load(PW + h).to(tl.float32)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = offs_m < n
    tok_m = start + offs_m
    c_qk = tl.arange(0, C_PAD)
    c_pb = tl.arange(0, PB_PAD)
    c_v = tl.arange(0, CV_PAD)
    c_pv = tl.arange(0, PV3_PAD)
    c_z = tl.arange(0, RZ_PAD)

    q = _operand(_load_tile(Q + h * C, tok_m, m_ok, H * C, c_qk, C), UPCAST)  # [BM, C_PAD]
    qpb = _operand(_load_tile(QPB + h * PB, tok_m, m_ok, H * PB, c_pb, PB), UPCAST)  # [BM, PB_PAD]

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc_v = tl.zeros([BLOCK_M, CV_PAD], tl.float32)
    acc_p = tl.zeros([BLOCK_M, PV3_PAD], tl.float32)
    acc_z = tl.zeros([BLOCK_M, RZ_PAD], tl.float32)
    for start_n in range(0, n, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        tok_n = start + offs_n
        row_n = offs_n < n
        n_ok = _key_ok(KEY_MASK, tok_n, row_n, HAS_MASK)
        k = _operand(_load_tile(K + h * C, tok_n, row_n, H * C, c_qk, C), UPCAST)  # [BN, C_PAD]
        kpb = _operand(_load_tile(KPB + h * PB, tok_n, row_n, H * PB, c_pb, PB), UPCAST)  # [BN, PB_PAD]
        knorm = _point_norms(kpb, c_pb, P3)  # [BN]
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scalar_scale
        s += tl.dot(qpb, tl.trans(kpb), input_precision=PRECISION)
        s = (s - (0.5 * pw) * knorm[None, :]) * LOG2E
        s = tl.where(n_ok[None, :], s, float("-inf"))  # [BM, BN]
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        pd = _round(p, DT, UPCAST)
        v = _operand(_load_tile(V + h * CV, tok_n, row_n, H * CV, c_v, CV), UPCAST)  # [BN, CV_PAD]
        vp = _operand(_load_tile(VPC + h * PV3, tok_n, row_n, H * PV3, c_pv, PV3), UPCAST)  # [BN, PV3_PAD]
        pk = _operand(_load_tile(PK, tok_n, row_n, RZ, c_z, RZ), UPCAST)  # [BN, RZ_PAD], shared by heads
        acc_v = acc_v * alpha[:, None] + tl.dot(pd, v, input_precision=PRECISION)
        acc_p = acc_p * alpha[:, None] + tl.dot(_round(p, PDT, UPCAST), vp, input_precision=PRECISION)
        acc_z = acc_z * alpha[:, None] + tl.dot(pd, pk, input_precision=PRECISION)
        m_i = m_new

    q_ok = _key_ok(KEY_MASK, tok_m, m_ok, HAS_MASK) & (l_i > 0.0)  # real query with a real key
    inv_l = tl.where(q_ok, 1.0 / tl.where(q_ok, l_i, 1.0), 0.0)
    m_safe = tl.where(m_i == float("-inf"), 0.0, m_i)
    lse = tl.where(q_ok, m_safe + tl.log2(tl.where(q_ok, l_i, 1.0)), float("inf"))
    tl.store(LSE + h * T + tok_m, lse, mask=m_ok)
    o = acc_v * inv_l[:, None]
    tl.store(O + h * CV + tok_m[:, None] * (H * CV) + c_v[None, :], o.to(O.dtype.element_ty),
             mask=m_ok[:, None] & (c_v[None, :] < CV))
    op_c = acc_p * inv_l[:, None]  # centred value points
    c = _centre_columns(CENTRE, seq, c_pv)
    op = tl.where(q_ok[:, None], op_c + c[None, :], 0.0)
    pv_mask = m_ok[:, None] & (c_pv[None, :] < PV3)
    pv_off = h * PV3 + tok_m[:, None] * (H * PV3) + c_pv[None, :]
    tl.store(OP + pv_off, op.to(OP.dtype.element_ty), mask=pv_mask)
    tl.store(OPC + pv_off, op_c, mask=pv_mask)
    oz = acc_z * inv_l[:, None]
    tl.store(OZ + h * RZ + tok_m[:, None] * (H * RZ) + c_z[None, :], oz.to(OZ.dtype.element_ty),
             mask=m_ok[:, None] & (c_z[None, :] < RZ))


@triton.jit
def _ipa_bwd_preprocess_kernel(
    O, OPC, OZ, DO, DOP, DOZ, DELTA, H, T,
    CV: tl.constexpr, CV_PAD: tl.constexpr, PV3: tl.constexpr, PV3_PAD: tl.constexpr,
    RZ: tl.constexpr, RZ_PAD: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """Delta[h, t] = rowsum(dO * O) over all value features (points centred, in float32)."""
    tok = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    h = tl.program_id(1)
    ok = tok < T
    c_v = tl.arange(0, CV_PAD)
    c_pv = tl.arange(0, PV3_PAD)
    c_z = tl.arange(0, RZ_PAD)
    o = _load_tile(O + h * CV, tok, ok, H * CV, c_v, CV).to(tl.float32)
    do = _load_tile(DO + h * CV, tok, ok, H * CV, c_v, CV).to(tl.float32)
    delta = tl.sum(o * do, axis=1)
    o = _load_tile(OPC + h * PV3, tok, ok, H * PV3, c_pv, PV3).to(tl.float32)
    do = _load_tile(DOP + h * PV3, tok, ok, H * PV3, c_pv, PV3).to(tl.float32)
    delta += tl.sum(o * do, axis=1)
    o = _load_tile(OZ + h * RZ, tok, ok, H * RZ, c_z, RZ).to(tl.float32)
    do = _load_tile(DOZ + h * RZ, tok, ok, H * RZ, c_z, RZ).to(tl.float32)
    delta += tl.sum(o * do, axis=1)
    tl.store(DELTA + h * T + tok, delta, mask=ok)


@triton.jit
def _ipa_bwd_dkdv_kernel(
    Q, K, V, QPB, KPB, VPC, QPB_DT, PK, PW, KEY_MASK, CU_SEQLENS,
    DO, DOP, DOZ, LSE, DELTA,
    DK, DV, DKP, DVP, DBK, DPK_H,
    H, T, scalar_scale,
    HAS_MASK: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, SPLIT: tl.constexpr,
    C: tl.constexpr, C_PAD: tl.constexpr, CV: tl.constexpr, CV_PAD: tl.constexpr,
    P3: tl.constexpr, RB: tl.constexpr, PB: tl.constexpr, PB_PAD: tl.constexpr,
    PV3: tl.constexpr, PV3_PAD: tl.constexpr, RZ: tl.constexpr, RZ_PAD: tl.constexpr,
    COMPUTE_DK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """One program: BLOCK_N keys of one sequence and one head, looping over all queries.

    Launched twice, so that each launch keeps few accumulators in registers (both recompute the
    probabilities):
      COMPUTE_DK=True:  dk, d k_pts and d bias_k
      COMPUTE_DK=False: dv, d v_pts and this head's share of d pair_k (float32 [T, H, RZ],
                        summed over heads on the host)"""
    pid_n = tl.program_id(0)
    pid_sh = tl.program_id(1)
    seq = pid_sh // H
    h = pid_sh % H
    start, n = _sequence_bounds(CU_SEQLENS, seq)
    if pid_n * BLOCK_N >= n:
        return
    DT = Q.dtype.element_ty
    pw = tl.load(PW + h).to(tl.float32)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_n = offs_n < n
    tok_n = start + offs_n
    n_ok = _key_ok(KEY_MASK, tok_n, row_n, HAS_MASK)
    c_qk = tl.arange(0, C_PAD)
    c_pb = tl.arange(0, PB_PAD)
    c_v = tl.arange(0, CV_PAD)
    c_pv = tl.arange(0, PV3_PAD)
    c_z = tl.arange(0, RZ_PAD)
    rows = row_n[:, None]

    k = _operand(_load_tile(K + h * C, tok_n, row_n, H * C, c_qk, C), UPCAST)  # [BN, C_PAD]
    kpb = _operand(_load_tile(KPB + h * PB, tok_n, row_n, H * PB, c_pb, PB), UPCAST)  # [BN, PB_PAD]
    knorm = _point_norms(kpb, c_pb, P3)  # [BN]
    if COMPUTE_DK:
        v = _operand(_load_tile(V + h * CV, tok_n, row_n, H * CV, c_v, CV), UPCAST)  # [BN, CV_PAD]
        vp = _load_tile(VPC + h * PV3, tok_n, row_n, H * PV3, c_pv, PV3)  # [BN, PV3_PAD]
        pk = _operand(_load_tile(PK, tok_n, row_n, RZ, c_z, RZ), UPCAST)  # [BN, RZ_PAD]
        dk = tl.zeros([BLOCK_N, C_PAD], tl.float32)
        dkpb = tl.zeros([BLOCK_N, PB_PAD], tl.float32)
        ds_sum = tl.zeros([BLOCK_N], tl.float32)
    else:
        dv = tl.zeros([BLOCK_N, CV_PAD], tl.float32)
        dvp = tl.zeros([BLOCK_N, PV3_PAD], tl.float32)
        dz = tl.zeros([BLOCK_N, RZ_PAD], tl.float32)
    for start_m in range(0, n, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        m_ok = offs_m < n
        tok_m = start + offs_m
        q = _operand(_load_tile(Q + h * C, tok_m, m_ok, H * C, c_qk, C), UPCAST)  # [BM, C_PAD]
        qpb = _operand(_load_tile(QPB + h * PB, tok_m, m_ok, H * PB, c_pb, PB), UPCAST)  # [BM, PB_PAD]
        lse = tl.load(LSE + h * T + tok_m, mask=m_ok, other=float("inf"))
        s_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * scalar_scale
        s_t += tl.dot(kpb, tl.trans(qpb), input_precision=PRECISION)
        s_t = (s_t - (0.5 * pw) * knorm[:, None]) * LOG2E  # [BN, BM]
        p_t = tl.where(n_ok[:, None], tl.exp2(s_t - lse[None, :]), 0.0)
        do = _operand(_load_tile(DO + h * CV, tok_m, m_ok, H * CV, c_v, CV), UPCAST)  # [BM, CV_PAD]
        dop = _operand(_load_tile(DOP + h * PV3, tok_m, m_ok, H * PV3, c_pv, PV3), UPCAST)  # [BM, PV3_PAD]
        doz = _operand(_load_tile(DOZ + h * RZ, tok_m, m_ok, H * RZ, c_z, RZ), UPCAST)  # [BM, RZ_PAD]
        if COMPUTE_DK:
            delta = tl.load(DELTA + h * T + tok_m, mask=m_ok, other=0.0)
            dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
            if SPLIT:  # the forward's float16 value points as bf16 hi + lo (16-bit dots only)
                dp_t += _split_dot(vp.to(tl.float32), tl.trans(dop), DT, UPCAST, PRECISION)
            else:
                dp_t += tl.dot(_operand(vp, UPCAST), tl.trans(dop), input_precision=PRECISION)
            dp_t += tl.dot(pk, tl.trans(doz), input_precision=PRECISION)
            ds_t = p_t * (dp_t - delta[None, :])  # [BN, BM], d loss / d logit
            ds_sum += tl.sum(ds_t, axis=1)
            dk += tl.dot(_round(ds_t, DT, UPCAST), q, input_precision=PRECISION)
            # point-bias gradient: ds split hi + lo keeps about 16 of its mantissa bits
            qpb_dt = _operand(_load_tile(QPB_DT + h * PB, tok_m, m_ok, H * PB, c_pb, PB), UPCAST)
            dkpb += _split_dot(ds_t, qpb_dt, DT, UPCAST, PRECISION)
        else:
            pd_t = _round(p_t, DT, UPCAST)
            dv += tl.dot(pd_t, do, input_precision=PRECISION)
            dvp += tl.dot(pd_t, dop, input_precision=PRECISION)
            dz += tl.dot(pd_t, doz, input_precision=PRECISION)

    if COMPUTE_DK:
        tl.store(DK + h * C + tok_n[:, None] * (H * C) + c_qk[None, :],
                 (dk * scalar_scale).to(DK.dtype.element_ty), mask=rows & (c_qk[None, :] < C))
        # -|k|^2 / 2 term: d/dk = -pw (k - c) * sum_i ds_ij
        dkp = dkpb - pw * kpb.to(tl.float32) * ds_sum[:, None]
        tl.store(DKP + h * P3 + tok_n[:, None] * (H * P3) + c_pb[None, :], dkp.to(DKP.dtype.element_ty),
                 mask=rows & (c_pb[None, :] < P3))
        bias_col = tl.maximum(c_pb - P3, 0)
        tl.store(DBK + h * RB + tok_n[:, None] * (H * RB) + bias_col[None, :], dkpb.to(DBK.dtype.element_ty),
                 mask=rows & (c_pb[None, :] >= P3) & (c_pb[None, :] < PB))
    else:
        tl.store(DV + h * CV + tok_n[:, None] * (H * CV) + c_v[None, :], dv.to(DV.dtype.element_ty),
                 mask=rows & (c_v[None, :] < CV))
        tl.store(DVP + h * PV3 + tok_n[:, None] * (H * PV3) + c_pv[None, :], dvp.to(DVP.dtype.element_ty),
                 mask=rows & (c_pv[None, :] < PV3))
        tl.store(DPK_H + h * RZ + tok_n[:, None] * (H * RZ) + c_z[None, :], dz,
                 mask=rows & (c_z[None, :] < RZ))


@triton.jit
def _ipa_bwd_dq_kernel(
    Q, K, V, QPB, KPB, KPB_HI, KPB_LO, VP_HI, VP_LO, QP, PK, PW, CENTRE, KEY_MASK, CU_SEQLENS,
    DO, DOP, DOZ, LSE, DELTA,
    DQ, DQP, DBQ, DPW_Q,
    H, T, scalar_scale, bias_scale,
    HAS_MASK: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, SPLIT: tl.constexpr,
    C: tl.constexpr, C_PAD: tl.constexpr, CV: tl.constexpr, CV_PAD: tl.constexpr,
    P3: tl.constexpr, RB: tl.constexpr, PB: tl.constexpr, PB_PAD: tl.constexpr,
    PV3: tl.constexpr, PV3_PAD: tl.constexpr, RZ: tl.constexpr, RZ_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """One program: BLOCK_M queries of one sequence and one head, looping over all keys.

    VP_HI (+ VP_LO when SPLIT) are the centred value points in DT, hi + lo parts of the forward's
    rounding. Writes dq, d q_pts, d bias_q and each query's share of d point_weights ([H, T])."""
    pid_m = tl.program_id(0)
    pid_sh = tl.program_id(1)
    seq = pid_sh // H
    h = pid_sh % H
    start, n = _sequence_bounds(CU_SEQLENS, seq)
    if pid_m * BLOCK_M >= n:
        return
    DT = Q.dtype.element_ty
    pw = tl.load(PW + h).to(tl.float32)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = offs_m < n
    tok_m = start + offs_m
    c_qk = tl.arange(0, C_PAD)
    c_pb = tl.arange(0, PB_PAD)
    c_v = tl.arange(0, CV_PAD)
    c_pv = tl.arange(0, PV3_PAD)
    c_z = tl.arange(0, RZ_PAD)

    q = _operand(_load_tile(Q + h * C, tok_m, m_ok, H * C, c_qk, C), UPCAST)  # [BM, C_PAD]
    qpb = _operand(_load_tile(QPB + h * PB, tok_m, m_ok, H * PB, c_pb, PB), UPCAST)  # [BM, PB_PAD]
    lse = tl.load(LSE + h * T + tok_m, mask=m_ok, other=float("inf"))
    delta = tl.load(DELTA + h * T + tok_m, mask=m_ok, other=0.0)
    do = _operand(_load_tile(DO + h * CV, tok_m, m_ok, H * CV, c_v, CV), UPCAST)  # [BM, CV_PAD]
    dop = _operand(_load_tile(DOP + h * PV3, tok_m, m_ok, H * PV3, c_pv, PV3), UPCAST)  # [BM, PV3_PAD]
    doz = _operand(_load_tile(DOZ + h * RZ, tok_m, m_ok, H * RZ, c_z, RZ), UPCAST)  # [BM, RZ_PAD]

    PDT = KPB.dtype.element_ty
    dq = tl.zeros([BLOCK_M, C_PAD], tl.float32)
    dqpb = tl.zeros([BLOCK_M, PB_PAD], tl.float32)
    ds_knorm = tl.zeros([BLOCK_M], tl.float32)  # sum_j ds_ij |k_j - c|^2
    # for re-centring ds per row (see the end): sum_j ds_ij, sum_j p_ij kpb_j, sum_j p_ij |k_j - c|^2
    ds_sum = tl.zeros([BLOCK_M], tl.float32)
    p_kpb = tl.zeros([BLOCK_M, PB_PAD], tl.float32)
    p_knorm = tl.zeros([BLOCK_M], tl.float32)
    for start_n in range(0, n, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        tok_n = start + offs_n
        row_n = offs_n < n
        n_ok = _key_ok(KEY_MASK, tok_n, row_n, HAS_MASK)
        k = _operand(_load_tile(K + h * C, tok_n, row_n, H * C, c_qk, C), UPCAST)  # [BN, C_PAD]
        kpb = _operand(_load_tile(KPB + h * PB, tok_n, row_n, H * PB, c_pb, PB), UPCAST)  # [BN, PB_PAD]
        knorm = _point_norms(kpb, c_pb, P3)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scalar_scale
        s += tl.dot(qpb, tl.trans(kpb), input_precision=PRECISION)
        s = (s - (0.5 * pw) * knorm[None, :]) * LOG2E  # [BM, BN]
        p = tl.where(n_ok[None, :], tl.exp2(s - lse[:, None]), 0.0)
        v = _operand(_load_tile(V + h * CV, tok_n, row_n, H * CV, c_v, CV), UPCAST)  # [BN, CV_PAD]
        vp_hi = _operand(_load_tile(VP_HI + h * PV3, tok_n, row_n, H * PV3, c_pv, PV3), UPCAST)
        pk = _operand(_load_tile(PK, tok_n, row_n, RZ, c_z, RZ), UPCAST)  # [BN, RZ_PAD]
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        dp += tl.dot(dop, tl.trans(vp_hi), input_precision=PRECISION)
        if SPLIT:  # the forward's float16 value points as bf16 hi + lo (16-bit dots only)
            vp_lo = _operand(_load_tile(VP_LO + h * PV3, tok_n, row_n, H * PV3, c_pv, PV3), UPCAST)
            dp += tl.dot(dop, tl.trans(vp_lo), input_precision=PRECISION)
        dp += tl.dot(doz, tl.trans(pk), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])  # [BM, BN], d loss / d logit
        ds_knorm += tl.sum(ds * knorm[None, :], axis=1)
        ds_sum += tl.sum(ds, axis=1)
        p_knorm += tl.sum(p * knorm[None, :], axis=1)
        p_kpb += tl.dot(_round(p, PDT, UPCAST), kpb, input_precision=PRECISION)
        ds_dt = _round(ds, DT, UPCAST)
        dq += tl.dot(ds_dt, k, input_precision=PRECISION)
        kpb_hi = _operand(_load_tile(KPB_HI + h * PB, tok_n, row_n, H * PB, c_pb, PB), UPCAST)
        dqpb += _split_dot(ds, kpb_hi, DT, UPCAST, PRECISION)
        if SPLIT:  # the float16 key points' low part: d q_pts and d point_weights keep their precision
            kpb_lo = _operand(_load_tile(KPB_LO + h * PB, tok_n, row_n, H * PB, c_pb, PB), UPCAST)
            dqpb += tl.dot(ds_dt, kpb_lo, input_precision=PRECISION)

    # sum_j ds_ij is 0 in exact arithmetic, but Delta comes from the forward's output (probabilities
    # rounded to DT, O stored in DT): the row sum is off by a small error e_i, which reaches the
    # point-bias gradient as e_i sum_j p_ij kpb_j and d point_weights as e_i times the row's mean
    # point logit (large for points far apart: a 1.4% error at L = 16384). Re-centring ds_ij to
    # ds_ij - p_ij e_i removes it from both, at the cost of one [BM, BN] x [BN, PB] dot per key tile.
    dqpb -= ds_sum[:, None] * p_kpb
    ds_knorm -= ds_sum * p_knorm
    rows = m_ok[:, None]
    tl.store(DQ + h * C + tok_m[:, None] * (H * C) + c_qk[None, :],
             (dq * scalar_scale).to(DQ.dtype.element_ty), mask=rows & (c_qk[None, :] < C))
    tl.store(DQP + h * P3 + tok_m[:, None] * (H * P3) + c_pb[None, :], (dqpb * pw).to(DQP.dtype.element_ty),
             mask=rows & (c_pb[None, :] < P3))
    bias_col = tl.maximum(c_pb - P3, 0)
    tl.store(DBQ + h * RB + tok_m[:, None] * (H * RB) + bias_col[None, :],
             (dqpb * bias_scale).to(DBQ.dtype.element_ty),
             mask=rows & (c_pb[None, :] >= P3) & (c_pb[None, :] < PB))
    # d point_weights per query: sum_j ds_ij ((q_i - c).(k_j - c) - |k_j - c|^2 / 2), both parts of a
    # row combined here (they cancel: a key split between rows and columns lost a digit in float32)
    pt_ok = rows & (c_pb[None, :] < P3)
    q_c = _load_tile(QP + h * P3, tok_m, m_ok, H * P3, c_pb, P3).to(tl.float32)
    q_c = tl.where(pt_ok, q_c - _centre_columns(CENTRE, seq, c_pb)[None, :], 0.0)
    dpw = tl.sum(q_c * dqpb, axis=1) - 0.5 * ds_knorm
    tl.store(DPW_Q + h * T + tok_m, dpw, mask=m_ok)
