"""alpha-entmax IPA Triton kernels: threshold pass, forward, dK/dV and dQ, with key-block skipping.

Same token-major layout and point-bias operands as the softmax FlashIPA kernels (built by
`flashipa_kernels.entmax_ipa.packing.point_operands`; see kernels/flash_ipa/triton_kernels.py): per token and head

    q, k [T, H, C], v [T, H, CV], pair_k [T, RZ], qpb, kpb [T, H, PB], vpc [T, H, PV3]

and the natural-unit logit s_ij = scalar_scale q_i.k_j + qpb_i.kpb_j - pw |kp_j - c|^2 / 2 (the
query-only |q - c|^2 term is a per-row constant, which entmax ignores like softmax: it moves tau).
With z = (alpha - 1) s, r = 1 / (alpha - 1) and u = z - tau:

    p_ij = u_+^r / S0_i,   g_ij = p_ij^(2 - alpha),   dS_ij = g_ij (dP_ij - Dg_i),
    Dg_i = sum_j g_ij dP_ij / sum_j g_ij = dO_i . (sum_j g_ij V_j / sum_j g_ij)

(S0_i = sum_j u_+^r is 1 up to the solver's tolerance; dividing by it keeps every output a convex
combination of values). Reading order:

  _entmax_threshold_kernel   per BLOCK_M query rows: a pass for row maxima over the key tiles whose
                             upper bound of z (_logit_upper_bound) can reach max - 1, which also flags
                             the candidate key blocks (some z > max - 1, the bracket's low end); then
                             Halley-bisection passes (threshold.py) over the candidates only, until
                             every row converged. The last pass lists, per query block, the key
                             blocks with some u > 0 (KEPT, below), and tau, S0 and passes per row.
  _entmax_fwd_kernel         p @ V over the kept key blocks; launched again by the backward for the
                             g-weighted mean of the values (for Dg).
  _entmax_bwd_dkdv_kernel    per BLOCK_N keys, over the query blocks that keep them (twice: dk side,
                             dv side, as the softmax kernel).
  _entmax_bwd_dq_kernel      per BLOCK_M queries, over the kept key blocks; d point_weights and, with
                             ALPHA_GRAD, d alpha per row. Its point-bias dots take ds and g as 16-bit
                             hi + lo (_split_dot): d point_weights is a sum of ds_ij q_i.k_j terms that
                             nearly cancel, and one bf16 rounding of ds left it at 2.8e-2 on a 96-residue
                             straight chain (now 3.3e-3; two more 16-bit dots per tile).

Kept blocks, in O(L) memory: KEPT int32 [S * H, NQB, KEEP_CAP + 4] holds per query block the kept key
blocks in ascending order (the first KEEP_CAP of them), then their count, first and last + 1; a count
above KEEP_CAP (the list overflowed) means every block from first to last is visited (exact too: a block
without support adds zeros). QB_RANGE int32 [S * H, NKB, 2] holds per key block the first and last + 1
of the query blocks that keep it. The forward and dQ kernels visit their row's listed blocks
(_key_block_visits, _block_at), the dK/dV kernels scan their column's range and test each query block's
list (_keeps), so a banded support costs the band. The blocks tie the kernels of one call to the same
BLOCK_M and BLOCK_N.
Queries that are padding or have no real key get tau = +inf: all their weights are zero.
"""

import triton
import triton.language as tl

LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def _operand(x, UPCAST: tl.constexpr):
    """A loaded dot operand; with UPCAST (interpreter, 16-bit) held in float32 after its rounding."""
    if UPCAST:
        return x.to(tl.float32)
    return x


@triton.jit
def _round(x, DT: tl.constexpr, UPCAST: tl.constexpr):
    """A float32 register tile rounded to the dot dtype DT (see _operand for UPCAST)."""
    if UPCAST:
        return x.to(DT).to(tl.float32)
    return x.to(DT)


