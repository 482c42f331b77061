"""The report's datasets: MNIST, USPS and DIGITS (both) for classification, and per-pixel
segmentation of the same digits, plain or over CIFAR backgrounds (:mod:`.backgrounds`).

Everything is tensor-backed: a dataset holds all of its images in memory and
``tensors(device)`` hands them to a training loop in one move (the fast path on a GPU).
USPS random padding is drawn for the whole split from the (seed, split) generator, so an item is
the same picture whatever ``limit`` is.
"""
from __future__ import annotations

import bz2
import functools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import BACKGROUNDS, DOMAINS, USPS_LAYOUTS  # the choices, defined once with the config
from .backgrounds import _compose_, _crop, _draw_backgrounds, _load_backgrounds, masks_from_digits
from .root import (
    MNIST_FILES,
    USPS_FILES,
    _check_choice,
    _check_limit,
    _corrupt,
    _generator,
    _not_found,
    _stat,
    data_root,
)

NUM_SEGMENTATION_CLASSES = 11  # background (0) + digits 0..9 (classes 1..10)
SPLITS = ("train", "test")
DOMAIN_NAMES = ("mnist", "usps")  # index = value of a dataset's .domain

# Expected sizes of the real files; checked on load (tests with tiny fixtures patch these).
MNIST_COUNTS = {"train": 60_000, "test": 10_000}
USPS_COUNTS = {"train": 7_291, "test": 2_007}


# --------------------------------------------------------------------------- raw loaders


def _check_idx(path: Path, ndim: int):
    """Check an idx file's magic number and that its size matches its header; return dims."""
    try:
        with open(path, "rb") as f:
            head = f.read(4 + 4 * ndim)
    except OSError as e:
        raise _corrupt("MNIST", path, f"cannot open: {e}") from e
    if len(head) < 4 + 4 * ndim or head[:3] != b"\x00\x00\x08" or head[3] != ndim:
        raise _corrupt("MNIST", path, f"bad idx header {head[:4].hex()!r}, expected uint8 with {ndim} dims")
    dims = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = len(head) + math.prod(dims)
    if path.stat().st_size != expected:
        raise _corrupt("MNIST", path, f"size {path.stat().st_size} bytes, header {dims} says {expected}")
    return dims


@functools.lru_cache(maxsize=4)
def _mnist_cached(root: str, split: str, _sig) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision import datasets

    rootp = Path(root)
    prefix = "train" if split == "train" else "t10k"
    img_path = rootp / f"MNIST/raw/{prefix}-images-idx3-ubyte"
    lab_path = rootp / f"MNIST/raw/{prefix}-labels-idx1-ubyte"
    n_img, h, w = _check_idx(img_path, 3)
    (n_lab,) = _check_idx(lab_path, 1)
    if (h, w) != (28, 28) or n_img != n_lab or n_img != MNIST_COUNTS[split]:
        raise _corrupt(
            "MNIST", img_path,
            f"{n_img} images of {h}x{w} and {n_lab} labels; expected {MNIST_COUNTS[split]} of 28x28",
        )
    try:
        ds = datasets.MNIST(root, train=(split == "train"), download=False)
    except Exception as e:  # torchvision's own checks: wrap, keep the file name in front
        raise _corrupt("MNIST", img_path, f"torchvision could not read it: {e!r}") from e
    labels = ds.targets.to(torch.int64)
    if labels.numel() and (labels.min() < 0 or labels.max() > 9):
        raise _corrupt("MNIST", lab_path, "labels outside 0..9")
    return ds.data, labels  # uint8 (N, 28, 28), int64 (N,)


def _load_mnist(split: str, root, download: bool):
    path = data_root(root)
    missing = [f for f in MNIST_FILES if not (path / f).is_file()]
    if missing and download:
        from torchvision import datasets

        datasets.MNIST(str(path), train=(split == "train"), download=True)
        missing = [f for f in MNIST_FILES if not (path / f).is_file()]
    if missing:
        raise _not_found(f"MNIST ({split})", MNIST_FILES, root)
    sig = tuple(_stat(path / f) for f in MNIST_FILES)
    data, labels = _mnist_cached(str(path), split, sig)
    prefix = "train" if split == "train" else "t10k"
    files = [f"MNIST/raw/{prefix}-images-idx3-ubyte", f"MNIST/raw/{prefix}-labels-idx1-ubyte"]
    return data, labels, files


