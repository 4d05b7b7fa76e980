"""One small FlashIPA forward + backward on the GPU, stage by stage, for compute-sanitizer runs."""

import torch

from kernels.flash_ipa import flash_ipa_attention
from kernels.flash_ipa.benchmark import ANCHOR
from kernels.flash_ipa.testing import random_ipa_inputs


def main():
    L = 200
    inputs = [x.requires_grad_() for x in random_ipa_inputs(1, L, ANCHOR, torch.bfloat16, "cuda")]
    mask = torch.ones(1, L, dtype=torch.bool, device="cuda")
    mask[0, 150:] = False
    outs = flash_ipa_attention(*inputs, mask=mask)
    torch.cuda.synchronize()
    print("forward ok", flush=True)
    torch.autograd.backward(outs, [torch.randn_like(o) for o in outs])
    torch.cuda.synchronize()
    print("backward ok", flush=True)


if __name__ == "__main__":
    main()
