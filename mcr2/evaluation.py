"""Evaluation of a run in training: BatchNorm statistics re-estimated on training images, the
nearest-subspace classifier fitted on training features, accuracies on every validation domain,
and the small arrays the figures need. A mixin of the trainer (:mod:`mcr2.training`): it reads the
trainer's model, data and config and changes nothing but the BatchNorm running statistics."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .metrics import binary_accuracy, confusion_matrix, cosine_abs_blocks, segmentation_scores
from .subspace import NearestSubspace

__all__ = ["Evaluation", "digit_edge", "edge_counts", "digit_errors"]


def digit_edge(target: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool: digit pixels (class > 0) with a background pixel among their 4 neighbours
    inside the image (the "pixels on the boundary of the instance" of report §2.2.1)."""
    bg = F.pad((target == 0).float(), (1, 1, 1, 1)).bool()  # (B, H+2, W+2), outside counts as not background
    near = bg[:, :-2, 1:-1] | bg[:, 2:, 1:-1] | bg[:, 1:-1, :-2] | bg[:, 1:-1, 2:]
    return (target > 0) & near


def edge_counts(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """int64 (2,): digit-edge pixels (:func:`digit_edge`) predicted right, and all of them; summed
    over the batches of the first validation domain they give the ``acc_digit_edge`` column
    (:data:`mcr2.claims.DIGIT_EDGE_COLUMN`)."""
    edge = digit_edge(target)
    return torch.stack([(edge & (pred == target)).sum(), edge.sum()])


def digit_errors(confusion: torch.Tensor) -> dict[str, float]:
    """The two kinds of error on digit pixels, as shares of all true digit pixels (with
    ``foreground_acc`` they add up to 1), from a (k, k) confusion matrix (rows = truth):
    ``digit_as_background`` (called background) and ``digit_wrong_digit`` (given another digit).
    Plus ``pred_foreground_share``: the share of all pixels predicted foreground."""
    c = confusion.detach().to("cpu", torch.float64)
    digits = c[1:]  # (k-1, k): rows of the true digit classes
    total = float(digits.sum())
    wrong = float(digits[:, 1:].sum() - torch.diagonal(digits[:, 1:]).sum())
    return {
        "digit_as_background": float(digits[:, 0].sum()) / total if total else math.nan,
        "digit_wrong_digit": wrong / total if total else math.nan,
        "pred_foreground_share": float(c[:, 1:].sum() / c.sum()) if float(c.sum()) else math.nan,
    }


class Evaluation:
    def _batches(self, n, bs):
        return [slice(i, min(i + bs, n)) for i in range(0, n, bs)]

    @torch.no_grad()
    def _fit_classifier(self) -> NearestSubspace | None:
        if self.exp.loss.kind != "mcr2":
            return None
        d = self.exp.model.feature_dim
        r = self.exp.eval.n_components or max(1, d // self.k)
        ns = NearestSubspace(r)
        n = self.X.shape[0] if self.exp.eval.fit_limit is None else min(self.exp.eval.fit_limit, self.X.shape[0])
        masked = self.exp.loss.background_mask is not None
        for sl in self._batches(n, self.exp.optim.batch_size):
            with self._autocast():
                _, Z, _ = self._features(self.X[sl])
            labels = self.Y[sl].reshape(-1)
            if masked:  # the subspaces model the foreground classes; the head decides background
                labels = torch.where(labels > 0, labels, torch.full_like(labels, -1))
            ns.partial_fit(Z.float(), labels, self.k)
        return ns.finalize()

    @torch.no_grad()
    def _predict(self, x, ns):
        """Predicted class per image (B,) or per pixel (B, H, W), and background-head logits."""
        with self._autocast():
            feats, Z, bg = self._features(x)
            if self.head is not None:
                pred = self.head(feats).float().argmax(1)
            else:
                pred = ns.predict(Z.float()).view(feats.shape[0], *feats.shape[2:])
        if bg is not None:
            pred = torch.where(bg.float().argmax(1) == 1, pred, torch.zeros_like(pred))
        return pred, (None if bg is None else bg.float())

    @torch.no_grad()
    def _recalibrate_batchnorm(self):
        """Re-estimate BatchNorm running statistics on training images (cumulative average).

        Evaluation runs in eval mode on running statistics; after few steps (the smoke profile)
        their exponential average still remembers the initial (0, 1) and a CE head trained on
        batch statistics misreads them. Training itself never uses running statistics.
        """
        norms = [m for m in self.modules.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms or not self.exp.eval.recalibrate_bn:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average over the passes below
        self.modules.train()
        n = self.X.shape[0] if self.exp.eval.fit_limit is None else min(self.exp.eval.fit_limit, self.X.shape[0])
        with self._autocast():
            for sl in self._batches(n, self.exp.optim.batch_size):
                self._features(self.X[sl])
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum

    @torch.no_grad()
    def _evaluate(self) -> dict:
        self._recalibrate_batchnorm()
        self.modules.eval()
        ns = self._fit_classifier()
        metrics = {}
        bs = self.exp.optim.batch_size
        for dom, (X, Y) in self.val.items():
            if self.seg:
                conf = torch.zeros(self.k, self.k, dtype=torch.long, device=self.device)
                edge = torch.zeros(2, dtype=torch.long, device=self.device)  # edge pixels right, all
                bg_correct = 0.0
                for sl in self._batches(X.shape[0], bs):
                    pred, bg = self._predict(X[sl], ns)
                    conf += confusion_matrix(pred, Y[sl], self.k)
                    edge += edge_counts(pred, Y[sl])
                    if bg is not None:
                        bg_correct += binary_accuracy(bg, Y[sl] > 0) * Y[sl].numel()
                scores = segmentation_scores(conf)
                for key in ("foreground_acc", "pixel_acc", "background_acc", "mean_iou"):
                    metrics[f"{dom}_{key}"] = scores[key]
                for key, value in digit_errors(conf).items():
                    metrics[f"{dom}_{key}"] = value
                if dom == self.exp.data.val_domains[0]:  # the ledger's claim 11 reads this name, unprefixed
                    right, total = (int(v) for v in edge)
                    metrics["acc_digit_edge"] = right / total if total else math.nan
                for c, acc in enumerate(scores["per_class_acc"]):
                    metrics[f"{dom}_class{c}_acc"] = acc
                if self.exp.loss.background_mask is not None:
                    metrics[f"{dom}_bg_head_acc"] = bg_correct / Y.numel()
            else:
                correct = 0
                for sl in self._batches(X.shape[0], bs):
                    pred, _ = self._predict(X[sl], ns)
                    correct += int((pred == Y[sl]).sum())
                metrics[f"{dom}_acc"] = correct / X.shape[0]
        self.modules.train()
        self._last_ns = ns
        return metrics

    @torch.no_grad()
    def _artefacts(self) -> dict:
        """Small arrays for the figures: previews of fixed validation images, a pixel-feature sample."""
        if not self.seg:
            return {}
        self.modules.eval()
        dom = self.exp.data.val_domains[0]
        X, Y = self.val[dom]
        n = min(self.exp.eval.preview_images, X.shape[0])
        pred, bg = self._predict(X[:n], self._last_ns)
        art = {
            "preview_images": X[:n].cpu().numpy().astype(np.float16),
            "preview_masks": Y[:n].cpu().numpy().astype(np.uint8),
            "preview_pred": pred.cpu().numpy().astype(np.uint8),
        }
        if bg is not None:
            art["preview_fg_prob"] = bg.softmax(1)[:, 1].cpu().numpy().astype(np.float16)
        # Random validation pixels (seeded, the report's "25 000 randomly sampled"): the cosine
        # block sums over all of them are exact from per-class feature sums; a subset is kept.
        g = torch.Generator().manual_seed(self.exp.seed + 12345)
        total = Y.numel()
        count = min(self.exp.eval.feature_samples, total)
        idx = torch.randperm(total, generator=g)[:count].to(self.device)
        img, pix = idx // Y[0].numel(), idx % Y[0].numel()
        feats, labels = [], []
        for chunk in torch.split(torch.arange(count, device=self.device), 4096):
            order = torch.unique(img[chunk])
            with self._autocast():
                f, _, _ = self._features(X[order])
            f = f.float().flatten(2)  # (b, d, H·W)
            pos = torch.searchsorted(order, img[chunk])
            feats.append(f[pos, :, pix[chunk]])
            labels.append(Y.flatten(1)[img[chunk], pix[chunk]])
        Z = F.normalize(torch.cat(feats), dim=1)
        labels = torch.cat(labels)
        # Mean |cos| per class block over every sampled pixel (Figure 7, the claims ledger).
        art["cosine_abs_mean"] = cosine_abs_blocks(Z, labels, self.k).cpu().numpy()
        art["cosine_class_counts"] = torch.bincount(labels, minlength=self.k).cpu().numpy()
        sums = torch.zeros(self.k, Z.shape[1], device=self.device).index_add_(0, labels, Z)
        counts = torch.bincount(labels, minlength=self.k).double()
        block_sums = (sums @ sums.T).double()
        self_sims = torch.zeros(self.k, device=self.device).index_add_(0, labels, (Z * Z).sum(1)).double()
        block_sums -= torch.diag(self_sims)  # drop each pixel's similarity with itself
        pairs = torch.outer(counts, counts) - torch.diag(counts)
        art["cosine_block_sums"] = block_sums.cpu().numpy()
        art["cosine_block_pairs"] = pairs.cpu().numpy()
        keep = min(self.exp.eval.feature_keep, count)
        art["feature_sample"] = Z[:keep].cpu().numpy()  # stored as int8 (records.FEATURE_SAMPLE_SCALE)
        art["feature_labels"] = labels[:keep].cpu().numpy().astype(np.uint8)
        self.modules.train()
        return art

    # ---- the loop ----------------------------------------------------------------------
