"""The fast MCR² against a float64 reference written straight from the paper's formula."""
import math

import pytest
import torch

import mcr2
from mcr2 import MCR2Loss, NearestSubspace, rate_reduction


def reference_rate_reduction(Z, labels, num_classes, eps_sq=0.5, weights=None):
    """Dense-membership formulation of the original MCR² code, in float64.

    R  = ½ logdet(I + d/(m ε²) ZᵀZ),  Rc = Σ_j tr(Π_j)/(2m) logdet(I + d/(tr(Π_j) ε²) Zᵀ Π_j Z),
    with Π_j the diagonal membership (times the sample weights) of class j.
    """
    Z = Z.double()
    m, d = Z.shape
    w = torch.ones(m, dtype=torch.float64) if weights is None else weights.double()
    w = torch.where(labels >= 0, w, torch.zeros_like(w))
    m_tot = w.sum()
    eye = torch.eye(d, dtype=torch.float64)
    R = 0.5 * torch.logdet(eye + d / (m_tot * eps_sq) * Z.T @ torch.diag(w) @ Z)
    Rc = torch.zeros((), dtype=torch.float64)
    for j in range(num_classes):
        Pi = torch.diag(w * (labels == j).double())  # (m, m) membership
        trPi = torch.trace(Pi)
        if trPi == 0:
            continue
        Rc = Rc + trPi / (2 * m_tot) * torch.logdet(eye + d / (trPi * eps_sq) * Z.T @ Pi @ Z)
    return R, Rc


def unit_rows(m, d, generator, dtype=torch.float32):
    Z = torch.randn(m, d, generator=generator, dtype=torch.float64)
    return torch.nn.functional.normalize(Z, dim=1).to(dtype)


CASES = [
    # (m, d, k, description)
    (200, 16, 4, "plain"),
    (10, 32, 3, "m < d"),
    (50, 8, 1, "k = 1"),
    (60, 12, 7, "empty classes"),
    (40, 6, 5, "a single sample in a class"),
]


@pytest.mark.parametrize("m,d,k,what", CASES)
@pytest.mark.parametrize("eps_sq", [0.5, 0.1])
def test_matches_float64_reference(m, d, k, what, eps_sq):
    g = torch.Generator().manual_seed(m * 31 + d)
    Z = unit_rows(m, d, g)
    labels = torch.randint(0, k, (m,), generator=g)
    if what == "empty classes":
        labels = torch.randint(0, 3, (m,), generator=g) * 2  # classes 1, 3, 5, 6 empty
    if what == "a single sample in a class":
        labels = torch.randint(0, k - 1, (m,), generator=g)
        labels[7] = k - 1
    out = rate_reduction(Z, labels, k, eps_sq=eps_sq)
    R, Rc = reference_rate_reduction(Z, labels, k, eps_sq)
    assert out.discriminative.dtype == torch.float32
    torch.testing.assert_close(out.discriminative.double(), R, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.compressive.double(), Rc, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.delta_r.double(), R - Rc, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.loss, out.compressive - out.discriminative)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_input_is_computed_in_float32(dtype):
    g = torch.Generator().manual_seed(3)
    Z = unit_rows(300, 16, g, dtype)
    labels = torch.randint(0, 5, (300,), generator=g)
    out = rate_reduction(Z, labels, 5)
    R, Rc = reference_rate_reduction(Z.double(), labels, 5)  # same rounded input
    assert out.discriminative.dtype == torch.float32
    torch.testing.assert_close(out.discriminative.double(), R, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.compressive.double(), Rc, rtol=1e-5, atol=1e-6)


