"""The training engine: every experiment kind trains and records; records load, fail and switch as promised."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mcr2.engine as engine
import mcr2.masking as masking
from mcr2.loss import MCR2Loss
import mcr2.records as records
from mcr2.config import config_key, experiment_from_dict
from mcr2.experiments import EXPERIMENTS, experiment

pytestmark = pytest.mark.skipif(
    not (Path(__file__).resolve().parents[2] / "shared" / "data" / "MNIST").exists()
    and "MCR2_DATA" not in __import__("os").environ,
    reason="needs MNIST/USPS/CIFAR-100: set MCR2_DATA (CI points it at ../shared/data)",
)

TINY = {
    "data.train_limit": 40,
    "data.val_limit": 20,
    "optim.epochs": 2,
    "optim.batch_size": 20,
    "eval.feature_samples": 500,
    "eval.feature_keep": 100,
    "loss.mask_check_images": 10,
}


@pytest.fixture(autouse=True)
def data_root(monkeypatch):
    import os

    if "MCR2_DATA" not in os.environ:
        monkeypatch.setenv("MCR2_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))


def tiny(name, seed=0, **more):
    return experiment(name, "smoke", seed, **{**TINY, **more})


@pytest.mark.parametrize("name", ["cls_digits_mcr2", "cls_mnist_ce", "seg_mnist_mcr2", "seg_bg_ce", "seg_bg_mcr2_masked"])
def test_each_kind_trains_records_and_reloads(name, tmp_path, monkeypatch):
    exp = tiny(name)
    rec = engine.run(exp, tmp_path, progress="off")
    assert rec.status == "complete"
    assert rec.path == records.record_dir(exp, tmp_path)
    assert len(rec.history) == 2 and (rec.history.epoch == [1, 2]).all()
    assert len(rec.steps) == 2 * 2  # 40 images / batch 20, two epochs
    assert np.isfinite(rec.history[["loss", "R", "Rc", "delta_r"]].to_numpy()).all()
    prov = rec.record["provenance"]
    for key in ("git_commit", "git_dirty", "torch", "torchvision", "python", "device"):
        assert key in prov
    assert rec.config == exp and rec.record["key"] == config_key(exp)
    assert rec.record["wall_time_s"] > 0
    assert rec.record["cuda_graphs"] is False  # CPU: eager steps, and the record says so
    if exp.data.task == "segmentation":
        for key in ("preview_images", "preview_masks", "preview_pred", "cosine_block_sums", "feature_sample"):
            assert key in rec.artefacts
        assert "mnist_foreground_acc" in rec.history
        assert 0.0 <= rec.summary["mnist_pixel_acc"] <= 1.0
        assert rec.record["data"]["train"]["N"] == 40
    else:
        assert {"mnist_acc", "usps_acc"} <= set(rec.history.columns)
    # No pickle anywhere: every artefact loads with allow_pickle=False (load_record does).
    with np.load(rec.path / "artefacts.npz", allow_pickle=False) as npz:
        stored = set(npz.files)
    if "feature_sample" in rec.artefacts:  # stored as int8 + scale, loaded as float32
        assert {"feature_sample_q8", "feature_sample_scale"} <= stored
        stored = stored - {"feature_sample_q8", "feature_sample_scale"} | {"feature_sample"}
    assert stored == set(rec.artefacts)
    # A second call loads the record instead of training.
    monkeypatch.setattr(engine._Trainer, "train", lambda self: pytest.fail("retrained a complete record"))
    again = engine.run(exp, tmp_path)
    assert again.path == rec.path and again.history.equals(rec.history)


def test_same_seed_same_history_on_cpu(tmp_path):
    a = engine.run(tiny("seg_mnist_mcr2"), tmp_path / "a", progress="off")
    b = engine.run(tiny("seg_mnist_mcr2"), tmp_path / "b", progress="off")
    cols = [c for c in a.history.columns if c != "seconds"]
    assert a.history[cols].equals(b.history[cols])
    assert a.steps.equals(b.steps)
    c = engine.run(tiny("seg_mnist_mcr2", seed=1), tmp_path / "c", progress="off")
    assert not a.steps["loss"].equals(c.steps["loss"])


def test_nan_loss_fails_the_run_with_a_clear_error(tmp_path, monkeypatch):
    real = MCR2Loss.forward

    def poisoned(self, Z, labels, weights=None):
        out = real(self, Z, labels, weights)
        return out._replace(loss=out.loss * float("nan"))

    monkeypatch.setattr(MCR2Loss, "forward", poisoned)
    exp = tiny("cls_mnist_mcr2")
    with pytest.raises(engine.TrainingDiverged, match=r"loss became nan at epoch 1"):
        engine.run(exp, tmp_path, progress="off")
    record = json.loads((records.record_dir(exp, tmp_path) / "record.json").read_text())
    assert record["status"] == "failed" and "TrainingDiverged" in record["error"]
    assert records.find_record(exp, tmp_path) is None  # a failed record is never loaded as a result


def test_interrupted_write_leaves_no_complete_record(tmp_path, monkeypatch):
    exp = tiny("seg_mnist_ce")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(records.np, "savez_compressed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        engine.run(exp, tmp_path, progress="off")
    assert records.find_record(exp, tmp_path) is None
    folder = records.record_dir(exp, tmp_path)
    if (folder / "record.json").exists():  # only the failed marker may exist
        assert json.loads((folder / "record.json").read_text())["status"] == "failed"
    assert not list(folder.parent.glob(".tmp-*")), "temporary folders must be cleaned up"


def test_masking_switch_fires_exactly_at_the_threshold(tmp_path, monkeypatch):
    accuracies = iter([0.5, 0.98, 0.99, 0.995])
    monkeypatch.setattr(masking, "background_check", lambda *a, **k: next(accuracies))
    exp = tiny("seg_bg_mcr2_masked", **{"optim.epochs": 4, "loss.mask_threshold": 0.99})
    rec = engine.run(exp, tmp_path, progress="off")
    assert rec.record["events"]["mask_switch_epoch"] == 3
    assert rec.history["mcr2_on"].tolist() == [False, False, False, True]
    assert rec.history["bg_check_acc"].tolist() == [0.5, 0.98, 0.99, 0.995]
    assert rec.steps.groupby("epoch")["mcr2_on"].all().tolist() == [False, False, False, True]


def test_missing_record_is_not_trained_when_not_allowed(tmp_path):
    with pytest.raises(engine.RecordMissing, match="python -m mcr2 run cls_mnist_ce"):
        engine.run(tiny("cls_mnist_ce"), tmp_path, train_if_missing=False)


def test_config_round_trip_and_key():
    for name in EXPERIMENTS:
        exp = experiment(name, "paper", 2)
        again = experiment_from_dict(json.loads(json.dumps(exp.to_dict())))
        assert again == exp and config_key(again) == config_key(exp)
    assert config_key(experiment("seg_bg_ce", "smoke")) != config_key(experiment("seg_bg_ce", "smoke", 1))
    assert experiment("seg_bg_ce", "smoke", **{"optim.epochs": 1}).profile == "custom"
    with pytest.raises(KeyError, match="known:"):
        experiment("nope")


def test_device_resolution():
    assert engine.resolve_device("cpu") == torch.device("cpu")
    assert engine.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
