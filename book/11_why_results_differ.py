# %% [markdown]
# # Why the results differ
#
# Our paper-profile records disagree with the report in three places: the background head
# collapses when MCR² switches on, MCR² on plain MNIST is far from CE, and masked MCR² trails CE
# where the report has it ahead. This chapter takes each disagreement, names its candidate causes,
# and tests each cause with one experiment that changes one thing of the report's experiment
# (`mcr2.experiments.DIFFERENCE_EXPERIMENTS`). The verdicts use the claims ledger's rule
# ({doc}`09_claims`): a one-sided Welch test per cause, decided only with at least three finite
# paper-profile seeds in each arm and p < 0.05; otherwise the cause stays undecided and the page
# says why, and which command would decide it.

# %% tags=["parameters"]
profile = "auto"  # auto | smoke | paper (auto: paper where complete paper records exist or CUDA trains them, else smoke)
seeds = None  # None: the profile's default seeds (smoke: [0]; paper: [0, 1, 2], those recorded), or a list of ints
device = "auto"  # where missing runs train: "auto" (CUDA if available), "cpu" or "cuda"
retrain = False  # True: train again even where a complete run record exists
progress = "auto"  # training progress: "auto", "bar", "lines" or "off"

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import HTML, Markdown
from myst_nb import glue

from mcr2.claims import DIGIT_EDGE_COLUMN, masking_events
from mcr2.differences import (
    LATE_EPOCHS,
    cause_verdicts,
    closing_text,
    error_split,
    grad_ratio_at_switch,
    head_best_after_switch,
    head_low_after_switch,
)
from mcr2.engine import run_all
from mcr2.experiments import DIFFERENCE_EXPERIMENTS
from mcr2.plots import legible, page_figure, plot_metric_curves, use_style
from mcr2.summary import final_value, page_table, runs_behind, scale_text, settings_text, tag_profiles

use_style()
REPORT_NAMES = ["seg_bg_mcr2_masked", "seg_bg_mcr2", "seg_bg_ce", "seg_mnist_mcr2", "seg_mnist_ce"]
report_runs = run_all(REPORT_NAMES, profile, seeds, retrain=retrain, device=device, progress=progress)
new_runs = run_all(list(DIFFERENCE_EXPERIMENTS), profile, seeds, retrain=retrain, device=device, progress=progress)
runs = {**report_runs, **new_runs}
glue("11-settings", Markdown(scale_text(runs)), display=False)
new_profiles = sorted({r.config.profile for recs in new_runs.values() for r in recs})
if new_profiles == ["paper"]:
    status = "The experiments of this chapter have paper-profile records: the verdicts below can decide."
else:
    status = (f"The experiments of this chapter have no paper-profile records yet: what this page shows of them is "
              f"**{' + '.join(new_profiles)}** results (narrow models, a few hundred images, one seed), which show "
              f"that the experiments run and which way they point, not evidence; every verdict that rests on them is "
              f"undecided. The report's own experiments are shown at the profile of their records.")
glue("11-status", Markdown(status), display=False)
print(f"profile: {profile}; {settings_text(runs)}\n{status}")
HTML(runs_behind(runs))

# %% [markdown]
# {glue:md}`11-status`
#
# Runs: {glue:md}`11-settings`.


