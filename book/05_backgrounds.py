# %% [markdown]
# # Natural-image backgrounds
#
# Plain MNIST has a uniform black background, one of the easiest classes there is. The report
# makes the task harder by pasting each digit onto a 28×28 crop of a natural picture
# (MNIST_CIFAR_BG; the report says CIFAR-100) and trains the same MCR² U-Net on it. Its Figure 2b
# shows that the model still finds the digit but often gives it the wrong class, and its Figure 3
# explains why with the two terms of MCR²: the discriminative rate $R$ ends about the same on both
# datasets (≈ 45–46), while the compressive rate $R_c$ is higher with backgrounds (≈ 37.5 vs
# ≈ 34.5 on plain MNIST). Background pixels are easy to classify but hard to compress into a
# low-dimensional class subspace.

# %% tags=["parameters"]
profile = "smoke"  # smoke (CPU, seconds per run) | paper (the report's scale, needs a GPU or stored records)
seeds = None  # None: the profile's default seeds (smoke: [0]; paper: [0, 1, 2]), or a list of ints
device = "auto"  # where missing runs train: "auto" (CUDA if available), "cpu" or "cuda"
retrain = False  # True: train again even where a complete run record exists
progress = "auto"  # training progress: "auto", "bar", "lines" or "off"

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown
from myst_nb import glue

from mcr2.engine import run_all
from mcr2.experiments import CHAPTER_EXPERIMENTS
from mcr2.plots import (
    METHOD_COLORS,
    plot_rate_curves_over_training,
    segmentation_panels_figure,
    use_style,
)
from mcr2.records import records_table
from mcr2.summary import final_metrics_table, settings_text

use_style()
runs = run_all(CHAPTER_EXPERIMENTS["backgrounds"], profile, seeds, retrain=retrain, device=device, progress=progress)
settings = settings_text(runs)
glue("05-settings", Markdown(settings), display=False)
print(f"profile: {profile}; {settings}")
records_table(runs)

# %% [markdown]
# ## Predictions over backgrounds

# %%
fig = segmentation_panels_figure({"MCR²": runs["seg_bg_mcr2"]})
glue("05-panels", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} 05-panels
# :name: fig-05-panels
#
# MNIST digits over natural-image backgrounds (validation, first row), their ground-truth classes
# (second row) and the MCR² U-Net's predictions (third row); the first seed's run,
# {glue:md}`05-settings`. The report's Figure 2b shows that the digit is found but its pixels
# often get the wrong class.
# ```
#
# {numref}`fig-05-panels` shows the predictions; the accuracies below compare them with the
# same model on plain MNIST.

# %%
columns = {
    "non-background pixel acc.": "mnist_foreground_acc",
    "background pixel acc.": "mnist_background_acc",
    "mean IoU": "mnist_mean_iou",
    "R (last epoch)": "R",
    "Rc (last epoch)": "Rc",
}
data_runs = {"plain MNIST": runs["seg_mnist_mcr2"], "MNIST over backgrounds": runs["seg_bg_mcr2"]}
final_metrics_table(data_runs, columns, report={
    "plain MNIST": {"R (last epoch)": "≈ 45–46", "Rc (last epoch)": "≈ 34.5"},
    "MNIST over backgrounds": {"R (last epoch)": "≈ 45–46", "Rc (last epoch)": "≈ 37.5"},
})

# %% [markdown]
# ## $R$ and $R_c$ during training

# %%
colors = {"plain MNIST": METHOD_COLORS["mnist"], "MNIST over backgrounds": METHOD_COLORS["cifar_bg"]}
fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
plot_rate_curves_over_training(ax, data_runs, colors=colors)
glue("05-rates", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} 05-rates
# :name: fig-05-rates
#
# Discriminative rate $R$ (solid) and compressive rate $R_c$ (dashed) of the training batches,
# averaged over each epoch, for the MCR² U-Net on plain MNIST (purple) and over backgrounds
# (grey), as in the report's Figure 3; {glue:md}`05-settings`. The report's values at the end of
# training (feature dimension 128): $R$ ≈ 45–46 on both, $R_c$ ≈ 34.5 on MNIST and ≈ 37.5 over
# backgrounds.
# ```

# %%
rates = final_metrics_table(data_runs, columns, numeric=True)
dR = rates.loc["MNIST over backgrounds", "R (last epoch)"] - rates.loc["plain MNIST", "R (last epoch)"]
dRc = rates.loc["MNIST over backgrounds", "Rc (last epoch)"] - rates.loc["plain MNIST", "Rc (last epoch)"]
R_mnist = rates.loc["plain MNIST", "R (last epoch)"]
claim3 = dRc > 0 and abs(dR) < 0.05 * R_mnist  # "about the same": within 5% of plain MNIST's R
glue("05-dR", float(dR), display=False)
glue("05-dRc", float(dRc), display=False)
print(f"backgrounds minus plain MNIST at the last epoch: R {dR:+.2f}, Rc {dRc:+.2f} (report: R ≈ 0, Rc ≈ +3)")
print(f"claim 3 (Rc higher with backgrounds, R within 5% of plain MNIST's) on these runs: "
      f"{'holds' if claim3 else 'does not hold'}")
if profile == "smoke":
    print("smoke profile: feature dimension 32 instead of 128 (so the rates are not on the report's scale), a few "
          "hundred images and a few epochs; too small to test the claim.")

# %% [markdown]
# {numref}`fig-05-rates` shows how the two rates evolve. At the last epoch of these runs,
# backgrounds change $R$ by {glue:text}`05-dR:+.2f` and $R_c$ by {glue:text}`05-dRc:+.2f` nats
# against plain MNIST; the report found $R$ unchanged and $R_c$ about 3 nats higher. The rates
# grow with the feature dimension, so only their differences, not their sizes, compare with the
# report's when the profile's feature dimension is not 128. On the smoke profile (see the settings
# above) the models are far too small and briefly trained to test the claim.
