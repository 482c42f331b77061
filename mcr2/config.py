"""Every knob of an experiment, one frozen dataclass per component, each field commented.

An :class:`Experiment` is plain data: it is hashed to key its run record, written into the record
as JSON, and rebuilt from it with :func:`experiment_from_dict`. The report's experiments and the
two profiles (``smoke``: CPU in seconds, ``paper``: the report's scale on a GPU) are data too,
in :mod:`mcr2.experiments`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

__all__ = [
    "DataConfig",
    "ModelConfig",
    "LossConfig",
    "OptimConfig",
    "EvalConfig",
    "Experiment",
    "experiment_from_dict",
    "config_key",
    "CODE_VERSION",
]

#: Part of every run record's key: bump it when a change alters what training produces, so old
#: records are retrained instead of being loaded as if they were current.
CODE_VERSION = "2026-11-26.1"


@dataclass(frozen=True)
class DataConfig:
    task: str = "classification"  # "classification" (one label per image) or "segmentation" (per pixel)
    train_domain: str = "mnist"  # "mnist" | "usps" | "digits" (MNIST and USPS interleaved, balanced)
    val_domains: tuple[str, ...] = ("mnist", "usps")  # validation = each domain's test split
    background: str | None = None  # segmentation only: None | "cifar100" (the report) | "cifar10" (authors' code)
    usps_layout: str = "resize"  # "resize" 16×16 into a centred 20×20 box (MNIST's convention) | "pad_random" (authors')
    train_limit: int | None = None  # first N training items (None = the whole split)
    val_limit: int | None = None  # first N items of each validation domain (None = all)
    seed: int = 0  # seed of the background pictures and crops: fixed, so every run sees the same images


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "resnet18"  # "resnet18" (classification) | "unet" (segmentation)
    width: int = 64  # channels of the first stage; the report's models use 64
    feature_dim: int = 128  # d, dimension of the learned features (unit-norm for MCR²)
    depth: int = 4  # U-Net down-samplings (28 → 14 → 7 → 3 → 1)
    head_hidden: int | None = None  # CE head: None = linear (authors' code), int = MLP hidden width (the report's "MLP")


@dataclass(frozen=True)
class LossConfig:
    kind: str = "mcr2"  # "mcr2" (features + nearest subspace) | "ce" (features + classifier head)
    eps_sq: float = 0.5  # ε², squared precision of the coding rate (0.5 in both codes)
    gamma: float = 1.0  # γ: loss = Rc − γ·R
    mcr2_weight: float = 1.0  # λ in CE(background head) + λ·MCR² with masking (the report: 1, a plain sum)
    background_mask: str | None = None  # None | "predicted" (report: the head's own mask) | "ground_truth" (authors')
    mask_threshold: float = 0.99  # background-head accuracy that switches MCR² on (report 0.99; authors 0.9)
    mask_check_images: int = 256  # fixed validation images on which that accuracy is measured
    mcr2_resolution: int | None = None  # MCR² on features pooled to N×N cells, labels by majority vote
    #                                     (cells weighted by their majority share); None = every pixel


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "sgd"  # "sgd" | "adam"
    lr: float = 0.003  # learning rate (classification 0.003 SGD; segmentation 1e-3 Adam)
    momentum: float = 0.0  # SGD momentum (the authors' code: none)
    weight_decay: float = 0.0  # L2 penalty
    lr_decay: float = 1.0  # ExponentialLR factor per epoch (segmentation: 0.96); 1 = constant
    epochs: int = 100  # passes over the training split
    batch_size: int = 500  # images per step
    amp: bool = True  # bf16 autocast + channels-last on CUDA (MCR² stays float32); ignored on CPU


@dataclass(frozen=True)
class EvalConfig:
    n_components: int | None = None  # r of the nearest-subspace classifier; None = d // k (authors' code)
    fit_limit: int | None = None  # training images whose features fit the classifier (None = all)
    every: int = 1  # evaluate every N epochs (and always after the last)
    recalibrate_bn: bool = True  # re-estimate BatchNorm statistics on the fit images before evaluating
    preview_images: int = 8  # fixed validation images whose predictions are kept (qualitative figures)
    feature_samples: int = 25_000  # random validation pixels for the cosine-similarity summary (Figure 7)
    feature_keep: int = 2_000  # of those, how many features are stored for the heatmap


@dataclass(frozen=True)
class Experiment:
    name: str  # the report's experiment this reproduces, e.g. "seg_bg_mcr2_masked"
    profile: str  # "smoke" | "paper" | "custom"
    seed: int = 0  # seeds weights, batch order and pixel sampling
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def num_classes(self) -> int:
        """k: 10 digits, or 11 per-pixel classes (background + 10 digits) for segmentation."""
        return 10 if self.data.task == "classification" else 11

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "Experiment":
        """Copy with fields changed; nested fields with dotted names: ``replace(**{"optim.epochs": 3})``."""
        top = {k: v for k, v in changes.items() if "." not in k}
        for key, value in changes.items():
            if "." in key:
                part, sub = key.split(".", 1)
                top[part] = dataclasses.replace(top.get(part, getattr(self, part)), **{sub: value})
        return dataclasses.replace(self, **top)


_PARTS = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "optim": OptimConfig, "eval": EvalConfig}


def experiment_from_dict(d: dict) -> Experiment:
    """Rebuild an :class:`Experiment` from its ``to_dict()`` (e.g. read back from a record)."""
    kwargs = dict(d)
    for name, cls in _PARTS.items():
        if name in kwargs:
            part = dict(kwargs[name])
            for f in dataclasses.fields(cls):
                if isinstance(part.get(f.name), list):
                    part[f.name] = tuple(part[f.name])
            kwargs[name] = cls(**part)
    return Experiment(**kwargs)


def config_key(exp: Experiment) -> str:
    """Stable hash of the experiment and :data:`CODE_VERSION`: the identity of its run record."""
    payload = json.dumps({"config": exp.to_dict(), "code_version": CODE_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]
