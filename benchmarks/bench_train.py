"""Training throughput (images/s) of the report's models on the device at hand.

    python benchmarks/bench_train.py [--device cpu|cuda] [--profile smoke|paper] [--steps 5]

One line per configuration: ResNet18 with CE and with MCR² (classification), and the U-Net with
masked MCR² (segmentation, MCR² switched on). Each step is one training step of the engine on
random data of the profile's batch size and model width, timed over ``--steps`` steps after one
warm-up step. On a GPU it also prints the share of a step spent in the MCR² loss (forward and
backward of the loss alone on the same features), measured in the same run, and how busy the GPU
is during a step (kernel time / wall time under torch.profiler): well under 100 % means the step
waits on the host (launches, syncs), which CUDA graphs or fewer kernels would win back; near 100 %
means only less arithmetic or faster kernels can help.
"""
from __future__ import annotations

import argparse
import time

import torch

from mcr2 import training
from mcr2.engine import _Trainer, resolve_device
from mcr2.experiments import experiment
from mcr2.loss import rate_reduction
from mcr2.profiling import device_name, sync

CONFIGS = [("ResNet18 CE", "cls_mnist_ce"), ("ResNet18 MCR²", "cls_mnist_mcr2"), ("U-Net MCR² masked", "seg_bg_mcr2_masked")]


def bench(name: str, profile: str, device: torch.device, steps: int, batch_size: int | None):
    exp = experiment(name, profile, 0)
    if batch_size:
        exp = exp.replace(**{"optim.batch_size": batch_size})
    trainer = _Trainer(exp, None, device, "off")
    bs = exp.optim.batch_size
    seg = exp.data.task == "segmentation"
    channels = 3 if exp.data.background else 1
    g = torch.Generator().manual_seed(0)
    x = torch.rand(bs, channels, 28, 28, generator=g).to(device)
    if seg:
        y = torch.randint(0, 11, (bs, 28, 28), generator=g).to(device)
    else:
        y = torch.randint(0, 10, (bs,), generator=g).to(device)
    trainer.in_channels = channels
    trainer._build_model()
    trainer.mask_on = True

    def step():
        loss, _, _ = trainer._step_loss(x, y)
        trainer.opt.zero_grad(set_to_none=True)
        loss.backward()
        trainer.opt.step()

    step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    per_step = (time.perf_counter() - start) / steps
    loss_share = float("nan")
    if exp.loss.kind == "mcr2":
        d = exp.model.feature_dim
        m = bs * (784 if seg else 1)
        Z = torch.nn.functional.normalize(torch.randn(m, d, generator=g), dim=1).to(device)
        labels = y.reshape(-1)
        z = Z.requires_grad_()
        rate_reduction(z, labels, exp.num_classes, check=False).loss.backward()
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            z.grad = None
            rate_reduction(z, labels, exp.num_classes, check=False).loss.backward()
        sync(device)
        loss_share = (time.perf_counter() - t0) / steps / per_step
    return bs / per_step, per_step, loss_share, gpu_busy(step, steps, device), exp


def gpu_busy(step, steps: int, device: torch.device) -> float:
    """Share of the wall time of ``steps`` calls of ``step`` in which a CUDA kernel ran (NaN on CPU)."""
    if device.type != "cuda":
        return float("nan")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        wall = time.perf_counter() - start
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return sum(e.time_range.elapsed_us() for e in kernels) / 1e6 / wall


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--profile", default=None, help="default: paper on CUDA, smoke on CPU")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None, help="override the profile's batch size")
    parser.add_argument("--cudnn-benchmark", choices=["on", "off"], default="on",
                        help="cuDNN algorithm timing (mcr2.training.CUDNN_BENCHMARK; CUDA only)")
    args = parser.parse_args()
    training.CUDNN_BENCHMARK = args.cudnn_benchmark == "on"
    device = resolve_device(args.device)
    profile = args.profile or ("paper" if device.type == "cuda" else "smoke")
    print(f"device: {device_name(device)}; torch {torch.__version__}; profile {profile}; "
          f"cudnn.benchmark {args.cudnn_benchmark}")
    print(f"{'configuration':22s} {'width':>5} {'batch':>6} {'images/s':>10} {'ms/step':>9} {'loss share':>11}"
          f" {'GPU busy':>9}")
    for label, exp_name in CONFIGS:
        ips, per_step, share, busy, exp = bench(exp_name, profile, device, args.steps, args.batch_size)
        shown = "-" if share != share else f"{share:.1%}"  # CE has no MCR² term
        busy = "-" if busy != busy else f"{busy:.0%}"
        print(f"{label:22s} {exp.model.width:>5} {exp.optim.batch_size:>6} {ips:>10.0f} {per_step * 1e3:>9.1f} {shown:>11}"
              f" {busy:>9}")


if __name__ == "__main__":
    main()
