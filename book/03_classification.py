# %% [markdown]
# # Classification across domains
#
# The report first asks whether MCR² helps a classifier cope with two digit domains, MNIST and
# USPS. A ResNet18 with a 128-dimensional unit-norm feature head is trained either with MCR² (the
# prediction is the nearest class subspace of the training features) or with cross-entropy (CE, a
# linear head over the features), on one of two training sets:
#
# - **DIGITS**, MNIST and USPS together (multi-domain, report Figure 1a). The report finds MCR²
#   ahead of CE on both validation sets (0.989 vs 0.987 on MNIST, 0.978 vs 0.972 on USPS).
# - **MNIST only** (cross-domain, report Figure 1b). The report finds MCR² behind CE on both, and
#   far behind on the unseen USPS domain (0.93 vs 0.98 on MNIST, 0.29 vs 0.52 on USPS): MCR² does
#   not generalise across domains better than CE.
#
# The report's USPS numbers come from its authors' code, which pastes the 16×16 USPS digits
# unscaled at a random offset into the 28×28 frame; this book resizes them into MNIST's 20×20 box
# by default (the faithfulness appendix shows both). The MNIST-only models are therefore validated
# on USPS in both layouts: claim 2a with the resized digits, claim 2b with the padded ones, which
# alone is comparable with the report's 0.29 and 0.52. All models are validated on the MNIST and
# the USPS test sets during training.

# %% tags=["parameters"]
profile = "auto"  # auto | smoke | paper (auto: paper where complete paper records exist or CUDA trains them, else smoke)
seeds = None  # None: the profile's default seeds (smoke: [0]; paper: [0, 1, 2], those recorded), or a list of ints
device = "auto"  # where missing runs train: "auto" (CUDA if available), "cpu" or "cuda"
retrain = False  # True: train again even where a complete run record exists
progress = "auto"  # training progress: "auto", "bar", "lines" or "off"

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown
from myst_nb import glue

from mcr2.claims import claims_table, verdict_text
from mcr2.engine import run_all
from mcr2.experiments import CHAPTER_EXPERIMENTS
from mcr2.plots import METHOD_COLORS, plot_accuracy_curves, use_style
from mcr2.summary import records_summary, settings_text, tag_profiles

use_style()
runs = run_all(CHAPTER_EXPERIMENTS["classification"], profile, seeds, retrain=retrain, device=device, progress=progress)
settings = settings_text(runs)
glue("03-settings", Markdown(settings), display=False)
print(f"profile: {profile}; {settings}")
records_summary(runs).style.hide(axis="index").set_properties(**{"font-size": "0.85em"})

# %% [markdown]
# ## Accuracy over training

# %%
colors = {"MCR²": METHOD_COLORS["mcr2"], "CE": METHOD_COLORS["ce"]}
panels = {
    "(a) trained on DIGITS (MNIST + USPS)": ({"MCR²": runs["cls_digits_mcr2"], "CE": runs["cls_digits_ce"]}, ("mnist", "usps")),
    "(b) MNIST only, USPS resized": ({"MCR²": runs["cls_mnist_mcr2"], "CE": runs["cls_mnist_ce"]}, ("mnist", "usps")),
    "(c) MNIST only, USPS padded (authors')": ({"MCR²": runs["cls_mnist_mcr2_pad"], "CE": runs["cls_mnist_ce_pad"]}, ("usps",)),
}
mixed = len({r.config.profile for recs in runs.values() for r in recs}) > 1
fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), sharey=True, constrained_layout=True)
for ax, (title, (panel_runs, domains)) in zip(axes, panels.items()):
    tagged, tagged_colors = tag_profiles(panel_runs, colors, always=mixed)  # "CE (paper)" when profiles differ
    plot_accuracy_curves(ax, tagged, domains=domains, colors=tagged_colors, title=title)
glue("03-accuracy-curves", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} 03-accuracy-curves
# :name: fig-03-accuracy-curves
#
# Validation accuracy on MNIST (solid) and USPS (dashed) during training, MCR² (nearest
# subspace) vs CE, trained on DIGITS (a, report Figure 1a) and on MNIST only, validated on USPS
# resized (b) and padded at a random offset as in the authors' code (c, USPS only; its MNIST curves
# are those of b's training set); where the runs come from different profiles, the legend names
# each run's;
# {glue:md}`03-settings`. The report's final values: (a) MCR² 0.989 MNIST / 0.978 USPS, CE 0.987 /
# 0.972; (b, c) MCR² 0.93 / 0.29, CE 0.98 / 0.52, its USPS numbers from the padded layout.
# ```
#
# {numref}`fig-03-accuracy-curves` shows the curves. The table puts the final accuracies beside
# the report's, with the claims ledger's verdict on each claim ({doc}`09_claims`):

# %%
claims_table(runs, ["1", "2a", "2b"]).style.hide(axis="index")

# %% tags=["remove-output"]
# (The verdicts print here for a notebook; the page shows them once, as Markdown, below.)
verdicts = verdict_text(runs, ["1", "2a", "2b"])
glue("03-verdicts", Markdown(verdicts), display=False)
print(verdicts)

# %% [markdown]
# The ledger's verdicts on these runs, with the tests behind them (Δ is MCR² minus CE for
# claim 1, CE minus MCR² for claim 2):
#
# {glue:md}`03-verdicts`
#
# The report's DIGITS margins (claim 1) are a few thousandths: only several seeds per arm at the
# report's scale can tell such a margin from seed-to-seed noise, which is why the ledger needs
# three finite seeds per arm and a one-sided Welch test before it says ✓ or ✗.
