"""The self-conditioning coin is independent of the step's t (it once repeated t's draw on the CPU)."""

import pytest
import torch

from flashipa_train.flow import FlowMatcher

DRAWS = 2000
_SEED_STRIDE = 1_000_003  # as FlowModule seeds its per-step generators


def conditional_frequencies(device):
    """P(self-condition | t > 0.5) and P(self-condition | t <= 0.5) over DRAWS training steps' seeds."""
    flow = FlowMatcher(self_condition_prob=0.5)
    res_mask = torch.ones(1, 4, dtype=torch.bool, device=device)
    trans_1 = torch.zeros(1, 4, 3, device=device)
    rots_1 = torch.eye(3, device=device).expand(1, 4, 3, 3)
    late, early = [], []
    for step in range(DRAWS):
        generator = torch.Generator(device=device).manual_seed(7 * _SEED_STRIDE + step)
        t = float(flow.corrupt(rots_1, trans_1, res_mask, generator)["t"][0])
        sc = flow._self_condition_coin(generator) < flow.self_condition_prob
        (late if t > 0.5 else early).append(sc)
    return sum(late) / len(late), sum(early) / len(early)


def _check(device):
    p_late, p_early = conditional_frequencies(device)
    # each half holds ~1000 draws: binomial std ~0.016, so 0.07 is > 4 sigma
    assert abs(p_late - 0.5) < 0.07 and abs(p_early - 0.5) < 0.07, (p_late, p_early)


def test_self_condition_coin_is_independent_of_t_on_cpu():
    _check("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_self_condition_coin_is_independent_of_t_on_gpu():
    _check("cuda")


def test_self_condition_coin_is_a_function_of_the_step_seed():
    a = FlowMatcher._self_condition_coin(torch.Generator().manual_seed(3))
    assert a == FlowMatcher._self_condition_coin(torch.Generator().manual_seed(3))
    assert a != FlowMatcher._self_condition_coin(torch.Generator().manual_seed(4))
