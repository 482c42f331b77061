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
from mcr2.plots import (
    digit_extent,
    image_grid,
    label_rows,
    legible,
    page_figure,
    page_mosaic,
    plot_class_counts,
    plot_digit_size,
    plot_mean_image,
    plot_samples,
    use_style,
)
from mcr2.summary import page_table

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


# Items in each whole split (mcr2.data's counts of the real files): DIGITS trains on MNIST and USPS
# repeated to MNIST's count, alternating, and validates on both test sets once each.
SPLIT_SIZE = {
    "MNIST": mdata.MNIST_COUNTS, "USPS": mdata.USPS_COUNTS,
    "DIGITS": {"train": 2 * mdata.MNIST_COUNTS["train"], "test": mdata.MNIST_COUNTS["test"] + mdata.USPS_COUNTS["test"]},
}
rows = [{"dataset": f"{name} ({split})", "items in the split": SPLIT_SIZE[name][split], "used on this page": len(ds),
         "files": file_names(ds.source["files"])}
        for split, group in (("train", train_sets), ("test", test_sets)) for name, ds in group.items()]
rows.append({"dataset": "MNIST on backgrounds (test)", "items in the split": mdata.MNIST_COUNTS["test"],
             "used on this page": len(backgrounds),
             "files": file_names(backgrounds.source["files"]) + f" + {backgrounds.source.get('background_source')}"})
sources = pd.DataFrame(rows)
display(page_table(sources.assign(**{c: sources[c].map("{:,}".format) for c in ("items in the split", "used on this page")}),
                   wrap=("files",)))

# %% [markdown]
# The backgrounds come from the file named in the last row: torchvision's `cifar-100-python` when
# it is in the data root, otherwise `cifar100_images.npz` (20 000 real CIFAR-100 pictures, split
# 80/20 into disjoint training and validation backgrounds). The picture and crop of each item are a
# pure function of (seed, split, index): the same item is the same image every epoch and on every
# machine.

# %% [markdown]
# ## Samples and their per-pixel masks

# %%
rows = [("MNIST", plain), ("USPS", usps_seg), ("MNIST on\nCIFAR-100", backgrounds)]
fig, axes = image_grid(2 * len(rows), samples, titles=True)
for r, (name, ds) in enumerate(rows):
    images, masks = ds.tensors()
    plot_samples(axes[2 * r: 2 * r + 2], images[:samples], masks[:samples], labels=ds.labels[:samples])
label_rows(axes[::2, 0], [name for name, _ in rows])
label_rows(axes[1::2, 0], ["mask"] * len(rows))
glue("02-samples", legible(fig, name="02-samples"), display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} 02-samples
# :name: fig-02-samples
# Validation samples of each domain with their digit labels (top of each pair) and their per-pixel
# masks (below): black is
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
fig, ax = page_figure(height=3.0)
plot_class_counts(ax, counts)
ax.set_title(f"training images per digit (first {count_limit or 'all'} of each split)")
ax.legend(ncol=3, loc="lower center")
glue("02-counts", legible(fig, name="02-counts"), display=False)
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
fig, axes = page_mosaic([["mnist", "usps", "pad"], ["size", "size", "size"]], height=5.6, height_ratios=[1, 1.25])
plot_mean_image(axes["mnist"], test_sets["MNIST"].images, "MNIST mean")
plot_mean_image(axes["usps"], test_sets["USPS"].images, "USPS mean")
usps_pad = mdata.digits("usps", "test", usps_layout="pad_random", limit=count_limit)
plot_mean_image(axes["pad"], usps_pad.images, "USPS padded")
sizes = {"MNIST": digit_extent(test_sets["MNIST"].images), "USPS (resized)": digit_extent(test_sets["USPS"].images),
         "USPS (padded)": digit_extent(usps_pad.images)}
plot_digit_size(axes["size"], sizes)
glue("02-gap", legible(fig, name="02-gap"), display=False)
plt.close(fig)
size_table = pd.DataFrame({name: {"median height (px)": float(s.float().median()), "mean height (px)": float(s.float().mean())}
                           for name, s in sizes.items()}).T
page_table(size_table.rename_axis("digits"), digits=1)

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
