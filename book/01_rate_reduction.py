# %% [markdown]
# # Rate reduction in one page
#
# MCR² scores a set of features $Z$ (rows are samples, each on the unit sphere) by two coding
# rates. The **discriminative** rate $R$ measures the volume the whole set spans; the
# **compressive** rate $R_c$ is the average volume of each class on its own:
#
# $$
# R = \frac12 \log\det\!\Big(I_d + \frac{d}{m\,\varepsilon^2} Z^\top Z\Big),
# $$
#
# $$
# R_c = \sum_{j=1}^{k} \frac{m_j}{2m} \log\det\!\Big(I_d + \frac{d}{m_j\,\varepsilon^2} Z_j^\top Z_j\Big),
# $$
#
# with $m$ samples in all, $m_j$ of them in class $j$ ($Z_j$), $d$ the feature dimension and
# $\varepsilon^2$ the squared precision (`eps_sq`).
#
# Training maximises $\Delta R = R - R_c$: the classes together should fill the space while each
# class stays on a small subspace. This page shows, on synthetic features where the answer is known,
# how $R$ and $R_c$ move as the class subspaces collapse or spread, and how the nearest-subspace
# classifier used throughout the report reads the labels back from such features. Nothing here is
# trained; it runs in seconds on a CPU.

# %% tags=["parameters"]
profile = "auto"  # auto | smoke | paper: printed only; nothing here is trained, so every profile gives this page
seed = 0  # seed of the random subspaces, coefficients and noise
feature_dim = 32  # d, dimension of the features
num_classes = 4  # k, number of classes (one subspace each)
samples_per_class = 200  # m_j, samples drawn per class (k·m_j in all)
eps_sq = 0.5  # ε², squared precision of the coding rates (0.5 in both codes)
progress = "auto"  # unused here (nothing is trained); every chapter takes it

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from myst_nb import glue

import mcr2
from mcr2.plots import legible, page_figure, plot_cosine_similarity, plot_rate_curves, plot_subspace_accuracy, use_style

use_style()
print(f"profile={profile} seed={seed} d={feature_dim} k={num_classes} m_j={samples_per_class} eps_sq={eps_sq}")


# %% [markdown]
# ## Features on a few subspaces
#
# Class $j$ lives on an $r$-dimensional subspace with orthonormal basis $U_j$. A sample is
# $U_j c$ for Gaussian coefficients $c$, put on the unit sphere, plus isotropic noise of norm about
# $\sigma$, and normalised again, as a network's normalised output would be.
#
# For the sweeps, class $j$ spans $r$ consecutive columns of one random rotation of
# $\mathbb{R}^d$, wrapping around after the last: the classes are mutually orthogonal as long as
# $k r \le d$ and are forced to share directions beyond. The classifier section below uses
# independent random subspaces instead, which overlap a little at any $r$.

# %%
def random_bases(num_classes, feature_dim, r, generator):
    """Orthonormal bases of k random r-dim subspaces: (k, d, r)."""
    return torch.linalg.qr(torch.randn(num_classes, feature_dim, r, generator=generator)).Q


def rotation_bases(num_classes, feature_dim, r, generator):
    """Class j spans columns j·r … j·r + r − 1 (mod d) of a random rotation: (k, d, r)."""
    Q = torch.linalg.qr(torch.randn(feature_dim, feature_dim, generator=generator)).Q
    cols = (torch.arange(num_classes)[:, None] * r + torch.arange(r)[None, :]) % feature_dim  # (k, r)
    return Q[:, cols].permute(1, 0, 2)  # (d, k, r) -> (k, d, r)


def subspace_features(bases, n, noise, generator):
    """n unit-norm samples per class around each subspace: Z (k·n, d), labels (k·n,)."""
    k, d, r = bases.shape
    coeffs = torch.randn(k, n, r, generator=generator)
    Z = torch.einsum("kdr,knr->knd", bases, coeffs)  # (k, n, d)
    Z = Z / Z.norm(dim=-1, keepdim=True)
    Z = Z + noise * torch.randn(k, n, d, generator=generator) / d**0.5
    Z = Z / Z.norm(dim=-1, keepdim=True)
    labels = torch.arange(k).repeat_interleave(n)
    return Z.reshape(k * n, d), labels