@functools.lru_cache(maxsize=4)
def _usps_cached(file: str, split: str, _sig) -> tuple[torch.Tensor, torch.Tensor]:
    path = Path(file)
    try:
        text = bz2.decompress(path.read_bytes()).decode("ascii")
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as e:
        raise _corrupt("USPS", path, f"not a readable bz2 LIBSVM text file: {e!r}") from e
    n = sum(1 for line in text.splitlines() if line.strip())
    # Dense LIBSVM "<label> 1:v ... 256:v": every row is 1 + 2*256 numbers once ':' is a space.
    try:
        flat = np.array(text.replace(":", " ").split(), dtype=np.float64)
    except ValueError as e:
        raise _corrupt("USPS", path, f"non-numeric token: {e}") from e
    if n != USPS_COUNTS[split] or flat.size != n * 513:
        raise _corrupt(
            "USPS", path,
            f"{n} rows / {flat.size} numbers; expected {USPS_COUNTS[split]} rows of a label and "
            f"256 index:value features",
        )
    rows = flat.reshape(n, 513)
    if not np.array_equal(rows[:, 1::2], np.broadcast_to(np.arange(1, 257), (n, 256))):
        raise _corrupt("USPS", path, "feature indices are not 1..256 in order on every row")
    labels = rows[:, 0] - 1  # LIBSVM labels are 1..10
    if not np.all(np.isin(labels, np.arange(10))):
        raise _corrupt("USPS", path, "labels outside 1..10")
    values = rows[:, 2::2]
    finite = np.isfinite(values)
    if not finite.all():  # min()/max() of an array holding NaN is NaN, and NaN fails no comparison
        row, col = np.argwhere(~finite)[0]
        raise _corrupt("USPS", path, f"pixel value {values[row, col]} (row {row + 1}, feature {col + 1}); "
                       f"{int((~finite).sum())} values are not finite numbers")
    if values.min() < -1 - 1e-6 or values.max() > 1 + 1e-6:
        raise _corrupt("USPS", path, "pixel values outside [-1, 1]")
    pixels = ((values + 1) / 2).clip(0, 1).astype(np.float32).reshape(n, 16, 16)  # row-major
    return torch.from_numpy(pixels), torch.from_numpy(labels.astype(np.int64))


def _load_usps(split: str, root, download: bool):
    path = data_root(root)
    fname = USPS_FILES[split]
    if not (path / fname).is_file() and download:
        from torchvision import datasets

        datasets.USPS(str(path), train=(split == "train"), download=True)
    if not (path / fname).is_file():
        raise _not_found(f"USPS ({split})", [fname], root)
    return (*_usps_cached(str(path / fname), split, _stat(path / fname)), [fname])


def _usps_to_28(img16: torch.Tensor, layout: str, seed: int, split: str) -> torch.Tensor:
    """(N, 16, 16) in [0, 1] -> (N, 1, 28, 28)."""
    n = img16.shape[0]
    x = img16[:, None]  # (N, 16, 16) -> (N, 1, 16, 16)
    if layout == "resize":
        # MNIST's convention: the digit fills a 20x20 box centred in the 28x28 frame.
        x = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False, antialias=True)
        return F.pad(x.clamp(0, 1), (4, 4, 4, 4))
    # "pad_random", the authors' choice: the 16x16 digit pasted unscaled at a random offset.
    g = _generator(seed, split, "usps_pad")
    off = torch.randint(0, 13, (n, 2), generator=g)  # top, left in 0..12
    out = torch.zeros(n, 1, 28, 28, dtype=x.dtype)
    ar = torch.arange(16)
    rows = (off[:, 0, None] + ar)[:, :, None]  # (N, 16, 1)
    cols = (off[:, 1, None] + ar)[:, None, :]  # (N, 1, 16)
    out[torch.arange(n)[:, None, None], 0, rows, cols] = x[:, 0]
    return out


# --------------------------------------------------------------------------- datasets


