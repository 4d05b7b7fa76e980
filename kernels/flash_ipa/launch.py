"""Host side of the FlashIPA kernels: dims, autotune configs, sequence centres and the launchers.

All tensors here are token-major (padded batches flattened to B * L tokens) and contiguous; see
`triton_kernels.py` for the layout and `attention.py` for the public entry point.
"""

import math
import os

import torch
import triton

from flashipa_kernels.flash_ipa import prep_kernel
from flashipa_kernels.flash_ipa import triton_kernels as tk
from flashipa_kernels.reference.factorized_attention import W_L  # AlphaFold2's weight for the three logit terms

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
# FLASHIPA_AUTOTUNE=0 takes each kernel's first config without timing (tests: no tuning cost per dims)
AUTOTUNE = os.environ.get("FLASHIPA_AUTOTUNE", "1") != "0"
# The pair bias gets a tile of its own where that is narrower (point_bias_widths): 20% faster at the trunk's
# dims on the H200 (docs/kernel_notes.md v6). FLASHIPA_BIAS_TILE=0 keeps points and bias in one tile.
BIAS_TILE = os.environ.get("FLASHIPA_BIAS_TILE", "1") != "0"


def next_power_of_2(n):
    """The smallest power of two >= n (n >= 1), in plain Python: triton.next_power_of_2 is a
    ConstexprFunction on Triton 3.6 and 3.9, about 10 us a call on the host path of every attention call."""
    return 1 << (n - 1).bit_length()


def tile_width(dim):
    """Register-tile width for a feature dim: a power of two, at least 16 (tl.dot's minimum)."""
    return max(16, next_power_of_2(max(dim, 1)))


def _configs(triples, rows_first):
    """Autotune configs from (BLOCK_M, BLOCK_N, num_stages) with 8 warps, then two fallbacks for wide
    value rows (see _pruner): 64-row tiles on 4 warps and 32-row tiles on 2 warps; one small
    config when interpreted.

    Rule for Triton 3.6 on Hopper: a program's row tile (BLOCK_M in the forward and dQ kernels,
    BLOCK_N in dK/dV; `rows_first` says which) is 16 * num_warps rows. Triton lays a dot whose result
    feeds another dot (the logits) out with all warps along the rows; with fewer rows than that, the
    two warp groups of 8 warps hold copies of one 64-row tile and the logit dots run twice
    (docs/kernel_notes.md)."""
    if INTERPRETED:
        return [triton.Config({"BLOCK_M": 32, "BLOCK_N": 32}, num_warps=4, num_stages=1)]
    configs = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=8, num_stages=s) for bm, bn, s in triples]
    rows, cols = (64, 32) if rows_first else (32, 64)
    return configs + [
        triton.Config({"BLOCK_M": rows, "BLOCK_N": cols}, num_warps=4, num_stages=1),
        triton.Config({"BLOCK_M": 32, "BLOCK_N": 32}, num_warps=2, num_stages=1),
    ]


SM90_SHARED_BYTES = 232448  # 227 KB per block (opt-in) on the H100 / H200


def shared_bytes(kernel, block_m, block_n, num_stages, d, split, elt):
    """Shared memory a config of `kernel` ("fwd", "dk", "dv", "dq") takes on sm_90, estimated from its dot
    operand tiles: the program's own tiles (loaded before the loop) once, the tiles loaded per loop step
    num_stages times (cp.async buffers), elt bytes per element (q's dtype) and float32 row vectors. Within
    0.8 KB above ptxas's figure for every pipelined config of docs/kernel_notes.md v4 (Triton 3.6), and
    at most 16 KB above for num_stages = 1; configs that break the row rule of _configs (64 rows on 8 warps)
    take up to 2.5 KB more than estimated."""
    narrow = d["PLW"] < d["PBW"]
    point = d["PBW"] + (d["PLW"] * (1 + narrow) if split else d["PLW"] * narrow)  # hi, lo, hi's point cols
    point += d["BW"]  # the bias tile
    logit = d["C_PAD"] + point  # scalar q.k and point-bias tiles of one side
    value = d["CV_PAD"] + d["PVW"] + d["RZ_PAD"]  # value (or output gradient) tiles of one side
    own, step, vectors = {
        "fwd": (logit, logit + value, 4),
        "dq": (logit + value, logit + value, 8),
        "dk": (logit + value, logit + value, 8),
        "dv": (logit, logit + value, 4),
    }[kernel]
    own_rows, step_rows = (block_m, block_n) if kernel in ("fwd", "dq") else (block_n, block_m)
    return elt * own_rows * own + num_stages * step_rows * (elt * step + vectors)


