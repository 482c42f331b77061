"""Cost of MCR² at full and at lower resolution, and its share of a U-Net training step.

    python benchmarks/bench_resolution.py [--device cpu|cuda] [--images 128] [--dim 128] [--width 16]

Random unit features (B, d, 28, 28) and random labels of a segmentation batch (k = 11 classes);
MCR² is ``pooled_rows`` to s×s cells (labels by majority vote, mixed cells weighted by their
majority share) followed by ``rate_reduction``; at full resolution (s = 28) it is
``rate_reduction`` over every pixel. For each s it prints, measured in this one run (medians of
``--repeats`` after a warm-up): the forward+backward time, the peak memory, ``full/s`` (how many
times cheaper than full resolution) and the loss's share of a training step, where a step is the
U-Net's forward+backward on the same batch plus the loss (no optimiser step, no data loading).
Memory is the CUDA allocator's peak on a GPU; on CPU, where no allocator tracks a peak, it is the
bytes of the tensors autograd keeps for the backward pass (the loss's activation memory, the part
that grows with the rows of Z; exact, and a lower bound on the peak).
"""
from __future__ import annotations

import argparse

import torch

from mcr2.profiling import FULL, device_name, measure_loss, measure_unet


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=128, help="images per batch (B); pixels = B·28·28")
    parser.add_argument("--dim", type=int, default=128, help="feature_dim d")
    parser.add_argument("--classes", type=int, default=11, help="num_classes k")
    parser.add_argument("--width", type=int, default=None, help="U-Net width w (default 16 on CPU, 64 on CUDA)")
    parser.add_argument("--depth", type=int, default=4, help="U-Net depth")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    width = args.width or (64 if device.type == "cuda" else 16)
    print(f"device: {device_name(device)}; torch {torch.__version__}; B = {args.images} images of 28×28 "
          f"({args.images * FULL * FULL} pixels), d = {args.dim}, k = {args.classes}; U-Net width {width}, depth {args.depth}")
    rows = measure_loss(args.images, args.dim, args.classes, (FULL, 14, 7), repeats=args.repeats, device=device)
    unet = measure_unet(args.images, width, args.depth, args.dim, repeats=args.repeats, device=device)
    memory = "CUDA allocator peak" if device.type == "cuda" else "tensors saved for backward"
    print(f"U-Net forward+backward: {unet * 1e3:.1f} ms; memory column: {memory}")
    print(f"{'resolution':>10} {'rows m':>8} {'loss ms':>9} {'mem MiB':>9} {'full/res':>9} {'loss share of step':>19}")
    for r in rows:
        share = r["time_s"] / (r["time_s"] + unet)
        print(f"{r['size']:>7}×{r['size']:<2} {r['rows']:>8} {r['time_s'] * 1e3:>9.1f} {r['memory_mib']:>9.1f}"
              f" {r['speedup']:>9.1f} {share:>19.1%}")


if __name__ == "__main__":
    main()
