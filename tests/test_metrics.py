"""Segmentation and classification metrics against hand-worked cases and slow loops."""
from __future__ import annotations

import math

import pytest
import torch

from mcr2.metrics import binary_accuracy, classification_accuracy, confusion_matrix, segmentation_scores


def test_confusion_matrix_by_hand():
    # 3 classes (0 = background). Pairs (truth, pred):
    # (0,0) (0,0) (0,1) (1,1) (1,0) (1,2) (2,2) (2,2) (2,2) (2,1)
    target = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    pred = torch.tensor([0, 0, 1, 1, 0, 2, 2, 2, 2, 1])
    expected = torch.tensor([[2, 1, 0], [1, 1, 1], [0, 1, 3]])
    cm = confusion_matrix(pred.reshape(2, 5), target.reshape(2, 5), num_classes=3)
    assert cm.dtype == torch.int64
    assert torch.equal(cm, expected)

    s = segmentation_scores(cm)
    # Foreground = truth 1 or 2: 7 pixels, correct 1 + 3 = 4; (1,0) is an error.
    assert s["foreground_acc"] == pytest.approx(4 / 7)
    assert s["pixel_acc"] == pytest.approx(6 / 10)
    assert s["background_acc"] == pytest.approx(2 / 3)
    assert s["per_class_acc"] == pytest.approx([2 / 3, 1 / 3, 3 / 4])
    # IoU: class 0: 2 / (3 + 3 - 2) = 1/2; class 1: 1 / (3 + 3 - 1) = 1/5; class 2: 3 / (4 + 4 - 3) = 3/5.
    assert s["mean_iou"] == pytest.approx((1 / 2 + 1 / 5 + 3 / 5) / 3)


def test_background_prediction_on_foreground_is_an_error():
    # All foreground pixels predicted background: foreground accuracy 0, pixel accuracy still high.
    target = torch.tensor([0] * 8 + [1, 2])
    pred = torch.zeros(10, dtype=torch.long)
    s = segmentation_scores(confusion_matrix(pred, target, 3))
    assert s["foreground_acc"] == 0.0
    assert s["pixel_acc"] == pytest.approx(0.8)
    assert s["background_acc"] == 1.0


def test_absent_class_is_nan():
    target = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 1, 1, 1])
    s = segmentation_scores(confusion_matrix(pred, target, 4))
    assert math.isnan(s["per_class_acc"][2]) and math.isnan(s["per_class_acc"][3])
    assert s["per_class_acc"][:2] == pytest.approx([0.5, 1.0])
    # Classes 2, 3 are absent from truth and prediction: excluded from the mean IoU.
    assert s["mean_iou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # No foreground pixels at all: foreground accuracy is undefined.
    empty = segmentation_scores(confusion_matrix(torch.zeros(3), torch.zeros(3), 2))
    assert math.isnan(empty["foreground_acc"]) and empty["pixel_acc"] == 1.0


def test_class_only_predicted_counts_in_iou():
    # Class 2 never true but predicted once: its IoU is 0 and it enters the mean.
    target = torch.tensor([0, 1, 1])
    pred = torch.tensor([0, 1, 2])
    s = segmentation_scores(confusion_matrix(pred, target, 3))
    assert s["mean_iou"] == pytest.approx((1 + 1 / 2 + 0) / 3)


def test_mean_iou_matches_slow_loop():
    g = torch.Generator().manual_seed(0)
    k = 11
    target = torch.randint(0, k - 2, (4, 28, 28), generator=g)  # classes 9, 10 never true
    pred = torch.randint(0, k - 1, (4, 28, 28), generator=g)  # class 10 never predicted
    t, p = target.flatten().tolist(), pred.flatten().tolist()
    ious, recalls = [], []
    for c in range(k):
        inter = sum(1 for a, b in zip(t, p) if a == c and b == c)
        union = sum(1 for a, b in zip(t, p) if a == c or b == c)
        n_true = sum(1 for a in t if a == c)
        if union:
            ious.append(inter / union)
        recalls.append(inter / n_true if n_true else math.nan)
    fg = [(a, b) for a, b in zip(t, p) if a != 0]
    s = segmentation_scores(confusion_matrix(pred, target, k))
    assert s["mean_iou"] == pytest.approx(sum(ious) / len(ious), rel=1e-12)
    assert s["per_class_acc"][:-2] == pytest.approx(recalls[:-2], rel=1e-12)
    assert math.isnan(s["per_class_acc"][-1])
    assert s["foreground_acc"] == pytest.approx(sum(a == b for a, b in fg) / len(fg), rel=1e-12)


def test_accumulates_over_batches():
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 5, (6, 8, 8), generator=g)
    pred = torch.randint(0, 5, (6, 8, 8), generator=g)
    total = confusion_matrix(pred[:3], target[:3], 5) + confusion_matrix(pred[3:], target[3:], 5)
    assert torch.equal(total, confusion_matrix(pred, target, 5))
    assert int(total.sum()) == target.numel()


def test_ignore_index():
    target = torch.tensor([0, 1, -1, 2, -1, 2])
    pred = torch.tensor([0, 1, 2, 0, 1, 2])
    cm = confusion_matrix(pred, target, 3)  # default ignore_index = -1
    assert torch.equal(cm, torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 1]]))
    # Another ignore value: 255 is skipped and -1 becomes an invalid label.
    cm255 = confusion_matrix(pred, torch.where(target < 0, 255, target), 3, ignore_index=255)
    assert torch.equal(cm255, cm)
    with pytest.raises(ValueError, match="labels must lie"):
        confusion_matrix(pred, target, 3, ignore_index=255)


def test_out_of_range_prediction_raises():
    with pytest.raises(ValueError, match="labels must lie"):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)


def test_binary_accuracy():
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1] = torch.tensor([[1.0, -1.0], [1.0, -1.0]])  # foreground on column 0
    target_fg = torch.tensor([[[True, False], [False, False]]])
    assert binary_accuracy(logits, target_fg) == pytest.approx(3 / 4)


def test_classification_accuracy():
    labels = torch.tensor([0, 1, 2, 2])
    assert classification_accuracy(torch.tensor([0, 1, 1, 2]), labels) == pytest.approx(0.75)
    scores = torch.tensor([[2.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
    assert classification_accuracy(scores, labels) == pytest.approx(0.75)
