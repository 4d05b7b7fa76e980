"""Sweep of the sampler's exp rotation rate on one checkpoint: n = 8 samples of length 100 per rate.

    python scripts/rot_rate_sweep.py CKPT OUT [--rates 5 10 20 40]
-> OUT/rot_rate_<r>/samples.pt (the sampler's format; score with flashipa-sample from_samples=...).
Torch only (runs on the GPU image); the checkpoint's own flow config otherwise.
"""

import argparse
from pathlib import Path

import torch

from flashipa_train.sampling.checkpoint_model import load_sampler_from_checkpoint
from flashipa_train.sampling.generate import generate_backbones, pick_device


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpt")
    parser.add_argument("out")
    parser.add_argument("--rates", type=float, nargs="+", default=[5.0, 10.0, 20.0, 40.0])
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--n", type=int, default=8)
    args = parser.parse_args()
    sampler = load_sampler_from_checkpoint(args.ckpt, device=pick_device("auto"), prefer_ema=True)
    for rate in args.rates:
        sampler.flow.rot_exp_rate = rate
        backbones = generate_backbones(
            sampler.model, sampler.flow, [args.length], args.n, num_steps=100, batch_size=args.n, seed=0
        )
        folder = Path(args.out) / f"rot_rate_{rate:g}"
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({b.name: torch.from_numpy(b.atoms) for b in backbones}, folder / "samples.pt")
        print(f"rate {rate:g}: {len(backbones)} samples -> {folder}", flush=True)


if __name__ == "__main__":
    main()
