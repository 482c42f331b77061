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
profile = "auto"  # auto | smoke | paper; auto: paper where complete paper records of every resolution exist (or CUDA is here), else smoke
seeds = None  # None: the profile's default seeds (smoke: [0]; paper: [0, 1, 2]), or a list of ints
device = "auto"  # where missing runs train and the cost is measured: "auto" (CUDA if available), "cpu" or "cuda"
retrain = False  # True: train again even where a complete run record exists
progress = "auto"  # training progress: "auto", "bar", "lines" or "off"
resolutions = [28, 14, 7]  # cells per side MCR² is computed at; 28 is full resolution (every pixel a row)
repeats = 7  # interleaved timing rounds per batch size (at least 5): each time is their median and range

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import HTML, Markdown, display
from myst_nb import glue

from mcr2 import paper
from mcr2.claims import MIN_SEEDS, compare
from mcr2.engine import profile_plan, resolve_device, run_all
from mcr2.experiments import experiment
from mcr2.plots import (
    final_run_values,
    legible,
    page_figure,
    page_mosaic,
    plot_accuracy_vs_resolution,
    plot_cost_vs_pixels,
    plot_cost_vs_resolution,
    plot_metric_curves,
    plot_share_vs_pixels,
    plot_speedup_vs_resolution,
    resolution_label,
    use_style,
)
from mcr2.records import default_runs_dir
from mcr2.summary import final_value, page_table, runs_behind, scale_text, settings_text

# The same measuring functions as benchmarks/bench_resolution.py.
from mcr2.profiling import FULL, device_name, measure_loss, resolved

use_style()
resolutions = sorted({int(s) for s in resolutions}, reverse=True)
if FULL not in resolutions:
    raise ValueError(f"resolutions {resolutions} must include {FULL} (full resolution), the reference of every ratio")
if repeats < 5:
    raise ValueError(f"repeats = {repeats}: at least 5 interleaved rounds are needed for a range worth reading")
NAME = "seg_mnist_mcr2"  # see the note below on the masked experiment


def pooling(size):
    """The override that computes MCR² at size×size cells (None: every pixel)."""
    return {"loss.mcr2_resolution": None if size == FULL else size}


missing_note = ""
if profile == "auto":
    # One profile for every resolution, so that they compare: paper only where all of them have it.
    plans = {s: profile_plan([NAME], "auto", seeds, device=device, **pooling(s))[NAME] for s in resolutions}
    profile = "paper" if all(p == "paper" for p, _ in plans.values()) else "smoke"
    if profile == "paper" and seeds is None:
        seeds = sorted(set.intersection(*(set(s) for _, s in plans.values())))
    missing = [s for s, (p, _) in plans.items() if p != "paper"]
    if profile == "smoke" and len(missing) < len(resolutions):
        missing_note = (
            f" Paper records of `{NAME}` exist at " + ", ".join(resolution_label(s) for s in resolutions if s not in missing)
            + " but not at " + ", ".join(resolution_label(s) for s in missing) + ", so every resolution is rendered "
            f"at the smoke profile; on a GPU, `python -m mcr2 run {NAME} --profile paper --seeds 0 1 2 --runs-dir "
            f"results/paper --set loss.mcr2_resolution=SIZE` makes the missing ones.")
dev = resolve_device(device)
# The cost is measured at the scale this device trains: the paper's model and batches on a GPU,
# the smoke profile's on a CPU (a CPU would take hours over paper-sized batches).
scale = "paper" if dev.type == "cuda" else "smoke"
cost_exp = experiment(NAME, scale)
display(Markdown(f"Runs rendered at profile **{profile}**; cost measured on {device_name(dev)} with the "
                 f"{scale} profile's model of `{NAME}`: U-Net width {cost_exp.model.width}, depth "
                 f"{cost_exp.model.depth}, d = {cost_exp.model.feature_dim}, k = {cost_exp.num_classes}."
                 + missing_note))

# %% [markdown]
# ## What the loss costs
#
# On random unit features and random labels of one batch we time the forward and backward pass
# of the loss at each resolution, and the forward and backward pass of the U-Net on the same
# batch (no optimiser step or data loading, so the loss's share of a step is an upper bound).
# The calls are **interleaved**: each round calls every one of them once, in an order that
# rotates from round to round, so a change of load on a shared machine falls on all of them
# alike. A time is the median of the rounds with their range (min–max); a ratio (how many times
# faster, which share of a step) is taken within each round and reported the same way. We call a
# difference resolved only when the whole range of the paired ratios lies on one side of "no
# difference". Memory is the CUDA allocator's peak on a GPU; on a CPU it is the memory autograd
# keeps for the backward pass, which does not depend on load.

