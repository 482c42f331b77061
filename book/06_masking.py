# %% [markdown]
# # Learned background masking
#
# If background pixels are what MCR² cannot compress, the report's remedy is to keep them out of
# MCR². The U-Net gets two more output channels, background/foreground logits trained with
# cross-entropy from the first epoch on. Once this background head is accurate enough on
# validation images (99% in the report), its own predictions mask the pixels fed to MCR²: the loss
# becomes CE(background head) + MCR²(pixels predicted foreground). At prediction time a pixel the
# head calls background is background; the others get their nearest digit subspace.
#
# The report's claims: the head passes 99% accuracy within 5 epochs (Figure 4, which also shows an
# input multiplied by the predicted mask); with masking, $R$ rises (≈ 51.5 vs ≈ 45) and $R_c$ falls
# (≈ 12.5 vs ≈ 31), and the accuracy over non-background pixels reaches ≈ 0.96, ahead of unmasked
# MCR² (≈ 0.88) and of a CE baseline (≈ 0.93) (Figure 5); the predictions look cleaner, also at the
# digits' edges (Figure 6). Every number about our runs below is generated from their records; the
# paragraphs headed "Where this page contradicts the report" speak of the committed paper-scale
# records and link the ledger lines that judge them.

# %% tags=["parameters"]
profile = "auto"  # auto | smoke | paper (auto: paper where complete paper records exist or CUDA trains them, else smoke)
seeds = None  # None: the profile's default seeds (smoke: [0]; paper: [0, 1, 2], those recorded), or a list of ints
device = "auto"  # where missing runs train: "auto" (CUDA if available), "cpu" or "cuda"
retrain = False  # True: train again even where a complete run record exists
progress = "auto"  # training progress: "auto", "bar", "lines" or "off"

# %%
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML, Markdown
from myst_nb import glue

from mcr2.claims import REPORT_MASK_THRESHOLD, claims_table, masking_events, masking_story, verdict_text
from mcr2.engine import run_all
from mcr2.experiments import CHAPTER_EXPERIMENTS
from mcr2.plots import (
    METHOD_COLORS,
    image_grid,
    legible,
    page_figure,
    plot_background_head,
    plot_foreground_accuracy,
    plot_masked_inputs,
    plot_rate_curves_over_training,
    segmentation_panels_figure,
    use_style,
)
from mcr2.summary import final_metrics_table, one_profile, page_table, runs_behind, scale_text, settings_text

use_style()
runs = run_all(CHAPTER_EXPERIMENTS["masking"], profile, seeds, retrain=retrain, device=device, progress=progress)
masked = runs["seg_bg_mcr2_masked"]
print(f"profile: {profile}; {settings_text(runs)}")
glue("06-scale-masked", Markdown(scale_text({"masked": masked})), display=False)
HTML(runs_behind(runs))

# %% [markdown]
# ## When masking switches on

# %% tags=["remove-output"]
# (The stories print here for a notebook; the page shows them once, as Markdown, below.)
events = [masking_events(r) for r in masked]
stories = [masking_story(r) for r in masked]
for story in stories:
    print(story)
glue("06-story", Markdown("\n\n".join(stories)), display=False)
thresholds = sorted({e.threshold for e in events})
threshold_note = f"These runs switch at {', '.join(f'{t:g}' for t in thresholds)}"
if thresholds != [REPORT_MASK_THRESHOLD]:
    threshold_note += (f", not the report's {REPORT_MASK_THRESHOLD:g}: the smoke profile lowers the threshold because "
                       f"a toy head trained for a few epochs rarely reaches {REPORT_MASK_THRESHOLD:g}")
glue("06-threshold-note", Markdown(threshold_note + "."), display=False)

