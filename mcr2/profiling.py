"""Measuring the cost of MCR² and of a training step, shared by the benchmarks and the scaling chapter.

Times are medians (or minima) of repeated forward+backward calls after a warm-up, synchronised on
CUDA; memory is the CUDA allocator's peak on a GPU and, on CPU, the bytes autograd keeps for the
backward pass (exact, a lower bound on the peak).
"""
from __future__ import annotations

import statistics
import time

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


def measure_loss(
    images: int = 128,
    feature_dim: int = 128,
    num_classes: int = 11,
    sizes=(FULL, 14, 7),
    side: int = FULL,
    repeats: int = 3,
    device="cpu",
    seed: int = 0,
    memory: bool = True,
    stat: str = "median",
) -> list[dict]:
    """Forward+backward cost of MCR² per resolution on random unit features of one batch.

    One dict per size: ``size`` (cells per side), ``rows`` (m, rows of Z), ``pixels`` (B·H·W),
    ``time_s`` (median), ``memory_mib`` (see :func:`memory_mib`; NaN when ``memory`` is False) and ``speedup``
    (time at full resolution / time at this size; 1 at full). ``sizes`` must include ``side``
    for the speedup (else it is NaN).
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
    times = {s: median_time(step(s), repeats, device, stat) for s in sizes}
    full = times.get(side, float("nan"))
    return [
        {"size": s, "rows": images * s * s, "pixels": images * side * side, "time_s": times[s],
         "memory_mib": mem[s], "speedup": full / times[s]}
        for s in sizes
    ]


def measure_unet(images: int = 128, width: int = 16, depth: int = 4, feature_dim: int = 128, in_channels: int = 1,
                 side: int = FULL, repeats: int = 3, device="cpu", seed: int = 0, stat: str = "median") -> float:
    """Median seconds of the U-Net's forward+backward (features only, no loss) on one batch."""
    device = torch.device(device)
    torch.manual_seed(seed)
    model = UNet(in_channels=in_channels, feature_dim=feature_dim, width=width, depth=depth).to(device)
    x = torch.rand(images, in_channels, side, side, generator=torch.Generator().manual_seed(seed)).to(device)

    def once():
        model.zero_grad(set_to_none=True)
        model(x).features.sum().backward()

    return median_time(once, repeats, device, stat)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"