def _max_shared_bytes(device):
    if device.type != "cuda":
        return SM90_SHARED_BYTES
    return triton.runtime.driver.active.utils.get_device_properties(device.index)["max_shared_mem"]


def _pruner(kernel):
    """early_config_prune for `kernel`: the configs whose shared-memory estimate (shared_bytes) fits the
    device; the fallbacks (the last two configs, fewer warps) only when no 8-warp config fits, and the
    smallest config when nothing fits. Untuned runs (FLASHIPA_AUTOTUNE=0) take the first that fits.
    Spills are not estimated: the 8-warp lists below are the configs ptxas compiles with no or few spills
    at the anchor and trunk dims (docs/kernel_notes.md v4)."""

    def prune(configs, named_args, **kwargs):
        if INTERPRETED:
            return configs
        limit = _max_shared_bytes(named_args["QS"].device)
        chosen = candidate_configs(kernel, configs, kwargs, named_args["QS"].element_size(), limit)
        return chosen if AUTOTUNE else chosen[:1]

    return {"early_config_prune": prune}


def _second_row_load(d):
    """The kernels load a second tile from the rows of QH, KH: the narrow lo's point columns (split, PLW < PBW)
    or the bias tile (BW > 0)."""
    return (d["SPLIT"] and d["PLW"] < d["PBW"]) or d["BW"] > 0


def candidate_configs(kernel, configs, d, elt, limit):
    """The configs of `kernel` that _pruner keeps for dims d (kernel constexprs, with SPLIT), in order.

    Narrow lo operands (PLW < PBW) with the hi/lo split drop the 3-stage forwards with 64-key tiles: Triton
    3.6 compiled the 8-warp (128, 64, 3) forward there to an out-of-bounds shared-memory read in the hi
    point-bias dot (compute-sanitizer on the H200, dims of test_bias_wider_than_points, 2026-12-03). The
    32-key tiles at 2 and 3 stages and the 4-warp fallback ran memcheck-clean at those dims and at the
    trunk's (2026-12-03, session 27), where shared_bytes drops (128, 64, 3) anyway. The bias tile (BW > 0) is
    a second load from the same rows too, with the same fault: forced to (128, 64, 3) at its test's dims, the
    forward made invalid shared-memory reads under compute-sanitizer (H200, session 28)."""
    fits = [
        c
        for c in configs
        if shared_bytes(kernel, c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_stages, d, d["SPLIT"], elt) <= limit
        and not (kernel == "fwd" and _second_row_load(d) and c.num_stages > 2 and c.kwargs["BLOCK_N"] > 32)
    ]
    main = [c for c in fits if c.num_warps == 8]
    return main or fits or configs[-1:]


_KEYS = ["C", "CV", "P3", "RB", "BW", "PV3", "RZ", "PRECISION", "SPLIT", "UPCAST", "L_BUCKET"]
# (BLOCK_M, BLOCK_N, num_stages), 8 warps; the first of each list is the untuned default. Row tiles of
# 128 (rule above): 128 queries x 64 or 32 keys in the forward and dQ, 128 keys x 64 or 32 queries in
# dK and dV. ptxas for sm_90 (`python -m flashipa_kernels.flash_ipa.resource_report`, Triton 3.6; table in
# docs/kernel_notes.md v4, v6): no spills at the anchor dims in bf16; at the trunk's (content_relpos, the bias
# in its own tile) dK (32, 128, 2 or 3) and the forward keep no stack, dQ (128, 32, 2) 40 B and (128, 32, 3) 72 B.
# Left out: fwd (128, 64, 2) spills 8 B, dQ (128, 64) 120-144 B, dV (64, 128) 16-24 B (anchor dims);
# shared_bytes drops what does not fit (dK (64, 128) and fwd (128, 64, 3) at the trunk dims).
# Order: the first that fits is the untuned choice at both dims. Kernel times at the trunk's dims with points
# and bias in one tile (v5), L = 32768, H200 (scripts/kernel_config_sweep.py, 2026-12-03): fwd (128, 32, 3)
# 23.5 ms vs (128, 32, 2) 33.9 and (128, 64, 2) 25.4; dV (32, 128, 3) 22.0 vs (32, 128, 2) 32.6; dK
# (16, 128, 3) 47.1 vs (32, 128, 2) 47.7; dQ (128, 32, 2) 49.7 vs (128, 16, 3) 54.1 (dK (32, 128, 3) did
# not fit then).
_FWD_CONFIGS = _configs([(128, 64, 3), (128, 32, 3), (128, 32, 2)], rows_first=True)
# dK (32, 128, 3) and dQ (128, 32, 3) are the bias tile's best (36.1 and 35.8 ms at the trunk, L 32768); the
# autotuner finds them (untuned runs keep the 2-stage configs, which fit at every dims).
_DK_CONFIGS = _configs([(32, 128, 2), (32, 128, 3), (16, 128, 3), (64, 128, 2)], rows_first=False)
_DV_CONFIGS = _configs([(32, 128, 3), (32, 128, 2)], rows_first=False)
_DQ_CONFIGS = _configs([(128, 32, 2), (128, 32, 3)], rows_first=True)

