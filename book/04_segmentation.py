# %% [markdown]
# # Segmentation with MCR² on MNIST
#
# The report then moves MCR² from images to pixels. A U-Net maps a 28×28 digit to a feature
# vector per pixel (unit-norm, 128 dimensions at the report's scale), and MCR² is computed over the
# pixels of a batch with 11 classes: background (class 0) and the ten digits (class $c+1$ for
# digit $c$; a pixel is foreground where the digit's intensity is at least 0.3). A pixel is
# labelled with its nearest class subspace, fitted on training features. The baseline is the same
# U-Net trained with cross-entropy (CE) through a 1×1 convolution over the features: a linear
# per-pixel head, as in the authors' code (the report says "MLP"; `model.head_hidden` gives one).
#
# The report shows this only qualitatively (its Figure 2a, no numbers): on plain MNIST, MCR²
# separates digit from background and mostly gives each digit its class. Here we show the same
# panels for fixed validation images, and the pixel accuracies behind them.

# %% tags=["parameters"]
profile = "auto"  # auto | smoke | paper; auto: per experiment, paper where its records exist (or CUDA), else smoke
seeds = None  # None: the profile's seeds (smoke: [0]; paper: [0, 1, 2], on auto those recorded), or a list of ints
device = "auto"  # where missing runs train: "auto" (CUDA if available), "cpu" or "cuda"
retrain = False  # True: train again even where a complete run record exists
progress = "auto"  # training progress: "auto", "bar", "lines" or "off"

# %%
import matplotlib.pyplot as plt
from IPython.display import HTML, Markdown
from myst_nb import glue

from mcr2.engine import run_all
from mcr2.experiments import CHAPTER_EXPERIMENTS
from mcr2.plots import METHOD_COLORS, legible, page_figure, plot_metric_curves, segmentation_panels_figure, use_style
from mcr2.summary import final_metrics_table, page_table, runs_behind, scale_text, settings_text

use_style()
runs = run_all(CHAPTER_EXPERIMENTS["segmentation"], profile, seeds, retrain=retrain, device=device, progress=progress)
print(f"profile: {profile}; {settings_text(runs)}")
glue("04-scale", Markdown(scale_text(runs)), display=False)
HTML(runs_behind(runs))

# %% [markdown]
# ## Predictions on fixed validation images

# %%
seg_runs = {"MCR²": runs["seg_mnist_mcr2"], "CE": runs["seg_mnist_ce"]}
fig = segmentation_panels_figure(seg_runs)
glue("04-panels", legible(fig, name="04-panels"), display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} 04-panels
# :name: fig-04-panels
#
# Fixed MNIST validation images (first row), their true classes (second row) and the classes
# predicted by the MCR² U-Net (nearest subspace, third row) and the CE U-Net (fourth row); the
# first seed's runs ({glue:md}`04-scale`). MCR²'s row is the report's Figure 2a, which gives no numbers.
# ```
#
# {numref}`fig-04-panels` compares the two models on the same validation images; the table and
# {numref}`fig-04-accuracy` give the numbers over all validation pixels.

# %%
columns = {
    "non-background pixel acc.": "mnist_foreground_acc",
    "background pixel acc.": "mnist_background_acc",
    "pixel acc.": "mnist_pixel_acc",
    "mean IoU": "mnist_mean_iou",
}
page_table(final_metrics_table(seg_runs, columns).T)  # one column per model

# %%
colors = {"MCR²": METHOD_COLORS["mcr2"], "CE": METHOD_COLORS["ce"]}
fig, axes = page_figure(1, 2, height=3.2)
plot_metric_curves(axes[0], seg_runs, "mnist_foreground_acc", ylabel="non-background pixel accuracy", colors=colors)
plot_metric_curves(axes[1], seg_runs, "mnist_mean_iou", ylabel="mean IoU (11 classes)", colors=colors)
glue("04-accuracy", legible(fig, name="04-accuracy"), display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} 04-accuracy
# :name: fig-04-accuracy
#
# Validation scores of MCR² and CE on MNIST over training: accuracy over the pixels whose truth is
# a digit (left; background predicted there is an error) and mean intersection-over-union over the
# 11 classes (right); {glue:md}`04-scale`. The report gives no numbers for this experiment.
# ```

# %%
acc = final_metrics_table(seg_runs, columns, numeric=True)
glue("04-mcr2-fg", float(acc.loc["MCR²", "non-background pixel acc."]), display=False)
glue("04-ce-fg", float(acc.loc["CE", "non-background pixel acc."]), display=False)
glue("04-mcr2-bg", float(acc.loc["MCR²", "background pixel acc."]), display=False)
profiles = {label: recs[0].config.profile for label, recs in seg_runs.items()}
if len(set(profiles.values())) > 1:
    scale_note = ("The two models come from different profiles (" + ", ".join(f"{k} {v}" for k, v in profiles.items())
                  + "), so their numbers do not compare with each other; the settings above say which is which.")
elif "smoke" in profiles.values():
    scale_note = ("Both are smoke-profile runs: U-Nets far too small and too briefly trained to test the report's "
                  "claim; the panels show that the pipeline runs end to end.")
else:
    scale_note = f"Both runs are at the {profiles['MCR²']} profile."
glue("04-scale-note", Markdown(scale_note), display=False)
print(f"non-background pixel accuracy: MCR² {acc.loc['MCR²', 'non-background pixel acc.']:.3f}, "
      f"CE {acc.loc['CE', 'non-background pixel acc.']:.3f}; background: MCR² {acc.loc['MCR²', 'background pixel acc.']:.3f}")

# %% [markdown]
# On these runs MCR² labels {glue:text}`04-mcr2-fg:.3f` of the digit pixels correctly and
# {glue:text}`04-mcr2-bg:.3f` of the background pixels; CE labels {glue:text}`04-ce-fg:.3f` of
# the digit pixels correctly ({numref}`fig-04-accuracy`). {glue:md}`04-scale-note`
#
# **Where this page contradicts the report.** The report's §2.2.1 says that MCR²'s validation
# performance on MNIST "quickly matched that of cross entropy". On the committed paper-scale
# records it does not: MCR²'s accuracy on digit pixels stays far below CE's, early in training
# and at its end. The ledger line {ref}`claim 7 <claim-7>` gives the verdict, every seed's value
# and the test (equal within a stated margin at a stated epoch and at the end).
