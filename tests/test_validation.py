"""Every config field is checked when an experiment is built: a bad value or an unknown name is a
ConfigError naming the field, before any data is read; the keys of valid configs do not change."""
from __future__ import annotations

import dataclasses
import json

import pytest

from mcr2.config import (
    ConfigError,
    DataConfig,
    Experiment,
    LossConfig,
    OptimConfig,
    config_key,
    experiment_from_dict,
    field_names,
    parse_overrides,
)
from mcr2.experiments import EXPERIMENTS, PROFILES, experiment

# (override, what the message must say): each was accepted before, or failed late and obscurely.
BAD = [
    ({"optim.epochs": "x"}, r"optim\.epochs='x' is not valid: an integer"),
    ({"optim.epochs": 2.5}, r"optim\.epochs=2\.5 is not valid: an integer"),
    ({"optim.epochs": 0}, r"optim\.epochs=0 is not valid: an integer ≥ 1"),
    ({"optim.batch_size": 0}, r"optim\.batch_size=0 .* ≥ 1"),
    ({"optim.lr": 0}, r"optim\.lr=0(\.0)? .* > 0"),
    ({"optim.lr": float("nan")}, r"optim\.lr=nan .* finite"),
    ({"optim.lr": True}, r"optim\.lr=True .* a number"),
    ({"optim.momentum": 1.5}, r"optim\.momentum"),
    ({"optim.optimizer": "rmsprop"}, r"optim\.optimizer='rmsprop' .* 'sgd', 'adam'"),
    ({"optim.amp": "yes"}, r"optim\.amp='yes' .* true or false"),
    ({"loss.eps_sq": 0}, r"loss\.eps_sq=0(\.0)? .* > 0"),
    ({"loss.eps_sq": float("inf")}, r"loss\.eps_sq=inf .* finite"),
    ({"loss.mask_threshold": 0}, r"loss\.mask_threshold=0(\.0)? .* \(0, 1\]"),
    ({"loss.mask_threshold": 1.2}, r"loss\.mask_threshold=1\.2"),
    ({"loss.kind": "hinge"}, r"loss\.kind='hinge' .* 'mcr2', 'ce'"),
    ({"loss.background_mask": "oracle"}, r"loss\.background_mask='oracle' .* null, 'predicted', 'ground_truth'"),
    ({"loss.mcr2_resolution": 0}, r"loss\.mcr2_resolution=0"),
    ({"data.val_domains": "mnist"}, r'data\.val_domains=\'mnist\' .* a list such as \["mnist"\]'),
    ({"data.val_domains": ["mnist", "svhn"]}, r"data\.val_domains=\('mnist', 'svhn'\) .* distinct domains"),
    ({"data.val_domains": []}, r"data\.val_domains=\(\) .* non-empty"),
    ({"data.background": "cifar"}, r"data\.background='cifar' .* null, 'cifar100', 'cifar10'"),
    ({"data.usps_layout": "pad"}, r"data\.usps_layout='pad'"),
    ({"data.task": "detection"}, r"data\.task='detection'"),
    ({"data.train_limit": 0}, r"data\.train_limit=0 .* ≥ 1"),
    ({"data.seed": -1}, r"data\.seed=-1 .* ≥ 0"),
    ({"model.depth": 5}, r"model\.depth=5 .* from 1 to 4"),
    ({"model.width": 0}, r"model\.width=0"),
    ({"model.arch": "resnet18"}, r"model\.arch='resnet18' does not fit data\.task='segmentation'"),
    ({"eval.n_components": 500}, r"eval\.n_components=500 exceeds model\.feature_dim"),
    ({"eval.every": 0}, r"eval\.every=0"),
    ({"loss.kind": "ce"}, r"loss\.background_mask='predicted' applies to MCR² segmentation only"),
]


@pytest.mark.parametrize("override, message", BAD, ids=[next(iter(o)) + "=" + repr(next(iter(o.values()))) for o, _ in BAD])
def test_bad_values_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        experiment("seg_bg_mcr2_masked", "smoke", 0, **override)


def test_bad_values_of_classification_and_top_level_fields():
    with pytest.raises(ConfigError, match=r"data\.background='cifar100' applies to segmentation only"):
        experiment("cls_mnist_mcr2", "smoke", 0, **{"data.background": "cifar100"})
    with pytest.raises(ConfigError, match=r"loss\.mcr2_resolution=7 applies to segmentation only"):
        experiment("cls_mnist_mcr2", "smoke", 0, **{"loss.mcr2_resolution": 7})
    with pytest.raises(ConfigError, match=r"^seed=-1 is not valid: an integer ≥ 0"):
        experiment("cls_mnist_mcr2", "smoke", -1)  # negative seeds were accepted
    with pytest.raises(ConfigError, match=r"profile='huge'"):
        Experiment(name="x", profile="huge")
    with pytest.raises(ConfigError, match=r"^data=3 is not valid: a DataConfig"):
        Experiment(name="x", profile="custom", data=3)
    with pytest.raises(ConfigError, match=r"optim\.epochs=None is not valid: a value is required"):
        OptimConfig(epochs=None)


