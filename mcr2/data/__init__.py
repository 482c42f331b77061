"""Datasets of the report: MNIST, USPS, DIGITS (both), with or without CIFAR backgrounds.

Three rooms, one front door (import everything from ``mcr2.data``):

- :mod:`.root`: where the files are (``$MCR2_DATA``), the check run before any work, and the
  errors naming a missing or unreadable file;
- :mod:`.datasets`: MNIST, USPS and DIGITS read from their files, and the two datasets
  (:func:`digits` for classification, :func:`segmentation` per pixel);
- :mod:`.backgrounds`: the CIFAR pictures, their crops, and how a digit is laid over one
  (:func:`compose`) and labelled per pixel (:func:`masks_from_digits`).

Nothing is downloaded unless ``download=True`` is passed. A missing file raises
:class:`DataNotFoundError`, an unreadable one :class:`DataCorruptError`; both say which dataset,
which files, which folders were searched and how to fix it.

Randomness (USPS random padding, background picture and crop) is a pure function of
(seed, split, index): it is drawn for the whole split from a ``torch.Generator`` seeded by a
SHA-256 of (seed, split), so an item is the same picture every epoch, on every machine, whatever
``limit`` is.
"""
from ..config import BACKGROUNDS, DOMAINS, USPS_LAYOUTS
from .backgrounds import MASK_THRESHOLD, compose, masks_from_digits
from .datasets import (
    DOMAIN_NAMES,
    MNIST_COUNTS,
    NUM_SEGMENTATION_CLASSES,
    SPLITS,
    USPS_COUNTS,
    DigitsDataset,
    SegmentationDataset,
    digits,
    segmentation,
)
from .root import (
    CIFAR10_DIR,
    CIFAR100_DIR,
    CIFAR100_NPZ,
    MNIST_FILES,
    USPS_FILES,
    DataCorruptError,
    DataNotFoundError,
    check_data_root,
    data_root,
)

__all__ = [
    "MASK_THRESHOLD",
    "NUM_SEGMENTATION_CLASSES",
    "DOMAINS",
    "SPLITS",
    "MNIST_COUNTS",
    "USPS_COUNTS",
    "BACKGROUNDS",
    "USPS_LAYOUTS",
    "DataNotFoundError",
    "DataCorruptError",
    "data_root",
    "check_data_root",
    "digits",
    "segmentation",
    "DigitsDataset",
    "SegmentationDataset",
    "compose",
    "masks_from_digits",
]
