"""Triton kernels of spatially sparse IPA: attention of every query over its own key list (gathered keys).

Reading order as in Triton's fused-attention tutorial: the logit helper, the forward kernel, the
backward kernel. Host-side launches live in `launch.py`.

Layout (token-major, contiguous; T tokens of a flattened batch, H heads):

    qs, ks [T, H, DS]   scalar+bias operands: qs = [q W_L / sqrt(C), bias_q W_L], ks = [k, bias_k]
    qp, kp [T, H, P3]   query / key points, global frame, float32 (flattened P x 3)
    pw     [H]          point weights softplus(gamma) w_C w_L
    v      [T, H, DV]   values [v, v_pts - centre, pair_k]
    nbr    [T, K]       int32 token indices of each query's keys, -1 where empty (shared by the heads)

The logit is s_ij = qs_i . ks_j - pw_h / 2 |qp_i - kp_j|^2: the point term is taken from the point
differences, never from |kp|^2 - 2 qp.kp, because the keys are spatial neighbours (differences small,
norms of a large assembly large) and bf16 operands would lose the difference otherwise. One program
handles one (query, head): the key list is gathered in blocks of BLOCK_K rows with an online softmax.
The backward recomputes the probabilities from the saved log-sum-exp and scatters dK, dV and the key
points' gradient with atomic adds (float32 buffers), since a key appears in many lists.
"""

import triton
import triton.language as tl


@triton.jit
def _logits(
    qs,
    qp,
    pw,
    ks_ptr,
    kp_ptr,
    nbr_ptr,
    t,
    h,
    kb,
    K,
    H,
    DS,
    P3,
    BLOCK_K: tl.constexpr,
    DS_PAD: tl.constexpr,
    P3_PAD: tl.constexpr,
):
    """Logits [BLOCK_K] of query (t, h) over list entries kb .. kb + BLOCK_K, with the gathered key
    tokens [BLOCK_K], validity [BLOCK_K] and point differences qp - kp [BLOCK_K, P3_PAD]."""
    offs = kb + tl.arange(0, BLOCK_K)
    j = tl.load(nbr_ptr + t * K + offs, mask=offs < K, other=-1)
    valid = j >= 0
    jj = tl.where(valid, j, 0).to(tl.int64)
    ds = tl.arange(0, DS_PAD)
    ks = tl.load(
        ks_ptr + (jj[:, None] * H + h) * DS + ds[None, :], mask=valid[:, None] & (ds[None, :] < DS), other=0.0
    ).to(tl.float32)
    dp = tl.arange(0, P3_PAD)
    kp = tl.load(
        kp_ptr + (jj[:, None] * H + h) * P3 + dp[None, :], mask=valid[:, None] & (dp[None, :] < P3), other=0.0
    ).to(tl.float32)
    diff = qp[None, :] - kp  # [BLOCK_K, P3_PAD]
    s = tl.sum(ks * qs[None, :], axis=1) - 0.5 * pw * tl.sum(diff * diff, axis=1)
    s = tl.where(valid, s, float("-inf"))
    return s, jj, valid, ks, diff


