# %% [markdown]
# # Scaling MCR²
#
# In segmentation every pixel is a row of $Z$: a batch of $B$ images of 28×28 gives
# $m = 784B$ rows, and the MCR² loss forms a $d \times d$ Gram per class from all of them. The
# report leaves as future work computing MCR² at a lower resolution. Here the U-Net's features
# are average-pooled to $s \times s$ cells (14×14 or 7×7) and put back on the unit sphere, each
# cell takes the majority label of its pixels, and a mixed cell is **weighted** by the share of its
# majority label (a pure cell weighs 1; no cell is dropped), see `mcr2.loss.pooled_rows`. Only the
# loss changes: the model and its per-pixel predictions stay at full resolution.
#
# We measure (a) what the loss costs, in time and memory, against the resolution and the pixels
# per batch, and which share of a training step it takes; (b) what the pooling does to the final
# accuracy, by training the same model with MCR² at each resolution.

# %% tags=["parameters"]
profile = "smoke"  # smoke (CPU, seconds per run) | paper (the report's scale, needs a GPU or stored records)
seeds = None  # None: the profile's default seeds (smoke: [0]; paper: [0, 1, 2]), or a list of ints
device = "auto"  # where missing runs train and the cost is measured: "auto" (CUDA if available), "cpu" or "cuda"
retrain = False  # True: train again even where a complete run record exists
progress = "auto"  # training progress: "auto", "bar", "lines" or "off"
resolutions = [28, 14, 7]  # cells per side MCR² is computed at; 28 is full resolution (every pixel a row)

# %%

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown
from myst_nb import glue

from mcr2.engine import resolve_device, run_all
from mcr2.experiments import experiment
from mcr2.plots import (
    final_run_values,
    plot_accuracy_vs_resolution,
    plot_cost_vs_pixels,
    plot_cost_vs_resolution,
    plot_metric_curves,
    plot_share_vs_pixels,
    plot_throughput_vs_resolution,
    resolution_label,
    use_style,
)
from mcr2.records import default_runs_dir, records_table
from mcr2.summary import settings_text

# The same measuring functions as benchmarks/bench_resolution.py.
from mcr2.profiling import FULL, device_name, measure_loss, measure_unet

use_style()
resolutions = sorted({int(s) for s in resolutions}, reverse=True)
if FULL not in resolutions:
    raise ValueError(f"resolutions {resolutions} must include {FULL} (full resolution), the reference of every ratio")
NAME = "seg_mnist_mcr2"  # see the note below on the masked experiment
exp = experiment(NAME, profile)
dev = resolve_device(device)
print(f"profile: {profile}; cost measured on {device_name(dev)}; model of {NAME}: U-Net width "
      f"{exp.model.width}, depth {exp.model.depth}, d {exp.model.feature_dim}, k {exp.num_classes}")

# %% [markdown]
# ## What the loss costs
#
# On random unit features and random labels of batches of 10 to 128 images (about 8k to 100k
# pixels; up to the paper's 1000 images on the paper profile) we time the forward and backward
# pass of the loss (the fastest of five repeats after a warm-up: a shared machine's load only
# adds time), with the feature dimension and
# class count of the profile's segmentation model. Memory is the CUDA allocator's peak on a GPU;
# on a CPU it is the memory autograd keeps for the backward pass. The share of a step compares
# the loss with the forward and backward pass of the profile's U-Net on the same batch (no
# optimiser step or data loading, so the share is an upper bound).

# %%
images_per_batch = [10, 32, 64, 128] if profile == "smoke" else [10, 128, 512, 1000]
repeats = 5  # timed calls per measurement; the fastest counts
d, k = exp.model.feature_dim, exp.num_classes
rows = []
for images in images_per_batch:
    unet_s = measure_unet(images, exp.model.width, exp.model.depth, d, repeats=repeats, device=dev, stat="min")
    for r in measure_loss(images, d, k, resolutions, repeats=repeats, device=dev, stat="min"):
        rows.append({**r, "images": images, "unet_s": unet_s, "share": r["time_s"] / (r["time_s"] + unet_s)})
