"""Measuring the cost of MCR² and of a training step, shared by the benchmarks and the scaling chapter.

Times come from repeated forward+backward calls after a warm-up, synchronised on CUDA. Calls
that are compared with each other are **interleaved** (:func:`interleaved_times`: one call of
each per round, the order rotating from round to round), so that a change of load on a shared
machine falls on all of them alike, and each ratio is taken within a round (paired). Every time
and ratio is reported as the median of the rounds with their range (min–max): a conclusion such
as "faster" is drawn only where that range excludes "no difference" (:func:`resolved`).

Memory is the CUDA allocator's peak on a GPU and, on CPU, the bytes autograd keeps for the
backward pass (exact, a lower bound on the peak; it does not depend on load).
"""
from __future__ import annotations

import math
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from mcr2 import rate_reduction
from mcr2.loss import pooled_rows
from mcr2.models import UNet

FULL = 28  #: the MNIST side; "full resolution" means every pixel is a row of Z


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mcr2_loss(features: torch.Tensor, labels: torch.Tensor, size: int | None, num_classes: int) -> torch.Tensor:
    """MCR² loss of per-pixel features (B, d, H, W), over every pixel (size None or H) or pooled."""
    if size is None or size == features.shape[-1]:
        Z = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])  # (B, d, H, W) -> (B·H·W, d)
        return rate_reduction(Z, labels.reshape(-1), num_classes).loss
    Z, lab, w = pooled_rows(features, labels, size, num_classes)  # (B·size², d)
    return rate_reduction(Z, lab, num_classes, weights=w).loss


def median_time(fn, repeats: int, device: torch.device, stat: str = "median") -> float:
    """Median (or, ``stat="min"``, fastest: less sensitive to a shared machine, whose load only adds
    time) seconds of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times) if stat == "min" else statistics.median(times)


def kernel_profile(fn, calls: int, device: torch.device):
    """torch.profiler over ``calls`` calls of ``fn`` (warm it up first), synchronised at the end:
    ``(profile, wall seconds per call, kernels per call, device seconds per call)``; the kernel
    numbers are NaN off CUDA. Device seconds are the kernels' own durations, so their share of the
    wall time says how busy the GPU was (the gaps are launches, syncs and host work)."""
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync(device)
        wall = (time.perf_counter() - start) / calls
    if device.type != "cuda":
        return prof, wall, math.nan, math.nan
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(e.time_range.elapsed_us() for e in kernels) / 1e6 / calls
    return prof, wall, len(kernels) / calls, busy


def kernel_report(fn, calls: int, device: torch.device, rows: int = 20, per: str = "call") -> str:
    """The operators and kernels that take the most device (CPU: host) time over ``calls`` calls of
    ``fn``, then kernels and device time per call against the wall time (CUDA)."""
    device = torch.device(device)
    prof, wall, kernels, busy = kernel_profile(fn, calls, device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    text = prof.key_averages().table(sort_by=key, row_limit=rows)
    if device.type == "cuda":
        text += (f"\nkernels per {per}: {kernels:.0f}; device time per {per} {busy * 1e3:.2f} ms against "
                 f"{wall * 1e3:.2f} ms wall (under the profiler)")
    return text


def memory_mib(fn, device: torch.device, exclude: torch.Tensor | None = None) -> float:
    """MiB of one ``fn()``: on CUDA the allocator's peak above the current allocation; elsewhere the
    distinct storages autograd saves for backward, less ``exclude``'s (the input, which exists anyway)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    storages: dict[int, int] = {}
    skip = exclude.untyped_storage().data_ptr() if exclude is not None else None

    def pack(t):
        if t.layout != torch.strided:  # a sparse tensor: count its index and value arrays
            parts = [t._indices(), t._values()] if t.layout == torch.sparse_coo else []
            for p in parts:
                storages[p.untyped_storage().data_ptr()] = p.untyped_storage().nbytes()
            return t
        s = t.untyped_storage()
        if s.data_ptr() != skip:
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values()) / 2**20


def interleaved_times(fns: dict, repeats: int, device, warmup: int = 1) -> dict:
    """Seconds of each ``fns[key]()`` over ``repeats`` rounds: every round calls each function once,
    the order rotated by one from round to round, after ``warmup`` calls of each. Returns
    ``{key: array of repeats seconds}``; index r of every array is round r, so ratios can be paired."""
    device = torch.device(device)
    keys = list(fns)
    for _ in range(warmup):
        for key in keys:
            fns[key]()
    sync(device)
    times = {key: [] for key in keys}
    for r in range(repeats):
        shift = r % len(keys)
        for key in keys[shift:] + keys[:shift]:
            start = time.perf_counter()
            fns[key]()
            sync(device)
            times[key].append(time.perf_counter() - start)
    return {key: np.asarray(v) for key, v in times.items()}


