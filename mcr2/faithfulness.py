"""Where the report, its authors' code and this library differ, as data (FACTS.md: the data,
models and training sections, and "Known faults in the authors' code").

``DEVIATIONS`` has one entry per difference: what the report says, what the authors' code
(Axquaris/mcr2-semseg) does, what this library does by default, and the switch that gives the
other behaviour (``None`` where the authors' behaviour is a fault that is not offered).
``deviations_table(effects)`` gives it as a pandas DataFrame for the book's appendix, with the
effects measured from run records where the appendix measures them (never typed here).
"""
from __future__ import annotations

import pandas as pd

from .experiments import PROFILES

__all__ = ["DEVIATIONS", "BATCHNORM_TOPIC", "FIT_TOPIC", "deviations_table"]


def _smoke_scale() -> str:
    """The smoke profile's sizes, read from :data:`mcr2.experiments.PROFILES` (never retyped)."""
    cls, seg = PROFILES["smoke"]["classification"], PROFILES["smoke"]["segmentation"]
    return (f"smoke: width {cls['model']['width']}, d = {cls['model']['feature_dim']}, "
            f"{seg['data']['train_limit']}–{cls['data']['train_limit']} training images, "
            f"{cls['optim']['epochs']} / {seg['optim']['epochs']} epochs, SGD with momentum for classification, "
            f"masking threshold {seg['loss']['mask_threshold']}")


BATCHNORM_TOPIC = "BatchNorm statistics at evaluation"
FIT_TOPIC = "Images the nearest subspaces are fitted on"