# %%
images_per_batch = [10, 40, 128] if scale == "smoke" else [10, 128, 512, 1000]
d, k = cost_exp.model.feature_dim, cost_exp.num_classes
unet = dict(width=cost_exp.model.width, depth=cost_exp.model.depth)
cost = pd.DataFrame([{**r, "images": images}
                     for images in images_per_batch
                     for r in measure_loss(images, d, k, resolutions, repeats=repeats, device=dev, unet=unet)])


def with_range(row, column, fmt="{:.2f}", scale=1.0):
    """"median [min–max]" of a measured column."""
    value, lo, hi = (fmt.format(scale * row[column + suffix]) for suffix in ("", "_lo", "_hi"))
    return f"{value} [{lo}–{hi}]"


largest = cost[cost["images"] == max(images_per_batch)].set_index("size")
page_table(pd.DataFrame({
    "loss (ms)": [with_range(r, "time_s", "{:.1f}", 1e3) for _, r in largest.iterrows()],
    "× faster": [with_range(r, "speedup") for _, r in largest.iterrows()],
    "memory (MiB)": largest["memory_mib"].round(1).to_numpy(),
    "share of step": [with_range(r, "share", "{:.1f}", 100) + " %" for _, r in largest.iterrows()],
}, index=pd.Index([resolution_label(s) for s in largest.index], name=f"MCR² at ({max(images_per_batch)} images)")), digits=1)

# %% [markdown]
# Each cell: median [min–max] of the interleaved rounds, for the largest batch (the figures below
# show every batch size); "× faster" compares with full resolution in the same round, "share of
# step" is loss / (loss + U-Net) in the same round.

# %%
NEGLIGIBLE = 0.05  # a loss under 5% of a step is what we call negligible
coarsest = min(resolutions)
fig, axes = page_mosaic([["speed", "memory"], ["time", "time"]], height=6.2)  # time at full width below
plot_speedup_vs_resolution(axes["speed"], largest.reset_index())
plot_cost_vs_resolution(axes["memory"], largest.reset_index(), "memory_mib")
axes["memory"].set_ylabel("peak memory (MiB)" if dev.type == "cuda" else "memory kept for\nbackward (MiB)")
for key in ("speed", "memory"):
    axes[key].set_xlabel("resolution of MCR²")
plot_cost_vs_pixels(axes["time"], cost, "time_s")
glue("08-cost", legible(fig, name="08-cost"), display=False)
plt.close(fig)

memory_kind = "the CUDA allocator's peak" if dev.type == "cuda" else "the memory autograd keeps for the backward pass"
timing = f"{repeats} interleaved rounds per batch size on {device_name(dev)}, d = {d}, k = {k}"
glue("08-timing-setting", Markdown(timing), display=False)
glue("08-cost-setting", Markdown(f"{timing}; memory is {memory_kind}"), display=False)
glue("08-images", int(max(images_per_batch)), display=False)
glue("08-coarsest", Markdown(resolution_label(coarsest)), display=False)

c = largest.loc[coarsest]
speed = {1: f"runs {c['speedup']:.1f} times faster than at full resolution (median of the paired ratios; "
            f"range {c['speedup_lo']:.1f}–{c['speedup_hi']:.1f}, every round faster)",
         -1: f"runs {1 / c['speedup']:.1f} times slower than at full resolution (every round slower; paired "
             f"ratios {c['speedup_lo']:.2f}–{c['speedup_hi']:.2f})",
         0: f"shows no difference in time from full resolution that this machine resolves: the paired ratios of "
            f"the rounds range from {c['speedup_lo']:.2f} to {c['speedup_hi']:.2f}, across 1 (median "
            f"{c['speedup']:.2f})"}[resolved(c["speedup_lo"], c["speedup_hi"])]
rows_ratio = (FULL / coarsest) ** 2
memory_ratio = largest.loc[FULL, "memory_mib"] / c["memory_mib"]
if resolved(c["speedup_lo"], c["speedup_hi"], at=rows_ratio) == -1:
    why = (f"In every round the time falls by less than the rows do ({rows_ratio:g} times fewer), because part "
           f"of the loss does not depend on them: the k + 1 log-determinants of d × d matrices, and the pooling "
           f"and the majority vote, which read every pixel.")
else:
    why = (f"The rows fall {rows_ratio:g}-fold; whether the time falls by less, as the loss's fixed part (the "
           f"k + 1 log-determinants, the pooling) would make it, is not resolved by these rounds.")