fig, ax = page_figure(height=4.0)
collapsed = sorted({e for ev in events for e in ev.collapsed})  # epochs at which some seed's head collapsed
plot_background_head(ax, masked, collapsed_epochs=collapsed)
glue("06-head", legible(fig, name="06-head"), display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} 06-head
# :name: fig-06-head
#
# Accuracy of the background head over training, on the fixed validation images that decide the
# switch (solid) and on all validation pixels (dotted), with the run's threshold (dashed), the
# epoch after which MCR² was switched on (dash-dotted) and epochs at which the head called (almost)
# every pixel background (grey), where present; {glue:md}`06-scale-masked`. The claim of report
# Figure 4: above 99 % after 5 epochs.
# ```
#
# {glue:md}`06-story`
#
# {glue:md}`06-threshold-note` After the switch the loss is CE(head) + λ·MCR² (λ =
# `loss.mcr2_weight`, 1 in the report, which sums the two) and both flow through the same U-Net:
# MCR²'s gradients can overwhelm the head's through the shared layers, and a head that calls every
# pixel background leaves masked MCR² no pixels to learn from. To see whether the head survives a
# smaller λ, train `python -m mcr2 run seg_bg_mcr2_masked --profile smoke --set loss.mcr2_weight=0.1`
# (or `mcr2.experiments.experiment("seg_bg_mcr2_masked", profile, **{"loss.mcr2_weight": 0.1})`).
#
# **Where this page contradicts the report.** The report says the head's mask "reduces the problem
# to one similar to the vanilla MNIST dataset". On the committed paper-scale records the head
# reaches 99 % within 5 epochs, as the report says ({ref}`claim 4 <claim-4>`), but falls below it
# as soon as MCR² trains on its mask and never returns to it
# ({ref}`claim 4b <claim-4b>`, with every seed's lowest accuracy after the switch).

# %%
rec = masked[0]
n_images = len(rec.artefacts["preview_masks"])
fg_pred = float((np.asarray(rec.artefacts["preview_fg_prob"], dtype=np.float32) > 0.5).mean())
fg_true = float((np.asarray(rec.artefacts["preview_masks"]) > 0).mean())
if fg_pred == 0:
    mask_note = ("After the last epoch the head calls every pixel of these images background, so the second row "
                 "is black: nothing would reach MCR².")
else:
    mask_note = (f"After the last epoch the head calls {fg_pred:.1%} of these pixels foreground; "
                 f"{fg_true:.1%} are digit pixels.")
glue("06-mask-note", Markdown(mask_note), display=False)
fig, axes = image_grid(3, n_images)
plot_masked_inputs(axes, masked)
glue("06-masked-inputs", legible(fig, name="06-masked-inputs"), display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} 06-masked-inputs
# :name: fig-06-masked-inputs
#
# Validation inputs (first row), the inputs times the background head's predicted foreground mask
# (second row: foreground probability above 0.5) and that probability (third row, black 0 to
# white 1), after the first seed's last epoch: report Figure 4 shows one such pair.
# {glue:md}`06-mask-note`
# ```
#
# ## Masked against unmasked MCR² and CE

# %%
colors = {"MCR², masked": METHOD_COLORS["mcr2_masked"], "MCR², unmasked": METHOD_COLORS["mcr2_unmasked"],
          "CE": METHOD_COLORS["ce"]}
mcr2_runs = {"MCR², masked": masked, "MCR², unmasked": runs["seg_bg_mcr2"]}
all_runs = {**mcr2_runs, "CE": runs["seg_bg_ce"]}
shown, left_out = one_profile(all_runs)  # one epoch scale: runs of a smaller profile are left out
fig, axes = page_figure(2, 1, height=6.0, sharex=True)
plot_rate_curves_over_training(axes[0], {k: v for k, v in shown.items() if k in mcr2_runs}, colors=colors,
                               title="MCR² terms of the training batches")
plot_foreground_accuracy(axes[1], shown, colors=colors, title="validation accuracy over digit pixels")
axes[0].set_xlabel("")
glue("06-compare", legible(fig, name="06-compare"), display=False)
plt.close(fig)
glue("06-scale", Markdown(scale_text(shown) + (
    "; left out so that the epoch axis has one scale: " + "; ".join(f"{k} ({scale_text({k: v})})" for k, v in left_out.items())
    if left_out else "")), display=False)

