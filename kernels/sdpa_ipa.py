"""IPA attention through torch's scaled_dot_product_attention: the in-project baseline of the kernels.

q, k and v features (`ipa_attention_features`) are zero-padded to one head dim and the pair-value factors
copied once per head, as flash_ipa does. torch picks the kernel: on the H200 (torch 2.11) cuDNN's Hopper
attention, faster than the FlashAttention-2 kernel that flash_ipa's own code forces. Kernel benchmarks
report against it (both kernels: `flashipa-bench --backends sdpa sdpa_fa2`); the model runs it as the
"sdpa" backend (`flashipa_kernels.backends`).
"""

import torch
import torch.nn.functional as F

from flashipa_kernels.reference.factorized_attention import ipa_attention_features, split_attention_output


def _attention_sdpa(q_feat, k_feat, v_feat, key_mask):
    # flash_ipa's way: one padded head dim for q, k and v, a multiple of 8
    d_qk, d_v = q_feat.shape[-1], v_feat.shape[-1]
    d = -(-max(d_qk, d_v) // 8) * 8
    q_pad = F.pad(q_feat, (0, d - d_qk)).transpose(1, 2)  # [B, H, L, d]
    k_pad = F.pad(k_feat, (0, d - d_qk)).transpose(1, 2)
    v_pad = F.pad(v_feat, (0, d - d_v)).transpose(1, 2)
    # the flash backend takes no mask: with a mask given, a host sync checks whether it masks anything
    attn_mask = None if key_mask is None or bool(key_mask.all()) else key_mask[:, None, None, :]
    o = F.scaled_dot_product_attention(q_pad, k_pad, v_pad, attn_mask=attn_mask, scale=1.0)
    return o[..., :d_v].transpose(1, 2)  # [B, L, H, D_v]


def sdpa_ipa_attention(q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights, mask=None):
    """IPA attention over per-residue features; arguments and outputs as `tiled_ipa_attention`'s.

    Args:
        mask: [B, L] bool, True for real residues (None: all real, and sdpa runs without a mask).
    """
    B, L = q.shape[:2]
    sdpa_mask = None if mask is None else mask.bool()
    mask = torch.ones(B, L, dtype=torch.bool, device=q.device) if mask is None else mask.bool()
    feats = ipa_attention_features(q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights)
    o_feat = _attention_sdpa(*feats, sdpa_mask)
    o_feat = o_feat * mask[:, :, None, None].to(o_feat.dtype)  # padded queries output zero
    return split_attention_output(o_feat, v, v_pts, pair_k)