glue("08-speed", Markdown(speed), display=False)
glue("08-memory", Markdown(f"keeps {memory_ratio:.1f} times less memory for its backward pass"), display=False)
glue("08-why", Markdown(why), display=False)
print(f"at {max(images_per_batch)} images, {resolution_label(coarsest)}: {speed}; memory ÷ {memory_ratio:.1f}")

# %% [markdown]
# ```{glue:figure} 08-cost
# :name: fig-08-cost
#
# Forward+backward cost of the MCR² loss on random unit features, for a batch of
# {glue:text}`08-images` images: how many times faster than at full resolution, paired within
# each round (top left; dotted: no difference), and memory (top right), against the resolution the
# loss is computed at; time against the pixels per batch, one line per resolution (bottom, log-log).
# Points are medians, bars the range of the rounds: {glue:md}`08-cost-setting`.
# ```
#
# At {glue:md}`08-coarsest` the loss {glue:md}`08-speed`, and it {glue:md}`08-memory`
# ({numref}`fig-08-cost`). Memory goes with the rows of $Z$: pooling to $s \times s$ leaves
# $(s/28)^2$ of them, so 14×14 keeps a quarter and 7×7 a sixteenth. {glue:md}`08-why`

# %%
fig, ax = page_figure(height=3.4)
plot_share_vs_pixels(ax, cost, negligible=NEGLIGIBLE)
glue("08-share", legible(fig, name="08-share"), display=False)
plt.close(fig)


def share_text(size):
    r = largest.loc[size]
    return f"{100 * r['share']:.1f}% (range {100 * r['share_lo']:.1f}–{100 * r['share_hi']:.1f}%)"


glue("08-share-full", Markdown(share_text(FULL)), display=False)
glue("08-share-coarsest", Markdown(share_text(coarsest)), display=False)
below = [s for s in resolutions if largest.loc[s, "share_hi"] < NEGLIGIBLE]
above = [s for s in resolutions if largest.loc[s, "share_lo"] > NEGLIGIBLE]
if below:
    verdict = f"falls below {NEGLIGIBLE:.0%} of a step, in every round, from {resolution_label(max(below))} on"
elif len(above) == len(resolutions):
    verdict = f"stays above {NEGLIGIBLE:.0%} of a step, in every round, at every resolution measured"
else:
    unresolved = ", ".join(resolution_label(s) for s in resolutions if s not in above)
    verdict = (f"is not resolved against {NEGLIGIBLE:.0%} of a step at {unresolved}: the rounds fall on both sides "
               f"of it")
glue("08-negligible", Markdown(verdict), display=False)
print("loss share of a step at", max(images_per_batch), "images:",
      ", ".join(f"{resolution_label(s)} {share_text(s)}" for s in resolutions), "->", verdict)

# %% [markdown]
# ```{glue:figure} 08-share
# :name: fig-08-share
#
# Share of a training step taken by the MCR² loss: loss time over loss time plus the U-Net's
# forward+backward time on the same batch, paired within each round, against the pixels per
# batch, one line per resolution (median, bar: range of the rounds); the dotted line is the 5%
# we call negligible. {glue:md}`08-timing-setting`.
# ```
#
# With {glue:text}`08-images` images per batch the loss takes {glue:md}`08-share-full` of a step
# at full resolution and {glue:md}`08-share-coarsest` at {glue:md}`08-coarsest`; it
# {glue:md}`08-negligible` ({numref}`fig-08-share`). The share depends on the width of the
# U-Net: these rounds time the model named above, on this device.

# %% [markdown]
# ## What pooling does to accuracy
#
# We train the segmentation model of plain MNIST (`seg_mnist_mcr2`: MCR² over all pixels,
# background included, as in {doc}`04_segmentation`) with MCR² at each resolution: every pixel
# trains MCR² from the first step. The masked experiment on CIFAR-100 backgrounds
# (`seg_bg_mcr2_masked`) would be the natural one, but its MCR² term only starts once the
# background head passes its threshold, and a run in which the head never does, or collapses
# after the switch, says nothing about the pooling ({doc}`06_masking` shows that switch).

# %%
runs = {size: run_all([NAME], profile, seeds, runs_dir=default_runs_dir(profile), retrain=retrain, device=device,
                      progress=progress, **pooling(size))[NAME]
        for size in resolutions}
settings = settings_text(runs)
if any(r.config.profile == "custom" for recs in runs.values() for r in recs):
    settings += (f" (profile custom: the {profile} profile with only `loss.mcr2_resolution` changed, at "
                 + ", ".join(resolution_label(s) for s in resolutions if s != FULL) + ")")
