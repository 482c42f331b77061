"""Accuracy metrics for classification and segmentation (report, Figure 5).

Segmentation scores are read off a (k, k) confusion matrix, rows = truth and columns =
prediction, which adds up across batches and devices. Class 0 is background; digit c is class
c + 1 (11 classes in the report).
"""
from __future__ import annotations

import math

import torch

__all__ = [
    "confusion_matrix",
    "segmentation_scores",
    "binary_accuracy",
    "classification_accuracy",
]


def confusion_matrix(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    ignore_index: int = -1,
) -> torch.Tensor:
    """int64 (k, k) counts, rows = truth, columns = prediction.

    pred, target: integer tensors of the same shape (any shape, any device); pixels whose
    target equals ``ignore_index`` are skipped. Sum the results to accumulate over batches.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    k = num_classes
    pred = pred.reshape(-1).long()  # (...) -> (N,)
    target = target.reshape(-1).long()
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    if target.numel() and (
        bool(target.min() < 0) or bool(target.max() >= k) or bool(pred.min() < 0) or bool(pred.max() >= k)
    ):
        raise ValueError(
            f"labels must lie in [0, {k}) (or equal ignore_index={ignore_index} in target); "
            f"got target in [{int(target.min())}, {int(target.max())}], "
            f"pred in [{int(pred.min())}, {int(pred.max())}]"
        )
    counts = torch.bincount(target * k + pred, minlength=k * k)  # (k*k,)
    return counts.reshape(k, k)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> float:
    return float(num / den) if float(den) > 0 else math.nan


def segmentation_scores(confusion: torch.Tensor) -> dict[str, float | list[float]]:
    """Scores from a (k, k) confusion matrix (rows = truth, class 0 = background).

    - ``foreground_acc``: accuracy over truth-foreground pixels; predicting background there
      is an error (the report's "non-background pixel accuracy", Figure 5);
    - ``pixel_acc``: accuracy over all pixels;
    - ``background_acc``: fraction of truth-background pixels predicted background;
    - ``per_class_acc``: recall per class, NaN for a class absent from the truth;
    - ``mean_iou``: mean IoU over classes present in truth or prediction.
    A score with an empty denominator is NaN.
    """
    c = confusion.detach().to("cpu", torch.float64)
    diag = torch.diagonal(c)  # (k,) correct pixels per class
    truth = c.sum(dim=1)  # (k,) pixels per true class
    predicted = c.sum(dim=0)  # (k,) pixels per predicted class
    union = truth + predicted - diag
    present = union > 0
    iou = diag[present] / union[present]
    per_class = [float(d / t) if t > 0 else math.nan for d, t in zip(diag, truth)]
    return {
        "foreground_acc": _ratio(diag[1:].sum(), truth[1:].sum()),
        "pixel_acc": _ratio(diag.sum(), c.sum()),
        "background_acc": _ratio(diag[0], truth[0]),
        "per_class_acc": per_class,
        "mean_iou": float(iou.mean()) if iou.numel() else math.nan,
    }


def binary_accuracy(logits: torch.Tensor, target_fg: torch.Tensor) -> float:
    """Accuracy of the background head: logits (B, 2, H, W) with index 1 = foreground,
    target_fg bool (B, H, W) true on foreground pixels."""
    pred_fg = logits.argmax(dim=1) == 1  # (B, 2, H, W) -> (B, H, W)
    return float((pred_fg == target_fg.bool()).float().mean())


def classification_accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of correct predictions. ``pred`` is class indices shaped like ``labels``, or
    scores with a class dim 1 that is argmax-ed, e.g. (B, k) for labels (B,)."""
    if pred.dim() == labels.dim() + 1:
        pred = pred.argmax(dim=1)  # (B, k) -> (B,)
    if pred.shape != labels.shape:
        raise ValueError(f"pred {tuple(pred.shape)} does not match labels {tuple(labels.shape)}")
    return float((pred == labels).float().mean())
