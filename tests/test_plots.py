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
    plot_profile_plan,
    plot_rate_curves_over_training,
    plot_segmentation_panels,
    segmentation_panels_figure,
)
from mcr2.records import RunRecord  # noqa: E402
from mcr2.summary import (  # noqa: E402
    cosine_block_sums,
    cosine_summary_table,
    final_metrics_table,
    format_mean_sd,
    mean_sd,
    mean_sd_text,
    one_profile,
    page_table,
    runs_behind,
    scale_text,
)

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
        sums, pairs = cosine_block_sums(Z, labels, K)
        artefacts.update(cosine_block_sums=sums, cosine_block_pairs=pairs,
                         cosine_abs_mean=np.asarray(cosine_blocks(Z, labels, K)),
                         cosine_class_counts=np.bincount(labels, minlength=K),
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


def test_segmentation_panels_show_the_previews_runs_share():
    """A paper run keeps 8 previews, a smoke run 6 of the same first validation images: 6 columns."""
    paper, smoke = fake_record("seg_mnist_mcr2", 0), fake_record("seg_mnist_ce", 0)
    for key in ("preview_images", "preview_masks", "preview_pred"):
        smoke.artefacts[key] = smoke.artefacts[key][:3]
    fig = segmentation_panels_figure({"MCR²": [paper], "CE": [smoke]})
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 4 * 3


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
    means = np.asarray(cosine_blocks(Z, labels, K))
    np.testing.assert_allclose(np.diag(means), 1.0)
    np.testing.assert_allclose(means[~np.eye(K, dtype=bool)], 0.0, atol=1e-12)
    s = cosine_summary(means)
    assert s["within"] == pytest.approx(1.0) and s["between"] == pytest.approx(0.0)
    assert s["gap"] == pytest.approx(1.0) and s["classes"] == K


def test_cosine_summary_hand_made():
    # class 0: two copies of e0; class 1: e0 and e1 (|cos| 0); between: e0·e0 = 1 (×2), e0·e1 = 0 (×2)
    Z = np.array([[1.0, 0], [1, 0], [1, 0], [0, 1]])
    labels = np.array([0, 0, 1, 1])
    means = np.asarray(cosine_blocks(Z, labels, 3))
    np.testing.assert_allclose(means[:2, :2], [[1, 0.5], [0.5, 0]])
    assert np.isnan(means[2]).all() and np.isnan(means[:, 2]).all()  # class 2 is empty: no pairs, no mean
    s = cosine_summary(means)  # class 2 skipped, never a NaN mean
    assert s["within"] == pytest.approx(0.5) and s["between"] == pytest.approx(0.5) and s["classes"] == 2
    only0 = cosine_summary(means, classes=[0])
    assert only0["within"] == pytest.approx(1.0) and np.isnan(only0["between"])
    sums, pairs = cosine_block_sums(Z, labels, 3)  # the signed sums records also store
    np.testing.assert_allclose(sums[:2, :2], [[2, 2], [2, 0]])
    np.testing.assert_allclose(pairs, [[2, 4, 0], [4, 2, 0], [0, 0, 0]])


def test_cosine_blocks_cannot_cancel():
    """A class used in both directions of its line: signed cosines average to 0 within, |cos| does not."""
    Z = np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]])
    labels = np.array([0, 0, 1, 1])
    means = np.asarray(cosine_blocks(Z, labels, 2))
    np.testing.assert_allclose(means, [[1, 0], [0, 1]], atol=1e-12)
    sums, pairs = cosine_block_sums(Z, labels, 2)
    np.testing.assert_allclose(np.diag(cosine_block_means(sums, pairs)), -1.0)


def test_cosine_blocks_match_brute_force():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(30, 5))
    labels = rng.integers(0, 4, size=30)
    sums, pairs = cosine_block_sums(Z, labels, 4)
    means = np.asarray(cosine_blocks(Z, labels, 4))
    U = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    for i in range(4):
        for j in range(4):
            vals = [U[a] @ U[b] for a in range(30) for b in range(30) if a != b and labels[a] == i and labels[b] == j]
            assert pairs[i, j] == len(vals)
            assert sums[i, j] == pytest.approx(sum(vals))
            assert means[i, j] == pytest.approx(np.mean(np.abs(vals)))


def test_cosine_summary_table_digits_only():
    recs = [fake_record("seg_bg_mcr2_masked", s) for s in (0, 1)]
    table = cosine_summary_table({"masked": recs}, numeric=True)
    assert table.loc["masked", "within (digits)"] > 0.95
    assert table.loc["masked", "between (all)"] < 0.1  # mean |cos| of orthogonal classes plus 0.05 noise
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