print(f"Settings of these runs: {settings}.")
glue("08-scale", Markdown(scale_text({resolution_label(s): recs for s, recs in runs.items()})), display=False)
HTML(runs_behind({resolution_label(s): recs for s, recs in runs.items()}))

# %% [markdown]
# The wall times above were recorded one run after another, under whatever load the machine had
# then: they are listed, not compared. The interleaved rounds above are the measurement of speed.

# %%
fig, axes = page_figure(1, 2, height=3.3)
plot_accuracy_vs_resolution(axes[0], runs)
axes[0].set_xlabel("resolution of MCR²")
plot_metric_curves(axes[1], {resolution_label(s): recs for s, recs in runs.items()}, "mnist_foreground_acc",
                   ylabel="non-background pixel accuracy")
glue("08-accuracy", legible(fig, name="08-accuracy"), display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} 08-accuracy
# :name: fig-08-accuracy
#
# `seg_mnist_mcr2` trained with MCR² at each resolution, predictions at full resolution: final
# validation accuracy over the pixels whose truth is a digit (left) and that accuracy over
# training (right); {glue:md}`08-scale`.
# ```

# %%
acc = final_run_values(runs).set_index("size")
n_seeds = int(acc["n"].min())
glue("08-acc-full", float(acc.loc[FULL, "mean"]), display=False)
glue("08-acc-coarsest", float(acc.loc[coarsest, "mean"]), display=False)
per_seed = {s: [final_value(r, "mnist_foreground_acc") for r in recs] for s, recs in runs.items()}
if n_seeds < MIN_SEEDS:
    accuracy_verdict = (f"With {n_seeds} seed{'s' if n_seeds > 1 else ''} per resolution there is no spread to "
                        f"test the difference against (the claims ledger needs {MIN_SEEDS}): no conclusion about the "
                        f"accuracy cost of pooling is drawn from these runs.")
else:
    outcome = compare(per_seed[coarsest], per_seed[FULL])
    accuracy_verdict = {
        1: f"Over {n_seeds} seeds the coarser loss is more accurate, beyond the spread of the seeds.",
        -1: f"Over {n_seeds} seeds the coarser loss is less accurate, beyond the spread of the seeds.",
        0: f"Over {n_seeds} seeds the difference is within the spread of the seeds: no accuracy cost of pooling "
           f"is resolved.",
    }[outcome]
if profile == "smoke":
    accuracy_verdict += (" These are smoke-profile runs (a narrow U-Net, a few epochs on a few hundred images): they "
                         "show that the switch trains end to end, not what it costs at the report's scale.")
glue("08-acc-verdict", Markdown(accuracy_verdict), display=False)
print("final non-background accuracy:", ", ".join(f"{resolution_label(s)} {acc.loc[s, 'mean']:.3f}" for s in resolutions),
      "->", accuracy_verdict)

# %% [markdown]
# Trained with MCR² at full resolution the model labels {glue:text}`08-acc-full:.3f` of the digit
# pixels correctly; at {glue:md}`08-coarsest`, {glue:text}`08-acc-coarsest:.3f`
# ({numref}`fig-08-accuracy`). {glue:md}`08-acc-verdict` A coarser loss cannot tell apart pixels
# within a cell; the full-resolution predictions rely on the decoder to sharpen what the loss only
# sees in blocks.

# %% [markdown]
# ## The paper profile on a GPU
#
# At the report's scale every experiment is GPU work. The table lists, per experiment, the seeds
# whose paper records are committed, the estimated wall time of one run, and what that estimate
# rests on: `mcr2/paper_costs.json` holds the wall times of the runs made so far on the GPU. A time
# measured with eager steps is scaled by the measured speed-up of a training step replayed as a
# CUDA graph, which is how the runs now train on one CUDA device. {glue:md}`08-profile-total`

# %%
paper_dir = default_runs_dir("paper")
totals = paper.profile_seconds(paper_dir)
total_text = (f"All {totals['runs']} runs of the paper profile take about {totals['seconds'] / 60:.0f} min one at a "
              f"time on one {totals['device']}")
total_text += (f"; the {totals['missing']} without a committed record about {totals['missing_seconds'] / 60:.0f} min, "
               f"made by `python -m mcr2 paper --budget SECONDS` on a GPU machine (README)." if totals["missing"]
               else "; every one of them has a committed record.")
glue("08-profile-total", Markdown(total_text), display=False)
profile_frame = paper.profile_table(paper_dir)
page_table(profile_frame, wrap=(profile_frame.columns[-1],))  # the last column explains, in words