_fwd = triton.autotune(_FWD_CONFIGS, key=_KEYS, prune_configs_by=_pruner("fwd"))(tk._ipa_fwd_kernel)
_dk = triton.autotune(_DK_CONFIGS, key=_KEYS, prune_configs_by=_pruner("dk"))(tk._ipa_bwd_dk_kernel)
_dv = triton.autotune(_DV_CONFIGS, key=_KEYS, prune_configs_by=_pruner("dv"))(tk._ipa_bwd_dv_kernel)
_dq = triton.autotune(_DQ_CONFIGS, key=_KEYS, prune_configs_by=_pruner("dq"))(tk._ipa_bwd_dq_kernel)


def point_bias_widths(P3, RB, bias_tile=True):
    """(PBW, PLW, BW): widths of the hi point-bias tile, of the points' lo parts and of the bias tile.

    The bias columns follow the points in one power-of-two tile (BW 0) unless a tile of their own is
    narrower in all (bias_tile): the trunk's 27 point and 42 bias columns take 32 + 64 columns instead of
    128, the anchor's 24 + 2 stay in one tile of 32."""
    joint, points, bias = tile_width(P3 + RB), tile_width(P3), tile_width(RB)
    if bias_tile and points + bias < joint:
        return points, points, bias
    return joint, points, 0


def dims(q, v, q_pts, v_pts, bias_q, pair_k, bias_tile=None):
    """Feature dims and their tile widths, as kernel constexprs: PBW, PLW, BW and PVW are the in-memory
    widths of the point-bias operands (rows of QH, KH are PBW + BW wide), their lo parts (points only),
    the bias tile (point_bias_widths; bias_tile None: BIAS_TILE) and the value points (powers of two: 16-byte
    aligned rows)."""
    C, CV = q.shape[-1], v.shape[-1]
    P3, PV3 = 3 * q_pts.shape[-2], 3 * v_pts.shape[-2]
    RB = bias_q.shape[-1]
    RZ = pair_k.shape[-2] * pair_k.shape[-1]
    pbw, plw, bw = point_bias_widths(P3, RB, BIAS_TILE if bias_tile is None else bias_tile)
    return dict(
        C=C,
        C_PAD=tile_width(C),
        CV=CV,
        CV_PAD=tile_width(CV),
        P3=P3,
        RB=RB,
        PBW=pbw,
        PLW=plw,
        BW=bw,
        PV3=PV3,
        PVW=tile_width(PV3),
        RZ=RZ,
        RZ_PAD=tile_width(RZ),
    )


