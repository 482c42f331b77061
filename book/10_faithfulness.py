# %% [markdown]
# # Appendix: faithfulness
#
# This book reproduces the report. Where the report is silent, its authors' public code
# (`Axquaris/mcr2-semseg`) and the original MCR² code (`ryanchankh/mcr2`) were read for the
# settings. Where the report and the code disagree, the report is the default and the code's
# choice is a documented switch; where the code has a fault, the fault is fixed and not
# offered; where neither fixes a setting, this book chooses one and says so. The table below lists
# every such difference. It is generated from `mcr2.faithfulness.DEVIATIONS`, the same data the
# library's docstrings point to; its last column holds the effects this appendix measures from run
# records (section "Evaluation choices, measured").

# %% tags=["parameters"]
profile = "auto"  # auto | smoke | paper (of the measured runs; auto: paper with CUDA or all their records, else smoke)
seed = 0  # data seed (DataConfig.seed) of the demonstrations and seed of the measured runs
examples = 8  # how many validation images each demonstration shows
device = "auto"  # where the measured runs train if missing: "auto" (CUDA if available), "cpu" or "cuda"
progress = "auto"  # training progress: "auto", "bar", "lines" or "off"

# %%
import matplotlib.pyplot as plt
import torch
from IPython.display import HTML, Markdown, display
from myst_nb import glue

import mcr2
from mcr2 import data
from mcr2.faithfulness import deviations_table, evaluation_effects, evaluation_profile, measure_evaluation, missing_text
from mcr2.plots import digit_extent, image_grid, label_rows, legible, plot_digit_size, plot_samples, use_style
from mcr2.summary import page_table, runs_behind, scale_text

use_style()
measured_profile = evaluation_profile(profile, seed, device)
print(f"profile={profile} (measured runs: {measured_profile}) seed={seed} examples={examples} data={data.data_root()}")

# %% [markdown]
# ## Evaluation choices, measured
#
# Two evaluation settings are this book's, and each moves the numbers. Before every evaluation the
# BatchNorm statistics are re-estimated on training images (`EvalConfig.recalibrate_bn`): after a
# short training their running averages still remember their initial values, and a model trained
# on batch statistics misreads them. The nearest-subspace classifier is fitted on the first
# `EvalConfig.fit_limit` training images (all of them on the smoke profile). Both are measured
# here on one seed of the profile above, each against the same run with the setting changed.

# %%
arms = measure_evaluation(measured_profile, seed, device=device, progress=progress)
effects = evaluation_effects(arms)
for topic, text in effects.items():
    print(f"{topic}: {text}")
missing = missing_text(arms)
if missing:
    print(missing)
measured = {f"{a.topic}: {a.label}": [a.record] for a in arms if a.record is not None}
glue("10-measured", Markdown("; ".join(effects.values())), display=False)
glue("10-measured-settings", Markdown(scale_text(measured) if measured else f"no {measured_profile} records yet"),
     display=False)
glue("10-missing", Markdown(missing or "Every run behind these numbers has a record."), display=False)
if measured:
    display(HTML(runs_behind(measured)))

# %% [markdown]
# Measured ({glue:md}`10-measured-settings`): {glue:md}`10-measured`. {glue:md}`10-missing` The
# deviation table below carries the same numbers.
#
# ## Every difference

# %%
table = deviations_table(effects)
page_table(table, wrap=tuple(table.columns))  # every column wraps: the table fits the page

# %% [markdown]
# *Kind*: **report vs code** — both are defensible, the switch gives the other one; **fault** — a
# bug in the authors' code, fixed here; **profile** — how the smoke profile departs from the
# report's scale so that a CPU renders the book in minutes. Two defaults follow the code rather
# than the report, each for a stated reason: the CE head is linear because the report's CE numbers
# were produced by that code, and the subspace dimension $r = d/k$ is the code's because the report
# gives none.
#
# The switches are configuration fields (`mcr2.config`), so a run with the other behaviour is one
# override away, e.g. `experiment("seg_bg_mcr2", "paper", 0, **{"data.background": "cifar10"})`,
# and its run record stores the setting. Three of them are cheap enough to show here.
#
# ## USPS in a 28×28 frame
#
# USPS digits are 16×16 and fill their frame; MNIST digits fill a 20×20 box centred in 28×28. The
# authors pasted USPS unscaled at a random offset (`usps_layout="pad_random"`); this book resizes
# it into MNIST's 20×20 box (`"resize"`, the default). The first leaves a scale and position gap
# between the domains on top of the handwriting-style gap the report means to study.

# %%
mnist = data.digits("mnist", "test", limit=500, seed=seed)
usps = {layout: data.digits("usps", "test", usps_layout=layout, limit=500, seed=seed) for layout in data.USPS_LAYOUTS}
heights = {"MNIST": digit_extent(mnist.images), **{f"USPS, {k}": digit_extent(v.images) for k, v in usps.items()}}
for name, h in heights.items():
    print(f"{name:18s} digit height {h.float().mean():5.1f} ± {h.float().std():.1f} px")

