"""InvariantPointAttention: Algorithm 22 with OpenFold's layout; dense and factorized paths agree."""

import math

import pytest
import torch
import torch.nn.functional as F

from flashipa_kernels.backends import attention_core
from flashipa_kernels.reference import InvariantPointAttention, pair_bias_from_factors, pair_values_from_factors

B, C_S, C_Z, C_HIDDEN, H, P_Q, P_V = 2, 16, 6, 5, 3, 3, 2
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
PATHS = ["dense", "torch", "sdpa"]


def rel_err(x, ref):
    """||x - ref|| / ||ref||; the absolute error where ref is exactly zero."""
    scale = ref.norm().item() or 1.0
    return (x.double() - ref.double()).norm().item() / scale


def random_rotations(*batch, generator):
    """[*batch, 3, 3] rotation matrices: QR of Gaussian matrices, signs fixed so that det = +1."""
    q, r = torch.linalg.qr(torch.randn(*batch, 3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[..., None, :]
    return q * torch.det(q)[..., None, None]  # det(-Q) = -det(Q) for 3 x 3


def random_module(seed, **dims):
    """A float64 module with random weights everywhere (head_weights too)."""
    torch.manual_seed(seed)
    kwargs = dict(c_s=C_S, c_z=C_Z, c_hidden=C_HIDDEN, no_heads=H, no_qk_points=P_Q, no_v_points=P_V)
    module = InvariantPointAttention(**{**kwargs, **dims}).double()
    with torch.no_grad():
        module.head_weights.normal_()
    return module


def random_inputs(L, R, seed, module=None, batch=B):
    """Float64 module inputs: s, rots, trans, mask, pair factors; batch 1 has padded residues."""
    m = module or random_module(0)
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    mask = torch.ones(batch, L, dtype=torch.bool)
    if L > 1 and batch > 1:
        mask[1] = torch.rand(L, generator=g) > 0.33
        mask[1, 0] = True
    return dict(
        s=randn(batch, L, m.c_s),
        rots=random_rotations(batch, L, generator=g),
        trans=2.0 * randn(batch, L, 3),
        bias_q=randn(batch, L, m.no_heads, R),
        bias_k=randn(batch, L, m.no_heads, R),
        pair_q=randn(batch, L, R, m.c_z),
        pair_k=randn(batch, L, R, m.c_z),
        mask=mask,
    )


def run_path(module, inputs, path):
    """The module on factor inputs; "dense" materialises the pair bias and pair values."""
    x = dict(inputs)
    if path == "dense":
        pair_bias = pair_bias_from_factors(x.pop("bias_q"), x.pop("bias_k"))  # [B, L, L, H]
        z = pair_values_from_factors(x.pop("pair_q"), x.pop("pair_k"))  # [B, L, L, C_z]
        return module(x.pop("s"), z, x.pop("rots"), x.pop("trans"), x.pop("mask"), pair_bias=pair_bias)
    return module.forward_factorized(**x, core=attention_core(path))


def output_and_grads(module, inputs, path, cotangent):
    """Output and gradients of <output, cotangent> w.r.t. every float input and every parameter."""
    leaves = {name: x.detach().requires_grad_() if x.is_floating_point() else x for name, x in inputs.items()}
    out = run_path(module, leaves, path)
    params = {name: p for name, p in module.named_parameters() if name != "linear_b.weight"}
    params = {name: p for name, p in params.items() if name != "linear_b.bias"}  # unused with factors
    wrt = {**{n: x for n, x in leaves.items() if x.requires_grad}, **params}
    grads = torch.autograd.grad((out * cotangent.to(out.dtype)).sum(), list(wrt.values()))
    return out.detach(), dict(zip(wrt, grads))


@pytest.mark.parametrize("backend", ["torch", "sdpa"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("L", [1, 7, 64, 300])
@pytest.mark.parametrize("R", [1, 2, 4])
def test_factorized_module_matches_dense_module_and_all_gradients(R, L, dtype, backend):
    module = random_module(seed=R)
    inputs = random_inputs(L, R, seed=100 * R + L)
    cotangent = torch.randn(B, L, C_S, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ref_out, ref_grads = output_and_grads(module, inputs, "dense", cotangent)

    low_module = random_module(seed=R).to(dtype)
    low_inputs = {n: x.to(dtype) if x.is_floating_point() else x for n, x in inputs.items()}
    out, grads = output_and_grads(low_module, low_inputs, backend, cotangent)

    tol = TOLERANCE[dtype]
    assert out.dtype == dtype
    assert rel_err(out, ref_out) <= tol, f"output: rel err {rel_err(out, ref_out):.2e}"
    assert grads.keys() == ref_grads.keys()
    for name, ref in ref_grads.items():
        if L == 1 and name == "trans":
            # one residue sees only its own points, whatever its translation: zero up to rounding
            assert max(grads[name].abs().max(), ref.abs().max()) <= tol, f"grad {name} not ~0"
            continue
        assert rel_err(grads[name], ref) <= tol, f"grad {name}: rel err {rel_err(grads[name], ref):.2e}"


def algorithm22_in_openfold_layout(m, s, z, rots, trans, mask):
    """Algorithm 22 written out independently, with OpenFold's weight layouts, for checking the module."""
    Bs, L = s.shape[:2]
    H, C, Pq = m.no_heads, m.c_hidden, m.no_qk_points
    q = m.linear_q(s).view(Bs, L, H, C)
    kv = m.linear_kv(s).view(Bs, L, H, 2, C)  # per head: k then v
    k, v = kv[..., 0, :], kv[..., 1, :]

    def global_points(x):
        local = x.view(Bs, L, 3, -1).transpose(-1, -2)  # [B, L, H * P, 3]: x, y, z chunks
        glob = (rots[:, :, None] @ local[..., None])[..., 0] + trans[:, :, None]
        return glob.view(Bs, L, H, -1, 3)

    q_pts = global_points(m.linear_q_points(s))
    kv_pts = global_points(m.linear_kv_points(s))
    k_pts, v_pts = kv_pts[..., :Pq, :], kv_pts[..., Pq:, :]
    gamma = F.softplus(m.head_weights) * math.sqrt(1.0 / (3 * Pq * 9.0 / 2))
    d2 = ((q_pts[:, :, None] - k_pts[:, None]) ** 2).sum(dim=(-1, -2))  # [B, L, L, H]
    logits = (
        math.sqrt(1.0 / 3) * (torch.einsum("bihc,bjhc->bijh", q, k) / math.sqrt(C) + m.linear_b(z)) - 0.5 * gamma * d2
    )
    logits = logits.masked_fill(~mask[:, None, :, None], float("-inf"))
    a = torch.softmax(logits, dim=2)  # over keys j
    o = torch.einsum("bijh,bjhc->bihc", a, v)
    o_pts_global = torch.einsum("bijh,bjhpx->bihpx", a, v_pts)
    o_pts = (rots.transpose(-1, -2)[:, :, None, None] @ (o_pts_global - trans[:, :, None, None])[..., None])[..., 0]
    o_pair = torch.einsum("bijh,bijc->bihc", a, z)
    parts = [o.flatten(2)] + [o_pts[..., xyz].flatten(2) for xyz in range(3)]
    parts += [torch.sqrt((o_pts**2).sum(-1) + m.eps).flatten(2), o_pair.flatten(2)]
    return m.linear_out(torch.cat(parts, dim=-1))


def test_dense_module_is_algorithm_22_in_openfold_layout():
    module = random_module(seed=3)
    x = random_inputs(L=11, R=1, seed=3)
    z = torch.randn(B, 11, 11, C_Z, dtype=torch.float64)
    out = module(x["s"], z, x["rots"], x["trans"], x["mask"])
    ref = algorithm22_in_openfold_layout(module, x["s"], z, x["rots"], x["trans"], x["mask"])
    real = x["mask"]
    assert rel_err(out[real], ref[real]) <= 1e-12
    assert out[~real].abs().max() == 0  # padded residues output zero


@pytest.mark.parametrize("path", PATHS)
def test_ipa_output_is_invariant_to_global_rigid_motion(path):
    module = random_module(seed=4)
    inputs = random_inputs(L=13, R=2, seed=4)
    g = torch.Generator().manual_seed(40)
    rot = random_rotations(B, generator=g)  # [B, 3, 3]
    shift = 10.0 * torch.randn(B, 3, generator=g, dtype=torch.float64)  # [B, 3]
    moved = dict(inputs)
    moved["rots"] = rot[:, None] @ inputs["rots"]
    moved["trans"] = (rot[:, None] @ inputs["trans"][..., None])[..., 0] + shift[:, None]
    out, out_moved = run_path(module, inputs, path), run_path(module, moved, path)
    assert rel_err(out_moved, out) <= 1e-10


@pytest.mark.parametrize("path", PATHS)
def test_appending_padded_residues_leaves_real_outputs_unchanged(path):
    module = random_module(seed=5)
    L, L_pad = 10, 6
    inputs = random_inputs(L=L, R=2, seed=5, batch=1)
    garbage = random_inputs(L=L_pad, R=2, seed=50, batch=1)
    garbage["s"] = 100.0 * garbage["s"]
    garbage["trans"] = 100.0 * garbage["trans"]
    garbage["mask"] = torch.zeros(1, L_pad, dtype=torch.bool)
    padded = {name: torch.cat([inputs[name], garbage[name]], dim=1) for name in inputs}
    out = run_path(module, inputs, path)
    out_padded = run_path(module, padded, path)
    assert rel_err(out_padded[:, :L], out) <= 1e-12
    assert out_padded[:, L:].abs().max() == 0


class FactorizedPath(torch.nn.Module):
    """Routes forward() to forward_factorized so that torch.func.functional_call can reach it."""

    def __init__(self, ipa):
        super().__init__()
        self.ipa = ipa

    def forward(self, **inputs):
        return self.ipa.forward_factorized(**inputs)


@pytest.mark.parametrize("path", PATHS[:2])
def test_gradcheck_module_inputs_and_parameters(path):
    """Gradients w.r.t. s, rots, trans, z or the pair factors, and every parameter used, at tiny sizes."""
    module = random_module(seed=6, c_s=4, c_z=2, c_hidden=2, no_heads=2, no_qk_points=2, no_v_points=2)
    inputs = random_inputs(L=4, R=2, seed=6, module=module)
    mask = inputs.pop("mask")
    mask[1, 2] = False  # one padded residue
    if path == "dense":
        g = torch.Generator().manual_seed(60)
        z = torch.randn(B, 4, 4, module.c_z, generator=g, dtype=torch.float64)
        inputs = dict(s=inputs["s"], z=z, rots=inputs["rots"], trans=inputs["trans"])
    else:
        module = FactorizedPath(module)
    params = {n: p for n, p in module.named_parameters() if path == "dense" or "linear_b." not in n}
    names = list(inputs) + list(params)

    def ipa(*values):
        x = dict(zip(names, values))
        state = {n: x.pop(n) for n in params}
        return torch.func.functional_call(module, state, (), dict(x, mask=mask))

    values = [t.detach().clone().requires_grad_() for t in [*inputs.values(), *params.values()]]
    assert torch.autograd.gradcheck(ipa, values)