#: kind: "report vs code" (both are defensible; the report is the default unless said otherwise),
#: "fault" (a bug in the authors' code; fixed here, not offered), "this book's choice" (a setting
#: that neither the report nor the authors' code fixes) or "profile" (the smoke profile's
#: departure from the report's scale, made so that a CPU renders the book in minutes).
DEVIATIONS: list[dict] = [
    dict(topic="Background pictures", kind="report vs code",
         report="CIFAR-100 (§2, MNIST_CIFAR_BG)",
         authors="CIFAR-10",
         default="CIFAR-100",
         switch='DataConfig.background = "cifar10"'),
    dict(topic="USPS layout in 28×28", kind="report vs code",
         report="not stated",
         authors="16×16 digit zero-padded unscaled at a random offset (a scale gap on top of the style gap)",
         default="resized into a centred 20×20 box, MNIST's convention",
         switch='DataConfig.usps_layout = "pad_random" (offset fixed per seed, split and index)'),
    dict(topic="Mask for MCR² on backgrounds", kind="report vs code",
         report="the background head's own predictions (§2.2.1)",
         authors="the ground-truth mask",
         default="predicted",
         switch='LossConfig.background_mask = "ground_truth"'),
    dict(topic="When masking switches on", kind="report vs code",
         report="background accuracy ≥ 99 % on validation (§2.2.1)",
         authors="≥ 0.9 on one validation batch",
         default="≥ 0.99 on a fixed set of validation images, checked after every epoch",
         switch="LossConfig.mask_threshold = 0.9; LossConfig.mask_check_images"),
    dict(topic="CE baseline head", kind="report vs code",
         report='an "MLP" over each feature vector (§2.2)',
         authors="a linear layer (classification) or 1×1 conv (segmentation)",
         default="linear, as the authors trained it (the report's numbers come from that code)",
         switch="ModelConfig.head_hidden = 512 (Linear → ReLU → Linear)"),
    dict(topic="Nearest-subspace dimension and centring", kind="report vs code",
         report="not stated",
         authors="r = d // k, uncentred second moments (original MCR² code: r = 30, class-mean centring)",
         default="r = d // k, uncentred",
         switch="EvalConfig.n_components = 30; NearestSubspace(r, center=True)"),
    dict(topic="Classifier statistics", kind="fault",
         report="—",
         authors="validation features added into the subspaces' statistics (a leak)",
         default="fitted on training features only",
         switch=None),
    dict(topic="Empty class in the argmin", kind="fault",
         report="—",
         authors="a class with no samples takes part in the argmin and can win",
         default="a class without training samples scores +∞ and is never predicted",
         switch=None),
    dict(topic="Pixels of Figure 7", kind="fault",
         report="25 000 randomly sampled validation pixels (§2.3)",
         authors="the first pixels of each class",
         default="a seeded random sample of validation pixels",
         switch="EvalConfig.feature_samples (how many)"),
    dict(topic="Digits per epoch", kind="fault",
         report="—",
         authors="each digit used 3 times in a row (item // 3): 20 000 distinct training digits",
         default="every digit once per epoch",
         switch=None),
    dict(topic="Batch order", kind="fault",
         report="—",
         authors="no shuffling: the same 50 batches every epoch",
         default="reshuffled every epoch from the run's seed",
         switch=None),
    dict(topic="Seeds", kind="fault",
         report="—",
         authors="none",
         default="weights, batch order, pixel samples and data draws seeded; the seed is in every run record",
         switch="Experiment.seed; DataConfig.seed (background pictures, crops, USPS offsets)"),
    dict(topic="Validation backgrounds", kind="fault",
         report="—",
         authors="random background crops drawn anew at every validation pass",
         default="one picture and crop per validation item, fixed by (seed, split, index)",
         switch=None),
    dict(topic="Dataset names", kind="fault",
         report="—",
         authors="'mnist' matched 'qmnist' by substring",
         default="exact names, anything else is an error",
         switch=None),
    dict(topic="Epochs", kind="this book's choice",
         report="not stated",
         authors=f"{PROFILES['paper']['classification']['optim']['epochs']} for classification; segmentation: not stated",
         default=(f"paper profile: {PROFILES['paper']['classification']['optim']['epochs']} for classification "
                  f"(the authors' code), {PROFILES['paper']['segmentation']['optim']['epochs']} for segmentation "
                  f"(this book's choice)"),
         switch="OptimConfig.epochs"),
    dict(topic=BATCHNORM_TOPIC, kind="this book's choice",
         report="not stated",
         authors="— (in eval mode PyTorch reads the running averages kept during training)",
         default=("re-estimated (cumulative average over one pass in training mode) on the training images the "
                  "classifier is fitted on, before every evaluation"),
         switch="EvalConfig.recalibrate_bn = False"),
    dict(topic=FIT_TOPIC, kind="this book's choice",
         report="not stated",
         authors="second moments accumulated over the training batches (and the validation ones: the leak above)",
         default=(f"the first {PROFILES['paper']['classification']['eval']['fit_limit']:,} (classification) / "
                  f"{PROFILES['paper']['segmentation']['eval']['fit_limit']:,} (segmentation) training images at the "
                  f"paper profile; all of them on the smoke profile"),
         switch="EvalConfig.fit_limit (None = all training images)"),
    dict(topic="Scale of the smoke profile", kind="profile",
         report="ResNet18 and U-Net (§2.1, §2.2); widths, d and epochs not stated",
         authors="width 64, d = 128",
         default=_smoke_scale(),
         switch='profile = "paper" (the authors\' widths and d, for a GPU)'),
]

_COLUMNS = {"topic": "topic", "kind": "kind", "report": "the report says", "authors": "the authors' code does",
            "default": "this book does by default", "switch": "switch for the other behaviour"}


def deviations_table(effects: dict[str, str] | None = None) -> pd.DataFrame:
    """``DEVIATIONS`` with readable column names; a missing switch reads "— (fault, not offered)".

    effects: ``{topic: text}``, the measured effect of a deviation (computed from run records by
    the caller), shown in a "measured effect" column ("—" for the others). Unknown topics raise.
    """
    frame = pd.DataFrame(DEVIATIONS)[list(_COLUMNS)].rename(columns=_COLUMNS)
    col = _COLUMNS["switch"]
    frame[col] = frame[col].fillna("— (fault, not offered)")
    if effects:
        unknown = set(effects) - set(frame["topic"])
        if unknown:
            raise KeyError(f"no deviation {', '.join(sorted(unknown))}; topics: {', '.join(frame['topic'])}")
        frame["measured effect"] = frame["topic"].map(effects).fillna("—")
    return frame
