# %% [markdown]
# # MCR² for multi-domain semantic segmentation
#
# **What this book finds.** Every checkable sentence of the report, judged from
# {glue:md}`intro-verdict-scale`:
#
# ```{glue:md} intro-verdicts
# :format: myst
# ```
#
# ✓ / ✗: the runs confirm / contradict the sentence (one-sided t-tests over seeds, at 5 % each
# way); inconclusive: they cannot decide, with the way they lean. "Consistent with the report":
# whether the report's own numbers lie inside our 95 % t-intervals over seeds ("—": it gives none,
# or the records cannot bear a verdict). Each claim links to its line in the {doc}`09_claims`,
# with the numbers per seed, the rule and the tests; the last column to the page that shows the
# evidence.
#
# This book is the executable companion of the report *Multi-Domain Semantic Segmentation via the
# Principle of Rate Reduction* (Buracas & Miller). The report trains networks with the maximal coding
# rate reduction objective (MCR², Yu et al. 2020) instead of cross-entropy, first to classify
# handwritten digits from two domains (MNIST and USPS), then to label every pixel of digits pasted
# on CIFAR backgrounds. The library `mcr2/` implements the objective, the nearest-subspace classifier,
# the data sets and the models; each chapter of this book configures it, runs it, and draws the
# report's figures again from the records of those runs.

# %% tags=["parameters", "remove-cell"]
profile = "auto"  # auto | smoke | paper: the profile this build renders (tools/book.py passes the chapters' one)
progress = "auto"  # training progress of smoke runs the verdicts need and no record holds yet: "auto" | "bar" | "lines" | "off"

# %% tags=["remove-cell"]
from IPython.display import Markdown
from myst_nb import glue

from mcr2.claims import evaluate_claims, verdict_markdown
from mcr2.engine import run_all
from mcr2.experiments import EXPERIMENTS

# The verdicts, from the same records and the same ledger as the claims page (a smoke run the
# ledger needs and no record holds is trained here; later chapters load it).
verdict_records = run_all(list(EXPERIMENTS), profile, progress=progress)
glue("intro-verdicts", Markdown(verdict_markdown(evaluate_claims(verdict_records))), display=False)
at_scale = [name for name, recs in verdict_records.items() if recs and recs[0].config.profile == "paper"]
glue("intro-verdict-scale", Markdown(
    f"the run records of this build, {len(at_scale)} of {len(verdict_records)} experiments at the report's scale "
    f"(the paper profile; the others at the smoke profile, whose toy runs decide nothing)"), display=False)

# %% [markdown]
# ## The scale of this build
#
# Which experiments this build of the book shows at the report's scale, and which only at the
# smoke profile, read from the run records at hand (its code, hidden here, is in `book/intro.py`):

# %% tags=["remove-input"]
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown
from myst_nb import glue

import mcr2
from mcr2.engine import profile_plan
from mcr2.experiments import CHAPTER_EXPERIMENTS, EXPERIMENTS, PROFILE_SEEDS
from mcr2.plots import legible, page_figure, plot_profile_plan, use_style
from mcr2.records import default_runs_dir
from mcr2.summary import page_table

ROOT = Path(mcr2.__file__).resolve().parents[1]  # the repository, for paths a reader can find

use_style()
names = list(EXPERIMENTS)
plan = profile_plan(names, profile)  # what the chapters render: {name: (profile, seeds)}
recorded = profile_plan(names, "auto", device="cpu")  # without CUDA, auto names the paper seeds on record
paper_seeds = len(PROFILE_SEEDS["paper"])
chapters = {name: ", ".join(topic for topic, members in CHAPTER_EXPERIMENTS.items() if name in members) for name in names}
page_table(pd.DataFrame({
    "experiment": names,
    "chapters": [chapters[n] or "—" for n in names],
    "profile": [plan[n][0] for n in names],
    "seeds": [", ".join(map(str, plan[n][1])) for n in names],
    "paper records": [f"seed {', '.join(map(str, recorded[n][1]))}" if recorded[n][0] == "paper" else "none"
                      for n in names],
}))

# %% tags=["remove-input"]
fig, ax = page_figure(height=0.32 * len(names) + 1.2)
plot_profile_plan(ax, plan, paper_seeds=paper_seeds)
glue("intro-plan", legible(fig, name="intro-plan"), display=False)
plt.close(fig)

home = default_runs_dir("paper")
runs_home = f"{home.relative_to(ROOT)}/" if home.is_relative_to(ROOT) else str(home)
at_paper = [n for n in names if plan[n][0] == "paper"]
not_yet = [n for n in names if plan[n][0] != "paper"]
short = [n for n in at_paper if len(plan[n][1]) < paper_seeds]


def listing(items):
    return ", ".join(f"`{n}`" for n in items)


if at_paper:
    verb = "is" if len(at_paper) == 1 else "are"
    text = f"{len(at_paper)} of {len(names)} experiments {verb} rendered at the paper profile: {listing(at_paper)}"
    if short:
        which = ("it comes" if len(at_paper) == 1 else "each comes") if short == at_paper else f"{listing(short)} come"
        text += (f"; {which} from fewer seeds than the paper profile's {paper_seeds}: too few for the claims "
                 f"ledger to test a difference")
    text += "."
else:
    text = f"No experiment is rendered at the paper profile in this build (profile `{profile}`)."
