"""The factorized IPA never forms an L x L tensor, in forward or backward; the dense IPA does."""

import torch

from flashipa_kernels.reference import InvariantPointAttention
from flashipa_train.largest_tensor import LargestTensor

L = 4096


def frames_and_single(c_s, generator):
    s = torch.randn(1, L, c_s, generator=generator)
    rots = torch.linalg.qr(torch.randn(1, L, 3, 3, generator=generator))[0]
    trans = 3.0 * torch.randn(1, L, 3, generator=generator)
    mask = torch.ones(1, L, dtype=torch.bool)
    mask[:, -100:] = False
    return s, rots, trans, mask


def test_factorized_torch_backend_never_creates_an_L_squared_tensor_at_L_4096():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    H, R, c_z = 4, 2, 4
    module = InvariantPointAttention(c_s=16, c_z=c_z, c_hidden=8, no_heads=H, no_qk_points=4, no_v_points=4)
    s, rots, trans, mask = frames_and_single(16, g)
    factors = dict(
        bias_q=torch.randn(1, L, H, R, generator=g),
        bias_k=torch.randn(1, L, H, R, generator=g),
        pair_q=torch.randn(1, L, R, c_z, generator=g),
        pair_k=torch.randn(1, L, R, c_z, generator=g),
    )
    leaves = [s, trans, *factors.values()]
    for x in leaves:
        x.requires_grad_()

    with LargestTensor() as forward:
        out = module.forward_factorized(s, rots, trans, **factors, mask=mask)
        loss = (out * torch.randn_like(out)).sum()
    with LargestTensor() as backward:
        loss.backward()

    print(
        f"\nfactorized torch backend, L={L}, H={H}: largest tensor forward {forward.numel:,} "
        f"({forward.op}), backward {backward.numel:,} ({backward.op}); L^2 = {L * L:,}"
    )
    assert backward.ops > 0  # the recorder saw the backward pass
    assert all(x.grad is not None for x in leaves)
    assert forward.numel < L * L
    assert backward.numel < L * L


def test_dense_path_creates_L_squared_tensors_at_L_4096():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    # one head, one point and one pair channel keep the dense L x L x ... tensors at a few hundred MB
    module = InvariantPointAttention(c_s=16, c_z=1, c_hidden=8, no_heads=1, no_qk_points=1, no_v_points=1)
    s, rots, trans, mask = frames_and_single(16, g)
    z = torch.randn(1, L, L, 1, generator=g)
    with torch.no_grad(), LargestTensor() as forward:
        module(s, z, rots, trans, mask)
    print(f"\ndense path, L={L}, H=1: largest tensor forward {forward.numel:,} ({forward.op})")
    assert forward.numel >= L * L
