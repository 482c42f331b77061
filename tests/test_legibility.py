"""Every figure the chapters make reads on the page: drawn at the page's width, its smallest text,
scaled to the width the page shows the PNG at, is at least the theme's caption size
(``mcr2.plots.CAPTION_PX``). Each chapter's figures are built here as the chapter builds them,
through the same ``plot_*`` functions, from small fake records and synthetic numbers; the chapters
also pass every figure through ``legible`` before gluing it, so an executed book checks its own."""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from test_plots import fake_record  # noqa: E402

from mcr2 import plots  # noqa: E402
from mcr2.plots import (  # noqa: E402
    CAPTION_PX,
    image_grid,
    label_rows,
    legibility,
    legible,
    page_figure,
    page_mosaic,
)
from mcr2.summary import one_profile  # noqa: E402

BOOK = Path(__file__).resolve().parents[1] / "book"
PREVIEWS = 8  # fixed validation images a run keeps (EvalConfig.preview_images)
SMALLEST: dict[str, float] = {}  # figure -> smallest text on the page, px (printed by the last test)


@pytest.fixture(autouse=True, scope="module")
def _style():
    plots.use_style()
    yield
    matplotlib.rcdefaults()


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def seg(name, seed=0, switch_epoch=2):
    """A fake segmentation record with as many previews as a real one."""
    rec = fake_record(name, seed, switch_epoch)
    rng = np.random.default_rng(seed)
    for key, value in list(rec.artefacts.items()):
        if key.startswith("preview_"):
            rec.artefacts[key] = np.concatenate([value, value])[:PREVIEWS]
    rec.artefacts["preview_pred"] = rng.integers(0, 11, size=(PREVIEWS, 28, 28)).astype(np.uint8)
    return rec


def check(name, fig):
    m = legibility(fig)
    SMALLEST[name] = m.smallest_px
    assert m.texts > 0, f"{name}: no text drawn"
    assert m.smallest_px >= CAPTION_PX, (f"{name}: {m.text!r} is {m.smallest_px:.1f} px on the page "
                                         f"(PNG {m.png_width_px:.0f} px shown at {m.shown_width_px:.0f})")
    assert m.png_width_px <= 700 + 1, f"{name}: {m.png_width_px:.0f} px wide, the page shows 700"


# --------------------------------------------------------------------------- the measure itself


def test_measure_scales_a_wide_figure_down():
    fig, ax = plt.subplots(figsize=(14, 4))
    ax.set_title("wide", fontsize=10)
    m = legibility(fig)
    assert m.shown_width_px == 700 and m.png_width_px > 1000
    assert m.smallest_px == pytest.approx(min(10, plt.rcParams["xtick.labelsize"]) / 72 * 100 * m.scale, rel=0.02)
    with pytest.raises(ValueError, match="wide-figure.*floor"):
        legible(fig, name="wide-figure")


def test_measure_a_page_figure_at_its_own_size():
    fig, ax = page_figure()
    ax.plot([0, 1], [0, 1], label="a line")
    ax.legend()
    m = legibility(fig)
    assert m.png_width_px <= 700 and m.scale == 1
    assert m.smallest_px == pytest.approx(plots.SMALL_PT / 72 * 100)
    assert legible(fig) is fig


def test_chapters_check_every_figure_they_glue():
    """Every figure a chapter glues goes through ``legible``, and none sets its own size."""
    for path in sorted(BOOK.glob("*.py")):
        text = path.read_text()
        glued = re.findall(r"glue\(\s*\"[^\"]+\",\s*(\w+[^,]*),", text)
        figures = [g for g in glued if "fig" in g]
        assert all(g.startswith("legible(") for g in figures), f"{path.name}: {figures}"
        assert "figsize" not in text, f"{path.name} sizes a figure itself"
        assert "plt.subplots(" not in text, f"{path.name}: make figures with page_figure or image_grid"


# --------------------------------------------------------------------------- the chapters' figures


