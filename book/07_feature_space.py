# %% [markdown]
# # Feature space
#
# MCR² asks for features that are similar within a class and orthogonal between classes. The
# report looks at this directly (its Figure 7): 25 000 randomly sampled validation pixels, their
# features sorted by label, and the cosine similarity of every pair as an image. Without
# background masking it sees bright off-diagonal blocks (digit classes that are not told apart)
# and a sparse background block (background is hard to compress); with masking the off-diagonal
# blocks are near zero. The masked panel leaves out the background class, for which that model
# learns no MCR² representation.
#
# One number per block summarises the image: the mean **absolute** cosine similarity between the
# pixels of class $i$ and of class $j$ (each pixel's similarity with itself left out), over all the
# pixels a run samples. The absolute value is taken per pair before averaging: features spread
# symmetrically over a subspace have positive and negative cosines that cancel in a signed mean,
# which would call even classes that share one subspace "orthogonal". Orthogonal class subspaces
# give 0 between classes; the within-class value is higher the fewer directions a class uses.
# The heatmaps draw the subset of features each run keeps.

# %% tags=["parameters"]
profile = "auto"  # auto | smoke | paper (auto: paper where complete paper records exist or CUDA trains them, else smoke)
seeds = None  # None: the profile's default seeds (smoke: [0]; paper: [0, 1, 2], those recorded), or a list of ints
device = "auto"  # where missing runs train: "auto" (CUDA if available), "cpu" or "cuda"
retrain = False  # True: train again even where a complete run record exists
progress = "auto"  # training progress: "auto", "bar", "lines" or "off"

# %%
import matplotlib.pyplot as plt
from IPython.display import HTML, Markdown
from myst_nb import glue

from mcr2.claims import claims_table, verdict_text
from mcr2.engine import run_all
from mcr2.plots import legible, page_figure, plot_feature_cosine, use_style
from mcr2.summary import cosine_summary_table, page_table, record_cosine_blocks, runs_behind, scale_text, settings_text

use_style()
runs = run_all(["seg_bg_mcr2", "seg_bg_mcr2_masked"], profile, seeds, retrain=retrain, device=device, progress=progress)
settings = settings_text(runs)
sources = sorted({record_cosine_blocks(r).describe() for recs in runs.values() for r in recs})
kept = sorted({len(r.artefacts["feature_labels"]) for recs in runs.values() for r in recs})
pixels = f"block means from {'; '.join(sources)}; heatmaps from the {', '.join(f'{n:,}' for n in kept)} pixels each run keeps"
glue("07-pixels", Markdown(pixels), display=False)
glue("07-scale", Markdown(scale_text(runs)), display=False)
print(f"profile: {profile}; {settings}\n{pixels}")
HTML(runs_behind(runs))

# %%
fig, axes = page_figure(1, 2, height=3.9)
# As in the report: the unmasked model's panel keeps the background class (its sparse block is the
# point), the masked model's leaves it out (that model learns no MCR² representation of it).
plot_feature_cosine(axes[0], runs["seg_bg_mcr2"], title="without masking (bg kept)", cbar=False)
plot_feature_cosine(axes[1], runs["seg_bg_mcr2_masked"], exclude_background=True, title="with masking (digits)")
glue("07-cosine", legible(fig, name="07-cosine"), display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} 07-cosine
# :name: fig-07-cosine
#
# Report Figure 7: absolute cosine similarity between the features of random validation pixels
# (MNIST over backgrounds) sorted by label, class blocks outlined, for MCR² without (left, with the
# background class "bg") and with background masking (right, digits only, as in the report). The
# report sees a sparse background block and bright off-diagonal blocks without masking, off-diagonal
# blocks near zero with it. The first seed's runs ({glue:md}`07-scale`); {glue:md}`07-pixels`.
# ```
#
# {numref}`fig-07-cosine` shows the two feature spaces. The table summarises each from its
# block means: the mean within-class and between-class |cos| (each class, and each pair of
# classes, counted once) over all 11 classes and over the 10 digit classes only.

# %%
named = {"without masking": runs["seg_bg_mcr2"], "with masking": runs["seg_bg_mcr2_masked"]}
page_table(cosine_summary_table(named), wrap=("pixels",))

# %% [markdown]
# The digit-class numbers are those of the report's claim; beside it the claims ledger's verdict
# ({doc}`09_claims`):

# %%
page_table(claims_table(runs, ["6"]), wrap=("quantity", "verdict"))

# %% tags=["remove-output"]
# (The verdicts print here for a notebook; the page shows them once, as Markdown, below.)
verdicts = verdict_text(runs, ["6"])
glue("07-verdicts", Markdown(verdicts), display=False)
print(verdicts)

# %% [markdown]
# {glue:md}`07-verdicts`
#
# The report shows Figure 7 only as images; "near 0" is read here as a mean between-class |cos|
# below 0.1 (random directions in 128 dimensions give about 0.07, ten classes that share one
# 11-dimensional subspace about 0.25).