def sequence_centres(k_pts, key_mask, cu_seqlens, max_seqlen):
    """One centre per sequence: the mean key point over its real keys, heads and points.

    Args:
        k_pts: [T, H, P_q, 3]; key_mask: [T] bool/uint8 or None; cu_seqlens: [S + 1] int32;
        max_seqlen: the longest sequence.
    Returns:
        [S, 3] float32. Any point works (the logits only change by a per-row constant); the mean
        keeps the centred coordinates as small as the protein, whatever its distance to the origin.
    Sequences of one length (a padded batch, or one sequence) are a reshape and a mean; only a varlen
    batch takes prefix sums over tokens (and a search per token in token_centres).
    """
    T = k_pts.shape[0]
    S = cu_seqlens.shape[0] - 1
    if key_mask is None and T == S * max_seqlen:  # one mean per sequence over its tokens, heads and points
        return k_pts.reshape(S, -1, 3).mean(dim=1, dtype=torch.float64).to(torch.float32)
    # float64 sums in both paths: a padded batch and the same sequences packed get the same centres
    tok_mean = k_pts.mean(dim=(1, 2), dtype=torch.float64)  # [T, 3]
    if T == S * max_seqlen:  # every sequence max_seqlen long
        tok_mean = tok_mean.view(S, max_seqlen, 3)
        w = key_mask.view(S, max_seqlen, 1).to(torch.float64)
        return ((tok_mean * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)).to(torch.float32)
    weight = torch.ones_like(tok_mean[:, :1]) if key_mask is None else key_mask[:, None].to(torch.float64)
    csum = torch.cat([tok_mean.new_zeros(1, 4), torch.cat([tok_mean * weight, weight], 1).cumsum(0)])  # [T+1, 4]
    cu = cu_seqlens.long()
    seg = csum[cu[1:]] - csum[cu[:-1]]  # [S, 4]
    return (seg[:, :3] / seg[:, 3:].clamp(min=1.0)).to(torch.float32).contiguous()


def token_centres(centres, cu_seqlens, T, max_seqlen):
    """[T, 3] float32: the centre of each token's sequence (a broadcast, no search, when all
    sequences are max_seqlen long)."""
    S = centres.shape[0]
    if T == S * max_seqlen:
        return centres[:, None, :].expand(S, max_seqlen, 3).reshape(T, 3)
    tok = torch.arange(T, device=centres.device, dtype=torch.int32)
    seq = torch.searchsorted(cu_seqlens[1:], tok, right=True)  # [T], the sequence of each token
    return centres[seq]


def operands(
    q, q_pts, k_pts, v_pts, bias_q, bias_k, point_weights, key_mask, centres, cu_seqlens, max_seqlen, allow_tf32, d
):
    """The kernels' operands that are not inputs as they are (layout in triton_kernels.py), written
    once per call (O(L)) by one kernel (prep_kernel.py). Dots run in q's dtype; the point-bias operands
    are split hi + lo except for exact float32 dots.

    Args: token-major q [T, H, C], q_pts, k_pts [T, H, P_q, 3], v_pts [T, H, P_v, 3], bias_q, bias_k
    [T, H, R_b], point_weights [H], key_mask [T] or None, centres [S, 3] float32, d: `dims` (the layout).
    Returns dict QS, QH, QL, KH, KL, KN, KNORM, VPC and SPLIT (QH, KH [T, H, PBW + BW]; QL, KL are QH,
    KH without a split, with it [T, H, PLW], the point columns' lo parts).
    """
    T, H, C = q.shape
    dt, dev = q.dtype, q.device
    split = dt != torch.float32 or allow_tf32
    P3, RB, PV3 = d["P3"], d["RB"], d["PV3"]
    pbw, plw, bw, pvw = d["PBW"], d["PLW"], d["BW"], d["PVW"]
    n_seq = cu_seqlens.shape[0] - 1
    qs = torch.empty(T, H, C, dtype=dt, device=dev)
    qh, kh = torch.empty(T, H, pbw + bw, dtype=dt, device=dev), torch.empty(T, H, pbw + bw, dtype=dt, device=dev)
    ql, kl = qh, kh
    if split:  # the point columns' lo parts
        ql, kl = torch.empty(T, H, plw, dtype=dt, device=dev), torch.empty(T, H, plw, dtype=dt, device=dev)
    kn, knorm = torch.empty(H, T, dtype=torch.float32, device=dev), torch.empty(H, T, dtype=torch.float32, device=dev)
    vpc = torch.empty(T, H, pvw, dtype=dt, device=dev)
    block = 32 if INTERPRETED else 64
    log2e = 1.0 / math.log(2.0)
    prep_kernel._ipa_prep_kernel[(triton.cdiv(T, block), H)](
        q,
        q_pts,
        k_pts,
        v_pts,
        bias_q,
        bias_k,
        point_weights,
        centres,
        cu_seqlens,
        cu_seqlens if key_mask is None else key_mask,
        qs,
        qh,
        ql,
        kh,
        kl,
        kn,
        knorm,
        vpc,
        T,
        H,
        max_seqlen,
        n_seq,
        W_L / math.sqrt(C) * log2e,
        W_L * log2e,
        HAS_MASK=key_mask is not None,
        SPLIT=split,
        UNIFORM=T == n_seq * max_seqlen,
        SEARCH_STEPS=max(1, (n_seq - 1).bit_length()),
        RNE_BITS=INTERPRETED and dt == torch.bfloat16,
        C=C,
        C_PAD=tile_width(C),
        P3=P3,
        RB=RB,
        PBW=pbw,
        PLW=plw,
        BW=bw,
        PV3=PV3,
        PVW=pvw,
        BLOCK_T=block,
    )
    return dict(QS=qs, QH=qh, QL=ql, KH=kh, KL=kl, KN=kn, KNORM=knorm, VPC=vpc, SPLIT=split)


