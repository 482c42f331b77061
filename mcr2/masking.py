"""The background-masking switch of report §2.2.1: MCR² joins the loss once the background head
is accurate enough on fixed validation images (the report: 99%; the authors' code: 90%), and the
gradients of the loss's two terms at the layers they share (a per-epoch diagnostic, chapter 11)."""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .config import Experiment
from .metrics import binary_accuracy

__all__ = ["background_check", "MaskSwitch", "shared_gradient_norms", "shared_parameters"]


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


def shared_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The U-Net layers that both the background head and the features are computed from: all but
    the 1×1 output convolution (whose rows are the head's and the features' own)."""
    return [p for name, p in model.named_parameters() if not name.startswith("out_conv.")]


def shared_gradient_norms(trainer) -> dict[str, float]:
    """L2 norms of the gradients of CE(background head) and of λ·MCR² over the mask (as the step
    builds it, :meth:`~mcr2.training._Trainer._mask_keep`) with respect to :func:`shared_parameters`,
    on the first training batch; the MCR² norm is computed before the switch too (the gradient it
    would add). Training mode, as the step runs; the BatchNorm running statistics are put back and
    no ``.grad`` is touched, so training goes on exactly as without this diagnostic.

    Columns ``grad_ce_shared``, ``grad_mcr2_shared`` (NaN where no pixel is kept); the trainer
    records them for masked runs in one process (under torchrun each rank holds only its share of
    the batch, so they are left out)."""
    model, exp = trainer.model, trainer.exp
    params = shared_parameters(model)
    buffers = [b for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
               for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
    saved = [b.clone() for b in buffers]
    x, y = trainer.X[:exp.optim.batch_size], trainer.Y[:exp.optim.batch_size]
    try:
        with torch.enable_grad(), trainer._autocast():
            feats, Z, bg = trainer._features(x)
            ce = F.cross_entropy(bg.float(), (y > 0).long())
            keep = trainer._mask_keep(bg, y)
            mcr2 = exp.loss.mcr2_weight * trainer._mcr2_term(feats, Z, y, keep).loss if bool(keep.any()) else None
        norms = {"grad_ce_shared": _norm(torch.autograd.grad(ce, params, retain_graph=mcr2 is not None,
                                                             allow_unused=True))}
        norms["grad_mcr2_shared"] = math.nan if mcr2 is None else _norm(
            torch.autograd.grad(mcr2, params, allow_unused=True))
    finally:
        with torch.no_grad():
            for b, v in zip(buffers, saved):
                b.copy_(v)
    return norms


def _norm(grads) -> float:
    return math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads if g is not None))
