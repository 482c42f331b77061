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
    "cosine_abs_blocks",
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


def cosine_abs_blocks(Z: torch.Tensor, labels: torch.Tensor, num_classes: int, chunk: int = 2048) -> torch.Tensor:
    """(k, k) float64 mean |cosine similarity| between the rows of class i and of class j (report
    Figure 7), each row's similarity with itself excluded; NaN where a block has no pair.

    The absolute value is taken per pair, so a class spread symmetrically over its subspace cannot
    average to "orthogonal" (a signed mean of such pairs is ≈ 0 even for identical subspaces).
    Z: (m, d) features, rows normalised here; labels: (m,) in [0, k). Exact over all m² pairs,
    in row chunks of ``chunk`` × m similarities (no m × m matrix is held).
    """
    if Z.dim() != 2 or labels.shape != Z.shape[:1]:
        raise ValueError(f"Z must be (m, d) and labels (m,), got {tuple(Z.shape)} and {tuple(labels.shape)}")
    k = num_classes
    Z = torch.nn.functional.normalize(Z.float(), dim=1)
    labels = labels.to(Z.device).long()
    onehot = torch.nn.functional.one_hot(labels, k).to(Z.dtype)  # (m, k)
    sums = torch.zeros(k, k, dtype=torch.float64, device=Z.device)
    for start in range(0, Z.shape[0], chunk):
        rows = slice(start, start + chunk)
        per_row = (Z[rows] @ Z.T).abs() @ onehot  # (c, m) -> (c, k): Σ_j∈class |cos| per row
        sums.index_add_(0, labels[rows], per_row.double())
    self_sims = torch.zeros(k, dtype=torch.float64, device=Z.device).index_add_(0, labels, (Z * Z).sum(1).double())
    sums -= torch.diag(self_sims)  # |cos(z, z)| = ‖z‖² = 1 per row (0 for a zero row)
    counts = onehot.sum(0).double()
    pairs = torch.outer(counts, counts) - torch.diag(counts)
    return torch.where(pairs > 0, sums / pairs.clamp_min(1), torch.full_like(sums, math.nan))
