"""Every knob of an experiment, one frozen dataclass per component, each field commented.

An :class:`Experiment` is plain data: it is hashed to key its run record, written into the record
as JSON, and rebuilt from it with :func:`experiment_from_dict`. The report's experiments and the
two profiles (``smoke``: CPU in seconds, ``paper``: the report's scale on a GPU) are data too,
in :mod:`mcr2.experiments`.

Every field is checked when a config is built (types, ranges, known choices, and the fields that
must agree, e.g. the model for the task), so a bad value fails with a :class:`ConfigError` naming
the field before any data is read or a run record is started. Integers given for float fields are
stored as floats (``lr=1`` is ``lr=1.0``) and lists as tuples, so equal settings give one key.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import types
import typing
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
    "field_names",
    "check_field_name",
    "parse_overrides",
    "CODE_VERSION",
    "ConfigError",
    "TASKS",
    "DOMAINS",
    "BACKGROUNDS",
    "USPS_LAYOUTS",
    "ARCHS",
    "LOSS_KINDS",
    "BACKGROUND_MASKS",
    "OPTIMIZERS",
    "PROFILE_NAMES",
    "LATER_FIELDS",
]

#: Part of every run record's key: bump it when a change alters what training produces, so old
#: records are retrained instead of being loaded as if they were current.
CODE_VERSION = "2026-11-26.1"

# The choices of the fields that take one of a few values (mcr2.data reads its own from here).
TASKS = ("classification", "segmentation")
DOMAINS = ("mnist", "usps", "digits")
BACKGROUNDS = (None, "cifar100", "cifar10")
USPS_LAYOUTS = ("resize", "pad_random")
ARCHS = {"classification": "resnet18", "segmentation": "unet"}  # the model each task uses
LOSS_KINDS = ("mcr2", "ce")
BACKGROUND_MASKS = (None, "predicted", "ground_truth")
OPTIMIZERS = ("sgd", "adam")
PROFILE_NAMES = ("smoke", "paper", "custom")
IMAGE_SIZE = 28  # every image is 28×28: bounds the U-Net depth and the pooled MCR² resolution


class ConfigError(ValueError):
    """A config field is unknown or holds a value it cannot take; the message names the field,
    what it got and what it accepts."""


_PREFIX = {}  # config class -> its dotted prefix in an Experiment ("data", "model", ...)


def _bad(where: str, name: str, value, wants: str) -> ConfigError:
    return ConfigError(f"{where}{name}={value!r} is not valid: {wants}")


def _check_part(obj) -> None:
    """Check every field of one config dataclass against its annotation and its range."""
    where = _PREFIX.get(type(obj), "")
    where = f"{where}." if where else ""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        kind = hints[f.name]
        optional = isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind)
        base = next(a for a in typing.get_args(kind) if a is not type(None)) if optional else kind
        if value is None:
            if not optional:
                raise _bad(where, f.name, value, f"a value is required ({_type_name(base)})")
            continue
        if base is bool:
            if not isinstance(value, bool):
                raise _bad(where, f.name, value, "true or false")
        elif base is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise _bad(where, f.name, value, "an integer" + (" or null" if optional else ""))
        elif base is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _bad(where, f.name, value, "a number")
            if not math.isfinite(value):
                raise _bad(where, f.name, value, "a finite number")
            object.__setattr__(obj, f.name, float(value))  # lr=1 and lr=1.0: one setting, one key
        elif base is str:
            if not isinstance(value, str):
                raise _bad(where, f.name, value, "a string")
        elif typing.get_origin(base) is tuple:
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise _bad(where, f.name, value, f'a list such as ["{value}"], not a single value'
                           if isinstance(value, str) else "a list")
            object.__setattr__(obj, f.name, tuple(value))
    for name, check in _RANGES.get(type(obj), {}).items():
        value = getattr(obj, name)
        if value is not None and not check[0](value):
            raise _bad(where, name, value, check[1])


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _type_name(t) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(t, str(t))


def _choice(options):
    shown = ", ".join("null" if o is None else repr(o) for o in options)
    return (lambda v: v in options), f"one of {shown}"


def _at_least(lo):
    return (lambda v: v >= lo), f"an integer ≥ {lo}"


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
    repeat_each: int = 1  # r: position i of an epoch shows item i // r, the first N/r items r times in a row
    #                       (the authors' code: 3, so 20 000 distinct digits; FACTS "Known faults"); 1 = each once

    def __post_init__(self):
        _check_part(self)


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "resnet18"  # "resnet18" (classification) | "unet" (segmentation)
    width: int = 64  # channels of the first stage; the report's models use 64
    feature_dim: int = 128  # d, dimension of the learned features (unit-norm for MCR²)
    depth: int = 4  # U-Net down-samplings (28 → 14 → 7 → 3 → 1)
    head_hidden: int | None = None  # CE head: None = linear (authors' code), int = MLP hidden width (the report's "MLP")

    def __post_init__(self):
        _check_part(self)


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
    mask_drop_background: bool = False  # masking: keep pixels whose true label is background (0) out of MCR² even
    #                                     where the head calls them foreground (False: they enter MCR² as class 0)

    def __post_init__(self):
        _check_part(self)


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
    shuffle: bool = True  # reshuffle the batches every epoch from the seed; False = the same batches in index order
    #                       every epoch (the authors' code; FACTS "Known faults")

    def __post_init__(self):
        _check_part(self)


@dataclass(frozen=True)
class EvalConfig:
    n_components: int | None = None  # r of the nearest-subspace classifier; None = d // k (authors' code)
    fit_limit: int | None = None  # training images whose features fit the classifier (None = all)
    every: int = 1  # evaluate every N epochs (and always after the last)
    recalibrate_bn: bool = True  # re-estimate BatchNorm statistics on the fit images before evaluating
    preview_images: int = 8  # fixed validation images whose predictions are kept (qualitative figures)
    feature_samples: int = 25_000  # random validation pixels for the cosine-similarity summary (Figure 7)
    feature_keep: int = 2_000  # of those, how many features are stored for the heatmap

    def __post_init__(self):
        _check_part(self)


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

    def __post_init__(self):
        _check_part(self)
        for name, cls in _PARTS.items():
            if not isinstance(getattr(self, name), cls):
                raise _bad("", name, getattr(self, name), f"a {cls.__name__} (set one of its fields as {name}.FIELD)")
        d, m, loss = self.data, self.model, self.loss
        if m.arch != ARCHS[d.task]:
            raise ConfigError(f"model.arch={m.arch!r} does not fit data.task={d.task!r}: "
                              + ", ".join(f"{a!r} for {t}" for t, a in ARCHS.items()))
        if d.background is not None and d.task != "segmentation":
            raise ConfigError(f"data.background={d.background!r} applies to segmentation only "
                              f"(data.task={d.task!r}): use null")
        if loss.background_mask is not None and (loss.kind != "mcr2" or d.task != "segmentation"):
            raise ConfigError(f"loss.background_mask={loss.background_mask!r} applies to MCR² segmentation only "
                              f"(loss.kind={loss.kind!r}, data.task={d.task!r}): use null")
        if loss.mask_drop_background and loss.background_mask is None:
            raise ConfigError("loss.mask_drop_background=true applies to background masking only "
                              "(loss.background_mask=null): set loss.background_mask or use false")
        if loss.mcr2_resolution is not None and d.task != "segmentation":
            raise ConfigError(f"loss.mcr2_resolution={loss.mcr2_resolution!r} applies to segmentation only: use null")
        if self.eval.n_components is not None and self.eval.n_components > m.feature_dim:
            raise ConfigError(f"eval.n_components={self.eval.n_components} exceeds model.feature_dim={m.feature_dim}")

    @property
    def num_classes(self) -> int:
        """k: 10 digits, or 11 per-pixel classes (background + 10 digits) for segmentation."""
        return 10 if self.data.task == "classification" else 11

    def to_dict(self) -> dict:
        """The config as plain data; a field of :data:`LATER_FIELDS` is left out while it holds the
        value every record written before it existed had, so those records keep their keys."""
        out = dataclasses.asdict(self)
        for dotted, default in LATER_FIELDS.items():
            part, name = dotted.split(".")
            if out[part][name] == default:
                del out[part][name]
        return out

    def replace(self, **changes) -> "Experiment":
        """Copy with fields changed; nested fields with dotted names: ``replace(**{"optim.epochs": 3})``.

        An unknown name raises :class:`ConfigError` listing the valid ones; the copy is checked
        as a whole, so changes that only agree together (e.g. task and arch) can be made at once.
        """
        top, nested = {}, {}
        for key, value in changes.items():
            check_field_name(key, groups=True)
            if "." in key:
                part, sub = key.split(".", 1)
                nested.setdefault(part, {})[sub] = value
            else:
                top[key] = value
        for part, subs in nested.items():
            top[part] = dataclasses.replace(top.get(part, getattr(self, part)), **subs)
        return dataclasses.replace(self, **top)


#: Fields added after run records were committed, with the value those records implicitly have. At that
#: value a field is absent from ``to_dict()`` (hence from the key), so adding a knob never retrains or
#: orphans a record; ``experiment_from_dict`` fills it back in from the dataclass default.
LATER_FIELDS: dict[str, object] = {
    "data.repeat_each": 1,
    "loss.mask_drop_background": False,
    "optim.shuffle": True,
}

_PARTS = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "optim": OptimConfig, "eval": EvalConfig}
_PREFIX.update({cls: name for name, cls in _PARTS.items()})

_POSITIVE = (lambda v: v > 0), "a number > 0"
_NON_NEGATIVE = (lambda v: v >= 0), "a number ≥ 0"
#: Ranges and choices per field (types come from the annotations).
_RANGES = {
    DataConfig: {
        "task": _choice(TASKS),
        "train_domain": _choice(DOMAINS),
        "val_domains": ((lambda v: len(v) > 0 and len(set(v)) == len(v) and all(x in DOMAINS for x in v)),
                        f"a non-empty list of distinct domains from {list(DOMAINS)}, e.g. [\"mnist\", \"usps\"]"),
        "background": _choice(BACKGROUNDS),
        "usps_layout": _choice(USPS_LAYOUTS),
        "train_limit": _at_least(1),
        "val_limit": _at_least(1),
        "seed": _at_least(0),
        "repeat_each": _at_least(1),
    },
    ModelConfig: {
        "arch": _choice(tuple(ARCHS.values())),
        "width": _at_least(1),
        "feature_dim": _at_least(1),
        "depth": ((lambda v: 1 <= v and 2**v <= IMAGE_SIZE), f"an integer from 1 to {int(math.log2(IMAGE_SIZE))} "
                  f"({IMAGE_SIZE}×{IMAGE_SIZE} images halve that often)"),
        "head_hidden": _at_least(1),
    },
    LossConfig: {
        "kind": _choice(LOSS_KINDS),
        "eps_sq": _POSITIVE,
        "gamma": _NON_NEGATIVE,
        "mcr2_weight": _NON_NEGATIVE,
        "background_mask": _choice(BACKGROUND_MASKS),
        "mask_threshold": ((lambda v: 0 < v <= 1), "an accuracy in (0, 1]"),
        "mask_check_images": _at_least(1),
        "mcr2_resolution": ((lambda v: 1 <= v <= IMAGE_SIZE), f"an integer from 1 to {IMAGE_SIZE}, or null"),
    },
    OptimConfig: {
        "optimizer": _choice(OPTIMIZERS),
        "lr": _POSITIVE,
        "momentum": ((lambda v: 0 <= v < 1), "a number in [0, 1)"),
        "weight_decay": _NON_NEGATIVE,
        "lr_decay": ((lambda v: 0 < v <= 1), "a factor in (0, 1] (1 = constant learning rate)"),
        "epochs": _at_least(1),
        "batch_size": _at_least(1),
    },
    EvalConfig: {
        "n_components": _at_least(1),
        "fit_limit": _at_least(1),
        "every": _at_least(1),
        "preview_images": _at_least(0),
        "feature_samples": _at_least(0),
        "feature_keep": _at_least(0),
    },
    Experiment: {
        # A name becomes a folder of the runs dir: nothing that could climb out of it or hide in it.
        "name": ((lambda v: re.fullmatch(r"[a-z][a-z0-9_]{0,63}", v) is not None),
                 "lower-case letters, digits and _, starting with a letter (it names a folder), e.g. cls_mnist_ce"),
        "profile": _choice(PROFILE_NAMES),
        "seed": _at_least(0),
    },
}


def field_names() -> list[str]:
    """Every settable field of an :class:`Experiment`, dotted: ``["name", ..., "optim.lr", ...]``."""
    names = [f.name for f in dataclasses.fields(Experiment) if f.name not in _PARTS]
    for part, cls in _PARTS.items():
        names += [f"{part}.{f.name}" for f in dataclasses.fields(cls)]
    return names


def check_field_name(key: str, groups: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``key`` names a field (``"seed"``, ``"optim.lr"``), or with
    ``groups=True`` also a whole group (``"optim"``, set to an :class:`OptimConfig`)."""
    part, dot, sub = key.partition(".")
    if not dot:
        if part in _PARTS and not groups:
            raise ConfigError(f"{key!r} is a group of fields, not one field; set one of: "
                              + ", ".join(f"{part}.{f.name}" for f in dataclasses.fields(_PARTS[part])))
        if part not in {f.name for f in dataclasses.fields(Experiment)}:
            raise ConfigError(f"unknown field {key!r}; fields: {', '.join(field_names())}")
        return
    if part not in _PARTS:
        raise ConfigError(f"unknown field {key!r}: {part!r} is not a group of fields "
                          f"(groups: {', '.join(_PARTS)}); fields: {', '.join(field_names())}")
    valid = [f.name for f in dataclasses.fields(_PARTS[part])]
    if sub not in valid:
        raise ConfigError(f"unknown field {key!r}; the fields of {part} are: "
                          + ", ".join(f"{part}.{v}" for v in valid))


