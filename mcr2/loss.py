"""The MCR² objective (Yu et al. 2020, arXiv:2006.08558), exact and fast.

With Z the (m, d) features (rows are samples), Z_j the rows of class j and m_j their number,

    R  = ½ logdet(I + d/(m ε²) ZᵀZ)                          (discriminative, expansion)
    Rc = Σ_j m_j/(2m) · logdet(I + d/(m_j ε²) Z_jᵀZ_j)         (compressive)
    ΔR = R − Rc,   loss = Rc − γ·R.

Everything depends on the batch only through the per-class Gram matrices Z_jᵀZ_j and the
counts m_j (ZᵀZ is their sum). :func:`class_statistics` forms them in one batched product over
the rows placed in class-pure tiles (m·d² multiply-adds, the cost of ZᵀZ itself, with shapes
that never depend on the labels) and :func:`rate_reduction_from_stats` finishes with one batched Cholesky of k+1 small d×d matrices. The same statistics feed the
nearest-subspace classifier and add up across devices.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "RateReduction",
    "class_statistics",
    "rate_reduction_from_stats",
    "rate_reduction",
    "MCR2Loss",
    "IGNORE_INDEX",
    "all_reduce_statistics",
    "pooled_rows",
]

#: Labels below zero (e.g. −1) are dropped from every statistic, like CE's ``ignore_index``.
IGNORE_INDEX = -1


class RateReduction(NamedTuple):
    """The terms of MCR², each a 0-dim float tensor (float32, or float64 for float64 input)."""

    discriminative: torch.Tensor  # R
    compressive: torch.Tensor  # Rc
    delta_r: torch.Tensor  # ΔR = R − Rc
    loss: torch.Tensor  # Rc − γ·R


def _check_scalar(name: str, value, positive: bool) -> None:
    """Reject a non-finite (or, with ``positive``, a non-positive) ε² or γ before any arithmetic.

    A Python number is checked always; a tensor only on the CPU (reading a CUDA value would cost a
    host sync on every step, so there the caller's config is the check: see mcr2.config)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a single number, got a tensor of shape {tuple(value.shape)}")
        if value.is_cuda:
            return
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or (positive and value <= 0):
        wants = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"{name} must be {wants}, got {value}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Grams and logdets in float32 at least: fp16 Gram diagonals overflow past 65 504 rows.
    return torch.float64 if dtype == torch.float64 else torch.float32


#: Largest tile of the padded class blocks (rows): big enough for one efficient batched product.
MAX_TILE = 1024


def _tile_rows(m: int, num_classes: int) -> int:
    """Rows per tile: a power of two ≥ 16, about m / (4k), at most :data:`MAX_TILE`, so that the
    padding (at most k−1 rows per class) stays a small share of m whatever the batch size."""
    tile = 16
    while tile < MAX_TILE and tile * 4 * num_classes < m:
        tile *= 2
    return tile


class _TiledClassGrams(torch.autograd.Function):
    """Per-class Grams G_j = Σ_{i∈j} w_i z_i z_iᵀ from rows placed in class-pure tiles.

    Every row i kept goes to slot ``dest[i]`` of a zeroed buffer of ``num_tiles·tile`` rows, in
    which each class owns whole tiles; a dropped row goes to one extra slot that no tile reads.
    One batched product gives each tile's Gram, and ``index_add`` sums them per class
    (``tile_class``; value k marks an unused tile). The shapes depend on m and k only, never on
    the labels, so nothing is read back to the host. With weights the rows are scaled by √w_i
    (w_i z_i z_iᵀ = (√w_i z_i)(√w_i z_i)ᵀ). Backward writes ∂/∂z_i = w_i (S_j + S_jᵀ) z_i
    straight back to the rows: one product each way, as for one Gram. Weights get no gradient.
    """

    @staticmethod
    def forward(ctx, Z, dest, sqrt_w, tile_class, num_classes, tile):
        d = Z.shape[1]
        slots = tile_class.shape[0] * tile
        rows = Z if sqrt_w is None else Z * sqrt_w[:, None]
        tiles = Z.new_zeros(slots + 1, d).index_copy_(0, dest, rows)[:slots].view(-1, tile, d)
        tile_grams = torch.bmm(tiles.transpose(1, 2), tiles)  # (tiles, d, d)
        grams = Z.new_zeros(num_classes + 1, d, d).index_add_(0, tile_class, tile_grams)
        ctx.save_for_backward(tiles, dest, sqrt_w, tile_class)
        return grams[:num_classes]

    @staticmethod
    def backward(ctx, grad_grams):
        tiles, dest, sqrt_w, tile_class = ctx.saved_tensors
        d = tiles.shape[2]
        sym = grad_grams + grad_grams.transpose(1, 2)  # (k, d, d)
        sym = torch.cat([sym, sym.new_zeros(1, d, d)]).index_select(0, tile_class)  # per tile
        grad_rows = torch.cat([torch.bmm(tiles, sym).reshape(-1, d), tiles.new_zeros(1, d)])
        grad_Z = grad_rows.index_select(0, dest)  # dropped rows read the zero slot
        if sqrt_w is not None:
            grad_Z = grad_Z * sqrt_w[:, None]
        return grad_Z, None, None, None, None, None


def class_statistics(
    Z: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    weights: torch.Tensor | None = None,
    check: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class Gram matrices Σ_{i∈j} w_i z_i z_iᵀ and counts Σ_{i∈j} w_i.

    Z: (m, d); labels: (m,) int, values in [0, num_classes) or negative (ignored);
    weights: optional (m,) non-negative finite floats or a bool mask (False drops the row).
    Returns grams (k, d, d) and counts (k,) in float32 (float64 for float64 input).

    ``check=True``: a label ≥ num_classes or a negative or non-finite weight raises ``ValueError``;
    reading that verdict is one host sync. ``check=False`` reads nothing back (for a training step
    whose labels and masks are valid by construction): such a row then makes every count NaN, so
    the loss is NaN and nothing is silently dropped.

    The rows go into class-pure tiles in one pass (:class:`_TiledClassGrams`): one batched product,
    about m·d² multiply-adds like ZᵀZ itself, no k×m×d intermediate, and shapes fixed by m and k.
    """
    if Z.dim() != 2:
        raise ValueError(f"Z must be (m, d) with samples as rows, got shape {tuple(Z.shape)}")
    if labels.shape != Z.shape[:1]:
        raise ValueError(f"labels must be ({Z.shape[0]},), got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point:
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if isinstance(num_classes, bool) or not hasattr(num_classes, "__index__") or num_classes < 1:
        raise ValueError(f"num_classes must be an integer ≥ 1 (k, the number of classes), got {num_classes!r}")
    num_classes = num_classes.__index__()
    dtype = _compute_dtype(Z.dtype)
    k, (m, d) = num_classes, Z.shape
    with torch.autocast(device_type=Z.device.type, enabled=False):
        Z = Z.to(dtype)
        labels = labels.to(Z.device).long()
        too_big = labels >= k
        w, bad_w, invalid = None, None, too_big
        keep = (labels >= 0) & ~too_big
        if weights is not None:
            if weights.shape != labels.shape:
                raise ValueError(f"weights must be ({m},), got {tuple(weights.shape)}")
            weights = weights.to(Z.device)
            if weights.dtype == torch.bool:
                keep = keep & weights
            else:
                w = weights.detach().to(dtype)
                bad_w = ~torch.isfinite(w) | (w < 0)
                invalid = invalid | bad_w
                keep = keep & (w > 0) & ~bad_w
        if check:
            flags = torch.stack([too_big.any(), invalid.any()]).tolist()  # the one host sync
            if flags[0]:
                raise ValueError(f"a label is ≥ num_classes = {k}: {int(labels.max())}")
            if flags[1]:  # not a label, so a weight
                shown = w[bad_w][:3].tolist()
                raise ValueError(f"weights must be finite and ≥ 0 (0 drops a row), got values such as {shown}")
        if m == 0:
            return Z.new_zeros(k, d, d), Z.new_zeros(k)
        key = torch.where(keep, labels, k)  # (m,) class, or k for a dropped row
        order = torch.argsort(key, stable=True)  # rows grouped by class, dropped ones last
        per_key = torch.zeros(k + 1, dtype=torch.long, device=Z.device).index_add_(0, key, torch.ones_like(key))
        first = per_key.cumsum(0) - per_key  # sorted position of each class's first row
        rank = torch.empty_like(key).index_copy_(  # position of each row within its class
            0, order, torch.arange(m, device=Z.device) - first[key[order]])
        sizes = per_key[:k]  # (k,) rows per class
        tile = _tile_rows(m, k)
        num_tiles = -(-(m + k * (tile - 1)) // tile)  # enough for every class padded to whole tiles
        padded = (sizes + tile - 1) // tile * tile
        ends = padded.cumsum(0)
        dest = torch.where(keep, (ends - padded)[key.clamp(max=k - 1)] + rank, num_tiles * tile)
        tile_class = torch.searchsorted(ends, torch.arange(num_tiles, device=Z.device) * tile, right=True)
        w_kept = None if w is None else torch.where(keep, w, 0)  # 0 for dropped and invalid rows
        grams = _TiledClassGrams.apply(Z, dest, None if w is None else w_kept.sqrt(), tile_class, k, tile)
        if w is None:
            counts = sizes.to(dtype)
        else:
            counts = Z.new_zeros(k + 1).index_add_(0, key, w_kept)[:k]
        # check=False: an invalid row poisons the counts instead of vanishing (no host read).
        counts = torch.where(invalid.any(), torch.full_like(counts, math.nan), counts)
    return grams, counts


def _logdet_spd(A: torch.Tensor) -> torch.Tensor:
    """log det of a batch of symmetric positive-definite matrices via Cholesky: (..., d, d) -> (...)."""
    # I + αG with G ⪰ 0 is always SPD; cond ≤ 1 + d/ε² for unit-norm rows, safe in float32.
    L, _ = torch.linalg.cholesky_ex(A)  # no error check: no host sync; a failure shows as NaN
    return 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)


def rate_reduction_from_stats(
    grams: torch.Tensor,
    counts: torch.Tensor,
    eps_sq: float = 0.5,
    gamma: float = 1.0,
) -> RateReduction:
    """MCR² from per-class Grams (k, d, d) and counts (k,); see the module docstring.

    ``eps_sq`` must be finite and > 0 and ``gamma`` finite (``ValueError`` otherwise): ε² ≤ 0
    would make every logdet NaN.
    """
    _check_scalar("eps_sq", eps_sq, positive=True)
    _check_scalar("gamma", gamma, positive=False)
    k, d, _ = grams.shape
    m = counts.sum()
    eye = torch.eye(d, dtype=grams.dtype, device=grams.device)
    present = counts > 0
    safe_counts = torch.where(present, counts, torch.ones_like(counts))
    # α_j = d / (m_j ε²); an empty class has G_j = 0, so its term is logdet(I) = 0 anyway.
    alpha_j = torch.where(present, d / (safe_counts * eps_sq), torch.zeros_like(counts))
    m_safe = torch.where(m > 0, m, torch.ones_like(m))  # m = 0 (every row dropped): R = Rc = 0
    alpha = torch.where(m > 0, d / (m_safe * eps_sq), torch.zeros_like(m))
    A = torch.cat([(eye + alpha * grams.sum(0))[None], eye + alpha_j[:, None, None] * grams])
    logdets = _logdet_spd(A)  # (k + 1,)
    R = 0.5 * logdets[0]
    Rc = (counts / (2.0 * m_safe) * logdets[1:]).sum()
    return RateReduction(R, Rc, R - Rc, Rc - gamma * R)


def all_reduce_statistics(
    grams: torch.Tensor, counts: torch.Tensor, group=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum per-class Grams and counts over the ranks of ``group``, differentiably.

    MCR² depends on the batch only through these sums, so every rank then holds the statistics of
    the global batch and computes the global loss. The gradient reaching each rank's own rows is
    exactly that of the global loss: ``torch.distributed.nn``'s all_reduce sums the (identical)
    upstream gradients of all W ranks in its backward, so the forward value is kept and the
    gradient path is scaled by 1/W.
    """
    import torch.distributed as dist
    from torch.distributed.nn.functional import all_reduce

    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "distributed MCR² needs an initialised process group: call "
            "torch.distributed.init_process_group(...) first (torchrun does it for you), "
            "or pass distributed=False"
        )
    world = dist.get_world_size(group)
    with warnings.catch_warnings():
        # Newer torch marks this differentiable collective deprecated in favour of a private
        # module; it is the public one on every torch this library supports (≥ 2.6).
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*all_reduce is deprecated")
        summed = all_reduce(grams, group=group)
    grams = summed / world + (summed - summed / world).detach()  # value: the sum; gradient: ∂L/∂G
    counts = counts.detach().clone()
    dist.all_reduce(counts, group=group)
    return grams, counts


def rate_reduction(
    Z: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    eps_sq: float = 0.5,
    gamma: float = 1.0,
    weights: torch.Tensor | None = None,
    distributed: bool = False,
    group=None,
    check: bool = True,
) -> RateReduction:
    """Exact MCR² terms of features Z (m, d) with integer labels (m,).

    The caller normalises the rows of Z (the paper puts features on the unit sphere).
    ``eps_sq`` is ε², the squared precision (0.5 in both the original and the authors' code),
    finite and > 0. ``gamma`` weighs R in the loss Rc − γ·R. ``weights`` (m,) weighs rows
    (finite, ≥ 0; 0 = dropped) or is a bool mask; labels < 0 are dropped. Bad values raise
    ``ValueError`` before any arithmetic. Differentiable; float32 inside even under autocast.
    ``distributed=True``: Z is this rank's share of a batch split across the ranks of ``group``;
    the result is the MCR² of the whole global batch on every rank, and the gradient w.r.t. these
    rows is theirs in the global loss (:func:`all_reduce_statistics`).
    ``check=False`` skips the one host sync of the label and weight check (see
    :func:`class_statistics`): an invalid row then makes the terms NaN instead of raising.
    """
    _check_scalar("eps_sq", eps_sq, positive=True)  # before the statistics: fail fast and cheaply
    _check_scalar("gamma", gamma, positive=False)
    grams, counts = class_statistics(Z, labels, num_classes, weights, check)
    if distributed:
        grams, counts = all_reduce_statistics(grams, counts, group)
    with torch.autocast(device_type=Z.device.type, enabled=False):
        return rate_reduction_from_stats(grams, counts, eps_sq, gamma)


class MCR2Loss(nn.Module):
    """``rate_reduction`` as a module: ``MCR2Loss(k)(Z, labels, weights=None) -> RateReduction``.

    Minimise ``.loss`` (= Rc − γ·R); ``weights`` may be a bool mask (the background masking of
    the report drops background pixels this way) or per-sample weights. With
    ``distributed=True`` each rank passes its share of the batch and gets the global loss.
    """

    def __init__(self, num_classes: int, eps_sq: float = 0.5, gamma: float = 1.0, distributed: bool = False,
                 group=None, check: bool = True):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer ≥ 1, got {num_classes!r}")
        _check_scalar("eps_sq", eps_sq, positive=True)
        _check_scalar("gamma", gamma, positive=False)
        self.num_classes = num_classes
        self.eps_sq = eps_sq  # ε²
        self.gamma = gamma  # γ, weight of R in the loss
        self.distributed = distributed  # all-reduce the statistics: the loss of the global batch
        self.group = group  # process group (None = the default group)
        self.check = check  # raise on bad labels/weights (one host sync); False: they give NaN

    def forward(
        self, Z: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
    ) -> RateReduction:
        return rate_reduction(Z, labels, self.num_classes, self.eps_sq, self.gamma, weights, self.distributed, self.group,
                              self.check)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, eps_sq={self.eps_sq}, gamma={self.gamma}"


def pooled_rows(
    features: torch.Tensor, labels: torch.Tensor, size: int, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel features and labels at a lower resolution, for MCR² on fewer rows (report §3).

    features (B, d, H, W) are average-pooled to (B, d, size, size) and put back on the unit sphere;
    labels (B, H, W) (negative = ignored) go by majority vote in each cell, and the cell's weight
    is the share of its pixels that carry the majority label: a pure cell weighs 1, a mixed one
    less, a cell with no labelled pixel 0 (weighting, not dropping, mixed cells).
    Returns Z (B·size², d), labels (B·size²,) and weights (B·size²,), rows in (b, y, x) order.
    """
    B, d, H, W = features.shape
    pooled = F.adaptive_avg_pool2d(features, size)  # (B, d, H, W) -> (B, d, s, s)
    Z = F.normalize(pooled.permute(0, 2, 3, 1).reshape(-1, d), dim=1)
    valid = labels >= 0
    onehot = F.one_hot(labels.clamp_min(0), num_classes).permute(0, 3, 1, 2).to(pooled.dtype)
    onehot = onehot * valid[:, None].to(onehot.dtype)  # (B, k, H, W), ignored pixels count for no class
    shares = F.adaptive_avg_pool2d(onehot, size)  # (B, k, s, s): fraction of each class per cell
    weight, majority = shares.max(dim=1)
    return Z, majority.reshape(-1), weight.reshape(-1).float()
