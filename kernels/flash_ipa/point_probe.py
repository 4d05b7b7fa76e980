"""Read the FlashIPA kernel's point term back out of its log-sum-exp: the squared distances it sees.

One forward with one head per probed key j: the pair bias of head j sends every other key to a logit
of about -4700 (bias_q = 1, bias_k = -2^13: exact in 16 bits), so that head's log-sum-exp for query
i is the kernel's own logit s_ij, here only the point term

    s_ij = pw ((q_i - c).(k_j - c) - |k_j - c|^2 / 2) = pw (|q_i - c|^2 - |q_i - k_j|^2) / 2

(summed over points; c is the kernel's sequence centre). So sum_p |q_ip - k_jp|^2 as the kernel
computes it is |q_i - c|^2 - 2 s_ij / pw, with the row's constant |q_i - c|^2 taken exact: what is
left is the kernel's error, whatever it comes from (operand rounding, the dots, the norms). The
log-sum-exp is float32, so the probe itself adds about 1e-6 relative.
"""

import math

import torch

from flashipa_kernels.flash_ipa import op

PROBE_BIAS = -8192.0  # 2^13: exact in bf16 and fp16, and far below any point term


def kernel_squared_distances(q_pts, k_pts, key_index, point_weight, dtype, allow_tf32=True):
    """Summed squared distances between query i's and key j's points, as the kernel's logits see them.

    Args:
        q_pts, k_pts: [L, P, 3] float points (one sequence, global frame)
        key_index:    [K] long, the keys probed (one head each)
        point_weight: float, the point term's weight (the scale of the logits; the result is in
                      squared units of the points whatever it is)
        dtype:        dtype of the other inputs (q, bias, v), which sets the dots' dtype; the
                      points stay float32, as the model's frames give them
    Returns:
        [L, K] float64: sum_p |q_ip - k_jp|^2 for j = key_index
    """
    L, P = q_pts.shape[:2]
    H = key_index.shape[0]
    dev = q_pts.device

    def per_head(x):  # [L, ...] -> [L, H, ...] float32: the same points in every head
        return x[:, None].expand(L, H, *x.shape[1:]).float().contiguous()

    q = torch.zeros(L, H, 16, dtype=dtype, device=dev)
    bias_q = torch.ones(L, H, 1, dtype=dtype, device=dev)
    bias_k = torch.full((L, H, 1), PROBE_BIAS, dtype=dtype, device=dev)
    bias_k[key_index, torch.arange(H, device=dev)] = 0.0
    v = torch.randn(L, H, 16, device=dev).to(dtype)
    pair_k = torch.randn(L, 1, 16, device=dev).to(dtype)
    pw = torch.full((H,), point_weight, dtype=dtype, device=dev)
    cu_seqlens = torch.tensor([0, L], dtype=torch.int32, device=dev)
    _, _, _, _, lse, centres = op.attention_fwd(
        q,
        q.clone(),
        v,
        per_head(q_pts),
        per_head(k_pts),
        per_head(k_pts[:, :1]),
        bias_q,
        bias_k,
        pair_k,
        pw,
        None,
        cu_seqlens,
        L,
        allow_tf32,
    )
    logits = lse.t().double().cpu() * math.log(2.0)  # [L, K], natural units
    q_c = q_pts.float().double().cpu() - centres[0].double().cpu()
    return q_c.square().sum(dim=(1, 2))[:, None] - 2.0 * logits / float(pw[0])


def exact_squared_distances(q_pts, k_pts, key_index):
    """[L, K] float64 sum_p |q_ip - k_jp|^2 of the float32 points given to the kernel."""
    q = q_pts.float().double().cpu()
    k = k_pts.float().double().cpu()[key_index.cpu()]
    return (q[:, None] - k[None]).square().sum(dim=(2, 3))
