"""The plain training loop of the diagnostic scripts (memorise_chain.py, trunk_loss_diagnostic.py), without
Lightning: AdamW with a linear warm-up, gradients clipped at 1, an exponential moving average of the weights,
and one noise seed per step (so that runs of different variants see the same draws)."""

import torch


class PlainTraining:
    """Train `model` on the flow matcher's loss one batch at a time.

    Args:
        lr:         peak learning rate, reached after `warmup` steps
        ema_decay:  decay of the weight average; with `ema_warmup` at most (1 + step) / (10 + step), so
                    that early weights do not linger in a short run
        seed:       step k draws its noise from seed * 1_000_003 + k
        device:     where the noise generator lives (the batches' device)
    """

    def __init__(self, model, flow, lr, warmup, ema_decay, seed, device="cpu", ema_warmup=False):
        self.model, self.flow = model, flow
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        self.ema = [p.detach().clone() for p in model.parameters()]
        self.lr, self.warmup, self.ema_decay, self.ema_warmup = lr, warmup, ema_decay, ema_warmup
        self.seed, self.device = seed, device
        self.step = 0

    def train_step(self, batch) -> torch.Tensor:
        """One optimizer step on `batch`; returns its loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * min(1.0, (self.step + 1) / self.warmup)
        generator = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + self.step)
        loss = self.flow.training_loss(self.model, batch, generator=generator)["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        decay = min(self.ema_decay, (1 + self.step) / (10 + self.step)) if self.ema_warmup else self.ema_decay
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, [p.detach() for p in self.model.parameters()], 1 - decay)
        self.step += 1
        return loss

    def load_ema(self) -> None:
        """Copy the weight average into the model (to score or sample it)."""
        with torch.no_grad():
            for p, e in zip(self.model.parameters(), self.ema):
                p.copy_(e)