# %%
def span(values, digits: int = 3) -> str:
    """"a–b" over the finite values (one value as it is, "—" without any)."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return "—"
    lo, hi = min(v), max(v)
    return f"{lo:.{digits}f}" if round(lo, digits) == round(hi, digits) else f"{lo:.{digits}f}–{hi:.{digits}f}"


def labelled(names: dict) -> tuple[dict, dict]:
    """{label: records} of the experiments that have records, labels tagged with their profile, and
    one colour per experiment (the same in every panel that shows it)."""
    present = {label: runs[name] for label, name in names.items() if runs.get(name)}
    return tag_profiles(present, {label: f"C{i}" for i, label in enumerate(names)}, always=True)


def verdict_table(question: int):
    return page_table(cause_verdicts(runs, question), wrap=("cause", "compared", "test", "verdict", "why"))


# %% [markdown]
# ## 1. Why does the background head collapse when MCR² switches on?

# %%
masked = runs["seg_bg_mcr2_masked"]
events = [masking_events(r) for r in masked]
switches = [e.switch_epoch for e in events if e.switch_epoch is not None]
collapsed = sorted({ep for e in events for ep in e.collapsed})
if switches:
    q1 = (f"In the report's masked experiment ({masked[0].config.profile} profile, {len(masked)} seed"
          f"{'s' * (len(masked) > 1)}) the head reached the threshold {events[0].threshold:g} after epoch "
          f"{span(switches, 0)}. ")
    q1 += (f"After the switch it called (almost) every pixel background at epoch{'s' * (len(collapsed) > 1)} "
           f"{', '.join(map(str, collapsed))} of some seed; " if collapsed else "It never collapsed to all background; ")
    q1 += (f"its lowest accuracy on all validation pixels after the switch was {span(map(head_low_after_switch, masked))} "
           f"and its best {span(map(head_best_after_switch, masked))}, against the report's 0.99.")
else:
    q1 = (f"In the report's masked experiment ({masked[0].config.profile} profile) the head never reached the threshold "
          f"{events[0].threshold:g}: MCR² never switched on, so there is no collapse to explain in these runs.")
ratios = {name: span(map(grad_ratio_at_switch, runs[name]), 2) for name in
          ["seg_bg_mcr2_masked", "seg_bg_mcr2_masked_lam01", "seg_bg_mcr2_masked_nobg", "seg_bg_mcr2_masked_gt"]}
shown = {n: v for n, v in ratios.items() if v != "—"}
q1_grad = ("At the switch, ‖∇ λ·MCR²‖ / ‖∇ CE(head)‖ at the shared layers was "
           + "; ".join(f"{v} in `{n}`" for n, v in shown.items()) + "." if shown else
           "No record here has the gradient columns at a switch (older records were written before them).")
glue("11-q1", Markdown(q1), display=False)
glue("11-q1-grad", Markdown(q1_grad), display=False)
print(q1, q1_grad, sep="\n")

Q1_ARMS = {"report (λ = 1)": "seg_bg_mcr2_masked", "λ = 0.1": "seg_bg_mcr2_masked_lam01",
           "true background kept out": "seg_bg_mcr2_masked_nobg", "ground-truth mask": "seg_bg_mcr2_masked_gt"}
fig, axes = page_figure(1, 2, height=3.6)
q1_runs, q1_colors = labelled(Q1_ARMS)
plot_metric_curves(axes[0], q1_runs, "mnist_bg_head_acc", ylabel="head accuracy", colors=q1_colors,
                   title="background head", legend=False)
plot_metric_curves(axes[1], q1_runs, "mnist_foreground_acc", ylabel="non-background accuracy", colors=q1_colors,
                   title="digit pixels")  # its lower right stays free: the legend goes there
glue("11-q1-curves", legible(fig, name="11-q1-curves"), display=False)
plt.close(fig)

with_grads = {k: [r for r in v if "grad_ce_shared" in r.history.columns] for k, v in q1_runs.items()}
with_grads = {k: v for k, v in with_grads.items() if v}
fig, axes = page_figure(1, 2, height=4.2)
plot_metric_curves(axes[0], with_grads, "grad_ce_shared", ylabel="‖∇ CE(head)‖", colors=q1_colors,
                   title="CE of the head", legend=False)
plot_metric_curves(axes[1], with_grads, "grad_mcr2_shared", ylabel="‖∇ λ·MCR²‖", colors=q1_colors, title="λ·MCR²",
                   legend=False)
for ax in axes:
    ax.set_yscale("log")
fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, frameon=False)
glue("11-q1-grads", legible(fig, name="11-q1-grads"), display=False)
plt.close(fig)

# %% [markdown]
# {glue:md}`11-q1`
#
# Candidate causes, each with its experiment:
#
# - **MCR²'s gradient overwhelms the head's.** The loss is CE(head) + λ·MCR² and both terms flow
#   through the same U-Net. `seg_bg_mcr2_masked_lam01` sets λ = 0.1.
# - **Background pixels enter masked MCR² as class 0.** Pixels the head wrongly calls foreground
#   are compressed with label 0. `seg_bg_mcr2_masked_nobg` keeps true background out of MCR²
#   (`loss.mask_drop_background`).
# - **The mask itself.** The authors' code masks with the ground truth.
#   `seg_bg_mcr2_masked_gt` does that, switching at the report's threshold (so that only the mask's
#   source changes).
#
# ```{glue:figure} 11-q1-curves
# :name: fig-11-q1-curves
#
# Left: accuracy of the background head on all validation pixels; right: non-background accuracy,
# per epoch, for the report's masked experiment and its three variants (profile in brackets; mean
# ± sd over seeds). Runs: {glue:md}`11-settings`.
# ```
#
# ```{glue:figure} 11-q1-grads
# :name: fig-11-q1-grads
#
# Norms of the gradients of CE(head) (left) and of λ·MCR² (right) with respect to the U-Net layers
# they share (all but the output convolution), on the first training batch after each epoch; the
# MCR² norm is measured before the switch too (what it would add). Only records written with these
# columns appear.
# ```
#
# {glue:md}`11-q1-grad` The verdict on each cause ({numref}`fig-11-q1-curves`; the quantity is the
# head's lowest accuracy after the switch, higher when a change prevents the collapse):

# %%
verdict_table(1)

# %% tags=["remove-output"]
glue("11-q1-close", Markdown(closing_text(runs, 1)), display=False)
print(closing_text(runs, 1))

# %% [markdown]
# {glue:md}`11-q1-close`
#
# Not tested here: the authors' switch at 0.9 on one validation batch
# (`--set loss.mask_threshold=0.9`), which switches before the head is as sure.
#
# ## 2. Why is MCR² on plain MNIST worse than over backgrounds, and far from CE?

# %%
DIGITS = {1: 2, 7: 8, 9: 10}  # digit -> its class (class 0 is background)
plain, bg, ce = runs["seg_mnist_mcr2"], runs["seg_bg_mcr2"], runs["seg_mnist_ce"]
fg = "mnist_foreground_acc"
weak = span(final_value(r, f"mnist_class{c}_acc") for r in plain for c in DIGITS.values())
swing = []
for r in plain:
    values = pd.to_numeric(r.history[fg], errors="coerce").dropna().to_numpy()
    half = values[len(values) // 2:]
    swing.append(float(np.abs(np.diff(half)).max()) if len(half) > 1 else math.nan)
sampled = np.concatenate([r.artefacts["feature_labels"] for r in plain])  # labels of random validation pixels
cfg = plain[0].config
glue("11-bg-share", float((sampled == 0).mean()), display=False)
glue("11-r", cfg.eval.n_components or cfg.model.feature_dim // cfg.num_classes, display=False)
glue("11-fit", int(cfg.eval.fit_limit or plain[0].record["data"]["train"]["N"]), display=False)
q2 = (f"`seg_mnist_mcr2` ({plain[0].config.profile} profile) ends at {span(final_value(r, fg) for r in plain)} "
      f"non-background accuracy; digits {', '.join(map(str, DIGITS))} reach {weak}, and over the second half of "
      f"training the value moves by up to {span(swing)} from one epoch to the next. Over backgrounds "
      f"(`seg_bg_mcr2`, {bg[0].config.profile}) MCR² ends at {span(final_value(r, fg) for r in bg)}, and CE on "
      f"plain MNIST at {span(final_value(r, fg) for r in ce)}. The report: plain-MNIST MCR² \"quickly matched\" CE, "
      f"and backgrounds are \"far worse\".")
glue("11-q2", Markdown(q2), display=False)
print(q2)

fig, ax = page_figure(height=4.0)
q2_runs, q2_colors = labelled({"MCR²": "seg_mnist_mcr2", "CE": "seg_mnist_ce", "MCR², masked": "seg_mnist_mcr2_masked",
                               "MCR², r = 30": "seg_mnist_mcr2_r30", "MCR² over backgrounds": "seg_bg_mcr2"})
plot_metric_curves(ax, q2_runs, fg, ylabel="non-background accuracy", colors=q2_colors)
glue("11-q2-curves", legible(fig, name="11-q2-curves"), display=False)
plt.close(fig)

# %% [markdown]
# {glue:md}`11-q2`
#
# Candidate causes, each with its experiment:
#
# - **Background dominates R and Rc.** {glue:text}`11-bg-share:.0%` of the validation pixels are
#   background, one class whose volume MCR² must compress. `seg_mnist_mcr2_masked` masks it on
#   plain MNIST, as over backgrounds.
# - **The nearest-subspace classifier.** It keeps d // k = {glue:text}`11-r` components per class,
#   fitted on {glue:text}`11-fit:,d` training images; `seg_mnist_mcr2_r30` keeps 30 (the original MCR²
#   code) after the same training.
# - **Instability of the run itself.** If the final epoch is a draw from a swing, the mean of the
#   last epochs is the fairer number; the report's own records decide this one, no new run needed.
#
# ```{glue:figure} 11-q2-curves
# :name: fig-11-q2-curves
#
# Non-background accuracy on plain MNIST per epoch: MCR², CE and the two variants, with MCR² over
# backgrounds for comparison (profile in brackets; mean ± sd over seeds). Runs: {glue:md}`11-settings`.
# ```
#
# The verdict on each cause ({numref}`fig-11-q2-curves`):

# %%
verdict_table(2)

# %% tags=["remove-output"]
glue("11-q2-close", Markdown(closing_text(runs, 2)), display=False)
glue("11-late", LATE_EPOCHS, display=False)
print(closing_text(runs, 2))

# %% [markdown]
# The instability test averages the last {glue:text}`11-late` evaluations of each seed.
#
# {glue:md}`11-q2-close`
#
# ## 3. Why does masked MCR² trail CE when the report has it ahead?

# %%
REPORT_MASKED, REPORT_CE = 0.96, 0.93  # report Figure 5, non-background accuracy (FACTS.md)
masked_fg = [final_value(r, fg) for r in masked]
ce_bg = [final_value(r, fg) for r in runs["seg_bg_ce"]]
q3 = (f"Masked MCR² ends at {span(masked_fg)} non-background accuracy and CE at {span(ce_bg)} "
      f"({masked[0].config.profile} profile); the report has {REPORT_MASKED} and {REPORT_CE}: our masked MCR² is "
      f"{np.nanmean(masked_fg) - REPORT_MASKED:+.3f} from the report's, our CE {np.nanmean(ce_bg) - REPORT_CE:+.3f} "
      f"(means over seeds). The authors' data pipeline had faults (FACTS.md): 20 000 digits each used three times, the same batches every "
      f"epoch. `seg_bg_ce_faults` trains CE with both.")
glue("11-q3", Markdown(q3), display=False)
print(q3)
rows = []
for label, name in {"masked MCR² (report)": "seg_bg_mcr2_masked", "ground-truth mask": "seg_bg_mcr2_masked_gt",
                    "λ = 0.1": "seg_bg_mcr2_masked_lam01", "true background kept out": "seg_bg_mcr2_masked_nobg",
                    "CE": "seg_bg_ce", "CE with the authors' faults": "seg_bg_ce_faults"}.items():
    for r in runs.get(name, []):
        split = error_split(r)
        rows.append({"run": label, "profile": r.config.profile, "seed": r.config.seed,
                     "non-background accuracy": round(final_value(r, fg), 3),
                     "digit pixels called background": round(split["as_background"], 3),
                     "digit pixels given another digit": round(split["wrong_digit"], 3),
                     "digit-edge accuracy": round(final_value(r, DIGIT_EDGE_COLUMN), 3),
                     "errors counted on": split["source"]})
errors = pd.DataFrame(rows)

# %% [markdown]
# {glue:md}`11-q3`
#
# Where the masked run loses digit pixels: those the head calls background, and those the nearest
# subspace gives the wrong digit (shares of all true digit pixels after the last epoch; records
# written before these columns existed are counted on their preview images, marked so):

# %%
page_table(errors.fillna({"digit-edge accuracy": "—"}), digits=3, wrap=("run", "errors counted on"))

# %% [markdown]
# The verdict on each cause:

# %%
verdict_table(3)

# %% tags=["remove-output"]
glue("11-q3-close", Markdown(closing_text(runs, 3)), display=False)
print(closing_text(runs, 3))

# %% [markdown]
# {glue:md}`11-q3-close`
