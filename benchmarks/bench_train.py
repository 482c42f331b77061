"""Training throughput (images/s) of the report's models on the device at hand.

    python benchmarks/bench_train.py [--device cpu|cuda] [--profile smoke|paper] [--steps 5] [--cuda-graphs on]
                                     [--streams N]

One line per configuration: ResNet18 with CE and with MCR² (classification), and the U-Net with
masked MCR² (segmentation, MCR² switched on). Each step is one training step of the engine on
random data of the profile's batch size and model width, timed over ``--steps`` steps after one
warm-up step. On a GPU it also prints the share of a step spent in the MCR² loss (forward and
backward of the loss alone on the same features), measured in the same run, and how busy the GPU
is during a step (kernel time / wall time under torch.profiler): well under 100 % means the step
waits on the host (launches, syncs), which CUDA graphs or fewer kernels would win back; near 100 %
means only less arithmetic or faster kernels can help.

``--cuda-graphs on`` (CUDA only) then compares, per configuration, the eager step with the step
replayed as a CUDA graph (:class:`mcr2.graphs.GraphedStep`): two fresh trainers built alike take the
same steps on the same batch; it prints the images/s of each, their ratio, the largest difference
of their parameters afterwards (bf16 rounding and cuDNN's choices allow a small one), and what one
capture takes (a run captures once per mode; with SGD, again at each learning-rate change).

``--streams N`` (CUDA only) times N graphed runs at once in one process, each replaying on its own
CUDA stream from its own thread, against one alone: whether runs that leave the GPU partly idle
gain from sharing it this way (separate processes time-slice: 4 at once gave 1.1x).
"""
from __future__ import annotations

import argparse
import time

import torch

from mcr2 import training
from mcr2.engine import _Trainer, resolve_device
from mcr2.experiments import experiment
from mcr2.graphs import GraphedStep
from mcr2.loss import rate_reduction
from mcr2.profiling import device_name, kernel_profile, sync

CONFIGS = [("ResNet18 CE", "cls_mnist_ce"), ("ResNet18 MCR²", "cls_mnist_mcr2"), ("U-Net MCR² masked", "seg_bg_mcr2_masked")]


def _setup(name: str, profile: str, device: torch.device, batch_size: int | None):
    """A built trainer of the experiment (MCR² switched on) and one random batch of its size."""
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
    return exp, trainer, x, y, g