def test_float32_under_autocast():
    g = torch.Generator().manual_seed(4)
    Z = unit_rows(100, 8, g)
    labels = torch.randint(0, 3, (100,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = rate_reduction(Z, labels, 3)
    R, _ = reference_rate_reduction(Z, labels, 3)
    assert out.discriminative.dtype == torch.float32
    torch.testing.assert_close(out.discriminative.double(), R, rtol=1e-5, atol=1e-6)


def test_permutation_and_rotation_invariance():
    g = torch.Generator().manual_seed(5)
    Z = unit_rows(120, 10, g, torch.float64)
    labels = torch.randint(0, 4, (120,), generator=g)
    base = rate_reduction(Z, labels, 4)
    perm = torch.randperm(120, generator=g)
    permuted = rate_reduction(Z[perm], labels[perm], 4)
    Q, _ = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))
    rotated = rate_reduction(Z @ Q, labels, 4)
    for a, b, c in zip(base, permuted, rotated):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(6)
    Z = unit_rows(12, 5, g, torch.float64).requires_grad_()
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 1, 2, 2, 0])
    w = torch.rand(12, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: rate_reduction(z, labels, 4).loss, (Z,))
    assert torch.autograd.gradcheck(lambda z: rate_reduction(z, labels, 4, weights=w).delta_r, (Z,))


def test_closed_form_for_orthogonal_classes():
    # Class j is n copies of the basis vector e_j: ZᵀZ = n·diag(1_k, 0), Z_jᵀZ_j = n·e_j e_jᵀ.
    d, k, n, eps_sq = 6, 3, 5, 0.5
    Z = torch.eye(d)[:k].repeat_interleave(n, dim=0)
    labels = torch.arange(k).repeat_interleave(n)
    m = k * n
    out = rate_reduction(Z, labels, k, eps_sq=eps_sq)
    R = 0.5 * k * math.log(1 + d / (m * eps_sq) * n)
    Rc = sum(n / (2 * m) * math.log(1 + d / (n * eps_sq) * n) for _ in range(k))
    assert out.discriminative.item() == pytest.approx(R, rel=1e-6)
    assert out.compressive.item() == pytest.approx(Rc, rel=1e-6)


def test_zero_weights_equal_dropping_rows_and_masks_and_ignore():
    g = torch.Generator().manual_seed(7)
    Z = unit_rows(80, 8, g, torch.float64)
    labels = torch.randint(0, 4, (80,), generator=g)
    keep = torch.rand(80, generator=g) > 0.4
    dropped = rate_reduction(Z[keep], labels[keep], 4)
    weighted = rate_reduction(Z, labels, 4, weights=keep.double())
    masked = MCR2Loss(4)(Z, labels, weights=keep)
    ignored = rate_reduction(Z, torch.where(keep, labels, torch.full_like(labels, -1)), 4)
    for a, b, c, e in zip(dropped, weighted, masked, ignored):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c)
        torch.testing.assert_close(a, e)


def test_weights_match_reference():
    g = torch.Generator().manual_seed(8)
    Z = unit_rows(90, 7, g, torch.float64)
    labels = torch.randint(0, 3, (90,), generator=g)
    w = torch.rand(90, generator=g, dtype=torch.float64) * 2
    out = rate_reduction(Z, labels, 3, weights=w)
    R, Rc = reference_rate_reduction(Z, labels, 3, weights=w)
    torch.testing.assert_close(out.discriminative, R)
    torch.testing.assert_close(out.compressive, Rc)


def test_gamma_and_module_wrapper():
    g = torch.Generator().manual_seed(9)
    Z = unit_rows(50, 6, g)
    labels = torch.randint(0, 3, (50,), generator=g)
    out = MCR2Loss(3, eps_sq=0.5, gamma=2.0)(Z, labels)
    torch.testing.assert_close(out.loss, out.compressive - 2.0 * out.discriminative)


def test_clear_errors():
    Z = torch.randn(10, 4)
    with pytest.raises(ValueError, match="num_classes"):
        rate_reduction(Z, torch.full((10,), 5), 3)
    with pytest.raises(ValueError, match=r"\(m, d\)"):
        rate_reduction(Z[None], torch.zeros(10, dtype=torch.long), 3)
    with pytest.raises(TypeError, match="integer"):
        rate_reduction(Z, torch.zeros(10), 3)


def test_all_rows_dropped_gives_zero():
    Z = unit_rows(10, 4, torch.Generator().manual_seed(0))
    out = rate_reduction(Z, torch.full((10,), -1), 3)
    assert out.discriminative.item() == 0.0 and out.compressive.item() == 0.0