def test_01_rate_reduction():
    x = np.arange(1, 33)
    fig, axes = page_figure(1, 2, height=3.3, sharey=True)
    plots.plot_rate_curves(axes[0], x, 20 + x, 10 + x / 2, xlabel="dimension $r$ per class", title="collapse ↔ spread")
    plots.plot_rate_curves(axes[1], x, 20 + x, 10 + x / 2, xlabel=r"noise norm $\sigma$", title="noise, $r = 8$",
                           legend=False)
    check("01 rr-curves", fig)
    frame = pd.DataFrame([{"noise": s, "n_components": r, "repeat": i, "accuracy": 1 - s / 4}
                          for s in np.linspace(0, 3, 7) for r in (1, 4, 8) for i in range(3)])
    fig, ax = page_figure(height=3.3)
    plots.plot_subspace_accuracy(ax, frame, xlabel=r"noise norm $\sigma$", chance=0.25)
    check("01 ns-accuracy", fig)
    fig, axes = page_figure(1, 3, height=3.0)
    Z, y = torch.randn(200, 32), torch.arange(4).repeat_interleave(50)
    for ax, name in zip(axes, ("$r = 1$", "$r = 8$", "$r = d = 32$")):
        plots.plot_cosine_similarity(ax, Z, y, title=f"{name}\n$\\Delta R$ = 12.3", cbar=ax is axes[-1])
    check("01 cosine", fig)


def test_02_datasets():
    rng = np.random.default_rng(0)
    fig, axes = image_grid(6, 8, titles=True)
    for r in range(3):
        plots.plot_samples(axes[2 * r: 2 * r + 2], rng.random((8, 3, 28, 28)), rng.integers(0, 11, (8, 28, 28)),
                           labels=torch.arange(8))
    label_rows(axes[::2, 0], ["MNIST", "USPS", "MNIST on\nCIFAR-100"])
    label_rows(axes[1::2, 0], ["mask"] * 3)
    check("02 samples", fig)
    fig, ax = page_figure(height=3.0)
    plots.plot_class_counts(ax, {k: rng.integers(150, 250, 10) for k in ("MNIST", "USPS", "DIGITS")})
    ax.set_title("training images per digit (first 2000 of each split)")
    ax.legend(ncol=3, loc="lower center")
    check("02 counts", fig)
    fig, axes = page_mosaic([["mnist", "usps", "pad"], ["size", "size", "size"]], height=5.6, height_ratios=[1, 1.25])
    for key in ("mnist", "usps", "pad"):
        plots.plot_mean_image(axes[key], rng.random((5, 1, 28, 28)), "USPS padded")
    plots.plot_digit_size(axes["size"], {k: rng.integers(10, 21, 100) for k in ("MNIST", "USPS (resized)", "USPS (padded)")})
    check("02 gap", fig)


@pytest.mark.parametrize("mixed", [False, True])
def test_03_classification(mixed):
    colors = {"MCR²": plots.METHOD_COLORS["mcr2"], "CE": plots.METHOD_COLORS["ce"]}
    fig, axes = page_figure(2, 2, height=6.2, sharey=True)
    for ax, (title, domains) in zip(axes.flat, [("(a) trained on DIGITS", ("mnist", "usps")),
                                                ("(b) MNIST only; USPS resized", ("mnist", "usps")),
                                                ("(c) MNIST only; USPS padded", ("usps",))]):
        ce = fake_record("cls_mnist_ce", 0)
        if mixed:  # a paper CE run of many more epochs beside a smoke MCR² run: one is left out
            ce = fake_record("cls_mnist_ce", 0)
            object.__setattr__(ce.config, "profile", "paper")
        kept, dropped = one_profile({"MCR²": [fake_record("cls_mnist_mcr2", s) for s in (0, 1, 2)], "CE": [ce]})
        assert len(dropped) == int(mixed)
        plots.plot_accuracy_curves(ax, kept, domains=domains, colors=colors, title=title)
        ax.get_legend().remove()
    axes[1, 1].set_axis_off()
    axes[1, 1].legend(handles=[plt.Line2D([], [], color="k", label="MNIST validation")] * 4, loc="center")
    check("03 accuracy", fig)


