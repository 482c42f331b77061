"""The numbers and words of run records that figures and tables print: the settings line (profile,
seeds, commit and evaluation choices per experiment, also when profiles differ) and the
feature-space summary of Figure 7 (mean |cos| per class block, with its fallback for records
written before that statistic existed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mcr2.experiments import experiment
from mcr2.records import RunRecord
from mcr2.summary import (
    cosine_blocks,
    cosine_summary,
    cosine_summary_table,
    evaluation_text,
    final_metrics_table,
    mean_sd,
    record_cosine_blocks,
    runs_behind,
    settings_text,
)


def fake(name, profile="smoke", seed=0, commit="0123456789abcdef", dirty=False, train_n=300, artefacts=None):
    exp = experiment(name, profile, seed)
    hist = pd.DataFrame({"epoch": [1, 2], "mnist_acc": [0.5, 0.6], "usps_acc": [0.4, float("nan")]})
    record = {"status": "complete", "events": {"mask_switch_epoch": None}, "data": {"train": {"N": train_n}},
              "provenance": {"git_commit": commit, "git_dirty": dirty}}
    return RunRecord(Path(f"/nonexistent/{name}/{seed}"), exp, record, hist, pd.DataFrame(), artefacts or {})


def test_settings_name_profile_seeds_and_commit():
    runs = {"MCR²": [fake("cls_mnist_mcr2", seed=s) for s in (0, 1, 2)]}
    text = settings_text(runs, evaluation=False)
    assert text == "profile smoke, 3 seeds (0, 1, 2), 4 epochs, 300 training images; commit 01234567"
    assert "`" not in settings_text(runs)  # printed as well as glued: no raw Markdown
    dirty = settings_text({"x": [fake("cls_mnist_mcr2", dirty=True)]}, evaluation=False)
    assert "1 seed (0)" in dirty and "commit 01234567+dirty" in dirty


def test_settings_with_mixed_profiles_name_each_experiment():
    runs = {"CE": [fake("cls_mnist_ce", "paper", commit="aaaaaaaa11", train_n=60000)],
            "MCR²": [fake("cls_mnist_mcr2", "smoke")]}
    text = settings_text(runs, evaluation=False)
    assert "cls_mnist_ce: profile paper, 1 seed (0), 100 epochs, 60,000 training images" in text
    assert "cls_mnist_mcr2: profile smoke" in text
    assert "commits aaaaaaaa (cls_mnist_ce), 01234567 (cls_mnist_mcr2)" in text


def test_evaluation_choices_are_stated():
    paper = {"MCR²": [fake("cls_mnist_mcr2", "paper", train_n=60000)]}
    assert evaluation_text(paper) == ("BatchNorm statistics re-estimated and nearest subspaces fitted on the first "
                                      "20,000 training images before every evaluation")
    smoke = {"CE": [fake("cls_mnist_ce")]}
    assert evaluation_text(smoke) == "BatchNorm statistics re-estimated on all training images before every evaluation"
    assert evaluation_text(smoke) in settings_text(smoke)


def _steps(r, kind: str | None):
    """``r`` trained with eager or graphed steps, as its provenance says (None: an older record)."""
    if kind is not None:
        r.record["provenance"]["graphed"] = kind
    return r


def test_runs_behind_says_above_the_block_when_seeds_mix_eager_and_graphed_steps():
    mixed = {"CE": [_steps(fake("cls_mnist_ce", seed=0), "eager"), _steps(fake("cls_mnist_ce", seed=1), "graphed"),
                    _steps(fake("cls_mnist_ce", seed=2), "graphed")],
             "MCR²": [_steps(fake("cls_mnist_mcr2", seed=s), "graphed") for s in (0, 1, 2)]}
    block = runs_behind(mixed)
    above, details = block.split("<details>", 1)
    assert above.startswith("<p>The seeds of cls_mnist_ce (eager: seed 0; graphed: seeds 1, 2) mix eager")
    assert "cls_mnist_mcr2" not in above  # graphed throughout: not a mixed set
    assert "<td>eager (seed 0), graphed (seeds 1, 2)</td>" in details and "<td>graphed</td>" in details
    one_kind = runs_behind({"CE": [fake("cls_mnist_ce", seed=0), _steps(fake("cls_mnist_ce", seed=1), "eager")]})
    assert one_kind.startswith("<details>") and "mix eager" not in one_kind  # an older record was eager too
    older = runs_behind({"CE": [fake("cls_mnist_ce", seed=0), _steps(fake("cls_mnist_ce", seed=1), "graphed")]})
    assert older.startswith("<p>The seeds of cls_mnist_ce (eager: seed 0; graphed: seed 1)")


def test_final_values_count_finite_seeds_only():
    assert mean_sd([1.0, 3.0, float("nan")])[2] == 2
    table = final_metrics_table({"x": [fake("cls_mnist_ce")]}, {"USPS": "usps_acc"}, numeric=True)
    assert table.loc["x", "USPS"] == pytest.approx(0.4)  # the last value it has


def _orthogonal(per_class=20, k=11, dim=3, d=64, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), per_class)
    Z = np.zeros((len(labels), d))
    for i, c in enumerate(labels):
        Z[i, c * dim:(c + 1) * dim] = rng.normal(size=dim)
    return Z, labels


def test_feature_summary_uses_all_sampled_pixels_or_says_it_does_not():
    Z, labels = _orthogonal()
    blocks = cosine_blocks(Z, labels, 11).numpy()
    new = fake("seg_bg_mcr2", artefacts={"cosine_abs_mean": blocks, "cosine_class_counts": np.bincount(labels, minlength=11),
                                         "feature_sample": Z[:50], "feature_labels": labels[:50]})
    b = record_cosine_blocks(new)
    assert b.source == "sampled" and b.pixels == len(labels) and "all 220 sampled" in b.describe()
    old = fake("seg_bg_mcr2", artefacts={"feature_sample": Z.astype(np.float16), "feature_labels": labels.astype(np.uint8)})
    b_old = record_cosine_blocks(old)
    assert b_old.source == "kept" and "stored pixels only" in b_old.describe()
    np.testing.assert_allclose(b_old.means, blocks, atol=2e-3)
    s = cosine_summary(blocks, range(1, 11))
    assert s["between"] == pytest.approx(0.0, abs=1e-9) and s["within"] > 0.3
    table = cosine_summary_table({"new": [new], "old": [old]}, numeric=False)
    assert "sampled" in table.loc["new", "pixels"] and "stored" in table.loc["old", "pixels"]
    assert float(table.loc["new", "between (digits)"]) == pytest.approx(0.0, abs=1e-3)


def test_a_class_with_one_pixel_has_no_within_block():
    Z, labels = _orthogonal(per_class=3)
    labels = labels.copy()
    Z, labels = Z[2:], labels[2:]  # class 0 keeps one pixel
    rec = fake("seg_bg_mcr2", artefacts={"cosine_abs_mean": cosine_blocks(Z, labels, 11).numpy(),
                                         "cosine_class_counts": np.bincount(labels, minlength=11)})
    b = record_cosine_blocks(rec)
    assert np.isnan(b.means[0, 0]) and np.isfinite(b.means[0, 1])