@triton.jit
def _fwd_kernel(
    qs_ptr,
    ks_ptr,
    qp_ptr,
    kp_ptr,
    pw_ptr,
    v_ptr,
    nbr_ptr,
    o_ptr,
    lse_ptr,
    K,
    H,
    DS,
    P3,
    DV,
    BLOCK_K: tl.constexpr,
    DS_PAD: tl.constexpr,
    P3_PAD: tl.constexpr,
    DV_PAD: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    ds = tl.arange(0, DS_PAD)
    dp = tl.arange(0, P3_PAD)
    dv = tl.arange(0, DV_PAD)
    qs = tl.load(qs_ptr + (t * H + h) * DS + ds, mask=ds < DS, other=0.0).to(tl.float32)
    qp = tl.load(qp_ptr + (t * H + h) * P3 + dp, mask=dp < P3, other=0.0).to(tl.float32)
    pw = tl.load(pw_ptr + h).to(tl.float32)
    m = tl.full((), float("-inf"), tl.float32)
    l = tl.zeros((), tl.float32)
    acc = tl.zeros((DV_PAD,), tl.float32)
    for kb in range(0, K, BLOCK_K):
        s, jj, valid, _, _ = _logits(
            qs, qp, pw, ks_ptr, kp_ptr, nbr_ptr, t, h, kb, K, H, DS, P3, BLOCK_K, DS_PAD, P3_PAD
        )
        m_new = tl.maximum(m, tl.max(s, axis=0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.where(valid, tl.exp(s - m_safe), 0.0)
        alpha = tl.where(m == float("-inf"), 0.0, tl.exp(m - m_safe))
        v = tl.load(
            v_ptr + (jj[:, None] * H + h) * DV + dv[None, :], mask=valid[:, None] & (dv[None, :] < DV), other=0.0
        ).to(tl.float32)
        l = l * alpha + tl.sum(p, axis=0)
        acc = acc * alpha + tl.sum(p[:, None] * v, axis=0)
        m = m_new
    empty = l == 0.0  # a padded query (empty list) outputs zero with lse = -inf
    o = acc / tl.where(empty, 1.0, l)
    lse = tl.where(empty, float("-inf"), m + tl.log(tl.where(empty, 1.0, l)))
    tl.store(o_ptr + (t * H + h) * DV + dv, o.to(o_ptr.dtype.element_ty), mask=dv < DV)
    tl.store(lse_ptr + t * H + h, lse)


@triton.jit
def _bwd_kernel(
    qs_ptr,
    ks_ptr,
    qp_ptr,
    kp_ptr,
    pw_ptr,
    v_ptr,
    nbr_ptr,
    lse_ptr,
    delta_ptr,
    do_ptr,
    dqs_ptr,
    dks_ptr,
    dqp_ptr,
    dkp_ptr,
    dpw_ptr,
    dv_ptr,
    K,
    H,
    DS,
    P3,
    DV,
    BLOCK_K: tl.constexpr,
    DS_PAD: tl.constexpr,
    P3_PAD: tl.constexpr,
    DV_PAD: tl.constexpr,
):
    """delta = do . o - dlse per (query, head) comes from the host: ds_ij = p_ij (do_i . v_j - delta_i)."""
    t = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    ds_ = tl.arange(0, DS_PAD)
    dp = tl.arange(0, P3_PAD)
    dv = tl.arange(0, DV_PAD)
    qs = tl.load(qs_ptr + (t * H + h) * DS + ds_, mask=ds_ < DS, other=0.0).to(tl.float32)
    qp = tl.load(qp_ptr + (t * H + h) * P3 + dp, mask=dp < P3, other=0.0).to(tl.float32)
    pw = tl.load(pw_ptr + h).to(tl.float32)
    do = tl.load(do_ptr + (t * H + h) * DV + dv, mask=dv < DV, other=0.0).to(tl.float32)
    lse = tl.load(lse_ptr + t * H + h)
    lse = tl.where(lse == float("-inf"), 0.0, lse)  # an empty list: every p below is masked anyway
    delta = tl.load(delta_ptr + t * H + h)
    dqs = tl.zeros((DS_PAD,), tl.float32)
    dqp = tl.zeros((P3_PAD,), tl.float32)
    dpw = tl.zeros((), tl.float32)
    for kb in range(0, K, BLOCK_K):
        s, jj, valid, ks, diff = _logits(
            qs, qp, pw, ks_ptr, kp_ptr, nbr_ptr, t, h, kb, K, H, DS, P3, BLOCK_K, DS_PAD, P3_PAD
        )
        p = tl.where(valid, tl.exp(s - lse), 0.0)  # [BLOCK_K]
        v_off = (jj[:, None] * H + h) * DV + dv[None, :]
        v_ok = valid[:, None] & (dv[None, :] < DV)
        v = tl.load(v_ptr + v_off, mask=v_ok, other=0.0).to(tl.float32)
        dsc = p * (tl.sum(v * do[None, :], axis=1) - delta)  # [BLOCK_K]
        dqs += tl.sum(dsc[:, None] * ks, axis=0)
        dqp += tl.sum((-pw * dsc)[:, None] * diff, axis=0)
        dpw += tl.sum(-0.5 * dsc * tl.sum(diff * diff, axis=1), axis=0)
        tl.atomic_add(dv_ptr + v_off, p[:, None] * do[None, :], mask=v_ok)
        tl.atomic_add(
            dks_ptr + (jj[:, None] * H + h) * DS + ds_[None, :],
            dsc[:, None] * qs[None, :],
            mask=valid[:, None] & (ds_[None, :] < DS),
        )
        tl.atomic_add(
            dkp_ptr + (jj[:, None] * H + h) * P3 + dp[None, :],
            (pw * dsc)[:, None] * diff,
            mask=valid[:, None] & (dp[None, :] < P3),
        )
    tl.store(dqs_ptr + (t * H + h) * DS + ds_, dqs, mask=ds_ < DS)
    tl.store(dqp_ptr + (t * H + h) * P3 + dp, dqp, mask=dp < P3)
    tl.store(dpw_ptr + t * H + h, dpw)