def rates(Z, labels):
    out = mcr2.rate_reduction(Z, labels, num_classes, eps_sq=eps_sq)
    return out.discriminative.item(), out.compressive.item()


g = torch.Generator().manual_seed(seed)
r_fit = max(1, feature_dim // num_classes)  # the r at which k orthogonal subspaces exactly fill R^d

# Collapse ↔ spread: the subspace dimension r from 1 (each class on a line) to d (no structure).
dims = sorted({1, 2, *range(2, feature_dim + 1, max(1, feature_dim // 16)), r_fit, feature_dim})
by_dim = []
for r in dims:
    bases = rotation_bases(num_classes, feature_dim, r, g)
    by_dim.append(rates(*subspace_features(bases, samples_per_class, 0.0, g)))
# Noise blurs subspaces of dimension r_fit towards the whole sphere.
noises = np.linspace(0.0, 3.0, 13)
bases = rotation_bases(num_classes, feature_dim, r_fit, g)
by_noise = [rates(*subspace_features(bases, samples_per_class, float(s), g)) for s in noises]

R_dim, Rc_dim = np.array(by_dim).T
R_noise, Rc_noise = np.array(by_noise).T
best = dims[int(np.argmax(R_dim - Rc_dim))]
print(f"ΔR is largest at r = {best} (d/k = {feature_dim / num_classes:g}); at r = d: R = {R_dim[-1]:.2f}, Rc = {Rc_dim[-1]:.2f}")

# %%
fig, axes = page_figure(1, 2, height=3.3, sharey=True)
plot_rate_curves(axes[0], dims, R_dim, Rc_dim, xlabel="dimension $r$ per class", title="collapse ↔ spread",
                 legend=False)
axes[0].axvline(r_fit, color="0.6", lw=1, ls=":")
plot_rate_curves(axes[1], noises, R_noise, Rc_noise, xlabel=r"noise norm $\sigma$", title=f"noise, $r = {r_fit}$")
axes[1].legend(loc="center right")  # the one free corner of both panels
axes[1].set_ylabel("")
glue("rr-curves", legible(fig, name="rr-curves"), display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} rr-curves
# :name: fig-rr-curves
#
# $R$ (discriminative), $R_c$ (compressive) and $\Delta R = R - R_c$ of $k$ synthetic classes on
# $r$-dimensional subspaces, orthogonal while $k r \le d$, computed with `mcr2.rate_reduction`. Left: the dimension $r$ of each class's subspace
# grows from a line to the whole space (dotted: $r = d/k$). Right: noise spreads classes of
# dimension $d/k$ over the sphere.
# ```
#
# {numref}`fig-rr-curves` shows the two pulls of the objective. When every class collapses onto a
# line, $R_c$ is small but so is $R$: the classes together span only $k$ directions. When every class
# fills the space ($r = d$), $R_c$ catches up with $R$ and $\Delta R$ vanishes: the labels carry no
# geometry. $\Delta R$ peaks near $r = d/k$, where the $k$ subspaces together just fill
# $\mathbb{R}^d$ — the configuration MCR² drives a network towards. Noise acts like spreading: it
# raises $R_c$ towards $R$ while $R$ itself barely moves, which is the signature the report reads in
# its Figure 3 (CIFAR backgrounds raise $R_c$, $R$ stays about the same).
#
# ## The nearest-subspace decision
#
# `mcr2.NearestSubspace(r)` keeps, per class, the top-$r$ principal directions $U_j$ of the class's
# training features and assigns a feature $z$ to the class of smallest residual
# $\lVert z - U_j U_j^\top z \rVert$. Below it is fitted on one draw and scored on a fresh draw from
# the same subspaces (true dimension $r^\star$), for three choices of $r$ and three repetitions
# per noise level.

# %%
r_true = max(1, feature_dim // (2 * num_classes))  # r*: true dimension of each class subspace
choices = sorted({1, r_true, r_fit})
rows = []
for rep in range(3):
    g = torch.Generator().manual_seed(seed * 1000 + rep)
    bases = random_bases(num_classes, feature_dim, r_true, g)
    for s in noises:
        Z_train, y_train = subspace_features(bases, samples_per_class, float(s), g)
        Z_test, y_test = subspace_features(bases, samples_per_class, float(s), g)
        for r in choices:
            model = mcr2.NearestSubspace(r).fit(Z_train, y_train, num_classes)
            accuracy = (model.predict(Z_test) == y_test).double().mean().item()
            rows.append({"noise": float(s), "n_components": r, "repeat": rep, "accuracy": accuracy})
accuracy = pd.DataFrame(rows)
# Mean accuracy over the repeats, every other noise level.
accuracy.pivot_table(index="noise", columns="n_components", values="accuracy").iloc[::2].round(3)

# %%
fig, ax = page_figure(height=3.3)
plot_subspace_accuracy(ax, accuracy, xlabel=r"noise norm $\sigma$", chance=1 / num_classes)
glue("ns-accuracy", legible(fig, name="ns-accuracy"), display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} ns-accuracy
# :name: fig-ns-accuracy
#
# Test accuracy of `mcr2.NearestSubspace` against the noise norm, for subspace dimensions $r$
# below, at and above the true $r^\star$ (mean and 95% band over three draws; dotted: chance, $1/k$).
# ```
#
# Without noise the decision is exact whenever $r \ge r^\star$ ({numref}`fig-ns-accuracy`); a
# single direction ($r = 1$) already misses part of each class. As noise grows the accuracy falls
# towards chance. Once the noise is large, an $r$ above the truth costs accuracy too: each class's
# extra directions fit noise, so a wrong class explains a noisy sample almost as well as the right
# one. The subspace dimension is a setting worth choosing, not a free upper bound.
#
# ## What the features look like
#
# The report's Figure 7 sorts features by label and shows their pairwise cosine similarity: MCR²
# wants bright diagonal blocks (a class is low-dimensional) and dark off-diagonal blocks (classes
# are orthogonal). {numref}`fig-cosine` shows three points of the sweep above: both ends and the
# middle.

# %%
g = torch.Generator().manual_seed(seed)
panels = {"$r = 1$": 1, f"$r = {r_fit}$": r_fit, f"$r = d = {feature_dim}$": feature_dim}
fig, axes = page_figure(1, 3, height=3.0)  # three small heatmaps of four classes each still read in one row
for ax, (name, r) in zip(axes, panels.items()):
    bases = rotation_bases(num_classes, feature_dim, r, g)
    Z, y = subspace_features(bases, samples_per_class, 0.1, g)
    R, Rc = rates(Z, y)
    plot_cosine_similarity(ax, Z, y, title=f"{name}\n$\\Delta R$ = {R - Rc:.1f}", cbar=ax is axes[-1])
glue("cosine", legible(fig, name="cosine"), display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} cosine
# :name: fig-cosine
#
# The view of report Figure 7 on synthetic features: absolute cosine similarity between features
# sorted by class (cyan lines separate classes), for
# classes on lines, on $d/k$-dimensional subspaces and spread over the whole space (noise
# $\sigma = 0.1$). The title gives each set's $\Delta R$.
# ```
#
# On lines the diagonal blocks are uniformly bright, but $k$ lines leave most of $\mathbb{R}^d$
# unused, so $\Delta R$ is modest. Spread over the whole sphere, every block looks the same and
# $\Delta R \approx 0$. The $d/k$-dimensional classes have the largest $\Delta R$: their diagonal
# blocks stay brighter than the off-diagonal ones, which is the pattern the later chapters look for
# in trained features.