def _check_int32_offsets(T, H, d):
    widest = max(d["C"], d["CV"], d["PBW"] + d["BW"], d["PVW"], d["RZ"])  # QH, KH rows: PBW + BW
    if T * H * widest >= 2**31:
        raise ValueError(
            f"kernels/flash_ipa/launch.py: {T} tokens x {H} heads x {widest} features overflows the "
            "kernel's int32 offsets; split the batch into smaller token budgets"
        )


def _as_dot_dtype(dtype, *xs):
    """Dot operands in q's dtype (autocast can leave, e.g., k or pair_k in float32 next to a bfloat16 q):
    a copy only where the dtype differs. Outputs and gradients keep each input's own dtype."""
    return tuple(x.to(dtype) for x in xs)


def _flags(dtype, allow_tf32, max_seqlen):
    """PRECISION: "ieee" for exact float32 dots, else "tf32" (ignored for 16-bit operands).
    UPCAST: bfloat16 dot operands held in float32 after rounding, under the interpreter only.
    L_BUCKET: the autotune key of the sequence length (powers of two from 1024)."""
    return dict(
        PRECISION="tf32" if (allow_tf32 or dtype != torch.float32) else "ieee",
        UPCAST=INTERPRETED and dtype == torch.bfloat16,
        L_BUCKET=max(1024, next_power_of_2(max_seqlen)),
    )


def _grid(block_key, max_seqlen, n_seq, H):
    return lambda meta: (triton.cdiv(max_seqlen, meta[block_key]), n_seq * H)


def forward(
    q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights, key_mask, cu_seqlens, max_seqlen, allow_tf32
):
    """Launch the forward kernel on token-major tensors ([T, H, ...], pair_k [T, R, C_z]).

    Returns o [T, H, CV], o_pts [T, H, PV3], o_pair [T, H, RZ], o_pts_centred [T, H, PV3] float32
    (kept for the backward's Delta), lse [H, T] float32 (base 2), centres [S, 3] float32."""
    T, H = q.shape[:2]
    d = dims(q, v, q_pts, v_pts, bias_q, pair_k)
    _check_int32_offsets(T, H, d)
    n_seq = cu_seqlens.shape[0] - 1
    centres = sequence_centres(k_pts, key_mask, cu_seqlens, max_seqlen)
    o = torch.empty(T, H, d["CV"], dtype=v.dtype, device=q.device)
    o_pts = torch.empty(T, H, d["PV3"], dtype=v_pts.dtype, device=q.device)
    o_pts_c = torch.empty(T, H, d["PV3"], dtype=torch.float32, device=q.device)
    o_pair = torch.empty(T, H, d["RZ"], dtype=pair_k.dtype, device=q.device)
    lse = torch.empty(H, T, dtype=torch.float32, device=q.device)
    k, v, pair_k = _as_dot_dtype(q.dtype, k, v, pair_k)
    ops = operands(
        q, q_pts, k_pts, v_pts, bias_q, bias_k, point_weights, key_mask, centres, cu_seqlens, max_seqlen, allow_tf32, d
    )
    _fwd[_grid("BLOCK_M", max_seqlen, n_seq, H)](
        ops["QS"],
        k,
        v,
        ops["QH"],
        ops["QL"],
        ops["KH"],
        ops["KL"],
        ops["KN"],
        ops["VPC"],
        pair_k,
        centres,
        cu_seqlens,
        o,
        o_pts,
        o_pts_c,
        o_pair,
        lse,
        H,
        T,
        SPLIT=ops["SPLIT"],
        **_flags(q.dtype, allow_tf32, max_seqlen),
        **d,
    )
    return o, o_pts, o_pair, o_pts_c, lse, centres


