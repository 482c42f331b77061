"""Digits over natural-image backgrounds: the CIFAR pictures, one fixed crop per item, the
composition of digit and background, and the per-pixel labels.

The authors' composition (FACTS.md): a random 28x28 crop of a 32x32 picture, zeroed under the
digit's pixels, with the digit added on all three channels. Which picture and which crop an item
gets is a pure function of (seed, split, index), so an item is the same composite every epoch,
on every machine, whatever ``limit`` is.
"""
from __future__ import annotations

import functools
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from .root import CIFAR10_DIR, CIFAR100_DIR, CIFAR100_NPZ, _corrupt, _generator, _not_found, _stat, data_root

MASK_THRESHOLD = 0.3  # a pixel belongs to the digit where its intensity (in [0, 1]) is >= this
NPZ_TRAIN_FRACTION = 0.8  # cifar100_images.npz has no split: 80 % train / 20 % val backgrounds
NPZ_SPLIT_SEED = 20_240_601  # fixed, independent of the run seed: validation never changes


@functools.lru_cache(maxsize=2)
def _npz_cached(file: str, _sig) -> torch.Tensor:
    path = Path(file)
    try:
        # Open the file ourselves: np.load leaks its handle when the zip is broken.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            images = z["images"]
    except (OSError, ValueError, KeyError, EOFError, TypeError, AttributeError, zipfile.BadZipFile) as e:
        raise _corrupt("CIFAR-100 (npz)", path, f"cannot read array 'images': {e!r}") from e
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise _corrupt("CIFAR-100 (npz)", path, f"'images' is {images.dtype} {images.shape}, expected uint8 (N, 32, 32, 3)")
    if images.shape[0] < 5:  # the 80/20 split must leave pictures on both sides
        raise _corrupt("CIFAR-100 (npz)", path, f"'images' holds {images.shape[0]} pictures, too few for training and "
                                                f"validation backgrounds (at least 5; the real file holds 20 000)")
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)


@functools.lru_cache(maxsize=2)
def _torchvision_cifar_cached(root: str, which: str, train: bool, _sig) -> torch.Tensor:
    from torchvision import datasets

    cls = datasets.CIFAR100 if which == "cifar100" else datasets.CIFAR10
    folder = Path(root) / (CIFAR100_DIR if which == "cifar100" else CIFAR10_DIR)
    try:
        ds = cls(root, train=train, download=False)
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError) as e:
        raise _corrupt(which.upper(), folder, f"torchvision could not read it: {e!r}") from e
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N,32,32,3) -> (N,3,32,32)


def _load_backgrounds(background: str, split: str, root, download: bool):
    """Background pictures for a split: (uint8 (M, 3, 32, 32), source file name, pool indices)."""
    path = data_root(root)
    train = split == "train"
    if background == "cifar100":
        if not (path / CIFAR100_DIR).is_dir() and (path / CIFAR100_NPZ).is_file():
            images = _npz_cached(str(path / CIFAR100_NPZ), _stat(path / CIFAR100_NPZ))
            # No original split in the npz: a fixed permutation, 80 % train / 20 % val,
            # so train and val backgrounds come from disjoint pictures.
            g = torch.Generator().manual_seed(NPZ_SPLIT_SEED)
            perm = torch.randperm(images.shape[0], generator=g)
            n_train = int(round(NPZ_TRAIN_FRACTION * images.shape[0]))
            pool = perm[:n_train] if train else perm[n_train:]
            return images[pool], CIFAR100_NPZ, pool
        if not (path / CIFAR100_DIR).is_dir() and download:
            from torchvision import datasets

            datasets.CIFAR100(str(path), train=train, download=True)
        if not (path / CIFAR100_DIR).is_dir():
            raise _not_found("CIFAR-100 backgrounds", [f"{CIFAR100_DIR}/ (torchvision)", CIFAR100_NPZ], root)
        sig = _stat(path / CIFAR100_DIR)
        return _torchvision_cifar_cached(str(path), "cifar100", train, sig), CIFAR100_DIR, None
    # cifar10: torchvision's folder only
    if not (path / CIFAR10_DIR).is_dir() and download:
        from torchvision import datasets

        datasets.CIFAR10(str(path), train=train, download=True)
    if not (path / CIFAR10_DIR).is_dir():
        raise _not_found("CIFAR-10 backgrounds", [f"{CIFAR10_DIR}/ (torchvision)"], root)
    sig = _stat(path / CIFAR10_DIR)
    return _torchvision_cifar_cached(str(path), "cifar10", train, sig), CIFAR10_DIR, None


def _draw_backgrounds(n_pool: int, n: int, seed: int, split: str):
    """Picture index (n,) and crop offsets (n, 2) per item, a pure function of (seed, split, index)."""
    g = _generator(seed, split, "background")
    pick = torch.randint(0, n_pool, (n,), generator=g)
    off = torch.randint(0, 32 - 28 + 1, (n, 2), generator=g)  # top, left in 0..4
    return pick, off


def _crop(pool: torch.Tensor, pick: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
    """uint8 (M, 3, 32, 32) pictures -> (n, 3, 28, 28) crops."""
    out = torch.empty(pick.shape[0], pool.shape[1], 28, 28, dtype=pool.dtype)
    key = off[:, 0] * 5 + off[:, 1]
    for k in torch.unique(key).tolist():  # one vectorised copy per distinct offset (25 of them)
        sel = (key == k).nonzero().squeeze(1)
        t, l = divmod(k, 5)
        out[sel] = pool[pick[sel], :, t: t + 28, l: l + 28]
    return out


def compose(digit: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Lay a digit (..., 1, H, W) in [0, 1] over a background (..., 3, H, W) in [0, 1].

    The authors' composition (FACTS.md): the background is zeroed under the digit's pixels
    (intensity >= MASK_THRESHOLD) and the digit is added on all three channels, then clipped.
    Chosen over alpha blending because it is what the authors trained on and it makes every
    labelled digit pixel show exactly the digit's intensity on all channels.
    """
    return _compose_(background.clone(), digit)


def _compose_(background: torch.Tensor, digit: torch.Tensor) -> torch.Tensor:
    # In place on a fresh background tensor: three passes over (N, 3, 28, 28), no temporaries.
    return background.masked_fill_(digit >= MASK_THRESHOLD, 0).add_(digit).clamp_(0, 1)


def masks_from_digits(digit_images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-pixel classes (N, H, W) int64: label+1 where the digit is >= MASK_THRESHOLD, else 0."""
    fg = digit_images[:, 0] >= MASK_THRESHOLD  # (N, 1, H, W) -> (N, H, W)
    return torch.where(fg, labels.to(torch.int64)[:, None, None] + 1, 0)
