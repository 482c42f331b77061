"""Nearest-subspace classifier over learned features (FACTS.md, "Nearest-subspace classifier").

Per class j, U_j holds the top-r eigenvectors of that class's (uncentred, by default) second
moment of *training* features. A feature z is scored by its squared residual
‖z − U_jU_jᵀz‖² = ‖z‖² − ‖U_jᵀz‖² and assigned to the class with the smallest one.

Fitting needs only the per-class Gram matrices and counts (:func:`mcr2.loss.class_statistics`),
so pixel features can be streamed batch by batch with :meth:`NearestSubspace.partial_fit`
and never stored. A class with no training samples gets an infinite score: it is never predicted.

Bad input fails with a clear error instead of a silent class 0: fitting with every class empty
or with non-finite features, and predicting on rows of the wrong width or holding NaN/inf, raise
``ValueError``. A class with fewer samples than ``n_components`` (its second moment then has
fewer than r non-zero eigenvalues, so part of its basis is arbitrary) gets a ``UserWarning``
naming it; it still takes part in the argmin.
"""
from __future__ import annotations

import warnings

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
        if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
            raise ValueError(f"n_components must be an integer ≥ 1, got {n_components!r}")
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
        # Non-finite features would poison every basis; the statistics are read on the host at
        # finalize() anyway, so check the (k, d, d) sums there, not the (m, d) rows here.
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
        counts = self.counts.tolist()
        if not any(c > 0 for c in counts):
            raise ValueError(f"NearestSubspace was fitted on no sample: all {k} classes are empty "
                             f"(every label was negative or ≥ num_classes, or no rows were given)")
        if not bool(torch.isfinite(self.grams).all()):
            bad = [j for j in range(k) if not bool(torch.isfinite(self.grams[j]).all())]
            raise ValueError(f"NearestSubspace was fitted on non-finite features (NaN or inf) in classes {bad}")
        small = {j: c for j, c in enumerate(counts) if 0 < c < self.n_components}
        if small:
            warnings.warn(
                f"NearestSubspace: classes {sorted(small)} have fewer samples ({', '.join(f'{c:g}' for c in small.values())}) "
                f"than n_components = {self.n_components}; part of their basis is arbitrary",
                UserWarning, stacklevel=2,
            )
        safe = self.counts.clamp_min(1.0)
        self.means = self.sums / safe[:, None]
        moments = self.grams / safe[:, None, None]
        if self.center:
            moments = moments - self.means[:, :, None] * self.means[:, None, :]
        _, vecs = torch.linalg.eigh(moments)  # ascending eigenvalues
        self.bases = vecs[:, :, -self.n_components:]  # (k, d, r)
        return self

    def scores(self, Z: torch.Tensor) -> torch.Tensor:
        """Squared distances to each class subspace: (m, d) -> (m, k); +inf for empty classes.

        Z must be (m, d) with the d of the training features; a row holding NaN or inf raises
        ``ValueError`` (one host sync per call, the price of never predicting class 0 for it).
        """
        if self.bases is None:
            self.finalize()
        d = self.bases.shape[1]
        if Z.dim() != 2 or Z.shape[1] != d:
            raise ValueError(f"Z must be (m, {d}) (rows of {d} features, as fitted), got shape {tuple(Z.shape)}")
        finite = torch.isfinite(Z).all(dim=1)
        if not bool(finite.all()):
            rows = (~finite).nonzero().flatten()
            raise ValueError(f"Z has {rows.numel()} row(s) holding NaN or inf (first: row {int(rows[0])}); "
                             f"such a row has no nearest subspace")
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
        """Class index of the nearest subspace for each row of Z: (m, d) -> (m,) int64 (see :meth:`scores`)."""
        return self.scores(Z).argmin(dim=1)