def subspace_data(k, d, r, n, noise, g):
    bases = [torch.linalg.qr(torch.randn(d, r, generator=g))[0] for _ in range(k)]
    Z = torch.cat([(b @ torch.randn(r, n, generator=g)).T for b in bases])
    Z = Z + noise * torch.randn(Z.shape, generator=g)
    labels = torch.arange(k).repeat_interleave(n)
    return torch.nn.functional.normalize(Z, dim=1), labels


def test_nearest_subspace_accuracy_and_streaming():
    g = torch.Generator().manual_seed(10)
    Z, labels = subspace_data(k=5, d=32, r=3, n=200, noise=0.05, g=g)
    perm = torch.randperm(len(labels), generator=g)
    Z, labels = Z[perm], labels[perm]
    train, test = slice(0, 700), slice(700, None)
    clf = NearestSubspace(3).fit(Z[train], labels[train], 5)
    acc = (clf.predict(Z[test]) == labels[test]).float().mean().item()
    assert acc >= 0.99
    streamed = NearestSubspace(3)
    for chunk in torch.split(torch.arange(700), 128):
        streamed.partial_fit(Z[chunk], labels[chunk], 5)
    torch.testing.assert_close(streamed.predict(Z[test]), clf.predict(Z[test]))
    centred = NearestSubspace(3, center=True).fit(Z[train], labels[train], 5)
    assert (centred.predict(Z[test]) == labels[test]).float().mean().item() >= 0.99


def test_nearest_subspace_never_predicts_an_empty_class():
    g = torch.Generator().manual_seed(11)
    Z, labels = subspace_data(k=4, d=16, r=2, n=50, noise=0.05, g=g)
    labels = labels + (labels >= 2).long()  # class 2 of 5 has no samples
    clf = NearestSubspace(2).fit(Z, labels, 5)
    # Zero vectors score 0 for every non-empty class: an empty class must still lose.
    probe = torch.cat([torch.zeros(5, 16), torch.randn(500, 16, generator=g)])
    assert not (clf.predict(probe) == 2).any()
    assert torch.isinf(clf.scores(probe)[:, 2]).all()


def test_public_api():
    for name in ["rate_reduction", "MCR2Loss", "NearestSubspace", "RateReduction"]:
        assert hasattr(mcr2, name)


def test_pooled_rows_majority_vote_and_weights():
    from mcr2.loss import pooled_rows

    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, :2, :2] = 3  # top-left cell pure class 3
    labels[0, :2, 2:] = torch.tensor([[1, 1], [1, 2]])  # top-right: 3 of 4 are class 1
    labels[0, 2:, :2] = -1  # bottom-left: ignored
    feats = torch.randn(1, 5, 4, 4, dtype=torch.float64)
    Z, lab, w = pooled_rows(feats, labels, 2, 4)
    assert Z.shape == (4, 5) and torch.allclose(Z.norm(dim=1), torch.ones(4, dtype=torch.float64))
    assert lab.tolist()[:2] == [3, 1] and lab[3] == 0
    assert w.tolist() == [1.0, 0.75, 0.0, 1.0]
    torch.testing.assert_close(Z[0], torch.nn.functional.normalize(feats[0, :, :2, :2].mean((1, 2)), dim=0))
    # Full resolution is the identity on pure single pixels.
    Z1, lab1, w1 = pooled_rows(feats, labels.clamp_min(0), 4, 4)
    torch.testing.assert_close(lab1, labels.clamp_min(0).reshape(-1))
    assert (w1 == 1).all()


# --------------------------------------------------------------------------- bad input: clear errors


@pytest.mark.parametrize("eps_sq", [0.0, -0.5, float("nan"), float("inf"), torch.tensor(0.0)])
def test_bad_eps_sq_is_an_error_not_nan(eps_sq):
    """Fault: eps_sq ≤ 0 or NaN gave all-NaN terms (later read as "try a lower optim.lr")."""
    Z = unit_rows(20, 4, torch.Generator().manual_seed(0))
    labels = torch.arange(20) % 3
    with pytest.raises(ValueError, match="eps_sq must be a finite number > 0"):
        rate_reduction(Z, labels, 3, eps_sq=eps_sq)
    with pytest.raises(ValueError, match="eps_sq"):
        MCR2Loss(3, eps_sq=eps_sq)
    grams, counts = mcr2.class_statistics(Z, labels, 3)
    with pytest.raises(ValueError, match="eps_sq"):
        mcr2.rate_reduction_from_stats(grams, counts, eps_sq)


