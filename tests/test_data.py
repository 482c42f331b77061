"""Tests of mcr2.data (tiny fixtures in the real file formats, then the real files) and mcr2.plots.data."""
from __future__ import annotations

import bz2
import json
import os
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mcr2 import data as D  # noqa: E402
from mcr2.plots import data as P  # noqa: E402

N_MNIST = {"train": 12, "test": 6}
N_USPS = {"train": 5, "test": 4}
N_CIFAR = 20


# --------------------------------------------------------------------------- fixtures


def _write_idx(path: Path, array: np.ndarray):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _usps_text(values: np.ndarray, labels: np.ndarray) -> str:
    return "".join(
        f"{lab + 1} " + " ".join(f"{j + 1}:{v:.6f}" for j, v in enumerate(row)) + " \n"
        for row, lab in zip(values, labels)
    )


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    """A data root with tiny MNIST idx files, USPS LIBSVM bz2 files and a CIFAR-100 npz."""
    monkeypatch.setattr(D.datasets, "MNIST_COUNTS", dict(N_MNIST))
    monkeypatch.setattr(D.datasets, "USPS_COUNTS", dict(N_USPS))
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    truth = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        imgs = rng.integers(0, 256, (N_MNIST[split], 28, 28), dtype=np.uint8)
        labs = np.arange(N_MNIST[split]) % 10
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", imgs)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labs)
        vals = np.round(rng.uniform(-1, 1, (N_USPS[split], 256)), 6)
        ulabs = (np.arange(N_USPS[split]) * 3) % 10
        (tmp_path / D.USPS_FILES[split]).write_bytes(bz2.compress(_usps_text(vals, ulabs).encode()))
        truth[split] = dict(mnist=(imgs, labs), usps=(vals, ulabs))
    cifar = rng.integers(0, 256, (N_CIFAR, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "cifar100_images.npz", images=cifar, fine_labels=np.arange(N_CIFAR) % 100)
    truth["cifar"] = cifar
    monkeypatch.delenv("MCR2_DATA", raising=False)
    return tmp_path, truth


# --------------------------------------------------------------------------- root and errors


def test_data_root_order(tmp_path, monkeypatch):
    monkeypatch.delenv("MCR2_DATA", raising=False)
    repo = Path(D.__file__).resolve().parents[2]  # mcr2/data/__init__.py
    assert D.data_root() == repo / "data"
    monkeypatch.setenv("MCR2_DATA", str(tmp_path))
    assert D.data_root() == tmp_path
    assert D.data_root(tmp_path / "x") == (tmp_path / "x").resolve()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel").mkdir()
    monkeypatch.setenv("MCR2_DATA", "rel")
    assert D.data_root() == tmp_path / "rel"


@pytest.mark.parametrize("kw, bad", [
    (dict(domain="qmnist", split="train"), "domain"),
    (dict(domain="mnist", split="val"), "split"),
    (dict(domain="usps", split="train", usps_layout="pad"), "usps_layout"),
])
def test_bad_choices_list_valid_ones(kw, bad, tmp_path):
    with pytest.raises(ValueError, match=bad):
        D.digits(root=tmp_path, **kw)
    with pytest.raises(ValueError, match="background"):
        D.segmentation("mnist", "train", "imagenet", root=tmp_path)


def test_missing_root_message(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(D.DataNotFoundError) as e:
        D.digits("mnist", "train", root=missing)
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    assert "MNIST" in msg and "train-images-idx3-ubyte" in msg and str(missing) in msg and "MCR2_DATA" in msg
    with pytest.raises(D.DataNotFoundError, match="usps.t.bz2"):
        D.digits("usps", "test", root=missing)


def test_missing_backgrounds_message(fake_root):
    root, _ = fake_root
    (root / "cifar100_images.npz").unlink()
    with pytest.raises(D.DataNotFoundError) as e:
        D.segmentation("mnist", "test", "cifar100", root=root)
    assert "cifar-100-python" in str(e.value) and "cifar100_images.npz" in str(e.value)
    with pytest.raises(D.DataNotFoundError, match="cifar-10-batches-py"):
        D.segmentation("mnist", "test", "cifar10", root=root)


def test_corrupt_files(fake_root):
    root, _ = fake_root
    img = root / "MNIST/raw/t10k-images-idx3-ubyte"
    img.write_bytes(img.read_bytes()[:-10])  # truncated
    with pytest.raises(D.DataCorruptError, match="t10k-images-idx3-ubyte") as e:
        D.digits("mnist", "test", root=root)
    assert "MCR2_DATA" in str(e.value)
    (root / "usps.bz2").write_bytes(b"not bz2 at all")
    with pytest.raises(D.DataCorruptError, match="usps.bz2"):
        D.digits("usps", "train", root=root)
    (root / "usps.t.bz2").write_bytes(bz2.compress(b"1 1:0.5 2:0.5\n"))  # 2 features, 1 row
    with pytest.raises(D.DataCorruptError, match="256"):
        D.digits("usps", "test", root=root)
    (root / "cifar100_images.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(D.DataCorruptError, match="cifar100_images.npz"):
        D.segmentation("mnist", "train", "cifar100", root=root)


def test_wrong_count_is_corrupt(fake_root, monkeypatch):
    root, _ = fake_root
    monkeypatch.setattr(D.datasets, "USPS_COUNTS", {"train": 7291, "test": 2007})
    with pytest.raises(D.DataCorruptError, match="7291"):
        D.digits("usps", "train", root=root)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_usps_non_finite_values_name_the_file(fake_root, bad):
    """Fault: USPS values of ``nan`` loaded as NaN pixels (min/max of NaN pass every comparison)."""
    root, truth = fake_root
    vals, labs = truth["test"]["usps"]
    vals = vals.copy()
    vals[2, 6] = bad  # written as "7:nan" / "7:inf" / "7:-inf" on the third line
    (root / "usps.t.bz2").write_bytes(bz2.compress(_usps_text(vals, labs).encode()))
    D.datasets._usps_cached.cache_clear()
    with pytest.raises(D.DataCorruptError, match=r"usps\.t\.bz2") as e:
        D.digits("usps", "test", root=root)
    assert "row 3, feature 7" in str(e.value) and "not finite" in str(e.value)


def test_check_data_root_lists_what_is_missing(fake_root, tmp_path_factory, monkeypatch):
    root, _ = fake_root
    assert D.check_data_root(root) == root.resolve()
    assert D.check_data_root(root, domains=("digits",), backgrounds=()) == root.resolve()
    (root / "usps.bz2").unlink()
    with pytest.raises(D.DataNotFoundError, match=r"lacks usps\.bz2") as e:
        D.check_data_root(root)
    assert "MCR2_DATA" in str(e.value)
    assert D.check_data_root(root, domains=("mnist",)) == root.resolve()  # USPS not needed
    with pytest.raises(D.DataNotFoundError, match="cifar-10-batches-py"):
        D.check_data_root(root, domains=("mnist",), backgrounds=("cifar10",))
    missing = tmp_path_factory.mktemp("empty") / "nowhere"
    monkeypatch.setenv("MCR2_DATA", str(missing))
    with pytest.raises(D.DataNotFoundError, match="does not exist") as e:
        D.check_data_root()
    assert "chosen by MCR2_DATA" in str(e.value)
    with pytest.raises(ValueError, match="domain"):
        D.check_data_root(root, domains=("svhn",))


def test_data_choices_are_the_config_choices():
    from mcr2 import config

    assert (D.DOMAINS, D.BACKGROUNDS, D.USPS_LAYOUTS) == (config.DOMAINS, config.BACKGROUNDS, config.USPS_LAYOUTS)


# --------------------------------------------------------------------------- classification


def test_mnist_fixture(fake_root):
    root, truth = fake_root
    ds = D.digits("mnist", "train", root=root)
    imgs, labs = truth["train"]["mnist"]
    assert len(ds) == N_MNIST["train"]
    assert ds.images.shape == (N_MNIST["train"], 1, 28, 28) and ds.images.dtype == torch.float32
    assert torch.equal(ds.images[:, 0], torch.from_numpy(imgs).float() / 255)
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == labs.tolist()
    image, label = ds[3]
    assert image.shape == (1, 28, 28) and isinstance(label, int) and label == 3
    x, y = ds.tensors()
    assert torch.equal(x, ds.images) and torch.equal(y, ds.labels)
    assert (ds.domain == 0).all()
    json.dumps(ds.source)
    assert ds.source["N"] == len(ds) and "MNIST/raw/train-images-idx3-ubyte" in ds.source["files"]


def test_usps_resize_fixture(fake_root):
    root, truth = fake_root
    vals, labs = truth["test"]["usps"]
    ds = D.digits("usps", "test", root=root)
    assert ds.images.shape == (N_USPS["test"], 1, 28, 28)
    assert ds.labels.tolist() == labs.tolist() and (ds.domain == 1).all()
    assert ds.images.min() >= 0 and ds.images.max() <= 1
    inside = torch.zeros(28, 28, dtype=torch.bool)
    inside[4:24, 4:24] = True
    assert (ds.images[:, 0][:, ~inside] == 0).all()  # 20x20 box centred in 28x28
    # the box's mean is the 16x16 mean (area-preserving resize of (v+1)/2)
    expected = torch.from_numpy((vals + 1) / 2).float().mean(1)
    assert torch.allclose(ds.images[:, 0, 4:24, 4:24].mean((1, 2)), expected, atol=0.02)


def test_usps_pad_random_fixture(fake_root):
    root, truth = fake_root
    vals, _ = truth["train"]["usps"]
    digits16 = torch.from_numpy((vals + 1) / 2).float().reshape(-1, 16, 16)
    a = D.digits("usps", "train", root=root, usps_layout="pad_random", seed=1)
    b = D.digits("usps", "train", root=root, usps_layout="pad_random", seed=1)
    c = D.digits("usps", "train", root=root, usps_layout="pad_random", seed=2)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    for img, d16 in zip(a.images[:, 0], digits16):
        found = [(t, l) for t in range(13) for l in range(13) if torch.allclose(img[t:t + 16, l:l + 16], d16)]
        assert len(found) == 1
        t, l = found[0]
        rest = img.clone()
        rest[t:t + 16, l:l + 16] = 0
        assert (rest == 0).all()
    # the offset of item i does not depend on limit
    assert torch.equal(D.digits("usps", "train", root=root, usps_layout="pad_random", seed=1, limit=2).images, a.images[:2])


def test_digits_interleaved_and_limit(fake_root):
    root, truth = fake_root
    mn = D.digits("mnist", "train", root=root)
    us = D.digits("usps", "train", root=root)
    ds = D.digits("digits", "train", root=root)
    n = N_MNIST["train"]
    assert len(ds) == 2 * n and ds.domain_names == ("mnist", "usps")
    assert ds.domain.tolist() == [0, 1] * n  # alternating, so balanced in every even prefix
    assert torch.equal(ds.images[0::2], mn.images)
    rep = torch.arange(n) % N_USPS["train"]  # USPS repeated to MNIST's count
    assert torch.equal(ds.images[1::2], us.images[rep]) and torch.equal(ds.labels[1::2], us.labels[rep])
    small = D.digits("digits", "train", root=root, limit=6)
    assert len(small) == 6 and small.domain.bincount().tolist() == [3, 3]
    assert torch.equal(small.images, ds.images[:6]) and small.source["limit"] == 6
    test = D.digits("digits", "test", root=root)
    assert len(test) == N_MNIST["test"] + N_USPS["test"]
    assert test.domain.bincount().tolist() == [N_MNIST["test"], N_USPS["test"]]
    with pytest.raises(ValueError):
        D.digits("mnist", "train", root=root, limit=0)


# --------------------------------------------------------------------------- segmentation


def test_segmentation_plain_fixture(fake_root):
    root, _ = fake_root
    ds = D.segmentation("digits", "test", root=root)
    assert ds.images.shape == (len(ds), 1, 28, 28) and ds.num_channels == 1
    masks = ds.masks
    assert masks.dtype == torch.int64 and masks.shape == (len(ds), 28, 28)
    fg = ds.images[:, 0] >= D.MASK_THRESHOLD
    assert torch.equal(masks > 0, fg)
    assert torch.equal(masks[fg], (ds.labels[:, None, None] + 1).expand_as(masks)[fg])
    image, mask = ds[2]
    assert image.shape == (1, 28, 28) and torch.equal(mask, masks[2])
    x, m = ds.tensors()
    assert torch.equal(x, ds.images) and torch.equal(m, masks)


def test_segmentation_cifar100_npz_fixture(fake_root):
    root, truth = fake_root
    cifar = torch.from_numpy(truth["cifar"]).permute(0, 3, 1, 2)  # (N, 32, 32, 3) -> (N, 3, 32, 32)
    ds = D.segmentation("mnist", "train", "cifar100", root=root, seed=3)
    x, m = ds.tensors()
    assert x.shape == (len(ds), 3, 28, 28) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    assert torch.equal(m, D.masks_from_digits(ds.digits, ds.labels))
    fg = (ds.digits >= D.MASK_THRESHOLD).expand_as(x)
    assert torch.equal(x[fg], ds.digits.expand_as(x)[fg])  # the digit alone on its pixels
    for i in range(len(ds)):  # elsewhere: a 28x28 crop of the named picture, plus faint ink
        pic = cifar[ds.background_index[i]].float() / 255
        crops = [pic[:, t:t + 28, l:l + 28] for t in range(5) for l in range(5)]
        assert any(torch.allclose(x[i][~fg[i]], (c + ds.digits[i]).clamp(0, 1)[~fg[i]]) for c in crops)
    assert torch.equal(ds[4][0], x[4]) and torch.equal(ds[4][1], m[4])
    again = D.segmentation("mnist", "train", "cifar100", root=root, seed=3)
    assert torch.equal(again.images, x)
    assert torch.equal(D.segmentation("mnist", "train", "cifar100", root=root, seed=3, limit=4).images, x[:4])
    assert not torch.equal(D.segmentation("mnist", "train", "cifar100", root=root, seed=4).images, x)
    val = D.segmentation("mnist", "test", "cifar100", root=root, seed=3)
    assert set(ds.background_index.tolist()).isdisjoint(val.background_index.tolist())
    assert ds.source["background_source"] == "cifar100_images.npz"
    assert ds.source["background_pictures"] == int(0.8 * N_CIFAR)
    json.dumps(ds.source)


def test_compose_matches_definition():
    digit = torch.rand(4, 1, 28, 28)
    bg = torch.rand(4, 3, 28, 28)
    bg_before = bg.clone()
    out = D.compose(digit, bg)
    ref = torch.where(digit >= 0.3, digit.expand_as(bg), (bg + digit).clamp(0, 1))
    assert torch.equal(out, ref)
    assert torch.equal(bg, bg_before)  # compose does not modify its inputs


# --------------------------------------------------------------------------- plots


def test_plot_functions_draw():
    rng = np.random.default_rng(0)
    gray = torch.from_numpy(rng.random((3, 1, 28, 28), dtype=np.float32))
    rgb = rng.random((3, 3, 28, 28)).astype(np.float32)
    masks = torch.randint(0, 11, (3, 28, 28))
    fig, axes = plt.subplots(2, 3)
    try:
        assert P.plot_samples(axes, rgb, masks=masks, labels=[1, 2, 3]) is axes
        assert all(len(ax.get_images()) == 1 for ax in axes.ravel())
        fig2, row = plt.subplots(1, 3)
        P.plot_samples(row, gray, labels=torch.tensor([4, 5, 6]))
        assert row[0].get_title() == "4"
        ax = fig.add_subplot(3, 3, 9)
        assert P.plot_class_counts(ax, {"mnist": np.arange(10), "usps": torch.ones(10)}) is ax
        assert len(ax.patches) == 20
        ax2 = fig2.add_subplot(2, 2, 4)
        assert P.plot_mean_image(ax2, gray, "mean") is ax2 and len(ax2.get_images()) == 1
        ax3 = fig2.add_subplot(2, 2, 3)
        ext = P.digit_extent(gray)
        assert P.plot_digit_size(ax3, {"a": ext, "b": np.array([5, 6, 7])}) is ax3 and len(ax3.patches) == 2
    finally:
        plt.close("all")
    rgbmask = P.mask_to_rgb(masks)
    assert rgbmask.shape == (3, 28, 28, 3)
    assert P.SEGMENTATION_CMAP.N == 11 and len({tuple(c) for c in P.SEGMENTATION_COLORS}) == 11


def test_digit_extent():
    x = torch.zeros(3, 1, 28, 28)
    x[0, 0, 5:15, 10] = 0.9
    x[1, 0, 0, 0] = 0.5
    x[1, 0, 27, 3] = 0.2  # below threshold: ignored
    assert P.digit_extent(x).tolist() == [10, 1, 0]


# --------------------------------------------------------------------------- real data


def _real_root():
    env = os.environ.get("MCR2_DATA")
    repo = Path(D.__file__).resolve().parents[2]  # mcr2/data/__init__.py
    candidates = [D.data_root()] if env else []
    candidates.append((repo / ".." / "shared" / "data").resolve())
    for c in candidates:
        if (c / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file() and (c / "usps.bz2").is_file():
            return c
    return None


REAL = _real_root()
real = pytest.mark.skipif(
    REAL is None,
    reason="real data not found: set MCR2_DATA to the shared data folder (or place it at ../shared/data)",
)


@real
@pytest.mark.parametrize("domain, split, n", [
    ("mnist", "train", 60_000), ("mnist", "test", 10_000), ("usps", "train", 7_291), ("usps", "test", 2_007),
])
def test_real_sizes_and_ranges(domain, split, n):
    ds = D.digits(domain, split, root=REAL)
    assert len(ds) == n and ds.images.shape == (n, 1, 28, 28)
    assert ds.images.min() >= 0 and ds.images.max() <= 1
    assert ds.labels.min() == 0 and ds.labels.max() == 9 and len(ds.labels.unique()) == 10


@real
def test_real_digits_balance_and_determinism():
    ds = D.digits("digits", "train", root=REAL)
    assert len(ds) == 120_000 and ds.domain.bincount().tolist() == [60_000, 60_000]
    a = D.digits("usps", "test", root=REAL, usps_layout="pad_random", seed=0)
    b = D.digits("usps", "test", root=REAL, usps_layout="pad_random", seed=0)
    assert torch.equal(a.images, b.images)


@real
def test_real_segmentation_masks_and_validation():
    if not ((REAL / "cifar100_images.npz").is_file() or (REAL / "cifar-100-python").is_dir()):
        pytest.skip("no CIFAR-100 backgrounds (cifar-100-python/ or cifar100_images.npz) in the data root")
    val = D.segmentation("digits", "test", "cifar100", root=REAL)
    x, m = val.tensors()
    assert x.shape == (12_007, 3, 28, 28) and x.min() >= 0 and x.max() <= 1
    fg = val.digits[:, 0] >= 0.3
    assert torch.equal(m > 0, fg)
    assert torch.equal(m[fg], (val.labels[:, None, None] + 1).expand_as(m)[fg])
    assert val.domain.bincount().tolist() == [10_000, 2_007]
    again = D.segmentation("digits", "test", "cifar100", root=REAL)
    assert torch.equal(again.images, x)  # validation composites never change
    train = D.segmentation("mnist", "train", "cifar100", root=REAL, limit=5_000)
    t2 = D.segmentation("mnist", "train", "cifar100", root=REAL, limit=5_000)
    assert torch.equal(train.images, t2.images)
    assert set(train.background_index.tolist()).isdisjoint(val.background_index.tolist())


@real
def test_real_errors(tmp_path):
    with pytest.raises(D.DataNotFoundError) as e:
        D.segmentation("usps", "test", root=tmp_path / "missing")
    assert "USPS" in str(e.value) and "usps.t.bz2" in str(e.value) and "MCR2_DATA" in str(e.value)
    shutil.copy(REAL / "usps.t.bz2", tmp_path / "usps.t.bz2")
    good = (tmp_path / "usps.t.bz2").read_bytes()
    (tmp_path / "usps.t.bz2").write_bytes(good[: len(good) // 2])  # truncated download
    with pytest.raises(D.DataCorruptError) as e:
        D.digits("usps", "test", root=tmp_path)
    assert "USPS" in str(e.value) and "usps.t.bz2" in str(e.value) and "MCR2_DATA" in str(e.value)


def test_the_front_door_keeps_every_name():
    """mcr2.data is split into rooms (root, datasets, backgrounds); what it exported stays importable
    from it, and each name is the room's own object, not a copy."""
    from mcr2.data import backgrounds, datasets, root

    for name in D.__all__:
        assert hasattr(D, name), name
    assert D.compose is backgrounds.compose and D.masks_from_digits is backgrounds.masks_from_digits
    assert D.digits is datasets.digits and D.segmentation is datasets.segmentation
    assert D.check_data_root is root.check_data_root and D.DataCorruptError is root.DataCorruptError
    assert D.USPS_FILES is root.USPS_FILES and D.MASK_THRESHOLD == 0.3
