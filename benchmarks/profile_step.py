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
import time

import torch
from torch.profiler import ProfilerActivity, profile

from mcr2.engine import resolve_device
from mcr2.profiling import device_name, sync

from bench_train import _setup, _train_step  # the same trainer and batch as the throughput benchmark


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
        _train_step(trainer, x, y)
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(args.steps):
            _train_step(trainer, x, y)
        sync(device)
        wall = (time.perf_counter() - start) / args.steps
    print(f"device: {device_name(device)}; torch {torch.__version__}; {exp.name} ({profile_name}), batch "
          f"{exp.optim.batch_size}, width {exp.model.width}; {args.steps} steps")
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows))
    if device.type == "cuda":
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        busy = sum(e.time_range.elapsed_us() for e in kernels) / args.steps / 1e3
        print(f"kernels per step: {len(kernels) / args.steps:.0f}; device time per step {busy:.1f} ms against "
              f"{wall * 1e3:.1f} ms wall (under the profiler)")


if __name__ == "__main__":
    main()