class DigitsDataset(torch.utils.data.Dataset):
    """Digit classification: items ``(image float32 (1, 28, 28) in [0, 1], label int 0..9)``.

    Attributes: ``images`` float32 (N, 1, 28, 28), ``labels`` int64 (N,), ``domain`` int64 (N,)
    (0 = mnist, 1 = usps), ``domain_names``, ``source`` (JSON-serialisable provenance).
    """

    domain_names = DOMAIN_NAMES

    def __init__(self, images, labels, domain, source):
        self.images, self.labels, self.domain, self.source = images, labels, domain, source

    def __len__(self):
        return self.labels.shape[0]

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])

    def tensors(self, device=None):
        """(images float32 (N, 1, 28, 28), labels int64 (N,)) on ``device``."""
        return self.images.to(device), self.labels.to(device)

    def __repr__(self):
        return f"{type(self).__name__}({self.source['dataset']}, N={len(self)})"


class SegmentationDataset(torch.utils.data.Dataset):
    """Per-pixel digit segmentation: items ``(image float32 (C, 28, 28), mask int64 (28, 28))``.

    Class 0 is background, class c+1 is digit c, where the digit's intensity >= MASK_THRESHOLD.
    ``digits`` float32 (N, 1, 28, 28) holds the digits alone; with a background, ``crops`` holds
    the uint8 (N, 3, 28, 28) background crops and composites are formed on access by
    :func:`compose` (on the target device in ``tensors``), so memory stays at about a third of
    float composites. ``images`` (C = 1 without background, 3 with) and ``masks`` are computed
    properties. ``background_index`` says which picture of the background source (index into the
    npz, or into torchvision's train/test set) each item's crop came from.
    """

    domain_names = DOMAIN_NAMES

    def __init__(self, digits, labels, domain, crops, background_index, source):
        self.digits, self.labels, self.domain, self.source = digits, labels, domain, source
        self.crops = crops  # uint8 (N, 3, 28, 28) or None
        self.background_index = background_index  # int64 (N,): picture in the background source file

    @property
    def num_channels(self) -> int:
        return 1 if self.crops is None else self.crops.shape[1]

    def _images(self, digits, crops):
        if crops is None:
            return digits
        return _compose_(crops.to(digits.dtype).div_(255), digits)

    @property
    def images(self) -> torch.Tensor:
        """float32 (N, C, 28, 28) in [0, 1] (composites are built on each access)."""
        return self._images(self.digits, self.crops)

    @property
    def masks(self) -> torch.Tensor:
        """int64 (N, 28, 28): 0 background, label+1 on the digit's pixels."""
        return masks_from_digits(self.digits, self.labels)

    def __len__(self):
        return self.labels.shape[0]

    def __getitem__(self, i):
        crops = None if self.crops is None else self.crops[i: i + 1]
        image = self._images(self.digits[i: i + 1], crops)[0]
        return image, masks_from_digits(self.digits[i: i + 1], self.labels[i: i + 1])[0]

    def tensors(self, device=None):
        """(images float32 (N, C, 28, 28), masks int64 (N, 28, 28)) on ``device``."""
        d = self.digits.to(device)
        crops = None if self.crops is None else self.crops.to(device)
        return self._images(d, crops), masks_from_digits(d, self.labels.to(device))

    def __repr__(self):
        return f"{type(self).__name__}({self.source['dataset']}, N={len(self)})"


def _build_digits(domain, split, root, usps_layout, seed, download):
    """All items of a split before ``limit``: images (N,1,28,28), labels, domain, files."""
    parts, files = [], []
    if domain in ("mnist", "digits"):
        data, labels, f = _load_mnist(split, root, download)
        parts.append((data[:, None].float() / 255, labels))  # (N, 28, 28) -> (N, 1, 28, 28)
        files += f
    if domain in ("usps", "digits"):
        img16, labels, f = _load_usps(split, root, download)
        parts.append((_usps_to_28(img16, usps_layout, seed, split), labels))
        files += f
    if domain != "digits":
        d = 0 if domain == "mnist" else 1
        images, labels = parts[0]
        labels = labels.clone()  # the raw labels are cached: never hand them out
        return images, labels, torch.full_like(labels, d), files
    (mi, ml), (ui, ul) = parts
    if split == "test":  # both test sets, once each
        dom = torch.cat([torch.zeros_like(ml), torch.ones_like(ul)])
        return torch.cat([mi, ui]), torch.cat([ml, ul]), dom, files
    # train: USPS repeated (about 8x for the real files) to MNIST's count, then alternated
    # mnist, usps, mnist, usps ... so both domains appear equally often in any prefix.
    n = mi.shape[0]
    rep = torch.arange(n) % ui.shape[0]
    images = torch.stack([mi, ui[rep]], dim=1).flatten(0, 1)  # (n, 2, 1, 28, 28) -> (2n, 1, 28, 28)
    labels = torch.stack([ml, ul[rep]], dim=1).flatten()
    dom = torch.tensor([0, 1]).repeat(n)
    return images, labels, dom, files