def test_segmentation_panels_04_05_06():
    check("04 panels", plots.segmentation_panels_figure({"MCR²": [seg("seg_mnist_mcr2")], "CE": [seg("seg_mnist_ce")]}))
    check("05 panels", plots.segmentation_panels_figure({"MCR²": [seg("seg_bg_mcr2")]}))
    check("06 panels", plots.segmentation_panels_figure({"without\nmasking": [seg("seg_bg_mcr2")],
                                                         "with\nmasking": [seg("seg_bg_mcr2_masked")]}))


def test_curves_04_05_06():
    runs = {"MCR²": [seg("seg_mnist_mcr2", s) for s in (0, 1, 2)], "CE": [seg("seg_mnist_ce", s) for s in (0, 1, 2)]}
    fig, axes = page_figure(1, 2, height=3.2)
    plots.plot_metric_curves(axes[0], runs, "mnist_foreground_acc", ylabel="non-background pixel accuracy")
    plots.plot_metric_curves(axes[1], runs, "mnist_mean_iou", ylabel="mean IoU (11 classes)")
    check("04 accuracy", fig)
    fig, ax = page_figure(height=3.4)
    plots.plot_rate_curves_over_training(ax, {"plain MNIST": runs["MCR²"], "MNIST over backgrounds": runs["CE"]})
    check("05 rates", fig)
    masked = [seg("seg_bg_mcr2_masked", s) for s in (0, 1, 2)]
    fig, ax = page_figure(height=4.0)
    plots.plot_background_head(ax, masked, collapsed_epochs=[3])
    check("06 head", fig)
    fig, axes = image_grid(3, PREVIEWS)
    plots.plot_masked_inputs(axes, masked)
    check("06 masked inputs", fig)
    mcr2_runs = {"MCR², masked": masked, "MCR², unmasked": runs["MCR²"]}
    fig, axes = page_figure(2, 1, height=6.0, sharex=True)
    plots.plot_rate_curves_over_training(axes[0], mcr2_runs, title="MCR² terms of the training batches")
    plots.plot_foreground_accuracy(axes[1], {**mcr2_runs, "CE": runs["CE"]}, title="validation accuracy over digit pixels")
    check("06 compare", fig)


def test_07_feature_space():
    unmasked, masked = seg("seg_bg_mcr2"), seg("seg_bg_mcr2_masked")
    labels = np.r_[np.zeros(1700, dtype=np.int64), np.repeat(np.arange(1, 11), 30)]  # mostly background, as at scale
    unmasked.artefacts.update(feature_sample=np.random.default_rng(0).normal(size=(len(labels), 16)), feature_labels=labels)
    fig, axes = page_figure(1, 2, height=3.9)
    plots.plot_feature_cosine(axes[0], [unmasked], title="without masking (bg kept)", cbar=False)
    plots.plot_feature_cosine(axes[1], [masked], exclude_background=True, title="with masking (digits)")
    assert "bg" in [t.get_text() for t in axes[0].get_xticklabels()]  # the background block is shown
    check("07 cosine", fig)


def test_08_scaling():
    rows = []
    for images in (10, 40, 128):
        for size in (28, 14, 7):
            t = 1e-3 * images * (size / 28) ** 2 + 1e-3
            rows.append({"images": images, "size": size, "pixels": images * 784, "rows": images * size * size,
                         "time_s": t, "time_s_lo": 0.9 * t, "time_s_hi": 1.1 * t, "memory_mib": images * size / 28,
                         "speedup": 28 / size, "speedup_lo": 25 / size, "speedup_hi": 30 / size,
                         "share": 0.1 * size / 28, "share_lo": 0.08 * size / 28, "share_hi": 0.12 * size / 28})
    cost = pd.DataFrame(rows)
    largest = cost[cost["images"] == 128]
    fig, axes = page_mosaic([["speed", "memory"], ["time", "time"]], height=6.2)
    plots.plot_speedup_vs_resolution(axes["speed"], largest)
    plots.plot_cost_vs_resolution(axes["memory"], largest, "memory_mib")
    axes["memory"].set_ylabel("memory kept for\nbackward (MiB)")
    for key in ("speed", "memory"):
        axes[key].set_xlabel("resolution of MCR²")
    plots.plot_cost_vs_pixels(axes["time"], cost, "time_s")
    check("08 cost", fig)  # draws it: the layout is done
    boxes = [axes[k].get_tightbbox() for k in ("speed", "memory", "time")]
    assert boxes[2].y1 < min(boxes[0].y0, boxes[1].y0), "the bottom panel overlaps the top ones"
    fig, ax = page_figure(height=3.4)
    plots.plot_share_vs_pixels(ax, cost, negligible=0.05)
    check("08 share", fig)
    runs = {s: [seg("seg_mnist_mcr2", i) for i in (0, 1, 2)] for s in (28, 14, 7)}
    fig, axes = page_figure(1, 2, height=3.3)
    plots.plot_accuracy_vs_resolution(axes[0], runs)
    axes[0].set_xlabel("resolution of MCR²")
    plots.plot_metric_curves(axes[1], {plots.resolution_label(s): r for s, r in runs.items()}, "mnist_foreground_acc",
                             ylabel="non-background pixel accuracy")
    check("08 accuracy", fig)


