# %% [markdown]
# # The datasets
#
# Every experiment of the report stands on four datasets (report §2):
#
# - **MNIST**: 60 000 training and 10 000 test handwritten digits, 28×28;
# - **USPS**: 7 291 training and 2 007 test digits, 16×16, written and processed differently;
# - **DIGITS**: MNIST and USPS interleaved so that both domains appear equally often per epoch
#   (USPS repeated about 8×);
# - **MNIST on natural-image backgrounds**: each MNIST digit laid over a 28×28 crop of a CIFAR-100
#   picture (the report's `MNIST_CIFAR_BG`).
#
# For segmentation every pixel has a class: 0 for background, $c+1$ for a pixel of digit $c$ whose
# intensity is at least 0.3 (the authors' threshold), so 11 classes in all. This chapter shows
# samples with their masks, the class balance, and the gap between the domains. The loaders are
# `mcr2.data.digits` and `mcr2.data.segmentation`; the appendix on faithfulness lists where they
# differ from the authors' code.

# %% tags=["parameters"]
profile = "auto"  # auto | smoke | paper: smoke counts classes on the first `count_limit` images, the others on all
seed = 0  # seed of the background pictures and crops (the runs use 0)
samples = 8  # images shown per dataset
count_limit = None  # images per split for counts and mean images (None: 2 000 on smoke, all otherwise)
progress = "auto"  # unused here (no training); kept so every chapter takes the same parameters

# %%
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display
from myst_nb import glue

from mcr2 import data as mdata
from mcr2.plots import digit_extent, plot_class_counts, plot_digit_size, plot_mean_image, plot_samples, use_style

use_style()
if count_limit is None:
    count_limit = 2_000 if profile == "smoke" else None
started = time.perf_counter()
print(f"profile={profile} seed={seed} count_limit={count_limit} data root={mdata.data_root()}")

# %%
test_sets = {
    "MNIST": mdata.digits("mnist", "test", limit=count_limit),
    "USPS": mdata.digits("usps", "test", limit=count_limit),
}
train_sets = {
    "MNIST": mdata.digits("mnist", "train", limit=count_limit),
    "USPS": mdata.digits("usps", "train", limit=count_limit),
    "DIGITS": mdata.digits("digits", "train", limit=count_limit),
}
backgrounds = mdata.segmentation("mnist", "test", background="cifar100", seed=seed, limit=samples)
plain = mdata.segmentation("mnist", "test", seed=seed, limit=samples)
usps_seg = mdata.segmentation("usps", "test", seed=seed, limit=samples)
def file_names(paths):
    """The files' names without their folders: the table stays narrow enough for the page."""
    return ", ".join(Path(p).name for p in paths)


sets = {**{f"{k} (train)": v for k, v in train_sets.items()}, **{f"{k} (test)": v for k, v in test_sets.items()}}
sources = pd.DataFrame(
    [{"dataset": name, "items": len(ds), "files": file_names(ds.source["files"])} for name, ds in sets.items()]
    + [{"dataset": "MNIST on backgrounds (test)", "items": len(backgrounds),
        "files": file_names(backgrounds.source["files"]) + f" + {backgrounds.source.get('background_source')}"}]
).set_index("dataset")
with pd.option_context("display.max_colwidth", None):  # every file name in full
    display(sources)

# %% [markdown]
# The backgrounds come from the file named in the last row: torchvision's `cifar-100-python` when
# it is in the data root, otherwise `cifar100_images.npz` (20 000 real CIFAR-100 pictures, split
# 80/20 into disjoint training and validation backgrounds). The picture and crop of each item are a
# pure function of (seed, split, index): the same item is the same image every epoch and on every
# machine.

# %% [markdown]
# ## Samples and their per-pixel masks

# %%
rows = [("MNIST", plain), ("USPS", usps_seg), ("MNIST on CIFAR-100", backgrounds)]
fig, axes = plt.subplots(2 * len(rows), samples, figsize=(1.1 * samples, 2.3 * len(rows)))
for r, (name, ds) in enumerate(rows):
    images, masks = ds.tensors()
    plot_samples(axes[2 * r: 2 * r + 2], images[:samples], masks[:samples], labels=ds.labels[:samples])
    axes[2 * r, 0].text(-0.15, 0.5, name, transform=axes[2 * r, 0].transAxes, rotation=90, va="center", ha="right", fontsize=9)
fig.tight_layout()
glue("02-samples", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} 02-samples
# :name: fig-02-samples
# Validation samples of each domain (top of each pair) and their per-pixel masks (below): black is
# background (class 0), each digit has its own colour (class $c+1$), the same colours in every
# chapter. USPS is resized into a 20×20 box centred in 28×28, MNIST's own convention.
# ```
#
# {numref}`fig-02-samples` shows that the mask of a digit over a background is exactly the mask of
# the digit alone: the label comes from the digit's intensity, never from the composite.

# %% [markdown]
# ## Class balance

# %%
counts = {name: np.bincount(ds.labels.numpy(), minlength=10) for name, ds in train_sets.items()}
domain_share = train_sets["DIGITS"].domain.bincount(minlength=2).tolist()
fig, ax = plt.subplots(figsize=(7, 3))
plot_class_counts(ax, counts)
ax.set_title(f"training images per digit (first {count_limit or 'all'} of each split)")
fig.tight_layout()
glue("02-counts", fig, display=False)
glue("02-digits-share", f"{domain_share[0]} MNIST / {domain_share[1]} USPS", display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} 02-counts
# :name: fig-02-counts
# Training images per digit class in each domain.
# ```
#
# In DIGITS the two domains alternate: of the items counted in {numref}`fig-02-counts`,
# {glue:text}`02-digits-share` come from each domain.

# %% [markdown]
# ## The domain gap at a glance

# %%
fig, axes = plt.subplots(1, 4, figsize=(10, 2.8), gridspec_kw={"width_ratios": [1, 1, 1, 2]})
plot_mean_image(axes[0], test_sets["MNIST"].images, "MNIST mean")
plot_mean_image(axes[1], test_sets["USPS"].images, "USPS mean")
usps_pad = mdata.digits("usps", "test", usps_layout="pad_random", limit=count_limit)
plot_mean_image(axes[2], usps_pad.images, "USPS mean, padded")
sizes = {"MNIST": digit_extent(test_sets["MNIST"].images), "USPS (resized)": digit_extent(test_sets["USPS"].images),
         "USPS (padded)": digit_extent(usps_pad.images)}
plot_digit_size(axes[3], sizes)
fig.tight_layout()
glue("02-gap", fig, display=False)
plt.close(fig)
size_table = pd.DataFrame({name: {"median height (px)": float(s.float().median()), "mean height (px)": float(s.float().mean())}
                           for name, s in sizes.items()}).T.round(1)
size_table

# %% [markdown]
# ```{glue:figure} 02-gap
# :name: fig-02-gap
# Mean test image per domain and the distribution of digit height (bounding box of the pixels
# ≥ 0.3). Resizing USPS into MNIST's 20×20 box leaves the style gap; the authors' zero padding of
# the 16×16 image at a random offset adds a scale gap on top of it.
# ```
#
# {numref}`fig-02-gap` is the gap the classification chapter asks MCR² to bridge: a model trained
# on MNIST alone sees neither USPS's style nor, with the authors' padding, its scale.

# %%
print(f"chapter executed in {time.perf_counter() - started:.1f} s")
