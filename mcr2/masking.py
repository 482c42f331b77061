"""The background-masking switch of report §2.2.1: MCR² joins the loss once the background head
is accurate enough on fixed validation images (the report: 99%; the authors' code: 90%)."""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from .config import Experiment
from .metrics import binary_accuracy

__all__ = ["background_check", "MaskSwitch"]


def background_check(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, batch_size: int) -> float:
    """Accuracy of the background head on fixed validation images (the switch of §2.2.1)."""
    correct = total = 0
    with torch.no_grad():
        for i in range(0, images.shape[0], batch_size):
            out = model(images[i:i + batch_size])
            fg = masks[i:i + batch_size] > 0
            correct += binary_accuracy(out.background_logits.float(), fg) * fg.numel()
            total += fg.numel()
    return correct / max(total, 1)


class MaskSwitch:
    """State of the switch over a run: ``on`` (MCR² in the loss), the epoch after which it switched
    (``switch_epoch``, None until then), and the check on ``exp.loss.mask_check_images`` fixed
    validation images at the end of every epoch (one decision for all ranks under DDP)."""

    def __init__(self, exp: Experiment, val_images: torch.Tensor | None, val_masks: torch.Tensor | None):
        self.exp = exp
        self.enabled = exp.loss.background_mask is not None
        self.on = not self.enabled  # without masking, MCR² (or CE) is in the loss from the start
        self.switch_epoch: int | None = None
        n = exp.loss.mask_check_images
        self.images = None if not self.enabled else val_images[:n]
        self.masks = None if not self.enabled else val_masks[:n]

    def check(self, model: nn.Module, prep, epoch: int, world: int, device) -> float | None:
        """Head accuracy on the check images after ``epoch``; switches MCR² on from the next epoch
        when it reaches the threshold. None without masking."""
        if not self.enabled:
            return None
        acc = background_check(model, prep(self.images), self.masks, self.exp.optim.batch_size)
        if world > 1:  # one decision for all ranks
            t = torch.tensor([acc], dtype=torch.float64, device=device)
            dist.all_reduce(t)
            acc = t.item() / world
        if not self.on and acc >= self.exp.loss.mask_threshold:
            self.on, self.switch_epoch = True, epoch
        return acc
