"""Figures and tables of run records, from small fake records (no training): every ``plot_*``
of curves / segmentation / features draws something, and the summary numbers of Figure 7 are
right on hand-made features whose answer is known."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from mcr2.experiments import experiment  # noqa: E402
from mcr2.plots import (  # noqa: E402
    class_legend_handles,
    cosine_block_means,
    cosine_blocks,
    cosine_summary,
    epoch_stats,
    plot_accuracy_curves,
    plot_background_head,
    plot_feature_cosine,
    plot_foreground_accuracy,
    plot_masked_inputs,
    plot_metric_curves,
    plot_rate_curves_over_training,
    plot_segmentation_panels,
)
from mcr2.records import RunRecord  # noqa: E402
from mcr2.summary import cosine_summary_table, final_metrics_table, format_mean_sd, mean_sd, mean_sd_text  # noqa: E402

EPOCHS = 4
K = 11


def _history(columns: list[str], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(1, EPOCHS + 1):
        row = {"epoch": e, "loss": 1.0 / e, "R": 10 + e + rng.normal(0, 0.1), "Rc": 8 - e * 0.5, "lr": 1e-3,
               "mcr2_on": e > 1, "seconds": 1.0}
        row["delta_r"] = row["R"] - row["Rc"]
        for c in columns:
            row[c] = min(1.0, 0.5 + 0.1 * e + rng.normal(0, 0.01))
        rows.append(row)
    return pd.DataFrame(rows)


def _steps() -> pd.DataFrame:
    return pd.DataFrame([{"epoch": e, "step": 2 * (e - 1) + s, "loss": 1.0, "R": 10.0, "Rc": 8.0, "delta_r": 2.0,
                          "mcr2_on": True} for e in range(1, EPOCHS + 1) for s in (1, 2)])


def _orthogonal_features(per_class: int, classes=range(K), d: int = 16):
    """Class c on the c-th axis: within-class cosine 1, between-class 0."""
    labels = np.repeat(np.asarray(list(classes)), per_class)
    Z = np.eye(d)[labels]
    return Z, labels


def fake_record(name: str, seed: int = 0, switch_epoch: int | None = 2) -> RunRecord:
    """A RunRecord shaped like the engine's, with the real column names and artefact keys."""
    exp = experiment(name, "smoke", seed)
    seg = exp.data.task == "segmentation"
    masked = exp.loss.background_mask is not None
    if seg:
        cols = ["mnist_foreground_acc", "mnist_pixel_acc", "mnist_background_acc", "mnist_mean_iou",
                *[f"mnist_class{c}_acc" for c in range(K)]]
        if masked:
            cols += ["bg_check_acc", "mnist_bg_head_acc"]
    else:
        cols = ["mnist_acc", "usps_acc"]
    history = _history(cols, seed)
    artefacts = {}
    if seg:
        rng = np.random.default_rng(seed)
        n = 4
        channels = 3 if exp.data.background else 1
        masks = rng.integers(0, K, size=(n, 28, 28)).astype(np.uint8)
        artefacts = {
            "preview_images": rng.random((n, channels, 28, 28)).astype(np.float16),
            "preview_masks": masks,
            "preview_pred": rng.integers(0, K, size=(n, 28, 28)).astype(np.uint8),
        }
        if masked:
            artefacts["preview_fg_prob"] = rng.random((n, 28, 28)).astype(np.float16)
        Z, labels = _orthogonal_features(20)
        Z = Z + 0.05 * rng.normal(size=Z.shape)
        Z /= np.linalg.norm(Z, axis=1, keepdims=True)
        sums, pairs = cosine_blocks(Z, labels, K)
        artefacts.update(cosine_block_sums=sums, cosine_block_pairs=pairs,
                         feature_sample=Z.astype(np.float16), feature_labels=labels.astype(np.uint8))
    record = {"status": "complete", "summary": history.iloc[-1].to_dict(),
              "events": {"mask_switch_epoch": switch_epoch if masked else None}, "provenance": {}, "data": {},
              "wall_time_s": 1.0}
    return RunRecord(Path(f"/nonexistent/{name}/seed{seed}"), exp, record, history, _steps(), artefacts)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _drew(ax) -> bool:
    return bool(ax.lines or ax.collections or ax.images or ax.patches)


# --------------------------------------------------------------------------- curves


