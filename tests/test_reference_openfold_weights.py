"""OpenFold InvariantPointAttention weights load into ours unchanged."""

import torch

from flashipa_kernels.reference import InvariantPointAttention


def openfold_ipa_state_dict_shapes(c_s, c_z, c_hidden, no_heads, no_qk_points, no_v_points):
    """Key -> shape of OpenFold's InvariantPointAttention state dict (openfold/model/structure_module.py)."""
    hc = no_heads * c_hidden
    hpq = no_heads * no_qk_points * 3
    hpkv = no_heads * (no_qk_points + no_v_points) * 3
    concat_out_dim = no_heads * (c_z + c_hidden + no_v_points * 4)
    return {
        "linear_q.weight": (hc, c_s),
        "linear_q.bias": (hc,),
        "linear_kv.weight": (2 * hc, c_s),
        "linear_kv.bias": (2 * hc,),
        "linear_q_points.weight": (hpq, c_s),
        "linear_q_points.bias": (hpq,),
        "linear_kv_points.weight": (hpkv, c_s),
        "linear_kv_points.bias": (hpkv,),
        "linear_b.weight": (no_heads, c_z),
        "linear_b.bias": (no_heads,),
        "head_weights": (no_heads,),
        "linear_out.weight": (c_s, concat_out_dim),
        "linear_out.bias": (c_s,),
    }


def test_openfold_structure_module_ipa_state_dict_loads_strictly():
    # AlphaFold2 / OpenFold structure module sizes
    dims = dict(c_s=384, c_z=128, c_hidden=16, no_heads=12, no_qk_points=4, no_v_points=8)
    shapes = openfold_ipa_state_dict_shapes(**dims)
    g = torch.Generator().manual_seed(0)
    state = {key: torch.randn(shape, generator=g) for key, shape in shapes.items()}

    module = InvariantPointAttention(**dims)
    assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == shapes
    module.load_state_dict(state, strict=True)
    for key, value in module.state_dict().items():
        assert torch.equal(value, state[key]), key
