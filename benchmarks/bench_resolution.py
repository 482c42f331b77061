"""Cost of MCR² at full and at lower resolution, and its share of a U-Net training step.

    python benchmarks/bench_resolution.py [--device cpu|cuda] [--images 128] [--dim 128] [--width 16]

Random unit features (B, d, 28, 28) and random labels of a segmentation batch (k = 11 classes);
MCR² is ``pooled_rows`` to s×s cells (labels by majority vote, mixed cells weighted by their
majority share) followed by ``rate_reduction``; at full resolution (s = 28) it is
``rate_reduction`` over every pixel. For each s it prints, measured in this one run: the
forward+backward time, the peak memory, ``full/s`` (how many times cheaper than full resolution)
and the loss's share of a training step, where a step is the U-Net's forward+backward on the same
batch plus the loss (no optimiser step, no data loading). The resolutions and the U-Net are timed
in ``--repeats`` interleaved rounds after a warm-up (``mcr2.profiling.measure_loss``); each
number is the median of the rounds with its range (min–max) in brackets, ratios paired within a
round. A ratio whose range contains 1 is not a resolved difference on this machine; with fewer than
5 rounds no verdict is printed.
Memory is the CUDA allocator's peak on a GPU; on CPU, where no allocator tracks a peak, it is the
bytes of the tensors autograd keeps for the backward pass (the loss's activation memory, the part
that grows with the rows of Z; exact, and a lower bound on the peak).
"""
from __future__ import annotations

import argparse

import torch

from mcr2.profiling import FULL, device_name, measure_loss, resolved

MIN_ROUNDS = 5  # fewer interleaved rounds give a range too thin to call a difference


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=128, help="images per batch (B); pixels = B·28·28")
    parser.add_argument("--dim", type=int, default=128, help="feature_dim d")
    parser.add_argument("--classes", type=int, default=11, help="num_classes k")
    parser.add_argument("--width", type=int, default=None, help="U-Net width w (default 16 on CPU, 64 on CUDA)")
    parser.add_argument("--depth", type=int, default=4, help="U-Net depth")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (at least 5 for a range worth reading)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    width = args.width or (64 if device.type == "cuda" else 16)
    print(f"device: {device_name(device)}; torch {torch.__version__}; B = {args.images} images of 28×28 "
          f"({args.images * FULL * FULL} pixels), d = {args.dim}, k = {args.classes}; U-Net width {width}, depth {args.depth}")
    rows = measure_loss(args.images, args.dim, args.classes, (FULL, 14, 7), repeats=args.repeats, device=device,
                        unet=dict(width=width, depth=args.depth))
    memory = "CUDA allocator peak" if device.type == "cuda" else "tensors saved for backward"
    u = rows[0]
    print(f"U-Net forward+backward: {u['unet_s'] * 1e3:.1f} ms [{u['unet_s_lo'] * 1e3:.1f}–{u['unet_s_hi'] * 1e3:.1f}]; "
          f"memory column: {memory}; median [min–max] of {args.repeats} interleaved rounds")
    print(f"{'resolution':>10} {'rows m':>8} {'loss ms':>22} {'mem MiB':>8} {'full/res':>20} {'loss share of step':>22}")
    for r in rows:
        loss = f"{r['time_s'] * 1e3:.1f} [{r['time_s_lo'] * 1e3:.1f}–{r['time_s_hi'] * 1e3:.1f}]"
        ratio = f"{r['speedup']:.2f} [{r['speedup_lo']:.2f}–{r['speedup_hi']:.2f}]"
        share = f"{r['share']:.1%} [{r['share_lo']:.1%}–{r['share_hi']:.1%}]"
        if r["size"] == FULL:
            verdict = ""
        elif args.repeats < MIN_ROUNDS:
            verdict = f"(fewer than {MIN_ROUNDS} rounds: no verdict)"
        else:
            verdict = {1: "cheaper", -1: "dearer", 0: "not resolved"}[resolved(r["speedup_lo"], r["speedup_hi"])]
        print(f"{r['size']:>7}×{r['size']:<2} {r['rows']:>8} {loss:>22} {r['memory_mib']:>8.1f} {ratio:>20} {share:>22}  {verdict}")

if __name__ == "__main__":
    main()