@pytest.mark.parametrize("seeds", [[0], [0, 1, 2]])
def test_accuracy_curves_and_table(seeds):
    runs = {"MCR²": [fake_record("cls_digits_mcr2", s) for s in seeds],
            "CE": [fake_record("cls_digits_ce", s) for s in seeds]}
    fig, ax = plt.subplots()
    assert plot_accuracy_curves(ax, runs) is ax
    assert len(ax.lines) == 4  # 2 runs × 2 domains
    assert (len(ax.collections) > 0) == (len(seeds) > 1)  # ±sd bands only with several seeds
    assert ax.get_legend() is not None

    table = final_metrics_table(runs, {"MNIST": "mnist_acc", "USPS": "usps_acc"},
                                report={"MCR²": {"MNIST": 0.989, "USPS": 0.978}})
    assert list(table.index) == ["MCR²", "CE"]
    assert table.loc["MCR²", "MNIST (report)"] == "0.989" and table.loc["CE", "USPS (report)"] == "—"
    assert ("±" in table.loc["CE", "MNIST"]) == (len(seeds) > 1)
    numeric = final_metrics_table(runs, {"MNIST": "mnist_acc"}, numeric=True)
    expected = np.mean([r.history["mnist_acc"].iloc[-1] for r in runs["CE"]])
    assert numeric.loc["CE", "MNIST"] == pytest.approx(expected)


def test_rate_and_foreground_curves():
    runs = {"masked": [fake_record("seg_bg_mcr2_masked", s) for s in (0, 1)],
            "unmasked": [fake_record("seg_bg_mcr2", 0)], "CE": [fake_record("seg_bg_ce", 0)]}
    fig, axes = plt.subplots(1, 3)
    assert plot_rate_curves_over_training(axes[0], runs, delta_r=True) is axes[0]
    assert len(axes[0].lines) == 9  # R, Rc, ΔR per run
    assert plot_foreground_accuracy(axes[1], runs) is axes[1]
    assert len(axes[1].lines) == 3
    assert plot_metric_curves(axes[2], runs, "mnist_mean_iou", colors={"CE": "k"}) is axes[2]
    with pytest.raises(KeyError, match="bg_check_acc"):
        epoch_stats(runs["CE"], "bg_check_acc")


def test_epoch_stats_mean_and_sd():
    recs = [fake_record("seg_bg_mcr2", s) for s in (0, 1, 2)]
    stats = epoch_stats(recs, "R")
    values = np.stack([r.history["R"].to_numpy() for r in recs])
    np.testing.assert_allclose(stats["mean"], values.mean(0))
    np.testing.assert_allclose(stats["sd"], values.std(0, ddof=1))
    assert (stats["n"] == 3).all()


def test_background_head_marks_switch_and_threshold():
    rec = fake_record("seg_bg_mcr2_masked", switch_epoch=3)
    fig, ax = plt.subplots()
    assert plot_background_head(ax, [rec]) is ax
    xs = [line.get_xdata() for line in ax.lines]
    ys = [line.get_ydata() for line in ax.lines]
    assert any(np.allclose(x, 3) for x in xs), "switch epoch not marked"
    assert any(np.allclose(y, rec.config.loss.mask_threshold) for y in ys), "threshold not drawn"
    assert any(line.get_label().startswith("masking switched") for line in ax.lines)
    # no switch: no switch line, still a figure
    fig, ax = plt.subplots()
    plot_background_head(ax, fake_record("seg_bg_mcr2_masked", switch_epoch=None), threshold=0.99)
    assert _drew(ax)
    assert not any(line.get_label().startswith("masking switched") for line in ax.lines)


# --------------------------------------------------------------------------- segmentation panels


def test_segmentation_panels():
    runs = {"MCR²": [fake_record("seg_mnist_mcr2")], "CE": [fake_record("seg_mnist_ce")]}
    fig, axes = plt.subplots(4, 3)
    assert plot_segmentation_panels(axes, runs) is axes
    assert all(len(ax.images) == 1 for ax in axes.ravel())
    truth = axes[1, 0].images[0].get_array()
    assert truth.shape == (28, 28, 3)
    assert axes[2, 0].get_ylabel() == "MCR²"
    fig.legend(handles=class_legend_handles(), ncol=11)
    with pytest.raises(ValueError, match="rows"):
        plot_segmentation_panels(plt.subplots(3, 3)[1], runs)


def test_segmentation_panels_refuse_different_images():
    a, b = fake_record("seg_mnist_mcr2", 0), fake_record("seg_mnist_ce", 1)
    with pytest.raises(ValueError, match="other validation images"):
        plot_segmentation_panels(plt.subplots(4, 2)[1], {"a": [a], "b": [b]})