@pytest.mark.parametrize("key, message", [
    ("foo.bar", r"unknown field 'foo\.bar': 'foo' is not a group of fields \(groups: data, model, loss, optim, eval\)"),
    ("optim.nope", r"unknown field 'optim\.nope'; the fields of optim are: optim\.optimizer, optim\.lr"),
    ("nope", r"unknown field 'nope'; fields: name, profile, seed, data\.task"),
    ("optim.lr.x", r"unknown field 'optim\.lr\.x'"),
])
def test_unknown_fields_list_the_valid_ones(key, message):
    """Fault: foo.bar=1 gave AttributeError, optim.nope=1 a TypeError about __init__."""
    base = experiment("seg_bg_mcr2", "smoke", 0)
    with pytest.raises(ConfigError, match=message):
        base.replace(**{key: 1})
    with pytest.raises(ConfigError, match=message):
        experiment("seg_bg_mcr2", "smoke", 0, **{key: 1})


def test_replace_checks_the_result_as_a_whole():
    exp = experiment("cls_mnist_mcr2", "smoke", 0)
    seg = exp.replace(**{"data.task": "segmentation", "model.arch": "unet"})  # valid only together
    assert seg.data.task == "segmentation" and seg.model.arch == "unet"
    eva = exp.replace(**{"eval.feature_samples": 50, "eval.feature_keep": 10})
    assert eva.eval.feature_samples == 50
    with pytest.raises(ConfigError, match="group of fields"):
        parse_overrides(["optim=3"])


def test_ints_for_floats_and_lists_for_tuples_are_one_setting():
    a = experiment("seg_bg_mcr2", "paper", 0, **{"optim.momentum": 0, "data.val_domains": ["mnist"]})
    b = experiment("seg_bg_mcr2", "paper", 0)
    assert a == b and a.profile == "paper" and config_key(a) == config_key(b)
    assert isinstance(a.optim.momentum, float) and a.data.val_domains == ("mnist",)
    assert hash(a) == hash(b)


def test_every_report_experiment_is_valid_and_round_trips():
    for name in EXPERIMENTS:
        for profile in PROFILES:
            exp = experiment(name, profile, 2)
            assert experiment_from_dict(json.loads(json.dumps(exp.to_dict()))) == exp


def test_experiment_from_dict_names_unknown_or_bad_fields():
    d = experiment("seg_bg_mcr2", "smoke", 0).to_dict()
    d["optim"]["nope"] = 1
    with pytest.raises(ConfigError, match=r"unknown field 'optim\.nope'"):
        experiment_from_dict(d)
    with pytest.raises(ConfigError, match="JSON object"):
        experiment_from_dict([])
    d = experiment("seg_bg_mcr2", "smoke", 0).to_dict()
    d["optim"]["epochs"] = "x"
    with pytest.raises(ConfigError, match=r"optim\.epochs='x'"):
        experiment_from_dict(d)
    del d["name"]
    d["optim"]["epochs"] = 3
    with pytest.raises(ConfigError, match="no 'name'"):
        experiment_from_dict(d)


@pytest.mark.parametrize("items, message", [
    (["data.background=cifar10"], r"""the value 'cifar10' is not JSON.* --set data\.background='"cifar10"'"""),
    (["data.val_domains=mnist"], r"""--set data\.val_domains='\["mnist"\]'"""),
    (["optim.epochs"], r"not FIELD=VALUE"),
    (["optim.epochs="], r"has no value"),
    (["optim.epochs=3", "optim.epochs=4"], r"given twice"),
    (["seed=1"], r"--seeds"),
    (["optim.nope=1"], r"unknown field 'optim\.nope'"),
])
def test_parse_overrides_errors_show_the_fix(items, message):
    """Fault: bad JSON gave a bare JSONDecodeError naming no item."""
    with pytest.raises(ConfigError, match=message):
        parse_overrides(items)


def test_parse_overrides_values():
    assert parse_overrides(['data.background="cifar10"', "optim.lr=1e-3", "model.head_hidden=null",
                            'data.val_domains=["mnist"]']) == {
        "data.background": "cifar10", "optim.lr": 1e-3, "model.head_hidden": None, "data.val_domains": ["mnist"]}


def test_field_names_cover_every_dataclass_field():
    names = field_names()
    for cls, part in ((DataConfig, "data"), (LossConfig, "loss"), (OptimConfig, "optim")):
        assert {f"{part}.{f.name}" for f in dataclasses.fields(cls)} <= set(names)