def test_bad_gamma_and_num_classes():
    Z = unit_rows(20, 4, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="gamma must be a finite number"):
        rate_reduction(Z, torch.arange(20) % 3, 3, gamma=float("nan"))
    with pytest.raises(TypeError, match="eps_sq must be a number"):
        rate_reduction(Z, torch.arange(20) % 3, 3, eps_sq="0.5")
    with pytest.raises(ValueError, match="num_classes"):
        MCR2Loss(0)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_negative_or_non_finite_weights_are_an_error(bad):
    """Fault: negative weights gave 0 and NaN weights NaN, without a word."""
    Z = unit_rows(20, 4, torch.Generator().manual_seed(0))
    w = torch.ones(20)
    w[5] = bad
    with pytest.raises(ValueError, match=r"weights must be finite and ≥ 0"):
        rate_reduction(Z, torch.arange(20) % 3, 3, weights=w)
    with pytest.raises(ValueError, match="weights"):
        MCR2Loss(3)(Z, torch.arange(20) % 3, weights=w)
    # a bool mask and zero weights stay valid
    rate_reduction(Z, torch.arange(20) % 3, 3, weights=w.isfinite() & (w >= 0))
    rate_reduction(Z, torch.arange(20) % 3, 3, weights=torch.where(w.isfinite() & (w >= 0), w, 0.0))


def test_nearest_subspace_fitted_on_nothing_is_an_error():
    """Fault: with every class empty it predicted class 0 everywhere (its docstring says never)."""
    Z = unit_rows(30, 8, torch.Generator().manual_seed(0))
    ns = NearestSubspace(2).partial_fit(Z, torch.full((30,), -1), 3)
    with pytest.raises(ValueError, match="all 3 classes are empty"):
        ns.finalize()
    with pytest.raises(ValueError, match="all 3 classes are empty"):
        ns.predict(Z)


def test_nearest_subspace_non_finite_rows_are_an_error():
    """Fault: a NaN row was predicted as class 0; NaN training features poisoned every basis."""
    g = torch.Generator().manual_seed(12)
    Z, labels = subspace_data(k=3, d=8, r=2, n=20, noise=0.05, g=g)
    clf = NearestSubspace(2).fit(Z, labels, 3)
    probe = Z.clone()
    probe[4, 1] = float("nan")
    with pytest.raises(ValueError, match=r"1 row\(s\) holding NaN or inf \(first: row 4\)"):
        clf.predict(probe)
    bad = Z.clone()
    bad[25] = float("inf")  # a row of class 1
    with pytest.raises(ValueError, match=r"non-finite features .* classes \[1\]"):
        NearestSubspace(2).fit(bad, labels, 3)


def test_nearest_subspace_wrong_shape_names_the_expected_one():
    """Fault: predict on a wrong shape crashed inside a matmul."""
    g = torch.Generator().manual_seed(13)
    Z, labels = subspace_data(k=3, d=8, r=2, n=20, noise=0.05, g=g)
    clf = NearestSubspace(2).fit(Z, labels, 3)
    for wrong in (Z[:, :5], Z[0], Z[None]):
        with pytest.raises(ValueError, match=r"Z must be \(m, 8\)"):
            clf.predict(wrong)
    with pytest.raises(ValueError, match="n_components must be an integer"):
        NearestSubspace(2.5)


def test_nearest_subspace_warns_when_a_class_has_fewer_samples_than_r():
    """Fault: n_components larger than a class's sample count passed silently."""
    g = torch.Generator().manual_seed(14)
    Z, labels = subspace_data(k=3, d=8, r=2, n=20, noise=0.05, g=g)
    keep = torch.cat([torch.arange(40), torch.tensor([40, 41])])  # class 2 keeps 2 samples
    with pytest.warns(UserWarning, match=r"classes \[2\] have fewer samples \(2\) than n_components = 3"):
        clf = NearestSubspace(3).fit(Z[keep], labels[keep], 3)
    assert clf.predict(Z).shape == (60,)  # still usable