def test_09_claims():
    names = ["MCR² · MNIST [pad_random]", "CE · USPS [pad_random]", "R · backgrounds", "Rc · backgrounds",
             "lowest bg-head accuracy after the switch", "masked MCR²", "unmasked MCR²", "CE"]  # the ledger's longest
    q = pd.DataFrame({"claim": [2, 2, 3, 3, 4, 5, 5, 5], "label": ["2b", "2b", "3", "3", "4b", "5", "5", "5"],
                      "quantity": names, "experiment": "x", "profile": "paper",
                      "report": [0.989, 0.978, 45.5, 37.5, 0.99, 0.96, 0.88, 0.93],
                      "ours": [0.99, 0.97, 44.8, 36.0, 0.995, 0.95, 0.877, 0.94], "sd": 0.01, "n": 3})
    fig, ax = page_figure(height=0.3 * len(q) + 1.3)
    plots.plot_claims(ax, q)
    check("09 claims", fig)


def test_10_faithfulness():
    rng = np.random.default_rng(0)
    below = 3.0
    fig, axes = image_grid(3, 8, titles=True, below_in=below)
    for i in range(3):
        plots.plot_samples(axes[i], rng.random((8, 1, 28, 28)), labels=[str(c) for c in range(8)])
    label_rows(axes[:, 0], ["MNIST", "USPS\nresize", "USPS\npad_random"])
    height = fig.get_figheight()
    ax = plots.plot_digit_size(fig.add_axes((0.12, 0.55 / height, 0.86, (below - 0.8) / height)),
                               {k: rng.integers(10, 21, 100) for k in ("MNIST", "USPS, resize", "USPS, pad_random")})
    ax.set_xlabel("digit height (px, bounding box of pixels ≥ 0.3)")
    ax.legend(loc="upper left")
    check("10 usps layouts", fig)
    fig, axes = image_grid(3, 8)
    plots.plot_samples(axes[:2], rng.random((8, 3, 28, 28)), rng.integers(0, 11, (8, 28, 28)))
    plots.plot_samples(axes[2:], rng.random((8, 3, 28, 28)))
    label_rows(axes[:, 0], ("seed 0", "mask", "seed 1"))
    check("10 backgrounds", fig)


def test_intro_profile_plan():
    plan = {f"seg_bg_mcr2_masked_{i}": ("paper" if i % 2 else "smoke", [0, 1, 2][: 1 + i % 3]) for i in range(12)}
    fig, ax = page_figure(height=0.32 * len(plan) + 1.2)
    plots.plot_profile_plan(ax, plan, paper_seeds=3)
    check("intro plan", fig)


def test_zz_smallest_text_measured():
    """The smallest text of all the figures above (run last: a summary for the log)."""
    if not SMALLEST:
        pytest.skip("run with the figure tests")
    name, px = min(SMALLEST.items(), key=lambda kv: kv[1])
    print(f"\nsmallest text on the page: {px:.1f} px ({name}); floor {CAPTION_PX} px; {len(SMALLEST)} figures")
    assert px >= CAPTION_PX
