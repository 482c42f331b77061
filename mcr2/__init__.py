"""mcr2: maximal coding rate reduction for multi-domain classification and segmentation.

Importing the package has no side effects (no rcParams, no network, no CUDA assumption).
"""
from .loss import IGNORE_INDEX, MCR2Loss, RateReduction, class_statistics, rate_reduction, rate_reduction_from_stats
from .subspace import NearestSubspace

__version__ = "0.1.0"

__all__ = [
    "IGNORE_INDEX",
    "MCR2Loss",
    "NearestSubspace",
    "RateReduction",
    "class_statistics",
    "rate_reduction",
    "rate_reduction_from_stats",
]
