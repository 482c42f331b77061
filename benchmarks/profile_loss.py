"""Where the time of one MCR² forward+backward goes, kernel by kernel (torch.profiler).

    python benchmarks/profile_loss.py [--device cuda] [--pixels 100352] [--dim 128]

Prints the operators and kernels that take the most device (or CPU) time over ``--repeats`` calls
of ``rate_reduction`` at segmentation scale (k = 11) as the training step calls it (``check=False``:
no host sync), the number of kernel launches per call, and the device time against the wall time
per call: the data for making the loss cheaper on a GPU, where launches count.
"""
from __future__ import annotations

import argparse

import torch

from mcr2 import rate_reduction
from mcr2.profiling import device_name, kernel_report, sync


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pixels", type=int, default=100_352)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=20, help="table rows")
    args = parser.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    Z = torch.nn.functional.normalize(torch.randn(args.pixels, args.dim, generator=g), dim=1).to(device)
    labels = torch.randint(0, 11, (args.pixels,), generator=g).to(device)
    Z.requires_grad_()

    def once():
        Z.grad = None
        rate_reduction(Z, labels, 11, check=False).loss.backward()

    for _ in range(3):
        once()
    sync(device)
    print(f"device: {device_name(device)}; torch {torch.__version__}; m = {args.pixels}, d = {args.dim}, k = 11, "
          f"{args.repeats} calls")
    print(kernel_report(once, args.repeats, device, args.rows))

if __name__ == "__main__":
    main()
