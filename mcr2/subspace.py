"""Nearest-subspace classifier over learned features (FACTS.md, "Nearest-subspace classifier").

Per class j, U_j holds the top-r eigenvectors of that class's (uncentred, by default) second
moment of *training* features. A feature z is scored by its squared residual
‖z − U_jU_jᵀz‖² = ‖z‖² − ‖U_jᵀz‖² and assigned to the class with the smallest one.

Fitting needs only the per-class Gram matrices and counts (:func:`mcr2.loss.class_statistics`),
so pixel features can be streamed batch by batch with :meth:`NearestSubspace.partial_fit`
and never stored. A class with no training samples gets an infinite score: it is never predicted.
"""
from __future__ import annotations

import torch

from .loss import class_statistics

__all__ = ["NearestSubspace"]


class NearestSubspace:
    """``NearestSubspace(n_components).fit(Z, labels, num_classes).predict(Z)``.

    n_components: r, the dimension of each class subspace (the authors' code: d // k).
    center: subtract each class mean before the eigendecomposition and scoring (the original
    MCR² code's PCA variant); False (default) is the authors' uncentred second moment.
    """

    def __init__(self, n_components: int, center: bool = False):
        if n_components < 1:
            raise ValueError(f"n_components must be ≥ 1, got {n_components}")
        self.n_components = n_components
        self.center = center
        self.reset()

    def reset(self) -> "NearestSubspace":
        self.grams = None  # (k, d, d) float64, Σ z zᵀ per class
        self.sums = None  # (k, d) float64, Σ z per class (for centring)
        self.counts = None  # (k,) float64
        self.bases = None  # (k, d, r) after finalize()
        self.means = None  # (k, d)
        return self

    def partial_fit(self, Z: torch.Tensor, labels: torch.Tensor, num_classes: int) -> "NearestSubspace":
        """Accumulate the per-class statistics of a batch of training features Z (m, d)."""
        Z = Z.detach()
        grams, counts = class_statistics(Z, labels, num_classes)
        labels = labels.to(Z.device).long()
        keep = labels >= 0
        sums = Z.new_zeros(num_classes, Z.shape[1], dtype=torch.float64).index_add(
            0, labels[keep], Z[keep].double()
        )
        if self.grams is None:
            self.grams, self.sums, self.counts = grams.double(), sums, counts.double()
        else:
            if self.grams.shape != grams.shape:
                raise ValueError(
                    f"batch statistics {tuple(grams.shape)} do not match the accumulated "
                    f"{tuple(self.grams.shape)}: same num_classes and feature dimension expected"
                )
            self.grams += grams.double()
            self.sums += sums
            self.counts += counts.double()
        self.bases = None
        return self

    def fit(self, Z: torch.Tensor, labels: torch.Tensor, num_classes: int) -> "NearestSubspace":
        return self.reset().partial_fit(Z, labels, num_classes).finalize()

    def finalize(self) -> "NearestSubspace":
        """Turn the accumulated statistics into per-class bases (k, d, r)."""
        if self.grams is None:
            raise RuntimeError("NearestSubspace has no statistics: call fit() or partial_fit() first")
        k, d, _ = self.grams.shape
        if self.n_components > d:
            raise ValueError(f"n_components = {self.n_components} exceeds the feature dimension {d}")
        safe = self.counts.clamp_min(1.0)
        self.means = self.sums / safe[:, None]
        moments = self.grams / safe[:, None, None]
        if self.center:
            moments = moments - self.means[:, :, None] * self.means[:, None, :]
        _, vecs = torch.linalg.eigh(moments)  # ascending eigenvalues
        self.bases = vecs[:, :, -self.n_components:]  # (k, d, r)
        return self

    def scores(self, Z: torch.Tensor) -> torch.Tensor:
        """Squared distances to each class subspace: (m, d) -> (m, k); +inf for empty classes."""
        if self.bases is None:
            self.finalize()
        bases = self.bases.to(device=Z.device, dtype=torch.float32)
        Zf = Z.detach().float()
        if self.center:
            means = self.means.to(device=Z.device, dtype=torch.float32)
            Zc = Zf[:, None, :] - means[None]  # (m, k, d): only with centring
            proj = torch.einsum("mkd,kdr->mkr", Zc, bases)
            dist = Zc.pow(2).sum(-1) - proj.pow(2).sum(-1)
        else:
            # (m, d) @ (d, k·r) -> (m, k, r): one matmul for all classes.
            proj = (Zf @ bases.permute(1, 0, 2).reshape(bases.shape[1], -1)).view(
                Zf.shape[0], bases.shape[0], -1
            )
            dist = Zf.pow(2).sum(-1, keepdim=True) - proj.pow(2).sum(-1)
        empty = (self.counts == 0).to(Z.device)
        return dist.masked_fill(empty[None, :], float("inf"))

    def predict(self, Z: torch.Tensor) -> torch.Tensor:
        """Class index of the nearest subspace for each row of Z: (m, d) -> (m,) int64."""
        return self.scores(Z).argmin(dim=1)