def _source(task, domain, split, root, files, usps_layout, seed, limit, n, **extra):
    path = data_root(root)
    return {
        "task": task,
        "dataset": domain if not extra.get("background") else f"{domain}+{extra['background']}",
        "domain": domain,
        "split": split,
        "root": str(path),
        "files": list(files),
        "usps_layout": usps_layout if domain in ("usps", "digits") else None,
        "seed": seed,
        "limit": limit,
        "N": n,
        **extra,
    }


def digits(domain, split, root=None, *, usps_layout="resize", limit=None, seed=0, download=False) -> DigitsDataset:
    """Digit classification data of the report (Figure 1).

    domain: "mnist" (60 000 / 10 000), "usps" (7 291 / 2 007) or "digits" (both; train: USPS
    repeated to MNIST's count and alternated with it, 120 000 items; test: both test sets).
    USPS pixels are (v+1)/2 of the LIBSVM values, kept as float32 (not rounded to uint8 as
    torchvision does). usps_layout: "resize" (16x16 -> 20x20 box centred in 28x28, MNIST's
    convention) or "pad_random" (the authors' choice: unscaled, zero-padded at a random offset,
    fixed per (seed, split, USPS index)). limit keeps the first ``limit`` items.
    """
    _check_choice("domain", domain, DOMAINS)
    _check_choice("split", split, SPLITS)
    _check_choice("usps_layout", usps_layout, USPS_LAYOUTS)
    _check_limit(limit)
    images, labels, dom, files = _build_digits(domain, split, root, usps_layout, seed, download)
    if limit is not None:
        images, labels, dom = images[:limit], labels[:limit], dom[:limit]
    src = _source("classification", domain, split, root, files, usps_layout, seed, limit, len(labels))
    return DigitsDataset(images.contiguous(), labels, dom, src)


def segmentation(
    domain, split, background=None, root=None, *, seed=0, limit=None, usps_layout="resize", download=False
) -> SegmentationDataset:
    """Per-pixel digit segmentation (Figures 2-7), 11 classes (0 background, c+1 digit c).

    background: None (C = 1), "cifar100" (the report; ``cifar-100-python/`` if present, else
    ``cifar100_images.npz`` split 80/20 by a fixed permutation) or "cifar10" (the authors' code;
    ``cifar-10-batches-py/``). Each item gets one background picture and one random 28x28 crop of
    it, fixed per (seed, split, index); train and test draw from disjoint pictures. Every digit
    is used once per epoch (the authors' code used each three times).
    """
    _check_choice("domain", domain, DOMAINS)
    _check_choice("split", split, SPLITS)
    _check_choice("background", background, BACKGROUNDS)
    _check_choice("usps_layout", usps_layout, USPS_LAYOUTS)
    _check_limit(limit)
    images, labels, dom, files = _build_digits(domain, split, root, usps_layout, seed, download)
    n_full = labels.shape[0]
    n = n_full if limit is None else min(limit, n_full)
    images, labels, dom = images[:n], labels[:n], dom[:n]
    crops, bg_index, extra = None, None, {"background": background}
    if background is not None:
        pool, bg_file, pool_index = _load_backgrounds(background, split, root, download)
        # Drawn for the whole split, then cut to limit: item i is the same picture for any limit.
        pick, off = _draw_backgrounds(pool.shape[0], n_full, seed, split)
        pick, off = pick[:n], off[:n]
        crops = _crop(pool, pick, off)
        bg_index = pick if pool_index is None else pool_index[pick]
        extra["background_source"] = bg_file
        extra["background_pictures"] = int(pool.shape[0])
        files = files + [bg_file]
    src = _source("segmentation", domain, split, root, files, usps_layout, seed, limit, len(labels), **extra)
    return SegmentationDataset(images.contiguous(), labels, dom, crops, bg_index, src)