def per_class_grams_reference(Z, labels, k, weights=None):
    """Per-class Grams by plain autograd ops (a loop over classes), in float64."""
    w = torch.ones(Z.shape[0], dtype=torch.float64) if weights is None else weights.double()
    rows = [(labels == j) for j in range(k)]
    grams = torch.stack([(Z[r] * w[r, None]).T @ Z[r] for r in rows])
    counts = torch.stack([w[r].sum() for r in rows])
    return grams, counts


@pytest.mark.parametrize("layout", ["many tiles", "exact tile multiples", "empty and dropped", "weighted"])
def test_tiled_statistics_and_gradient_match_a_per_class_loop(layout):
    """The tiled fast path (classes padded to whole tiles, one batched product) against a loop,
    values and gradients, where rows span several tiles of the largest size."""
    from mcr2.loss import MAX_TILE, _tile_rows

    k, d = 4, 6
    g = torch.Generator().manual_seed(3)
    if layout == "exact tile multiples":
        m = 4 * MAX_TILE * k * 2
        labels = torch.arange(m) % k  # every class exactly a multiple of the tile
    else:
        m = 9000
        labels = torch.randint(0, k, (m,), generator=g)
    assert _tile_rows(m, k) >= 64  # several tiles per class, not the smallest tile
    weights = None
    if layout == "empty and dropped":
        labels[labels == 2] = 1  # class 2 empty
        labels[::7] = -1  # dropped rows scattered among the kept ones
    if layout == "weighted":
        weights = torch.rand(m, generator=g, dtype=torch.float64)
        weights[::5] = 0.0
    Z = unit_rows(m, d, g, torch.float64).requires_grad_()
    grams, counts = mcr2.class_statistics(Z, labels, k, weights)
    Zr = Z.detach().clone().requires_grad_()
    ref_grams, ref_counts = per_class_grams_reference(Zr, labels, k, weights)
    torch.testing.assert_close(grams, ref_grams)
    torch.testing.assert_close(counts, ref_counts)
    out = mcr2.rate_reduction_from_stats(grams, counts).loss
    ref = mcr2.rate_reduction_from_stats(ref_grams, ref_counts).loss
    out.backward()
    ref.backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(Z.grad, Zr.grad)
    if layout == "empty and dropped":
        assert (Z.grad[::7] == 0).all()  # dropped rows get no gradient


def test_tile_size_follows_the_batch():
    from mcr2.loss import MAX_TILE, _tile_rows

    assert _tile_rows(128 * 28 * 28, 11) == MAX_TILE  # a segmentation batch: padding ≤ 11 % of m
    assert _tile_rows(500, 10) == 16  # a classification batch: no tile of mostly padding
    assert _tile_rows(0, 3) == 16


def test_unchecked_statistics_agree_and_invalid_rows_give_nan_not_a_silent_drop():
    """check=False (no host sync, for the training step) gives the same numbers on valid input;
    a label ≥ k or a bad weight makes the terms NaN, where check=True raises."""
    g = torch.Generator().manual_seed(4)
    Z = unit_rows(300, 8, g)
    labels = torch.randint(0, 5, (300,), generator=g)
    w = torch.rand(300, generator=g)
    for weights in (None, w, w > 0.3):
        a = rate_reduction(Z, labels, 5, weights=weights)
        b = rate_reduction(Z, labels, 5, weights=weights, check=False)
        torch.testing.assert_close(torch.stack(list(a)), torch.stack(list(b)))
    bad_labels = labels.clone()
    bad_labels[10] = 5
    with pytest.raises(ValueError, match="num_classes"):
        rate_reduction(Z, bad_labels, 5)
    assert torch.isnan(MCR2Loss(5, check=False)(Z, bad_labels).loss)
    bad_w = w.clone()
    bad_w[3] = -0.5
    assert torch.isnan(rate_reduction(Z, labels, 5, weights=bad_w, check=False).loss)
    bad_w[3] = float("nan")
    assert torch.isnan(rate_reduction(Z, labels, 5, weights=bad_w, check=False).loss)