@pytest.mark.parametrize("rows", [2, 3])
def test_masked_inputs(rows):
    rec = fake_record("seg_bg_mcr2_masked")
    fig, axes = plt.subplots(rows, 5)  # more columns than previews: the extra one is blank
    assert plot_masked_inputs(axes, [rec]) is axes
    masked = axes[1, 0].images[0].get_array()
    prob = rec.artefacts["preview_fg_prob"][0].astype(np.float32)
    assert np.all(np.asarray(masked)[prob <= 0.5] == 0)
    assert not axes[0, 4].axison
    with pytest.raises(KeyError, match="preview_fg_prob"):
        plot_masked_inputs(axes, [fake_record("seg_bg_mcr2")])


# --------------------------------------------------------------------------- feature space


def test_cosine_summary_orthogonal_classes():
    Z, labels = _orthogonal_features(5)
    sums, pairs = cosine_blocks(Z, labels, K)
    assert pairs[0, 0] == 5 * 4 and pairs[0, 1] == 25
    means = cosine_block_means(sums, pairs)
    np.testing.assert_allclose(np.diag(means), 1.0)
    s = cosine_summary(sums, pairs)
    assert s["within"] == pytest.approx(1.0) and s["between"] == pytest.approx(0.0)
    assert s["gap"] == pytest.approx(1.0) and s["classes"] == K


def test_cosine_summary_hand_made():
    # class 0: two copies of e0; class 1: e0 and e1 (cos 0); between: e0·e0 = 1 (×2), e0·e1 = 0 (×2)
    Z = np.array([[1.0, 0], [1, 0], [1, 0], [0, 1]])
    labels = np.array([0, 0, 1, 1])
    sums, pairs = cosine_blocks(Z, labels, 3)
    np.testing.assert_allclose(sums[:2, :2], [[2, 2], [2, 0]])
    np.testing.assert_allclose(pairs, [[2, 4, 0], [4, 2, 0], [0, 0, 0]])
    s = cosine_summary(sums, pairs)  # class 2 is empty: skipped, never a NaN mean
    assert s["within"] == pytest.approx(0.5) and s["between"] == pytest.approx(0.5) and s["classes"] == 2
    only0 = cosine_summary(sums, pairs, classes=[0])
    assert only0["within"] == pytest.approx(1.0) and np.isnan(only0["between"])


def test_cosine_summary_absolute_between():
    # off-diagonal block means +0.2 and -0.2: they cancel signed, not in absolute value
    means = np.array([[1.0, 0.2, -0.2], [0.2, 1.0, -0.2], [-0.2, -0.2, 1.0]])
    pairs = np.full((3, 3), 10.0)
    signed = cosine_summary(means * pairs, pairs)
    absolute = cosine_summary(means * pairs, pairs, absolute_between=True)
    assert signed["between"] == pytest.approx(-0.2 / 3)
    assert absolute["between"] == pytest.approx(0.2) and absolute["gap"] == pytest.approx(0.8)
    assert absolute["within"] == signed["within"] == pytest.approx(1.0)


def test_cosine_blocks_match_brute_force():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(30, 5))
    labels = rng.integers(0, 4, size=30)
    sums, pairs = cosine_blocks(Z, labels, 4)
    U = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    for i in range(4):
        for j in range(4):
            vals = [U[a] @ U[b] for a in range(30) for b in range(30) if a != b and labels[a] == i and labels[b] == j]
            assert pairs[i, j] == len(vals)
            assert sums[i, j] == pytest.approx(sum(vals))


def test_cosine_summary_table_digits_only():
    recs = [fake_record("seg_bg_mcr2_masked", s) for s in (0, 1)]
    table = cosine_summary_table({"masked": recs}, numeric=True)
    assert table.loc["masked", "within (digits)"] > 0.95
    assert abs(table.loc["masked", "between (all)"]) < 0.05
    text = cosine_summary_table({"masked": recs})
    assert "±" in text.loc["masked", "within (all)"]


@pytest.mark.parametrize("exclude", [False, True])
def test_feature_cosine_heatmap(exclude):
    rec = fake_record("seg_bg_mcr2")
    fig, ax = plt.subplots()
    assert plot_feature_cosine(ax, [rec], exclude_background=exclude) is ax
    assert _drew(ax)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert ("bg" in labels) != exclude
    assert labels[-1] == "9"


def test_mean_sd_formatting():
    assert mean_sd([1.0, 3.0, float("nan")]) == (2.0, pytest.approx(np.sqrt(2)), 2)
    assert format_mean_sd(0.5, float("nan")) == "0.500"
    assert format_mean_sd(float("nan"), float("nan")) == "n/a"
    assert mean_sd_text([1.0, 3.0]) == "2.000 ± 1.414" and mean_sd_text([0.5]) == "0.500" and mean_sd_text([]) == "n/a"