@triton.jit
def _split_dot(a, b, DT: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """a @ b for a float32 register tile `a`; for 16-bit DT as two DT dots, hi + lo (about 16 of a's
    mantissa bits): the g-weighted value means must agree with the backward's dP to that precision,
    or dS = g (dP - Dg) keeps the difference (large for far points)."""
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
    """|k_pts - c|^2 per row [ROWS] from a point-bias tile."""
    x = kpb.to(tl.float32)
    return tl.sum(tl.where(col[None, :] < P3, x * x, 0.0), axis=1)


@triton.jit
def _key_ok(KEY_MASK, tok, ok, HAS_MASK: tl.constexpr):
    if HAS_MASK:
        ok = ok & (tl.load(KEY_MASK + tok, mask=ok, other=0) != 0)
    return ok


@triton.jit
def _scaled_logits(q, qpb, k, kpb, c_pb, pw, am1, scalar_scale, P3: tl.constexpr, PRECISION: tl.constexpr):
    """z = (alpha - 1) s, [BM, BN] for query tiles (q, qpb) and key tiles (k, kpb)."""
    knorm = _point_norms(kpb, c_pb, P3)
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scalar_scale
    s += tl.dot(qpb, tl.trans(kpb), input_precision=PRECISION)
    return (s - (0.5 * pw) * knorm[None, :]) * am1


@triton.jit
def _key_tile_logits(
    q,
    qpb,
    K,
    KPB,
    KEY_MASK,
    start,
    start_n,
    n,
    h,
    H,
    pw,
    am1,
    scalar_scale,
    HAS_MASK: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    P3: tl.constexpr,
    PB: tl.constexpr,
    PB_PAD: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """z [BM, BN] of the query tiles against keys start_n ... start_n + BLOCK_N of the sequence, -inf
    where the key is not real, and which keys are real [BN]."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    row_n = offs_n < n
    tok_n = start + offs_n
    n_ok = _key_ok(KEY_MASK, tok_n, row_n, HAS_MASK)
    c_pb = tl.arange(0, PB_PAD)
    k = _operand(_load_tile(K + h * C, tok_n, row_n, H * C, tl.arange(0, C_PAD), C), UPCAST)  # [BN, C_PAD]
    kpb = _operand(_load_tile(KPB + h * PB, tok_n, row_n, H * PB, c_pb, PB), UPCAST)  # [BN, PB_PAD]
    z = _scaled_logits(q, qpb, k, kpb, c_pb, pw, am1, scalar_scale, P3, PRECISION)
    return tl.where(n_ok[None, :], z, float("-inf")), n_ok


@triton.jit
def _logit_upper_bound(
    q_norm,
    qpb,
    KN_MAX,
    KB_BOX,
    blk,
    h,
    H,
    pw,
    am1,
    scalar_scale,
    P3: tl.constexpr,
    PB: tl.constexpr,
    PB_PAD: tl.constexpr,
):
    """[BM] upper bounds of z over one key block, from its largest |k| and the box of its kpb rows.

    scalar_scale q.k <= scalar_scale |q| max|k|; the point-bias part qpb.x - pw |x_pts|^2 / 2 is separable
    per column and maximised over the box at x = clip(qpb / pw, lo, hi) (point columns) or at the end
    of qpb's sign (bias columns). 2^-10 of the terms' sizes covers the rounding of the kernel's dots
    (tf32 operands the worst)."""
    c_pb = tl.arange(0, PB_PAD)
    box = KB_BOX + (blk * H + h) * 2 * PB + c_pb
    lo = tl.load(box, mask=c_pb < PB, other=0.0)[None, :]  # [1, PB_PAD]
    hi = tl.load(box + PB, mask=c_pb < PB, other=0.0)[None, :]
    a = qpb.to(tl.float32)  # [BM, PB_PAD]
    pt = (c_pb < P3)[None, :]
    x = tl.where(pt, tl.minimum(tl.maximum(a / tl.maximum(pw, 1e-30), lo), hi), tl.where(a >= 0.0, hi, lo))
    quad = tl.where(pt, 0.5 * pw, 0.0)
    best = tl.sum(a * x - quad * x * x, axis=1)
    x_abs = tl.maximum(tl.abs(lo), tl.abs(hi))
    qk = scalar_scale * q_norm * tl.load(KN_MAX + blk * H + h)
    size = qk + tl.sum(tl.abs(a) * x_abs + quad * x_abs * x_abs, axis=1)
    return am1 * (qk + best + size * 0.0009765625)


@triton.jit
def _log2_weights(u, ok, r, log2_s0):
    """log2 p = r log2 u - log2 S0 where ok & u > 0 (else 0), and that support."""
    pos = ok & (u > 0.0)
    return tl.where(pos, r * tl.log2(tl.where(pos, u, 1.0)) - log2_s0, 0.0), pos


@triton.jit
def _block_at(LIST, i, listed, first):
    """The i-th block to visit: entry i of a list of blocks, or first + i when the list overflowed."""
    return tl.where(listed, tl.load(LIST + i, mask=listed, other=0), first + i)


@triton.jit
def _keeps(KEPT, row, kb, KEEP_CAP: tl.constexpr):
    """Whether query block `row` (of KEPT's S * H * NQB rows) keeps key block kb (module docstring)."""
    base = KEPT + row * (KEEP_CAP + 4)
    count = tl.load(base + KEEP_CAP)
    slot = tl.arange(0, KEEP_CAP)
    listed = tl.max((tl.load(base + slot, mask=slot < count, other=-1) == kb).to(tl.int32), axis=0) != 0
    in_range = (tl.load(base + KEEP_CAP + 1) <= kb) & (kb < tl.load(base + KEEP_CAP + 2))
    return tl.where(count > KEEP_CAP, in_range, listed)


@triton.jit
def _key_block_visits(KEPT, row, KEEP_CAP: tl.constexpr):
    """(n, first, listed) for query block `row`: its kept key blocks are the first n entries of its list
    (listed) or, when the list overflowed, the n blocks from `first` on (module docstring)."""
    base = KEPT + row * (KEEP_CAP + 4)
    count = tl.load(base + KEEP_CAP)
    first = tl.load(base + KEEP_CAP + 1)
    listed = count <= KEEP_CAP
    return tl.where(listed, count, tl.load(base + KEEP_CAP + 2) - first), first, listed


@triton.jit
def _entmax_threshold_kernel(
    Q,
    K,
    QPB,
    KPB,
    PW,
    ALPHA,
    KEY_MASK,
    CU_SEQLENS,
    KN_MAX,
    KB_BOX,
    TAU,
    S0,
    PASSES,
    CANDIDATES,
    KEPT,
    QB_RANGE,
    TRACE,
    H,
    T,
    NQB,
    NKB,
    scalar_scale,
    tol,
    MAX_ITER: tl.constexpr,
    KEEP_CAP: tl.constexpr,
    TRACE_ROWS: tl.constexpr,
    HAS_MASK: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    P3: tl.constexpr,
    PB: tl.constexpr,
    PB_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """One program: BLOCK_M queries of one sequence and one head; tau by Halley-bisection. TRACE_ROWS > 0
    (diagnosis only): rows (pid_sh * NQB + pid_m) * BLOCK_M + i below TRACE_ROWS write their search to
    TRACE [MAX_ITER + 1, TRACE_ROWS, 8] float32, record 0 (z_max, n_real, kb_lo, kb_hi) then per pass of their
    program (tau, S0, S1, S2, f, lo, hi, done)."""
    pid_m = tl.program_id(0)
    pid_sh = tl.program_id(1)
    seq = pid_sh // H
    h = pid_sh % H
    start = tl.load(CU_SEQLENS + seq)
    n = tl.load(CU_SEQLENS + seq + 1) - start
    if pid_m * BLOCK_M >= n:
        return
    pw = tl.load(PW + h).to(tl.float32)
    am1 = tl.load(ALPHA + h).to(tl.float32) - 1.0
    r = 1.0 / am1
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = offs_m < n
    tok_m = start + offs_m
    c_qk = tl.arange(0, C_PAD)
    c_pb = tl.arange(0, PB_PAD)
    q = _operand(_load_tile(Q + h * C, tok_m, m_ok, H * C, c_qk, C), UPCAST)  # [BM, C_PAD]
    qpb = _operand(_load_tile(QPB + h * PB, tok_m, m_ok, H * PB, c_pb, PB), UPCAST)  # [BM, PB_PAD]
    row = pid_sh * NQB + pid_m
    candidates = CANDIDATES + row * KEEP_CAP  # pass 0's candidate key blocks (the first KEEP_CAP)
    kept_row = KEPT + row * (KEEP_CAP + 4)
    q_ok = _key_ok(KEY_MASK, tok_m, m_ok, HAS_MASK)

    # pass 0: row maxima of z, the number of real keys, and the candidate key blocks, listed: those
    # with some z > (running maximum) - 1 >= lo. Every tau of the search is >= lo, so the candidates hold
    # the support at every pass, and the Halley passes visit only them. The keys at the queries' own
    # positions go first: the running maximum is then near its final value from the start (on a chain
    # it is there), and few blocks are flagged that the final lo excludes. A block whose upper bound
    # of z (KN_MAX, KB_BOX: launch.key_block_bounds) is <= running maximum - 1 for every row is neither
    # a candidate nor can it raise a maximum: its logits are not computed.
    z_max = tl.full([BLOCK_M], float("-inf"), tl.float32)
    for start_n in range(pid_m * BLOCK_M, pid_m * BLOCK_M + BLOCK_M, BLOCK_N):
        z, n_ok = _key_tile_logits(
            q,
            qpb,
            K,
            KPB,
            KEY_MASK,
            start,
            start_n,
            n,
            h,
            H,
            pw,
            am1,
            scalar_scale,
            HAS_MASK,
            PRECISION,
            UPCAST,
            C,
            C_PAD,
            P3,
            PB,
            PB_PAD,
            BLOCK_N,
        )
        z_max = tl.maximum(z_max, tl.max(z, axis=1))
    count = tl.zeros([BLOCK_N], tl.float32)
    q_norm = tl.sqrt(tl.sum(q.to(tl.float32) * q.to(tl.float32), axis=1))  # [BM]
    kb_lo = tl.full([], 0, tl.int32) + NKB  # the range of candidate key blocks [kb_lo, kb_hi)
    kb_hi = tl.full([], 0, tl.int32)
    n_cand = tl.full([], 0, tl.int32)
    for start_n in range(0, n, BLOCK_N):
        kb = start_n // BLOCK_N
        offs_n = start_n + tl.arange(0, BLOCK_N)
        count += _key_ok(KEY_MASK, start + offs_n, offs_n < n, HAS_MASK).to(tl.float32)
        ub = _logit_upper_bound(
            q_norm, qpb, KN_MAX, KB_BOX, seq * NKB + kb, h, H, pw, am1, scalar_scale, P3, PB, PB_PAD
        )
        if tl.max((q_ok & (ub > z_max - 1.0)).to(tl.int32), axis=0) != 0:
            z, n_ok = _key_tile_logits(
                q,
                qpb,
                K,
                KPB,
                KEY_MASK,
                start,
                start_n,
                n,
                h,
                H,
                pw,
                am1,
                scalar_scale,
                HAS_MASK,
                PRECISION,
                UPCAST,
                C,
                C_PAD,
                P3,
                PB,
                PB_PAD,
                BLOCK_N,
            )
            z_max = tl.maximum(z_max, tl.max(z, axis=1))
            near = q_ok[:, None] & (z > z_max[:, None] - 1.0)
            candidate = tl.max(tl.max(near.to(tl.int32), axis=1), axis=0) != 0
            tl.store(candidates + n_cand, kb, mask=candidate & (n_cand < KEEP_CAP))
            n_cand += candidate.to(tl.int32)
            kb_lo = tl.where(candidate, tl.minimum(kb_lo, kb), kb_lo)
            kb_hi = tl.where(candidate, kb + 1, kb_hi)
    # the Halley passes read pass 0's list back (every block of kb_lo ... kb_hi when it overflowed): a scalar
    # store is made by one thread, and another thread's load of it is ordered after it only across a barrier
    tl.debug_barrier()
    n_real = tl.sum(count, axis=0)
    active = q_ok & (tl.zeros([BLOCK_M], tl.float32) + n_real > 0.0)
    z_max = tl.where(active, z_max, 0.0)
    lo = z_max - 1.0
    hi = z_max - tl.exp2(-am1 * tl.log2(tl.maximum(n_real, 1.0)))
    tau = lo
    s0 = tl.full([BLOCK_M], 1.0, tl.float32)
    done = tl.where(active, 0, 1)
    passes = tl.zeros([BLOCK_M], tl.int32)
    cand_listed = n_cand <= KEEP_CAP
    n_visit = tl.where(cand_listed, n_cand, kb_hi - kb_lo)
    n_kept = tl.full([], 0, tl.int32)  # the last pass's kept key blocks: count, first, last + 1
    kept_lo = tl.full([], 0, tl.int32) + NKB
    kept_hi = tl.full([], 0, tl.int32)
    trace_rows = (pid_sh * NQB + pid_m) * BLOCK_M + tl.arange(0, BLOCK_M)
    tracing = trace_rows < TRACE_ROWS
    if TRACE_ROWS > 0:
        rec = TRACE + trace_rows * 8
        tl.store(rec, z_max, mask=tracing)
        tl.store(rec + 1, z_max * 0.0 + n_real, mask=tracing)
        tl.store(rec + 2, z_max * 0.0 + kb_lo.to(tl.float32), mask=tracing)
        tl.store(rec + 3, z_max * 0.0 + kb_hi.to(tl.float32), mask=tracing)
    for it in range(MAX_ITER):  # a fixed loop with a guard: rows converge at different passes
        if tl.min(done, axis=0) == 0:
            s0_new = tl.zeros([BLOCK_M], tl.float32)
            s1 = tl.zeros([BLOCK_M], tl.float32)
            s2 = tl.zeros([BLOCK_M], tl.float32)
            pass_kept = tl.full([], 0, tl.int32)
            pass_lo = tl.full([], 0, tl.int32) + NKB
            pass_hi = tl.full([], 0, tl.int32)
            for i in range(0, n_visit):
                kb = _block_at(candidates, i, cand_listed, kb_lo)
                z, n_ok = _key_tile_logits(
                    q,
                    qpb,
                    K,
                    KPB,
                    KEY_MASK,
                    start,
                    kb * BLOCK_N,
                    n,
                    h,
                    H,
                    pw,
                    am1,
                    scalar_scale,
                    HAS_MASK,
                    PRECISION,
                    UPCAST,
                    C,
                    C_PAD,
                    P3,
                    PB,
                    PB_PAD,
                    BLOCK_N,
                )
                u = z - tau[:, None]
                pos = active[:, None] & (u > 0.0)
                log2_u = tl.log2(tl.maximum(tl.where(pos, u, 1.0), 1e-18))
                s0_new += tl.sum(tl.where(pos, tl.exp2(r * log2_u), 0.0), axis=1)
                s1 += tl.sum(tl.where(pos, tl.exp2((r - 1.0) * log2_u), 0.0), axis=1)
                s2 += tl.sum(tl.where(pos, tl.exp2((r - 2.0) * log2_u), 0.0), axis=1)
                # every pass lists the blocks with support anew: the last pass's list stands
                kept = tl.max(tl.max(pos.to(tl.int32), axis=1), axis=0) != 0
                tl.store(kept_row + pass_kept, kb, mask=kept & (pass_kept < KEEP_CAP))
                pass_kept += kept.to(tl.int32)
                pass_lo = tl.where(kept, tl.minimum(pass_lo, kb), pass_lo)
                pass_hi = tl.where(kept, kb + 1, pass_hi)
            n_kept = pass_kept
            kept_lo = pass_lo
            kept_hi = pass_hi
            s0 = tl.where(done == 1, s0, s0_new)
            passes += 1 - done
            f = s0_new - 1.0
            lo = tl.where(f > 0.0, tau, lo)
            hi = tl.where(f < 0.0, tau, hi)
            df = -r * s1
            d2f = r * (r - 1.0) * s2
            den = 2.0 * df * df - f * d2f
            step = tau - 2.0 * f * df / tl.where(den != 0.0, den, 1.0)
            nxt = tl.where((step > lo) & (step < hi), step, 0.5 * (lo + hi))
            scale = tl.maximum(tl.abs(tau), 1.0)
            # converged: |f| small, or the bracket or the Halley step within a few float32 ulps of tau (the
            # rounding of z then dominates f: a step that small, or 0, would only bisect the bracket)
            ulps = 4.8e-7 * scale
            converged = (tl.abs(f) <= tol) | (hi - lo <= ulps) | (tl.abs(step - tau) <= ulps)
            # after MAX_ITER passes a row stops too: tau stays the last evaluated one, which S0 belongs to
            done = tl.where(converged | (passes >= MAX_ITER), 1, done)
            if TRACE_ROWS > 0:
                rec = TRACE + ((it + 1) * TRACE_ROWS + trace_rows) * 8
                tl.store(rec, tau, mask=tracing)
                tl.store(rec + 1, s0_new, mask=tracing)
                tl.store(rec + 2, s1, mask=tracing)
                tl.store(rec + 3, s2, mask=tracing)
                tl.store(rec + 4, f, mask=tracing)
                tl.store(rec + 5, lo, mask=tracing)
                tl.store(rec + 6, hi, mask=tracing)
                tl.store(rec + 7, done.to(tl.float32), mask=tracing)
            tau = tl.where(done == 1, tau, nxt)
    tl.store(TAU + h * T + tok_m, tl.where(active, tau, float("inf")), mask=m_ok)
    tl.store(S0 + h * T + tok_m, tl.where(active, s0, 1.0), mask=m_ok)
    tl.store(PASSES + h * T + tok_m, passes, mask=m_ok)
    tl.store(kept_row + KEEP_CAP, n_kept)
    tl.store(kept_row + KEEP_CAP + 1, kept_lo)
    tl.store(kept_row + KEEP_CAP + 2, kept_hi)
    # the query-block range of each kept key block (of every block in the range when the list overflowed);
    # the list is read back by other threads than wrote it
    tl.debug_barrier()
    listed = n_kept <= KEEP_CAP
    for i in range(0, tl.where(listed, n_kept, kept_hi - kept_lo)):
        kb = _block_at(kept_row, i, listed, kept_lo)
        tl.atomic_min(QB_RANGE + (pid_sh * NKB + kb) * 2, pid_m)
        tl.atomic_max(QB_RANGE + (pid_sh * NKB + kb) * 2 + 1, pid_m + 1)


@triton.jit
def _entmax_fwd_kernel(
    Q,
    K,
    V,
    QPB,
    KPB,
    VPC,
    PK,
    PW,
    ALPHA,
    CENTRE,
    KEY_MASK,
    CU_SEQLENS,
    TAU,
    S0,
    KEPT,
    O,
    OP,
    OZ,
    H,
    T,
    NQB,
    NKB,
    scalar_scale,
    G_MEANS: tl.constexpr,
    HAS_MASK: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    CV: tl.constexpr,
    CV_PAD: tl.constexpr,
    P3: tl.constexpr,
    PB: tl.constexpr,
    PB_PAD: tl.constexpr,
    PV3: tl.constexpr,
    PV3_PAD: tl.constexpr,
    RZ: tl.constexpr,
    RZ_PAD: tl.constexpr,
    KEEP_CAP: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """One program: BLOCK_M queries of one sequence and one head, over the kept key blocks.

    G_MEANS=False (the forward): o = sum_j p_ij V_j into O, OP (global frame), OZ.
    G_MEANS=True (the backward's first launch): sum_j g_ij V_j / sum_j g_ij, float32, value points
    centred, for Dg; g split hi + lo in 16-bit dots. One weighting per launch keeps three
    accumulators in registers, as the softmax forward."""
    pid_m = tl.program_id(0)
    pid_sh = tl.program_id(1)
    seq = pid_sh // H
    h = pid_sh % H
    start = tl.load(CU_SEQLENS + seq)
    n = tl.load(CU_SEQLENS + seq + 1) - start
    if pid_m * BLOCK_M >= n:
        return
    DT = Q.dtype.element_ty
    PDT = VPC.dtype.element_ty
    pw = tl.load(PW + h).to(tl.float32)
    alpha = tl.load(ALPHA + h).to(tl.float32)
    r = 1.0 / (alpha - 1.0)
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
    tau = tl.load(TAU + h * T + tok_m, mask=m_ok, other=float("inf"))
    log2_s0 = tl.log2(tl.load(S0 + h * T + tok_m, mask=m_ok, other=1.0))

    acc_v = tl.zeros([BLOCK_M, CV_PAD], tl.float32)
    acc_p = tl.zeros([BLOCK_M, PV3_PAD], tl.float32)
    acc_z = tl.zeros([BLOCK_M, RZ_PAD], tl.float32)
    w_sum = tl.zeros([BLOCK_M], tl.float32)
    row = pid_sh * NQB + pid_m
    n_visit, first, listed = _key_block_visits(KEPT, row, KEEP_CAP)
    for i in range(0, n_visit):  # the kept key blocks, listed (or the whole range: the list overflowed)
        kb = _block_at(KEPT + row * (KEEP_CAP + 4), i, listed, first)
        offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
        row_n = offs_n < n
        tok_n = start + offs_n
        n_ok = _key_ok(KEY_MASK, tok_n, row_n, HAS_MASK)
        k = _operand(_load_tile(K + h * C, tok_n, row_n, H * C, c_qk, C), UPCAST)
        kpb = _operand(_load_tile(KPB + h * PB, tok_n, row_n, H * PB, c_pb, PB), UPCAST)
        u = _scaled_logits(q, qpb, k, kpb, c_pb, pw, alpha - 1.0, scalar_scale, P3, PRECISION) - tau[:, None]
        log2_p, pos = _log2_weights(u, n_ok[None, :], r, log2_s0[:, None])
        v = _operand(_load_tile(V + h * CV, tok_n, row_n, H * CV, c_v, CV), UPCAST)  # [BN, CV_PAD]
        vp = _operand(_load_tile(VPC + h * PV3, tok_n, row_n, H * PV3, c_pv, PV3), UPCAST)
        pk = _operand(_load_tile(PK, tok_n, row_n, RZ, c_z, RZ), UPCAST)  # [BN, RZ_PAD]
        if G_MEANS:
            g = tl.where(pos, tl.exp2((2.0 - alpha) * log2_p), 0.0)  # [BM, BN]
            w_sum += tl.sum(g, axis=1)
            acc_v += _split_dot(g, v, DT, UPCAST, PRECISION)
            acc_p += _split_dot(g, vp, PDT, UPCAST, PRECISION)
            acc_z += _split_dot(g, pk, DT, UPCAST, PRECISION)
        else:
            p = tl.where(pos, tl.exp2(log2_p), 0.0)  # [BM, BN]
            pd = _round(p, DT, UPCAST)
            acc_v += tl.dot(pd, v, input_precision=PRECISION)
            acc_p += tl.dot(_round(p, PDT, UPCAST), vp, input_precision=PRECISION)
            acc_z += tl.dot(pd, pk, input_precision=PRECISION)

    rows = m_ok[:, None]
    v_off = h * CV + tok_m[:, None] * (H * CV) + c_v[None, :]
    pv_off = h * PV3 + tok_m[:, None] * (H * PV3) + c_pv[None, :]
    z_off = h * RZ + tok_m[:, None] * (H * RZ) + c_z[None, :]
    v_mask = rows & (c_v[None, :] < CV)
    pv_mask = rows & (c_pv[None, :] < PV3)
    z_mask = rows & (c_z[None, :] < RZ)
    if G_MEANS:
        inv = tl.where(w_sum > 0.0, 1.0 / tl.where(w_sum > 0.0, w_sum, 1.0), 0.0)[:, None]
        tl.store(O + v_off, acc_v * inv, mask=v_mask)
        tl.store(OP + pv_off, acc_p * inv, mask=pv_mask)
        tl.store(OZ + z_off, acc_z * inv, mask=z_mask)
    else:
        tl.store(O + v_off, acc_v.to(O.dtype.element_ty), mask=v_mask)
        c = tl.load(CENTRE + seq * 3 + c_pv % 3)  # the sequence centre for each xyz column
        op = tl.where((tau < float("inf"))[:, None], acc_p + c[None, :], 0.0)
        tl.store(OP + pv_off, op.to(OP.dtype.element_ty), mask=pv_mask)
        tl.store(OZ + z_off, acc_z.to(OZ.dtype.element_ty), mask=z_mask)


@triton.jit
def _entmax_bwd_dkdv_kernel(
    Q,
    K,
    V,
    QPB,
    KPB,
    VPC,
    PK,
    PW,
    ALPHA,
    KEY_MASK,
    CU_SEQLENS,
    TAU,
    S0,
    KEPT,
    QB_RANGE,
    DO,
    DOP,
    DOP_P,
    DOZ,
    DELTA_G,
    DK,
    DV,
    DKP,
    DVP,
    DBK,
    DPK_H,
    H,
    T,
    NQB,
    NKB,
    scalar_scale,
    COMPUTE_DK: tl.constexpr,
    HAS_MASK: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    CV: tl.constexpr,
    CV_PAD: tl.constexpr,
    P3: tl.constexpr,
    RB: tl.constexpr,
    PB: tl.constexpr,
    PB_PAD: tl.constexpr,
    PV3: tl.constexpr,
    PV3_PAD: tl.constexpr,
    RZ: tl.constexpr,
    RZ_PAD: tl.constexpr,
    KEEP_CAP: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """One program: BLOCK_N keys of one sequence and one head, over the query blocks that keep them.

    COMPUTE_DK=True: dk, d k_pts, d bias_k; False: dv, d v_pts and this head's d pair_k ([T, H, RZ])."""
    pid_n = tl.program_id(0)
    pid_sh = tl.program_id(1)
    seq = pid_sh // H
    h = pid_sh % H
    start = tl.load(CU_SEQLENS + seq)
    n = tl.load(CU_SEQLENS + seq + 1) - start
    if pid_n * BLOCK_N >= n:
        return
    DT = Q.dtype.element_ty
    PDT = KPB.dtype.element_ty
    pw = tl.load(PW + h).to(tl.float32)
    alpha = tl.load(ALPHA + h).to(tl.float32)
    am1 = alpha - 1.0
    r = 1.0 / am1
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
        vp = _operand(_load_tile(VPC + h * PV3, tok_n, row_n, H * PV3, c_pv, PV3), UPCAST)
        pk = _operand(_load_tile(PK, tok_n, row_n, RZ, c_z, RZ), UPCAST)  # [BN, RZ_PAD]
        dk = tl.zeros([BLOCK_N, C_PAD], tl.float32)
        dkpb = tl.zeros([BLOCK_N, PB_PAD], tl.float32)
        ds_sum = tl.zeros([BLOCK_N], tl.float32)
    else:
        dv = tl.zeros([BLOCK_N, CV_PAD], tl.float32)
        dvp = tl.zeros([BLOCK_N, PV3_PAD], tl.float32)
        dz = tl.zeros([BLOCK_N, RZ_PAD], tl.float32)
    range_col = QB_RANGE + (pid_sh * NKB + pid_n) * 2
    for qb in range(tl.load(range_col), tl.load(range_col + 1)):  # the kept query blocks lie in this range
        if _keeps(KEPT, pid_sh * NQB + qb, pid_n, KEEP_CAP):
            offs_m = qb * BLOCK_M + tl.arange(0, BLOCK_M)
            m_ok = offs_m < n
            tok_m = start + offs_m
            q = _operand(_load_tile(Q + h * C, tok_m, m_ok, H * C, c_qk, C), UPCAST)  # [BM, C_PAD]
            qpb = _operand(_load_tile(QPB + h * PB, tok_m, m_ok, H * PB, c_pb, PB), UPCAST)  # [BM, PB_PAD]
            tau = tl.load(TAU + h * T + tok_m, mask=m_ok, other=float("inf"))
            log2_s0 = tl.log2(tl.load(S0 + h * T + tok_m, mask=m_ok, other=1.0))
            s_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * scalar_scale
            s_t += tl.dot(kpb, tl.trans(qpb), input_precision=PRECISION)
            u_t = (s_t - (0.5 * pw) * knorm[:, None]) * am1 - tau[None, :]  # [BN, BM]
            log2_p, pos = _log2_weights(u_t, n_ok[:, None], r, log2_s0[None, :])
            do = _operand(_load_tile(DO + h * CV, tok_m, m_ok, H * CV, c_v, CV), UPCAST)  # [BM, CV_PAD]
            doz = _operand(_load_tile(DOZ + h * RZ, tok_m, m_ok, H * RZ, c_z, RZ), UPCAST)
            if COMPUTE_DK:
                dop = _operand(_load_tile(DOP_P + h * PV3, tok_m, m_ok, H * PV3, c_pv, PV3), UPCAST)
                g_t = tl.where(pos, tl.exp2((2.0 - alpha) * log2_p), 0.0)
                delta_g = tl.load(DELTA_G + h * T + tok_m, mask=m_ok, other=0.0)
                dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
                dp_t += tl.dot(vp, tl.trans(dop), input_precision=PRECISION)
                dp_t += tl.dot(pk, tl.trans(doz), input_precision=PRECISION)
                ds_t = g_t * (dp_t - delta_g[None, :])  # [BN, BM], d loss / d logit
                ds_sum += tl.sum(ds_t, axis=1)
                dk += tl.dot(_round(ds_t, DT, UPCAST), q, input_precision=PRECISION)
                dkpb += tl.dot(_round(ds_t, PDT, UPCAST), qpb, input_precision=PRECISION)
            else:
                dop = _operand(_load_tile(DOP + h * PV3, tok_m, m_ok, H * PV3, c_pv, PV3), UPCAST)
                pd_t = _round(tl.where(pos, tl.exp2(log2_p), 0.0), DT, UPCAST)
                dv += tl.dot(pd_t, do, input_precision=PRECISION)
                dvp += tl.dot(pd_t, dop, input_precision=PRECISION)
                dz += tl.dot(pd_t, doz, input_precision=PRECISION)

    if COMPUTE_DK:
        tl.store(
            DK + h * C + tok_n[:, None] * (H * C) + c_qk[None, :],
            (dk * scalar_scale).to(DK.dtype.element_ty),
            mask=rows & (c_qk[None, :] < C),
        )
        dkp = dkpb - pw * kpb.to(tl.float32) * ds_sum[:, None]  # the -|k - c|^2 / 2 term
        tl.store(
            DKP + h * P3 + tok_n[:, None] * (H * P3) + c_pb[None, :],
            dkp.to(DKP.dtype.element_ty),
            mask=rows & (c_pb[None, :] < P3),
        )
        bias_col = tl.maximum(c_pb - P3, 0)
        tl.store(
            DBK + h * RB + tok_n[:, None] * (H * RB) + bias_col[None, :],
            dkpb.to(DBK.dtype.element_ty),
            mask=rows & (c_pb[None, :] >= P3) & (c_pb[None, :] < PB),
        )
    else:
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
def _entmax_bwd_dq_kernel(
    Q,
    K,
    V,
    QPB,
    KPB,
    VPC,
    QP,
    PK,
    PW,
    ALPHA,
    CENTRE,
    KEY_MASK,
    CU_SEQLENS,
    TAU,
    S0,
    KEPT,
    DO,
    DOP_P,
    DOZ,
    DELTA_G,
    DQ,
    DQP,
    DBQ,
    DPW_Q,
    DALPHA_Q,
    H,
    T,
    NQB,
    NKB,
    scalar_scale,
    bias_scale,
    ALPHA_GRAD: tl.constexpr,
    HAS_MASK: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    CV: tl.constexpr,
    CV_PAD: tl.constexpr,
    P3: tl.constexpr,
    RB: tl.constexpr,
    PB: tl.constexpr,
    PB_PAD: tl.constexpr,
    PV3: tl.constexpr,
    PV3_PAD: tl.constexpr,
    RZ: tl.constexpr,
    RZ_PAD: tl.constexpr,
    KEEP_CAP: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """One program: BLOCK_M queries of one sequence and one head, over the kept key blocks.

    Writes dq, d q_pts, d bias_q, each query's share of d point_weights ([H, T]) and, with ALPHA_GRAD,
    of d alpha: r^2 (sum p dP - Dg) - r (sum p ln p dP - Dg sum p ln p)."""
    pid_m = tl.program_id(0)
    pid_sh = tl.program_id(1)
    seq = pid_sh // H
    h = pid_sh % H
    start = tl.load(CU_SEQLENS + seq)
    n = tl.load(CU_SEQLENS + seq + 1) - start
    if pid_m * BLOCK_M >= n:
        return
    DT = Q.dtype.element_ty
    PDT = KPB.dtype.element_ty
    pw = tl.load(PW + h).to(tl.float32)
    alpha = tl.load(ALPHA + h).to(tl.float32)
    r = 1.0 / (alpha - 1.0)
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
    tau = tl.load(TAU + h * T + tok_m, mask=m_ok, other=float("inf"))
    log2_s0 = tl.log2(tl.load(S0 + h * T + tok_m, mask=m_ok, other=1.0))
    delta_g = tl.load(DELTA_G + h * T + tok_m, mask=m_ok, other=0.0)
    do = _operand(_load_tile(DO + h * CV, tok_m, m_ok, H * CV, c_v, CV), UPCAST)  # [BM, CV_PAD]
    dop = _operand(_load_tile(DOP_P + h * PV3, tok_m, m_ok, H * PV3, c_pv, PV3), UPCAST)  # [BM, PV3_PAD]
    doz = _operand(_load_tile(DOZ + h * RZ, tok_m, m_ok, H * RZ, c_z, RZ), UPCAST)  # [BM, RZ_PAD]

    dq = tl.zeros([BLOCK_M, C_PAD], tl.float32)
    dqpb = tl.zeros([BLOCK_M, PB_PAD], tl.float32)
    ds_knorm = tl.zeros([BLOCK_M], tl.float32)  # sum_j ds_ij |k_j - c|^2
    p_dp = tl.zeros([BLOCK_M], tl.float32)  # sum_j p dP, sum_j p ln p dP, sum_j p ln p (d alpha)
    plogp_dp = tl.zeros([BLOCK_M], tl.float32)
    plogp = tl.zeros([BLOCK_M], tl.float32)
    # for re-centring ds per row (see the end): sum_j ds_ij, sum_j g_ij, sum_j g_ij kpb_j, sum_j g_ij |k_j - c|^2
    ds_sum = tl.zeros([BLOCK_M], tl.float32)
    g_sum = tl.zeros([BLOCK_M], tl.float32)
    g_kpb = tl.zeros([BLOCK_M, PB_PAD], tl.float32)
    g_knorm = tl.zeros([BLOCK_M], tl.float32)
    row = pid_sh * NQB + pid_m
    n_visit, first, listed = _key_block_visits(KEPT, row, KEEP_CAP)
    for i in range(0, n_visit):  # the kept key blocks, listed (or the whole range: the list overflowed)
        kb = _block_at(KEPT + row * (KEEP_CAP + 4), i, listed, first)
        offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
        row_n = offs_n < n
        tok_n = start + offs_n
        n_ok = _key_ok(KEY_MASK, tok_n, row_n, HAS_MASK)
        k = _operand(_load_tile(K + h * C, tok_n, row_n, H * C, c_qk, C), UPCAST)  # [BN, C_PAD]
        kpb = _operand(_load_tile(KPB + h * PB, tok_n, row_n, H * PB, c_pb, PB), UPCAST)  # [BN, PB_PAD]
        knorm = _point_norms(kpb, c_pb, P3)
        u = _scaled_logits(q, qpb, k, kpb, c_pb, pw, alpha - 1.0, scalar_scale, P3, PRECISION) - tau[:, None]
        log2_p, pos = _log2_weights(u, n_ok[None, :], r, log2_s0[:, None])
        g = tl.where(pos, tl.exp2((2.0 - alpha) * log2_p), 0.0)  # [BM, BN]
        v = _operand(_load_tile(V + h * CV, tok_n, row_n, H * CV, c_v, CV), UPCAST)  # [BN, CV_PAD]
        vp = _operand(_load_tile(VPC + h * PV3, tok_n, row_n, H * PV3, c_pv, PV3), UPCAST)
        pk = _operand(_load_tile(PK, tok_n, row_n, RZ, c_z, RZ), UPCAST)  # [BN, RZ_PAD]
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        dp += tl.dot(dop, tl.trans(vp), input_precision=PRECISION)
        dp += tl.dot(doz, tl.trans(pk), input_precision=PRECISION)
        ds = g * (dp - delta_g[:, None])  # [BM, BN], d loss / d logit
        ds_knorm += tl.sum(ds * knorm[None, :], axis=1)
        ds_sum += tl.sum(ds, axis=1)
        g_sum += tl.sum(g, axis=1)
        g_knorm += tl.sum(g * knorm[None, :], axis=1)
        g_kpb += _split_dot(g, kpb, PDT, UPCAST, PRECISION)
        dq += tl.dot(_round(ds, DT, UPCAST), k, input_precision=PRECISION)
        dqpb += _split_dot(ds, kpb, PDT, UPCAST, PRECISION)
        if ALPHA_GRAD:
            p = tl.where(pos, tl.exp2(log2_p), 0.0)
            p_ln_p = p * log2_p * LN2
            p_dp += tl.sum(p * dp, axis=1)
            plogp_dp += tl.sum(p_ln_p * dp, axis=1)
            plogp += tl.sum(p_ln_p, axis=1)

    # sum_j ds_ij is 0 in exact arithmetic, but Dg comes from the forward (rounded operands): the row
    # sum is off by e_i, which reaches the point gradients as e_i sum_j gh_ij kpb_j, large for points
    # far from the centre. Re-centring ds_ij to ds_ij - gh_ij e_i (gh = g / sum g) removes it.
    e = ds_sum / tl.where(g_sum > 0.0, g_sum, 1.0)
    dqpb -= e[:, None] * g_kpb
    ds_knorm -= e * g_knorm
    rows = m_ok[:, None]
    tl.store(
        DQ + h * C + tok_m[:, None] * (H * C) + c_qk[None, :],
        (dq * scalar_scale).to(DQ.dtype.element_ty),
        mask=rows & (c_qk[None, :] < C),
    )
    tl.store(
        DQP + h * P3 + tok_m[:, None] * (H * P3) + c_pb[None, :],
        (dqpb * pw).to(DQP.dtype.element_ty),
        mask=rows & (c_pb[None, :] < P3),
    )
    bias_col = tl.maximum(c_pb - P3, 0)
    tl.store(
        DBQ + h * RB + tok_m[:, None] * (H * RB) + bias_col[None, :],
        (dqpb * bias_scale).to(DBQ.dtype.element_ty),
        mask=rows & (c_pb[None, :] >= P3) & (c_pb[None, :] < PB),
    )
    # d point_weights per query: sum_j ds_ij ((q_i - c).(k_j - c) - |k_j - c|^2 / 2)
    pt_ok = rows & (c_pb[None, :] < P3)
    q_c = _load_tile(QP + h * P3, tok_m, m_ok, H * P3, c_pb, P3).to(tl.float32)
    q_c = tl.where(pt_ok, q_c - tl.load(CENTRE + seq * 3 + c_pb % 3)[None, :], 0.0)
    tl.store(DPW_Q + h * T + tok_m, tl.sum(q_c * dqpb, axis=1) - 0.5 * ds_knorm, mask=m_ok)
    if ALPHA_GRAD:
        d_alpha = r * r * (p_dp - delta_g) - r * (plogp_dp - delta_g * plogp)
        tl.store(DALPHA_Q + h * T + tok_m, d_alpha, mask=m_ok)