# %% [markdown]
# ```{glue:figure} 06-compare
# :name: fig-06-compare
#
# Report Figure 5. Top: $R$ (solid) and $R_c$ (dashed) of the training batches per epoch, MCR²
# with background masking (blue; before the switch, the rates of the foreground pixels, monitored
# but not trained) and without (yellow). Bottom: accuracy over the validation pixels whose truth is
# a digit, with CE (brown). The report's values: masked $R$ ≈ 51.5, $R_c$ ≈ 12.5, accuracy ≈ 0.96;
# unmasked $R$ ≈ 45, $R_c$ ≈ 31, accuracy ≈ 0.88; CE ≈ 0.93. Runs: {glue:md}`06-scale`.
# ```
#
# The report's numbers beside ours, and the claims ledger's verdicts on them
# ({doc}`09_claims`):

# %%
page_table(claims_table(runs, ["4", "5"]), wrap=("quantity", "verdict"))

# %%
REPORT = {  # report Figure 5, read off its plots (FACTS.md)
    "MCR², masked": {"R": 51.5, "Rc": 12.5},
    "MCR², unmasked": {"R": 45, "Rc": 31},
}
rate_columns = {"R": "R", "Rc": "Rc"}
page_table(final_metrics_table(mcr2_runs, rate_columns, report=REPORT, digits=2))

# %% tags=["remove-output"]
# (The verdicts print here for a notebook; the page shows them once, as Markdown, below.)
fg = final_metrics_table(all_runs, {"acc": "mnist_foreground_acc"}, numeric=True)["acc"]
glue("06-fg-masked", float(fg["MCR², masked"]), display=False)
glue("06-fg-unmasked", float(fg["MCR², unmasked"]), display=False)
glue("06-fg-ce", float(fg["CE"]), display=False)
verdicts = verdict_text(runs, ["4", "5"])
glue("06-verdicts", Markdown(verdicts), display=False)
print(verdicts)

# %% [markdown]
# The non-background pixel accuracy after the last epoch is {glue:text}`06-fg-masked:.3f` with
# masking, {glue:text}`06-fg-unmasked:.3f` without and {glue:text}`06-fg-ce:.3f` for CE (report:
# 0.96, 0.88, 0.93; {numref}`fig-06-compare`; means over seeds).
#
# **Where this page contradicts the report.** On the committed paper-scale records masked MCR²
# beats unmasked MCR² but not CE: the CE baseline labels digit pixels better than either, and the
# report's CE accuracy lies outside our runs' interval ({ref}`claim 5 <claim-5>`). Masking does
# lower $R_c$ and raise $R$, as the report says, though its masked $R$ lies outside our interval
# ({ref}`claim 10 <claim-10>`). Whether masking classifies the digits' edges better
# ({ref}`claim 11 <claim-11>`) waits for runs that record the accuracy on those pixels. The
# ledger's verdicts, with the tests behind them:
#
# {glue:md}`06-verdicts`
#
# ## With and without masking, side by side

# %%
fig = segmentation_panels_figure({"without\nmasking": runs["seg_bg_mcr2"], "with\nmasking": masked})
glue("06-panels", legible(fig, name="06-panels"), display=False)
plt.close(fig)
labels = [ev.label() for ev in events[:1] if ev.label()]
glue("06-panels-note", Markdown(f"The masked run: {labels[0]}." if labels else
                                "The masked run switched MCR² on and its head never collapsed."), display=False)

# %% [markdown]
# ```{glue:figure} 06-panels
# :name: fig-06-panels
#
# Fixed validation inputs over backgrounds, their true classes, and the predictions of MCR²
# without (third row) and with background masking (fourth row), the first seed's runs: report
# Figure 6, where masking gives cleaner digits, also at their edges. {glue:md}`06-panels-note`
# ```
#
# {numref}`fig-06-panels` puts the two models' predictions on the same images.