def spread(values) -> dict:
    """``{"median", "lo", "hi", "n"}`` of the finite values: median and range (min–max)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"median": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    return {"median": float(np.median(x)), "lo": float(x.min()), "hi": float(x.max()), "n": int(x.size)}


def resolved(lo: float, hi: float, at: float = 1.0) -> int:
    """+1 if the whole range [lo, hi] lies above ``at``, −1 if below, 0 if it contains ``at`` (no
    difference resolved) or is unknown. E.g. paired speed-ups from 1.3 to 2.1: +1 (faster)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0
    return 1 if lo > at else -1 if hi < at else 0


def unet_step(images: int = 128, width: int = 16, depth: int = 4, feature_dim: int = 128, in_channels: int = 1,
              side: int = FULL, device="cpu", seed: int = 0):
    """A callable running the U-Net's forward+backward (features only, no loss) on one random batch."""
    device = torch.device(device)
    torch.manual_seed(seed)
    model = UNet(in_channels=in_channels, feature_dim=feature_dim, width=width, depth=depth).to(device)
    x = torch.rand(images, in_channels, side, side, generator=torch.Generator().manual_seed(seed)).to(device)

    def once():
        model.zero_grad(set_to_none=True)
        model(x).features.sum().backward()

    return once


def measure_loss(
    images: int = 128,
    feature_dim: int = 128,
    num_classes: int = 11,
    sizes=(FULL, 14, 7),
    side: int = FULL,
    repeats: int = 5,
    device="cpu",
    seed: int = 0,
    memory: bool = True,
    stat: str = "median",
    unet: dict | None = None,
) -> list[dict]:
    """Forward+backward cost of MCR² per resolution on random unit features of one batch, the
    resolutions (and the U-Net, if ``unet`` is given) timed in interleaved rounds.

    One dict per size: ``size`` (cells per side), ``rows`` (m, rows of Z), ``pixels`` (B·H·W),
    ``time_s`` (median over rounds, or the fastest with ``stat="min"``) with ``time_s_lo`` /
    ``time_s_hi`` (min / max), ``memory_mib`` (see :func:`memory_mib`; NaN when ``memory`` is False),
    ``speedup`` (time at full resolution / time at this size, paired within each round: median,
    ``speedup_lo``, ``speedup_hi``; 1 at full, NaN if ``sizes`` lacks ``side``) and ``repeats``.
    ``unet``: keyword arguments of :func:`unet_step` (width, depth, in_channels); adds ``unet_s``
    (+ ``_lo``, ``_hi``) and ``share``, the loss's share of loss + U-Net per round (+ ``_lo``, ``_hi``).
    """
    device = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(images, feature_dim, side, side, generator=g), dim=1).to(device)
    labels = torch.randint(0, num_classes, (images, side, side), generator=g).to(device)

    def step(size):
        def once():
            f = feats.requires_grad_()
            f.grad = None
            mcr2_loss(f, labels, size, num_classes).backward()
            return f.grad
        return once

    mem = {s: (memory_mib(step(s), device, exclude=feats) if memory else float("nan")) for s in sizes}
    fns = {s: step(s) for s in sizes}
    if unet is not None:
        fns["unet"] = unet_step(images, feature_dim=feature_dim, side=side, device=device, seed=seed, **unet)
    times = interleaved_times(fns, repeats, device)
    full = times.get(side, np.full(repeats, np.nan))
    rows = []
    for s in sizes:
        t = spread(times[s])
        row = {"size": s, "rows": images * s * s, "pixels": images * side * side,
               "time_s": t["lo"] if stat == "min" else t["median"], "time_s_lo": t["lo"], "time_s_hi": t["hi"],
               "memory_mib": mem[s], "repeats": repeats}
        up = spread(full / times[s])
        row.update(speedup=up["median"], speedup_lo=up["lo"], speedup_hi=up["hi"])
        if unet is not None:
            u, share = spread(times["unet"]), spread(times[s] / (times[s] + times["unet"]))
            row.update(unet_s=u["median"], unet_s_lo=u["lo"], unet_s_hi=u["hi"],
                       share=share["median"], share_lo=share["lo"], share_hi=share["hi"])
        rows.append(row)
    return rows


def measure_unet(images: int = 128, width: int = 16, depth: int = 4, feature_dim: int = 128, in_channels: int = 1,
                 side: int = FULL, repeats: int = 3, device="cpu", seed: int = 0, stat: str = "median") -> float:
    """Median seconds of the U-Net's forward+backward (features only, no loss) on one batch."""
    once = unet_step(images, width, depth, feature_dim, in_channels, side, device, seed)
    return median_time(once, repeats, torch.device(device), stat)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"