cost = pd.DataFrame(rows)
cost.assign(time_ms=1e3 * cost["time_s"], unet_ms=1e3 * cost["unet_s"]).round(3)[
    ["images", "pixels", "size", "rows", "time_ms", "memory_mib", "speedup", "unet_ms", "share"]]

# %%
NEGLIGIBLE = 0.05  # a loss under 5% of a step is what we call negligible
largest = cost[cost["images"] == max(images_per_batch)].set_index("size")
coarsest = min(resolutions)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
plot_cost_vs_resolution(axes[0], largest.reset_index(), "time_s")
plot_cost_vs_resolution(axes[1], largest.reset_index(), "memory_mib")
axes[1].set_ylabel("peak memory (MiB)" if dev.type == "cuda" else "memory kept for backward (MiB)")
plot_cost_vs_pixels(axes[2], cost, "time_s")
glue("08-cost", fig, display=False)
plt.close(fig)

memory_kind = "the CUDA allocator's peak" if dev.type == "cuda" else "the memory autograd keeps for the backward pass"
glue("08-cost-setting", Markdown(f"d = {d}, k = {k}, on {device_name(dev)}; memory is {memory_kind}"), display=False)
glue("08-images", int(max(images_per_batch)), display=False)
glue("08-speedup-coarsest", float(largest.loc[coarsest, "speedup"]), display=False)
glue("08-memory-ratio-coarsest", float(largest.loc[FULL, "memory_mib"] / largest.loc[coarsest, "memory_mib"]), display=False)
glue("08-coarsest", Markdown(resolution_label(coarsest)), display=False)
print("at", max(images_per_batch), "images:", ", ".join(
    f"{resolution_label(s)} {1e3 * largest.loc[s, 'time_s']:.1f} ms, {largest.loc[s, 'memory_mib']:.1f} MiB"
    for s in resolutions))

# %% [markdown]
# ```{glue:figure} 08-cost
# :name: fig-08-cost
#
# Forward+backward cost of the MCR² loss on random unit features: time (left) and memory (middle)
# against the resolution the loss is computed at, for a batch of {glue:text}`08-images` images;
# time against the pixels per batch, one line per resolution (right, log-log). Fastest of five
# repeats on a machine that may be shared: {glue:md}`08-cost-setting`.
# ```
#
# At {glue:md}`08-coarsest` the loss runs {glue:text}`08-speedup-coarsest:.1f` times faster than
# at full resolution and keeps {glue:text}`08-memory-ratio-coarsest:.1f` times less memory for
# its backward pass ({numref}`fig-08-cost`). Both go with the rows of $Z$: pooling to $s \times s$
# leaves $(s/28)^2$ of them, so 14×14 keeps a quarter and 7×7 a sixteenth. The time falls by less
# than that, because part of the loss does not depend on $m$: the $k+1$ log-determinants of
# $d \times d$ matrices, and the pooling and the majority vote, which read every pixel.

# %%
fig, ax = plt.subplots(figsize=(6, 3.6), constrained_layout=True)
plot_share_vs_pixels(ax, cost, negligible=NEGLIGIBLE)
glue("08-share", fig, display=False)
plt.close(fig)

share = largest["share"]
glue("08-share-full", 100 * float(share.loc[FULL]), display=False)
glue("08-share-coarsest", 100 * float(share.loc[coarsest]), display=False)
below = [s for s in resolutions if share.loc[s] < NEGLIGIBLE]
if below:
    verdict = (f"falls below {NEGLIGIBLE:.0%} of a step from {resolution_label(max(below))} on "
               f"(at {max(images_per_batch)} images)")
else:
    verdict = (f"stays above {NEGLIGIBLE:.0%} of a step at every resolution measured "
               f"(at {max(images_per_batch)} images, lowest {100 * share.min():.1f}%)")
glue("08-negligible", Markdown(verdict), display=False)
print("loss share of a step at", max(images_per_batch), "images:",
      ", ".join(f"{resolution_label(s)} {100 * share.loc[s]:.1f}%" for s in resolutions), "->", verdict)

