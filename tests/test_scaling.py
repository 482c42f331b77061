"""MCR² at lower resolution: the chapter's plots draw from hand-made tables and records (no
training), and the benchmark's measuring functions return sensible numbers on a tiny batch
(no timing assertions: only signs, shapes, the order of interleaved calls, the pairing of ratios
and the memory ordering, none of which depends on load)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from mcr2.experiments import experiment  # noqa: E402
from mcr2.plots import (  # noqa: E402
    final_run_values,
    plot_accuracy_vs_resolution,
    plot_cost_vs_pixels,
    plot_cost_vs_resolution,
    plot_share_vs_pixels,
    plot_speedup_vs_resolution,
    plot_throughput_vs_resolution,
    resolution_label,
)
from mcr2.records import RunRecord  # noqa: E402



def _bench():
    import mcr2.profiling

    return mcr2.profiling


def _cost_table() -> pd.DataFrame:
    rows = []
    for images in (10, 40):
        for size in (28, 14, 7):
            t = 1e-3 * images * size**2 / 784
            rows.append({"size": size, "rows": images * size**2, "pixels": images * 784, "time_s": t,
                         "memory_mib": 0.1 * images * size**2 / 784, "share": t / (t + 0.01 * images)})
    return pd.DataFrame(rows)


def _record(size, seed, acc) -> RunRecord:
    exp = experiment("seg_mnist_mcr2", "smoke", seed, **{"loss.mcr2_resolution": None if size == 28 else size})
    history = pd.DataFrame({"epoch": [1, 2, 3], "mnist_foreground_acc": [0.2, 0.4, acc]})
    return RunRecord(Path("."), exp, {"status": "complete", "train_images_per_s": 100.0 * 28 / size},
                     history, pd.DataFrame(), {})


def _runs(seeds=(0,)) -> dict:
    return {size: [_record(size, s, 0.5 + 0.01 * s + size / 100) for s in seeds] for size in (28, 14, 7)}


def test_resolution_label():
    assert resolution_label(28) == "28×28 (full)"
    assert resolution_label(7) == "7×7"


@pytest.mark.parametrize("column", ["time_s", "memory_mib"])
def test_cost_plots_draw(column):
    table = _cost_table()
    fig, axes = plt.subplots(1, 3)
    assert plot_cost_vs_resolution(axes[0], table[table["pixels"] == 40 * 784], column) is axes[0]
    assert len(axes[0].lines) == 1
    assert plot_cost_vs_pixels(axes[1], table, column) is axes[1]
    assert len(axes[1].lines) == 3  # one per resolution
    assert plot_share_vs_pixels(axes[2], table) is axes[2]
    assert len(axes[2].lines) == 4  # three resolutions and the threshold
    plot_cost_vs_resolution(axes[0], table, column)  # several batch sizes: one line each
    assert len(axes[0].lines) == 3
    plt.close(fig)


def test_cost_plot_rejects_unknown_column():
    fig, ax = plt.subplots()
    with pytest.raises(KeyError, match="choose one of"):
        plot_cost_vs_resolution(ax, _cost_table(), "flops")
    plt.close(fig)


@pytest.mark.parametrize("seeds", [(0,), (0, 1, 2)])
def test_run_plots_draw(seeds):
    runs = _runs(seeds)
    fig, axes = plt.subplots(1, 2)
    assert plot_accuracy_vs_resolution(axes[0], runs) is axes[0]
    assert plot_throughput_vs_resolution(axes[1], runs) is axes[1]
    y = axes[0].lines[0].get_ydata()
    np.testing.assert_allclose(y, [0.57 + 0.01 * np.mean(seeds), 0.64 + 0.01 * np.mean(seeds), 0.78 + 0.01 * np.mean(seeds)])
    plt.close(fig)


def test_final_run_values_reads_history_and_record():
    runs = _runs((0, 1))
    acc = final_run_values(runs)
    assert list(acc["size"]) == [7, 14, 28] and list(acc["n"]) == [2, 2, 2]
    np.testing.assert_allclose(acc["mean"], [0.575, 0.645, 0.785])
    speed = final_run_values(runs, "train_images_per_s")
    np.testing.assert_allclose(speed["mean"], [400.0, 200.0, 100.0])
    with pytest.raises(KeyError, match="no history column or record field"):
        final_run_values(runs, "nonsense")


def test_measure_loss_tiny():
    bench = _bench()
    rows = bench.measure_loss(images=4, feature_dim=8, sizes=(28, 14, 7), repeats=1, device="cpu")
    assert [r["size"] for r in rows] == [28, 14, 7]
    assert [r["rows"] for r in rows] == [4 * 784, 4 * 196, 4 * 49]
    for r in rows:
        assert r["pixels"] == 4 * 784
        assert np.isfinite(r["time_s"]) and r["time_s"] > 0
        assert np.isfinite(r["speedup"]) and r["speedup"] > 0
        assert r["memory_mib"] > 0
    assert rows[0]["speedup"] == 1.0
    # Memory kept for backward is deterministic and shrinks with the rows of Z.
    assert rows[0]["memory_mib"] > rows[1]["memory_mib"] > rows[2]["memory_mib"]


def test_mcr2_loss_full_equals_pooling_to_full_size():
    """At full size, pooled_rows is the identity (every cell pure, weight 1): same loss as every pixel."""
    import torch
    import torch.nn.functional as F

    bench = _bench()
    g = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(2, 8, 28, 28, generator=g, dtype=torch.float64), dim=1)
    labels = torch.randint(0, 11, (2, 28, 28), generator=g)
    from mcr2 import rate_reduction
    from mcr2.loss import pooled_rows

    Z, lab, w = pooled_rows(feats, labels, 28, 11)
    pooled = rate_reduction(Z, lab, 11, weights=w).loss
    torch.testing.assert_close(bench.mcr2_loss(feats, labels, 28, 11), pooled)
    torch.testing.assert_close(bench.mcr2_loss(feats, labels, None, 11), pooled)


def test_measure_loss_interleaved_ranges_and_share():
    bench = _bench()
    rows = bench.measure_loss(images=2, feature_dim=8, sizes=(28, 7), repeats=5, device="cpu", memory=False,
                              unet=dict(width=4, depth=2))
    for r in rows:
        assert r["repeats"] == 5 and np.isnan(r["memory_mib"])
        assert r["time_s_lo"] <= r["time_s"] <= r["time_s_hi"]
        assert r["speedup_lo"] <= r["speedup"] <= r["speedup_hi"]
        assert 0 < r["share_lo"] <= r["share"] <= r["share_hi"] < 1
        assert r["unet_s_lo"] <= r["unet_s"] <= r["unet_s_hi"]
    assert rows[0]["speedup_lo"] == rows[0]["speedup_hi"] == 1.0  # full against itself, round by round
    fastest = bench.measure_loss(images=2, feature_dim=8, sizes=(28,), repeats=5, memory=False, stat="min")[0]
    assert fastest["time_s"] == fastest["time_s_lo"]


def test_interleaved_times_rotate_the_order():
    bench = _bench()
    calls = []
    fns = {key: (lambda key=key: calls.append(key)) for key in "abc"}
    times = bench.interleaved_times(fns, repeats=4, device="cpu", warmup=1)
    assert calls[:3] == list("abc")  # warm-up
    assert calls[3:] == list("abc" "bca" "cab" "abc")  # one call of each per round, the order rotating
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4, "c": 4}
    assert all((v >= 0).all() for v in times.values())


def test_spread_and_resolved():
    bench = _bench()
    assert bench.spread([3.0, 1.0, float("nan"), 2.0, 10.0]) == {"median": 2.5, "lo": 1.0, "hi": 10.0, "n": 4}
    assert bench.spread([])["n"] == 0 and np.isnan(bench.spread([])["median"])
    # A 219.8 ms outlier in one round of five: the median stays, the range shows it, and a
    # paired ratio whose range crosses 1 is no resolved difference.
    assert bench.resolved(1.3, 2.1) == 1
    assert bench.resolved(0.4, 0.9) == -1
    assert bench.resolved(0.8, 57.0) == 0
    assert bench.resolved(float("nan"), 2.0) == 0
    assert bench.resolved(10.0, 14.0, at=16.0) == -1  # fewer than 16 times: less than the rows fall


def test_speedup_plot_draws_ranges():
    table = _cost_table()[lambda t: t["pixels"] == 40 * 784].copy()
    table["speedup"] = [1.0, 3.0, 9.0]
    table["speedup_lo"], table["speedup_hi"] = [1.0, 2.0, 0.5], [1.0, 4.0, 12.0]
    fig, ax = plt.subplots()
    assert plot_speedup_vs_resolution(ax, table) is ax
    assert len(ax.containers) == 1  # one errorbar series
    assert any(np.allclose(line.get_ydata(), 1.0) for line in ax.lines)  # the "no difference" line
    fig, ax = plt.subplots()
    t = _cost_table()
    t["time_s_lo"], t["time_s_hi"] = 0.5 * t["time_s"], 2 * t["time_s"]
    plot_cost_vs_pixels(ax, t, "time_s")
    assert len(ax.containers) == 3
    xs = [c.lines[0].get_xdata() for c in ax.containers]  # nudged apart, in the same order everywhere
    assert xs[0][0] < xs[1][0] < xs[2][0] and np.allclose(xs[1], t["pixels"].unique())
    plt.close("all")


def test_measure_unet_tiny():
    bench = _bench()
    t = bench.measure_unet(images=2, width=4, depth=2, feature_dim=8, in_channels=3, repeats=1)
    assert np.isfinite(t) and t > 0
