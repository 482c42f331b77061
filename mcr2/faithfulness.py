"""Where the report, its authors' code and this library differ, as data (FACTS.md: the data,
models and training sections, and "Known faults in the authors' code").

``DEVIATIONS`` has one entry per difference: what the report says, what the authors' code
(Axquaris/mcr2-semseg) does, what this library does by default, and the switch that gives the
other behaviour (``None`` where the authors' behaviour is a fault that is not offered).
``deviations_table(effects)`` gives it as a pandas DataFrame for the book's appendix, with the
effects measured from run records where the appendix measures them (never typed here).

Two of this book's evaluation choices are measured, each against the same run with the setting
changed (:func:`evaluation_arms`): :func:`measure_evaluation` loads those runs' records, trains the
missing ones where the profile allows it (the smoke profile anywhere, the paper profile on CUDA)
and otherwise leaves them missing with the command that makes them (:func:`missing_text`), so the
appendix renders what it has instead of failing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

import pandas as pd

from .config import Experiment
from .data import MNIST_COUNTS
from .experiments import PROFILES, experiment

__all__ = ["DEVIATIONS", "BATCHNORM_TOPIC", "FIT_TOPIC", "deviations_table", "Arm", "evaluation_arms",
           "evaluation_profile", "measure_evaluation", "evaluation_effects", "missing_text"]


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
#: "fault" (a bug in the authors' code; fixed here, offered as a switch only where chapter 11 measures
#: it), "this book's choice" (a setting that neither the report nor the authors' code fixes) or
#: "profile" (the smoke profile's
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
         switch="DataConfig.repeat_each = 3 (to measure the fault: chapter 11's seg_bg_ce_faults)"),
    dict(topic="Batch order", kind="fault",
         report="—",
         authors="no shuffling: the same 50 batches every epoch",
         default="reshuffled every epoch from the run's seed",
         switch="OptimConfig.shuffle = False (to measure the fault: chapter 11's seg_bg_ce_faults)"),
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


# --------------------------------------------------------------------------- evaluation choices, measured

#: The experiment each measured evaluation choice is measured on.
MEASURED_ON = {BATCHNORM_TOPIC: "cls_mnist_ce", FIT_TOPIC: "cls_mnist_mcr2"}


@dataclass(frozen=True)
class Arm:
    """One run of a measured evaluation choice: the experiment of ``profile`` with ``overrides``
    (only those that change it; the run's own profile is then "custom") and its record, None
    while missing."""

    topic: str  # the deviation it measures (BATCHNORM_TOPIC or FIT_TOPIC)
    label: str  # how this run evaluates, in words, e.g. "with the training-time running averages"
    profile: str  # the profile the overrides apply to: "smoke" or "paper"
    overrides: dict  # dotted field -> value, e.g. {"eval.recalibrate_bn": False}
    experiment: Experiment
    record: object | None = None  # its mcr2.records.RunRecord once found or trained

    def command(self) -> str:
        """The command line that trains this run's record."""
        sets = "".join(f" --set {field}={json.dumps(value)}" for field, value in self.overrides.items())
        exp = self.experiment
        return f"python -m mcr2 run {exp.name} --profile {self.profile} --seeds {exp.seed}{sets}"

    def describe(self) -> str:
        """e.g. "cls_mnist_ce seed 0 with eval.recalibrate_bn = false" (no overrides: the profile's run)."""
        sets = ", ".join(f"{field} = {json.dumps(value)}" for field, value in self.overrides.items())
        return f"{self.experiment.name} seed {self.experiment.seed}" + (f" with {sets}" if sets else "")


def _train_images(exp: Experiment) -> int:
    """Training images of an MNIST-trained classification run (its first ``train_limit``)."""
    return min(exp.data.train_limit or MNIST_COUNTS["train"], MNIST_COUNTS["train"])


def evaluation_arms(profile: str, seed: int = 0) -> list[Arm]:
    """The four runs that measure the two evaluation choices at ``profile`` ("smoke" or "paper"):
    BatchNorm statistics re-estimated or not (``cls_mnist_ce``), and the nearest subspaces fitted
    on all training images or on the paper profile's share of them (``cls_mnist_mcr2``; at the
    paper profile that share is its default, so the run on all images is the changed one)."""
    if profile not in ("smoke", "paper"):
        raise ValueError(f"evaluation_arms: profile must be 'smoke' or 'paper', got {profile!r}")
    share = PROFILES["paper"]["classification"]["eval"]["fit_limit"] / MNIST_COUNTS["train"]
    fit = MEASURED_ON[FIT_TOPIC]
    n_train = _train_images(experiment(fit, profile, seed))
    part = max(1, round(share * n_train))
    wanted = [
        (BATCHNORM_TOPIC, "re-estimated", {"eval.recalibrate_bn": True}),
        (BATCHNORM_TOPIC, "with the training-time running averages", {"eval.recalibrate_bn": False}),
        (FIT_TOPIC, f"fitted on all {n_train:,} training images", {"eval.fit_limit": None}),
        (FIT_TOPIC, f"on the first {part:,} ({share:.0%}, the paper profile's share)", {"eval.fit_limit": part}),
    ]
    arms = []
    for topic, label, overrides in wanted:
        base = experiment(MEASURED_ON[topic], profile, seed)
        changed = {k: v for k, v in overrides.items() if experiment(base.name, profile, seed, **{k: v}) != base}
        arms.append(Arm(topic, label, profile, changed, experiment(base.name, profile, seed, **changed)))
    return arms


def _may_train(profile: str, device) -> bool:
    """As :func:`mcr2.engine.run_all`: the paper profile trains on CUDA only, the smoke profile anywhere."""
    from .engine import resolve_device

    return profile != "paper" or resolve_device(device).type == "cuda"


def evaluation_profile(profile: str = "auto", seed: int = 0, device="auto") -> str:
    """The profile the appendix measures at: ``profile`` itself, or for "auto" the paper profile
    where CUDA is here to train its runs or all four have complete records, else smoke."""
    if profile != "auto":
        return profile
    if _may_train("paper", device):
        return "paper"
    from .records import complete_record_path, default_runs_dir

    complete = all(complete_record_path(a.experiment, default_runs_dir(a.experiment.profile))
                   for a in evaluation_arms("paper", seed))
    return "paper" if complete else "smoke"


def measure_evaluation(profile: str, seed: int = 0, *, device="auto", progress: str = "auto") -> list[Arm]:
    """:func:`evaluation_arms` with their records: loaded where complete, trained where the profile
    may train here (:func:`mcr2.engine.run`; records go to the default runs folder of each run's
    profile), else left None (:func:`missing_text` says how to make them). A damaged record raises."""
    from .engine import RecordMissing, run

    train = _may_train(profile, device)
    arms = []
    for arm in evaluation_arms(profile, seed):
        try:
            record = run(arm.experiment, device=device, progress=progress, train_if_missing=train)
        except RecordMissing:
            record = None
        arms.append(replace(arm, record=record))
    return arms


def _accuracy(rec) -> str:
    from .summary import final_value

    return f"MNIST {final_value(rec, 'mnist_acc'):.3f}, USPS {final_value(rec, 'usps_acc'):.3f}"


def evaluation_effects(arms: list[Arm]) -> dict[str, str]:
    """``{topic: text}`` for :func:`deviations_table`: per choice, the final accuracies of each of
    its runs ("no record yet" for a missing one), e.g. "paper cls_mnist_ce, seed 0: MNIST 0.991,
    USPS 0.712 re-estimated; with the training-time running averages: no record yet"."""
    by_topic: dict[str, list[Arm]] = {}
    for arm in arms:
        by_topic.setdefault(arm.topic, []).append(arm)
    out = {}
    for topic, group in by_topic.items():
        first = group[0]
        parts = [f"{_accuracy(a.record)} {a.label}" if a.record is not None else f"{a.label}: no record yet"
                 for a in group]
        exp = first.experiment
        out[topic] = f"{first.profile} {exp.name}, seed {exp.seed}: " + "; ".join(parts)
    return out


def missing_text(arms: list[Arm], chapter: str = "10_faithfulness") -> str:
    """Markdown naming the runs without a record and the commands that make them ("" when none):
    executing ``chapter`` at their profile on a GPU machine trains them all, or one command each."""
    missing = [a for a in arms if a.record is None]
    if not missing:
        return ""
    profile = missing[0].profile
    commands = "; ".join(f"`{a.command()}`" for a in missing)
    return (f"Not measured yet: no record of {'; '.join(a.describe() for a in missing)} "
            f"(the {profile} profile trains only on a GPU). On a machine with a GPU, "
            f"`python tools/book.py execute {chapter} --profile {profile}` trains them inside this chapter, "
            f"or one command each: {commands}.")