def _per_step(step, steps: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps


def bench(name: str, profile: str, device: torch.device, steps: int, batch_size: int | None):
    exp, trainer, x, y, g = _setup(name, profile, device, batch_size)
    bs = exp.optim.batch_size
    seg = exp.data.task == "segmentation"

    def step():
        trainer._eager_step(x, y)

    step()
    per_step = _per_step(step, steps, device)
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


def bench_graphs(name: str, profile: str, device: torch.device, steps: int, batch_size: int | None,
                 warmup: int = 3):
    """Images/s of the eager and of the graphed step (two fresh trainers built alike, same seed, same
    batch) and the largest difference of their parameters after the same steps."""
    exp, eager, x, y, _ = _setup(name, profile, device, batch_size)
    _, graphed_trainer, _, _, _ = _setup(name, profile, device, batch_size)
    graphed = GraphedStep(graphed_trainer, warmup)

    def eager_step():
        eager._eager_step(x, y)

    def graph_step():
        graphed(x, y)

    for _ in range(warmup + 1):  # the graph's eager warm-up steps, then its capture (and first replay)
        eager_step()
        graph_step()
    per_eager = _per_step(eager_step, steps, device)
    per_graph = _per_step(graph_step, steps, device)
    diff = max((a - b).abs().max().item()
               for a, b in zip(eager.modules.parameters(), graphed_trainer.modules.parameters()))
    bs = exp.optim.batch_size
    return bs / per_eager, bs / per_graph, diff, warmup + 1 + steps, graphed.capture_seconds / graphed.captures


def bench_streams(name: str, profile: str, device: torch.device, steps: int, batch_size: int | None,
                  runs: int, warmup: int = 3) -> tuple[float, float]:
    """Images/s of one graphed run alone, and of ``runs`` graphed runs at once in one process, each
    in its own thread replaying on its own CUDA stream (the kernels of separate processes
    time-slice; those of streams in one process can overlap). As in a worker with ``--streams``
    (:mod:`mcr2.workers`), the threads warm up and capture at the same time
    (:data:`mcr2.graphs.THREADED_CAPTURE`), so a fault of concurrent capture shows here first.
    Returns (alone, all together)."""
    import threading

    from mcr2 import graphs

    graphs.THREADED_CAPTURE = True
    setups = [_setup(name, profile, device, batch_size) for _ in range(runs)]
    streams = [torch.cuda.Stream(device) for _ in range(runs)]
    steps_of = [lambda graphed=GraphedStep(trainer, warmup), x=x, y=y: graphed(x, y)
                for (_, trainer, x, y, _) in setups]

    def timed(chosen, count: int) -> float:
        errors = []

        def work(step, stream):
            try:
                with torch.cuda.stream(stream):
                    for _ in range(count):
                        step()
            except BaseException as err:  # re-raised in the main thread
                errors.append(err)

        threads = [threading.Thread(target=work, args=(step, stream)) for step, stream in chosen]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        torch.cuda.synchronize(device)
        if errors:
            raise errors[0]
        return time.perf_counter() - start

    pairs = list(zip(steps_of, streams))
    timed(pairs, warmup + 1)  # every run's eager warm-up and capture, all threads at once
    bs = setups[0][0].optim.batch_size
    alone = bs * steps / timed(pairs[:1], steps)
    together = runs * bs * steps / timed(pairs, steps)
    return alone, together


def gpu_busy(step, steps: int, device: torch.device) -> float:
    """Share of the wall time of ``steps`` calls of ``step`` in which a CUDA kernel ran (NaN on CPU)."""
    if device.type != "cuda":
        return float("nan")
    _, wall, _, busy = kernel_profile(step, steps, device)
    return busy / wall


def _failed(label: str, e: Exception) -> str:
    """The table row of a configuration whose benchmark raised: the error's first line."""
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{label:22s} failed: {type(e).__name__}: {first}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--profile", default=None, help="default: paper on CUDA, smoke on CPU")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None, help="override the profile's batch size")
    parser.add_argument("--cudnn-benchmark", choices=["on", "off"], default="on",
                        help="cuDNN algorithm timing (mcr2.training.CUDNN_BENCHMARK; CUDA only)")
    parser.add_argument("--cuda-graphs", choices=["off", "on"], default="off",
                        help="on: after the table, the step replayed as a CUDA graph (mcr2.graphs) "
                             "beside the eager step, images/s of each, their ratio and the largest parameter "
                             "difference after the same steps (CUDA only)")
    parser.add_argument("--streams", type=int, default=0, metavar="N",
                        help="N ≥ 2: also N graphed runs at once in one process, each on its own CUDA stream, "
                             "against one alone (aggregate images/s; CUDA only)")
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

    if args.cuda_graphs == "off" and args.streams < 2:
        return
    if device.type != "cuda":
        print(f"CUDA graphs need CUDA: skipped on {device_name(device)}")
        return
    if args.streams >= 2:
        print(f"{args.streams} graphed runs at once in one process, one CUDA stream each, against one alone:")
        print(f"{'configuration':22s} {'alone img/s':>12} {'together img/s':>15} {'ratio':>6}")
        for label, exp_name in CONFIGS:
            try:
                alone, together = bench_streams(exp_name, profile, device, args.steps, args.batch_size, args.streams)
            except Exception as e:  # one configuration failing on the GPU must not lose the others
                print(_failed(label, e))
                continue
            print(f"{label:22s} {alone:>12.0f} {together:>15.0f} {together / alone:>5.2f}×")
    if args.cuda_graphs == "off":
        return
    print("CUDA graphs (eager vs graphed step, fresh trainers from the same init, same batch):")
    print(f"{'configuration':22s} {'eager img/s':>12} {'graph img/s':>12} {'ratio':>6} {'steps':>6} {'max |Δθ|':>9}"
          f" {'capture ms':>11}")
    for label, exp_name in CONFIGS:
        try:
            eager, graphed, diff, n, capture = bench_graphs(exp_name, profile, device, args.steps, args.batch_size)
        except Exception as e:  # one configuration failing on the GPU must not lose the others
            print(_failed(label, e))
            continue
        print(f"{label:22s} {eager:>12.0f} {graphed:>12.0f} {graphed / eager:>5.2f}× {n:>6} {diff:>9.1e}"
              f" {capture * 1e3:>11.0f}")


if __name__ == "__main__":
    main()