# %% [markdown]
# ```{glue:figure} 08-share
# :name: fig-08-share
#
# Share of a training step taken by the MCR² loss: loss time over loss time plus the U-Net's
# forward+backward time on the same batch, against the pixels per batch, one line per
# resolution; the dotted line is the 5% we call negligible. {glue:md}`08-cost-setting`.
# ```
#
# With {glue:text}`08-images` images per batch the loss takes {glue:text}`08-share-full:.1f`% of
# a step at full resolution and {glue:text}`08-share-coarsest:.1f`% at {glue:md}`08-coarsest`;
# it {glue:md}`08-negligible` ({numref}`fig-08-share`). Both the loss (its Grams) and the U-Net
# grow linearly with the batch, so beyond small batches, where the loss's fixed part weighs most,
# the share depends on the resolution and on the width of the model far more than on the batch
# size. The wider U-Net of the paper profile makes a step dearer, and so the loss's share smaller,
# than on the smoke profile.

# %% [markdown]
# ## What pooling does to accuracy
#
# We train the segmentation model of plain MNIST (`seg_mnist_mcr2`: MCR² over all pixels,
# background included, as in {doc}`04_segmentation`) with MCR² at each resolution. The masked
# experiment on CIFAR-100 backgrounds (`seg_bg_mcr2_masked`) would be the natural one, but on the
# smoke profile its background head can collapse after MCR² is switched on (the non-background
# accuracy then falls to nearly zero, as it did in our smoke run at full resolution), which would
# hide any effect of the pooling.

# %%
runs = {
    size: run_all([NAME], profile, seeds, runs_dir=default_runs_dir(profile), retrain=retrain, device=device,
                  progress=progress, **{"loss.mcr2_resolution": None if size == FULL else size})[NAME]
    for size in resolutions
}
settings = settings_text(runs)
glue("08-settings", Markdown(settings), display=False)
print(f"profile: {profile}; {settings}")
records_table(runs).assign(resolution=[resolution_label(s) for s, recs in runs.items() for _ in recs])

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
plot_accuracy_vs_resolution(axes[0], runs)
plot_throughput_vs_resolution(axes[1], runs)
plot_metric_curves(axes[2], {resolution_label(s): recs for s, recs in runs.items()}, "mnist_foreground_acc",
                   ylabel="non-background pixel accuracy")
glue("08-accuracy", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} 08-accuracy
# :name: fig-08-accuracy
#
# `seg_mnist_mcr2` trained with MCR² at each resolution, predictions at full resolution: final
# validation accuracy over the pixels whose truth is a digit (left), training throughput (middle;
# measured on a machine that may be shared) and the accuracy over training (right);
# {glue:md}`08-settings`.
# ```

# %%
acc = final_run_values(runs).set_index("size")["mean"]
speed = final_run_values(runs, "train_images_per_s").set_index("size")["mean"]
glue("08-acc-full", float(acc.loc[FULL]), display=False)
glue("08-acc-coarsest", float(acc.loc[coarsest]), display=False)
glue("08-speed-ratio", float(speed.loc[coarsest] / speed.loc[FULL]), display=False)
print("final non-background accuracy:", ", ".join(f"{resolution_label(s)} {acc.loc[s]:.3f}" for s in resolutions))
print("training images/s:", ", ".join(f"{resolution_label(s)} {speed.loc[s]:.1f}" for s in resolutions))
if profile == "smoke":
    print("smoke profile: one seed of a narrow U-Net trained for a few epochs on a few hundred images; "
          "too small to conclude how the resolution of the loss affects accuracy.")

# %% [markdown]
# Trained with MCR² at full resolution the model labels {glue:text}`08-acc-full:.3f` of the digit
# pixels correctly; at {glue:md}`08-coarsest`, {glue:text}`08-acc-coarsest:.3f`, and it trains
# {glue:text}`08-speed-ratio:.2f` times as many images per second ({numref}`fig-08-accuracy`).
# On the smoke profile (see the settings above: one seed, a narrow model, a few epochs on a few
# hundred images, a shared CPU) these numbers are far too small a test to conclude anything about
# the accuracy cost of pooling; the chapter shows that the switch trains end to end and how to
# measure it. At paper scale, with three seeds, the figure answers the question the report left
# open: whether the loss's cost can be cut by the factors of {numref}`fig-08-cost` without losing
# accuracy. A coarser loss cannot tell apart pixels within a cell; the full-resolution
# predictions rely on the decoder to sharpen what the loss only sees in blocks.