rows = [("MNIST", mnist), *((f"USPS\n{k}", v) for k, v in usps.items())]
below = 3.0  # inches under the images for the histogram of digit heights
fig, axes = image_grid(len(rows), examples, titles=True, below_in=below)
for i, (name, ds) in enumerate(rows):
    plot_samples(axes[i], ds.images[:examples], labels=[f"{int(y)}" for y in ds.labels[:examples]])
label_rows(axes[:, 0], [name for name, _ in rows])
height = fig.get_figheight()
size_ax = plot_digit_size(fig.add_axes((0.12, 0.55 / height, 0.86, (below - 0.8) / height)), heights)
size_ax.set_xlabel("digit height (px, bounding box of pixels ≥ 0.3)")
size_ax.legend(loc="upper left")
glue("10-usps-layouts", legible(fig, name="10-usps-layouts"), display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} 10-usps-layouts
# :name: fig-10-usps-layouts
#
# Top: the first validation digits of MNIST and of USPS under both layouts
# (`mcr2.data.digits("usps", "test", usps_layout=...)`). Bottom: the distribution of digit height
# (bounding box of pixels ≥ 0.3) over 500 validation images of each.
# ```
#
# With `"resize"` USPS digits are about as tall as MNIST's; with `"pad_random"` they are smaller and
# off-centre ({numref}`fig-10-usps-layouts`), so a model trained on MNIST alone meets a second,
# purely geometric shift on USPS. The cross-domain accuracies of the classification chapter are
# therefore not comparable with the report's Figure 1b unless the run uses `"pad_random"`.
#
# ## Backgrounds that do not change
#
# The authors drew a fresh random background crop at every validation pass and seeded nothing.
# Here each item's background picture and crop are a pure function of (data seed, split, index):
# building the validation set twice, or with another `limit`, gives the same composites bit for
# bit, and another seed gives other ones.

# %%
first = data.segmentation("mnist", "test", "cifar100", seed=seed, limit=examples)
again = data.segmentation("mnist", "test", "cifar100", seed=seed, limit=4 * examples)  # built anew, longer
other = data.segmentation("mnist", "test", "cifar100", seed=seed + 1, limit=examples)
same = torch.equal(first.images, again.images[:examples]) and torch.equal(first.masks, again.masks[:examples])
differs = not torch.equal(first.images, other.images)
print(f"seed {seed}, built twice (limit {examples} and {4 * examples}): identical composites and masks: {same}")
print(f"seed {seed + 1}: different composites: {differs}; same digits and masks: {torch.equal(first.masks, other.masks)}")
print(f"background source: {first.source.get('background_source')}, pictures: {first.source.get('background_pictures')}")
assert same and differs, "background composites are not a pure function of (seed, split, index)"

fig, axes = image_grid(3, examples)
plot_samples(axes[:2], first.images, first.masks)
plot_samples(axes[2:], other.images)
label_rows(axes[:, 0], (f"seed {seed}", "mask", f"seed {seed + 1}"))
glue("10-backgrounds", legible(fig, name="10-backgrounds"), display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} 10-backgrounds
# :name: fig-10-backgrounds
#
# The first validation composites of MNIST over CIFAR-100 with data seed 0 (top) and their masks
# (middle; colour = digit class, black = background), and the same digits with data seed 1
# (bottom). Rebuilding the set with seed 0 reproduces the top row exactly.
# ```
#
# {numref}`fig-10-backgrounds` is what every validation pass of every run with that seed sees, so
# validation curves move only because the model does.
#
# ## An empty class never wins
#
# A class without training samples has no subspace. In the authors' code its (all-zero) statistics
# still took part in the argmin, and a meaningless basis can be the nearest one. Below, the
# nearest-subspace classifier is fitted on random unit features in which one class has no samples;
# `mcr2.NearestSubspace` gives that class an infinite score.

# %%
g = torch.Generator().manual_seed(seed)
d, k, r = 32, 11, 32 // 11
labels = torch.randint(0, k, (2000,), generator=g)
labels[labels == 3] = 4  # class 3 gets no training samples
Z = torch.nn.functional.normalize(torch.randn(2000, d, generator=g), dim=1)
ns = mcr2.NearestSubspace(r).fit(Z, labels, k)
Z_test = torch.nn.functional.normalize(torch.randn(2000, d, generator=g), dim=1)
scores = ns.scores(Z_test)  # (m, k), +inf for class 3
finite = scores.clone()
finite[:, 3] = Z_test.pow(2).sum(1) - (Z_test @ ns.bases[3].float()).pow(2).sum(1)  # what the empty class would score
print(f"empty class predicted by NearestSubspace: {(scores.argmin(1) == 3).float().mean():.1%}; "
      f"if it took part in the argmin: {(finite.argmin(1) == 3).float().mean():.1%}")