if not_yet:
    text += (f" Not yet at paper scale: {listing(not_yet)}, rendered at the smoke profile. Their paper records are "
             f"made on a machine with a GPU by `python -m mcr2 paper --budget SECONDS` and land in "
             f"`{runs_home}`, where the next build finds them.")
glue("intro-scale", Markdown(text), display=False)

# %% [markdown]
# ```{glue:figure} intro-plan
# :name: fig-intro-plan
#
# The profile each experiment is rendered at in this build and the number of seeds behind it;
# dashed: the seeds the paper profile asks for (mean ± sd over seeds).
# ```
#
# {glue:md}`intro-scale` Each chapter's figures and tables repeat, per experiment, the profile,
# seeds and commit of the runs behind them ({numref}`fig-intro-plan`).

# %% [markdown]
# ## The objective
# Features $Z \in \mathbb{R}^{m \times d}$ hold $m$ samples as rows, each on the unit sphere; $Z_j$
# are the $m_j$ rows of class $j$ among $k$ classes, and $\varepsilon^2$ is the squared precision
# (`eps_sq`, 0.5 throughout). The discriminative and compressive coding rates are
#
# $$
# \begin{aligned}
# R &= \frac12 \log\det\!\Big(I_d + \frac{d}{m\,\varepsilon^2} Z^\top Z\Big),\\
# R_c &= \sum_{j=1}^{k} \frac{m_j}{2m} \log\det\!\Big(I_d + \frac{d}{m_j\,\varepsilon^2} Z_j^\top Z_j\Big),
# \end{aligned}
# $$
#
# and training maximises the rate reduction
#
# $$
# \Delta R = R - R_c, \qquad \text{i.e. minimises} \quad \mathcal{L} = R_c - \gamma R \quad (\gamma = 1).
# $$
#
# A test feature $z$ is classified by the nearest class subspace: with $U_j$ the top-$r$ principal
# directions of class $j$'s training features, the prediction is
# $\arg\min_j \lVert z - U_j U_j^\top z \rVert$.
#
# ## What the report claims
#
# 1. Trained on MNIST and USPS together (DIGITS), MCR² beats cross-entropy on both validation sets
#    (about 0.989 / 0.978 against 0.987 / 0.972).
# 2. Trained on MNIST only, MCR² does not generalise to USPS better than cross-entropy
#    (about 0.29 against 0.52 on USPS).
# 3. Segmenting digits on CIFAR backgrounds, $R_c$ is higher than on plain MNIST while $R$ is about
#    the same ($R \approx 45$–$46$ in both; $R_c \approx 37.5$ against $34.5$).
# 4. A background head reaches 99% background accuracy within 5 epochs.
# 5. Masking the background out of the MCR² loss beats both unmasked MCR² and cross-entropy on
#    non-background pixel accuracy (about 0.96 against 0.88 and 0.93).
# 6. With masking, the cosine similarity of pixel features from different classes is near 0, and
#    within a class nearer 1 than without masking.
#
# ## What this book does
#
# - **Every figure is regenerated.** Each chapter is a Python file executed from top to bottom; its
#   figures are drawn by the `mcr2.plots` functions from the run records the chapter produced or
#   read, never pasted in.
# - **Two profiles.** The `smoke` profile runs every chapter in minutes on a CPU, with tiny data and
#   few epochs: it checks that the whole pipeline works, not that the numbers match the report. The
#   `paper` profile uses the report's settings; it trains on a GPU, and its records are committed
#   (`results/paper/`), so a CPU renders them without training. By default (`auto`) each experiment
#   is rendered at the paper profile wherever its paper records exist, and at the smoke profile
#   otherwise; every figure and table names the profile, seeds and commit of the runs behind it.
#   Figures from a smoke run say nothing about the claims.
# - **A claims ledger.** The claims above, and the other checkable sentences of the report's text
#   (claims 2c, 4b, 7–13 in the table at the top), are checked one by one, each as a ✓, ✗ or
#   "inconclusive" line computed from the run records (accuracies, rates, cosine blocks) against the
#   report's statement — not typed by hand.
# - **Differences are switches.** Where the report and the authors' code disagree, the report is the
#   default and the code's choice is a documented setting.
#
# ## How to read it
#
# Start with {doc}`01_rate_reduction`: one page, no training, on synthetic features where the answer
# is known. It shows what $R$ and $R_c$ measure and how the nearest-subspace decision works. Later
# chapters follow the report's order — data, classification across domains, segmentation, background
# masking — and each ends by comparing its numbers with the report's. Code cells are part of the
# text: they show the few settings a chapter uses and which library calls produce each figure.
#
# ## Re-executing a chapter
#
# Chapters are executed with papermill from their sources in `book/`; the executed notebooks and the
# HTML are written under `_build/`. To run one chapter on the smoke profile and refresh the HTML:
#
# ```bash
# export MCR2_DATA=/path/to/data   # the data root (MNIST, USPS, CIFAR-100 backgrounds)
# .venv/bin/python tools/book.py execute 01_rate_reduction --profile smoke -p seed=1
# .venv/bin/python tools/book.py build --no-execute
# ```
#
# (`-p key=value` overrides a parameter of the chapter's `parameters` cell.) `make book` executes
# every chapter on the `auto` profile (set `PROFILE=` to choose) and builds this HTML into
# `_build/html`; `make test` runs the unit tests, executes every chapter on the smoke profile and
# builds the book with warnings as errors.