def test_feature_cosine_digits_only_sorted_and_legible():
    """Figure 7 at paper scale keeps ~85 % background pixels: the digits-only heatmap draws only
    digit rows, sorted by class, one centred label per class block."""
    rec = fake_record("seg_bg_mcr2")
    labels = np.r_[np.zeros(170, dtype=np.int64), np.repeat(np.arange(1, K), 3)]  # 170 bg, 3 per digit
    rng = np.random.default_rng(0)
    rec.artefacts.update(feature_sample=rng.normal(size=(len(labels), 16)), feature_labels=rng.permutation(labels))
    fig, ax = plt.subplots()
    plot_feature_cosine(ax, [rec], classes=range(1, K))
    assert ax.images[0].get_array().shape == (30, 30)
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == [str(c) for c in range(10)]
    np.testing.assert_allclose(ax.get_xticks(), 1.5 + 3 * np.arange(10))  # block centres
    fig, ax = plt.subplots()
    plot_feature_cosine(ax, [rec], exclude_background=True)  # the same selection
    assert ax.images[0].get_array().shape == (30, 30)
    # With the background kept, the 3-pixel digit blocks are too narrow for a label each: fewer
    # labels, never two closer than the axis length / 30.
    fig, ax = plt.subplots()
    plot_feature_cosine(ax, [rec])
    ticks = ax.get_xticks()
    assert len(ticks) < K and np.all(np.diff(ticks) >= 200 / 30)
    with pytest.raises(ValueError, match="no features"):
        plot_feature_cosine(ax, [rec], classes=[42])


def test_background_head_legend_outside_the_axes():
    fig, ax = plt.subplots()
    plot_background_head(ax, [fake_record("seg_bg_mcr2_masked", switch_epoch=2)], collapsed_epochs=[3, 4])
    fig.canvas.draw()
    legend, axes_box = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.y1 <= axes_box.y0, "the legend overlaps the plotting area"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels.count("head calls all pixels background") == 1  # two bands, one entry
    assert len(ax.patches) == 2


def test_profile_plan_bars():
    plan = {"a": ("paper", [0, 1, 2]), "b": ("paper", [0]), "c": ("smoke", [0])}
    fig, ax = plt.subplots()
    assert plot_profile_plan(ax, plan, paper_seeds=3) is ax
    widths = [p.get_width() for p in ax.patches]
    assert widths == [3, 1, 1]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    colours = {p.get_facecolor() for p in ax.patches}
    assert len(colours) == 2  # one per profile
    with pytest.raises(ValueError, match="empty"):
        plot_profile_plan(ax, {})


def test_mean_sd_formatting():
    assert mean_sd([1.0, 3.0, float("nan")]) == (2.0, pytest.approx(np.sqrt(2)), 2)
    assert format_mean_sd(0.5, float("nan")) == "0.500"
    assert format_mean_sd(float("nan"), float("nan")) == "n/a"
    assert mean_sd_text([1.0, 3.0]) == "2.000 ± 1.414" and mean_sd_text([0.5]) == "0.500" and mean_sd_text([]) == "n/a"


# --------------------------------------------------------------------------- provenance and tables


def test_runs_behind_shows_the_fields_records_have():
    plain = fake_record("seg_bg_mcr2", 0)
    plain.record.update(provenance={"git_commit": "0123456789abcdef", "git_dirty": False, "torch": "2.14.1",
                                    "device": {"type": "cpu", "name": "x86_64"}},
                        started="2026-11-26T13:40:00+0000", data={"train": {"N": 300}})
    graphed = fake_record("seg_bg_mcr2_masked", 1)
    graphed.record.update(provenance={"git_commit": "fedcba9876543210", "git_dirty": True,
                                      "device": {"type": "cuda", "name": "H100", "nondeterminism": "not bitwise"}},
                          started="2026-12-01T10:00:00+0000", graphed=True, launcher="torchrun", gpu_name="NVIDIA H200",
                          world_size=1)
    block = runs_behind({"unmasked": [plain], "masked": [graphed]})
    assert block.startswith("<details>") and block.rstrip().endswith("</details>")
    assert "Runs behind this page (2 run records" in block
    for shown in ("01234567", "fedcba98+dirty", "2026-11-26", "2026-12-01", "graphed", "not recorded",
                  "NVIDIA H200", "torchrun", "2.14.1", "Device note: not bitwise", "BatchNorm"):
        assert shown in block, shown
    assert "H100" not in block  # gpu_name, where a record has it, names the device
    with pytest.raises(ValueError, match="at least one"):
        runs_behind({})


def test_one_profile_and_scale_text():
    smoke, paper = fake_record("cls_mnist_mcr2", 0), fake_record("cls_mnist_ce", 0)
    object.__setattr__(paper.config, "profile", "paper")
    kept, left_out = one_profile({"MCR²": [smoke], "CE": [paper]})
    assert list(kept) == ["CE"] and list(left_out) == ["MCR²"]
    same, none = one_profile({"a": [smoke], "b": smoke})
    assert list(same) == ["a", "b"] and none == {}
    assert scale_text({"a": [fake_record("cls_mnist_mcr2", s) for s in (0, 1, 2)]}) == "profile smoke, 3 seeds"
    assert scale_text({"MCR²": [smoke], "CE": [paper]}) == "cls_mnist_mcr2: profile smoke, 1 seed; cls_mnist_ce: profile paper, 1 seed"


def test_page_table_has_no_index_name_row_and_fixed_formats():
    frame = pd.DataFrame({"acc": [0.91234, 0.5], "text": ["a long note", "b"]}, index=pd.Index(["x", "y"], name="run"))
    frame.columns.name = "metric"
    html = page_table(frame, digits=2, wrap=("text",)).to_html()
    assert "0.91" in html and "0.91234" not in html
    assert html.count("<tr>") == 3  # one header row (no index-name row), two rows of data
    assert ">run<" in html and "metric" not in html
    assert "overflow-x:auto" in html and "white-space: normal" in html