def backward(
    do,
    do_pts,
    do_pair,
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
    allow_tf32,
    o,
    o_pts_c,
    o_pair,
    lse,
    centres,
):
    """Launch Delta preprocess, dK, dV and dQ kernels; returns the gradients of the ten inputs."""
    T, H = q.shape[:2]
    d = dims(q, v, q_pts, v_pts, bias_q, pair_k)
    n_seq = cu_seqlens.shape[0] - 1
    dev = q.device
    delta = torch.empty(H, T, dtype=torch.float32, device=dev)
    block = 32 if INTERPRETED else 64
    tk._ipa_bwd_preprocess_kernel[(triton.cdiv(T, block), H)](
        o,
        o_pts_c,
        o_pair,
        do,
        do_pts,
        do_pair,
        delta,
        H,
        T,
        CV=d["CV"],
        CV_PAD=d["CV_PAD"],
        PV3=d["PV3"],
        PV3_PAD=d["PVW"],
        RZ=d["RZ"],
        RZ_PAD=d["RZ_PAD"],
        BLOCK_M=block,
    )
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dq_pts, dk_pts, dv_pts = torch.empty_like(q_pts), torch.empty_like(k_pts), torch.empty_like(v_pts)
    dbias_q, dbias_k = torch.empty_like(bias_q), torch.empty_like(bias_k)
    dpair_k_heads = torch.empty(T, H, d["RZ"], dtype=torch.float32, device=dev)  # summed over heads below
    pair_k_dtype = pair_k.dtype
    k, v, pair_k, do, do_pts, do_pair = _as_dot_dtype(q.dtype, k, v, pair_k, do, do_pts, do_pair)
    dpw_q = torch.empty(H, T, dtype=torch.float32, device=dev)
    # the forward's operands again (cheaper than keeping them)
    ops = operands(
        q, q_pts, k_pts, v_pts, bias_q, bias_k, point_weights, key_mask, centres, cu_seqlens, max_seqlen, allow_tf32, d
    )
    flags = dict(SPLIT=ops["SPLIT"], **_flags(q.dtype, allow_tf32, max_seqlen), **d)
    qs, qh, ql, kh, kl, kn = (ops[n] for n in ("QS", "QH", "QL", "KH", "KL", "KN"))
    grid_k = _grid("BLOCK_N", max_seqlen, n_seq, H)
    _dk[grid_k](
        qs,
        k,
        v,
        qh,
        ql,
        kh,
        kl,
        kn,
        ops["VPC"],
        pair_k,
        point_weights,
        cu_seqlens,
        do,
        do_pts,
        do_pair,
        lse,
        delta,
        dk,
        dk_pts,
        dbias_k,
        H,
        T,
        **flags,
    )
    _dv[grid_k](
        qs, k, qh, ql, kh, kl, kn, cu_seqlens, do, do_pts, do_pair, lse, dv, dv_pts, dpair_k_heads, H, T, **flags
    )
    _dq[_grid("BLOCK_M", max_seqlen, n_seq, H)](
        qs,
        k,
        v,
        qh,
        ql,
        kh,
        kl,
        kn,
        ops["KNORM"],
        ops["VPC"],
        q_pts,
        pair_k,
        point_weights,
        centres,
        cu_seqlens,
        do,
        do_pts,
        do_pair,
        lse,
        delta,
        dq,
        dq_pts,
        dbias_q,
        dpw_q,
        H,
        T,
        scalar_scale=W_L / math.sqrt(d["C"]),
        bias_scale=W_L,
        **flags,
    )
    dpair_k = dpair_k_heads.sum(dim=1).view(pair_k.shape).to(pair_k_dtype)
    dpw = dpw_q.sum(dim=1, dtype=torch.float64).to(point_weights.dtype)  # [H]
    return dq, dk, dv, dq_pts, dk_pts, dv_pts, dbias_q, dbias_k, dpair_k, dpw
