"""Where the time of one training step goes, kernel by kernel (torch.profiler).

    python benchmarks/profile_step.py [--experiment seg_bg_mcr2_masked] [--device cuda] [--steps 5]

One eager training step of the experiment's paper model on a random batch (MCR² switched on), as
``benchmarks/bench_train.py`` builds it, profiled over ``--steps`` steps after warm-up: the
operators and kernels that take the most device (or CPU) time, the kernels per step, and the
device time against the wall time per step. For a step that keeps the GPU busy (the U-Net's, 98 %
on an H100) this names the kernels worth making faster; launches no longer matter there.
"""
from __future__ import annotations

import argparse

import torch

from mcr2.engine import resolve_device
from mcr2.profiling import device_name, kernel_report, sync

from bench_train import _setup  # the same trainer and batch as the throughput benchmark


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="seg_bg_mcr2_masked")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--profile", default=None, help="default: paper on CUDA, smoke on CPU")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rows", type=int, default=20, help="table rows")
    args = parser.parse_args()
    device = resolve_device(args.device)
    profile_name = args.profile or ("paper" if device.type == "cuda" else "smoke")
    exp, trainer, x, y, _ = _setup(args.experiment, profile_name, device, None)
    for _ in range(3):  # warm-up: cuDNN's algorithm choice, optimiser state
        trainer._eager_step(x, y)
    sync(device)
    print(f"device: {device_name(device)}; torch {torch.__version__}; {exp.name} ({profile_name}), batch "
          f"{exp.optim.batch_size}, width {exp.model.width}; {args.steps} steps")
    print(kernel_report(lambda: trainer._eager_step(x, y), args.steps, device, args.rows, per="step"))

if __name__ == "__main__":
    main()