def parse_overrides(items: list[str], option: str = "--set") -> dict:
    """Command-line ``FIELD=JSON`` items as overrides: ``["optim.epochs=3"] -> {"optim.epochs": 3}``.

    Field names are checked here (values when the experiment is built); a value that is not JSON
    raises :class:`ConfigError` showing how to quote it, e.g. ``--set data.background='"cifar10"'``.
    """
    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{option} {item!r} is not FIELD=VALUE, e.g. {option} optim.epochs=3")
        check_field_name(key)
        if "." not in key:
            raise ConfigError(f"{option} {key}=...: the seed, profile and name are chosen by --seeds, --profile "
                              f"and the experiment's name; {option} changes the fields of a group, e.g. optim.epochs")
        if key in out:
            raise ConfigError(f"{option} {key} is given twice")
        if not text.strip():
            raise ConfigError(f"{option} {item!r} has no value: write e.g. {key}=3, {key}=null or {key}='\"text\"'")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            fixed = json.dumps([text] if key == "data.val_domains" else text)
            raise ConfigError(
                f"{option} {item!r}: the value {text!r} is not JSON. Numbers, true, false and null go as "
                f"they are; a string needs JSON's double quotes, kept by the shell's single quotes: "
                f"{option} {key}='{fixed}'"
            ) from None
    return out


def experiment_from_dict(d: dict) -> Experiment:
    """Rebuild an :class:`Experiment` from its ``to_dict()`` (e.g. read back from a record)."""
    if not isinstance(d, dict):
        raise ConfigError(f"an experiment config must be a JSON object, got {type(d).__name__}")
    kwargs = dict(d)
    for key in kwargs:
        check_field_name(key, groups=True)
    for name, cls in _PARTS.items():
        if name in kwargs:
            if not isinstance(kwargs[name], dict):
                raise _bad("", name, kwargs[name], "a JSON object of its fields")
            part = dict(kwargs[name])
            for key in part:
                check_field_name(f"{name}.{key}")
            kwargs[name] = cls(**part)
    for required in ("name", "profile"):
        if required not in kwargs:
            raise ConfigError(f"the experiment config has no {required!r}")
    return Experiment(**kwargs)


def config_key(exp: Experiment) -> str:
    """Stable hash of the experiment and :data:`CODE_VERSION`: the identity of its run record."""
    payload = json.dumps({"config": exp.to_dict(), "code_version": CODE_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]
