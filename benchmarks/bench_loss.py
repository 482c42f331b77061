"""Forward+backward cost of ``mcr2.rate_reduction`` at segmentation scale, as ratios.

    python benchmarks/bench_loss.py [--device cpu|cuda] [--pixels 100352] [--repeats 5]

m = 100 352 pixels (128 images × 28×28), k = 11 classes, d = 128 and d = 32. Each line compares,
measured in this one run (medians of ``--repeats``):
  (a) a per-class masked-copy formulation like the authors' code (a k×m×d copy of Z with the other
      classes' rows zeroed, a sparse-dense Gram per class): ``masked/ours`` is how many times faster we are;
  (b) the floor: one ``Z.T @ Z`` forward+backward of the same Z: ``ours/floor`` is our overhead.
"ours" is the training step's call (``check=False``: no host sync, verified on CUDA with the sync
debug mode); "checked" is the default call, whose label/weight check reads one flag back;
"graphed" (CUDA only) replays "ours" from a captured CUDA graph, as inside the graphed training
step: on an H100 the eager call is bound by its ~170 kernel launches, not by arithmetic.
Targets: masked/ours ≥ 20, ours/floor ≤ 2 on CUDA. Memory (MiB) is the CUDA allocator's peak on a GPU
and, on CPU, the tensors autograd keeps for the backward pass (``mcr2.profiling.memory_mib``).
"""
from __future__ import annotations

import argparse

import torch

from mcr2 import rate_reduction
from mcr2.profiling import device_name, median_time, memory_mib


def masked_copy_rate_reduction(Z, labels, num_classes, eps_sq=0.5):
    """The authors'-code formulation: a (k, m, d) masked copy of Z, and per class a sparse
    Z_jᵀ times dense Z_j product (their loss converts each masked copy to a sparse tensor)."""
    m, d = Z.shape
    eye = torch.eye(d, device=Z.device, dtype=Z.dtype)
    R = 0.5 * torch.logdet(eye + d / (m * eps_sq) * Z.T @ Z)
    member = torch.nn.functional.one_hot(labels, num_classes).T.to(Z.dtype)  # (k, m)
    selected = Z[None] * member[:, :, None]  # (k, m, d) masked copies
    counts = member.sum(1) + 1e-8
    grams = torch.stack([torch.sparse.mm(selected[j].T.to_sparse(), selected[j]) for j in range(num_classes)])
    logdets = torch.logdet(eye + (d / (counts * eps_sq))[:, None, None] * grams)
    Rc = (logdets * counts / m).sum() / 2
    return Rc - R


def floor(Z, labels, num_classes):
    return (Z.T @ Z).sum()


def ours(Z, labels, num_classes):
    """The training step's call: no label/weight check, so no host sync."""
    return rate_reduction(Z, labels, num_classes, check=False).loss


def checked(Z, labels, num_classes):
    """The default call: labels and weights checked, one host sync."""
    return rate_reduction(Z, labels, num_classes).loss


def graph_replay(fn, Z, labels, k):
    """One forward+backward of ``fn`` captured as a CUDA graph: the returned callable replays it
    (the loss as the graphed training step runs it, without per-kernel launch cost). None on CPU."""
    if Z.device.type != "cuda":
        return None
    z = Z.detach().clone().requires_grad_()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture, as CUDA graphs require
        for _ in range(3):
            z.grad = None
            fn(z, labels, k).backward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    z.grad = None
    with torch.cuda.graph(graph):
        fn(z, labels, k).backward()
    return graph.replay


def host_syncs(Z, labels, k) -> str:
    """'none' when one forward+backward of ``ours`` runs under CUDA's sync debug mode "error"."""
    if Z.device.type != "cuda":
        return "n/a (CPU)"
    torch.cuda.set_sync_debug_mode("error")
    try:
        forward_backward(ours, Z, labels, k)()
        return "none"
    except RuntimeError as err:
        return f"yes: {str(err).splitlines()[0]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")


def forward_backward(fn, Z, labels, k):
    """One forward+backward of ``fn`` on a fresh leaf that shares Z's storage."""
    def once():
        z = Z.detach().requires_grad_()
        fn(z, labels, k).backward()

    return once


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pixels", type=int, default=128 * 28 * 28)
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device: {device_name(device)}; torch {torch.__version__}; m = {args.pixels}, k = {args.classes}")
    g = torch.Generator().manual_seed(0)
    print(f"{'d':>4} {'ours ms':>9} {'checked':>8} {'graphed':>8} {'floor ms':>9} {'masked ms':>10} {'masked/ours':>12}"
          f" {'ours/floor':>11} {'graphed/floor':>14} {'MiB ours':>9} {'floor':>7} {'masked':>7}  host syncs in ours")
    for d in (128, 32):
        Z = torch.nn.functional.normalize(torch.randn(args.pixels, d, generator=g), dim=1).to(device)
        labels = torch.randint(0, args.classes, (args.pixels,), generator=g).to(device)
        fns = (floor, ours, checked, masked_copy_rate_reduction)
        mem = {fn.__name__: memory_mib(forward_backward(fn, Z, labels, args.classes), device, exclude=Z) for fn in fns}
        t = {fn.__name__: median_time(forward_backward(fn, Z, labels, args.classes), args.repeats, device) for fn in fns}
        replay = graph_replay(ours, Z, labels, args.classes)
        t["graphed"] = median_time(replay, args.repeats, device) if replay else float("nan")
        print(
            f"{d:>4} {t['ours'] * 1e3:>9.2f} {t['checked'] * 1e3:>8.2f} {t['graphed'] * 1e3:>8.2f} {t['floor'] * 1e3:>9.2f}"
            f" {t['masked_copy_rate_reduction'] * 1e3:>10.1f}"
            f" {t['masked_copy_rate_reduction'] / t['ours']:>12.1f} {t['ours'] / t['floor']:>11.2f}"
            f" {t['graphed'] / t['floor']:>14.2f}"
            f" {mem['ours']:>9.0f} {mem['floor']:>7.0f} {mem['masked_copy_rate_reduction']:>7.0f}"
            f"  {host_syncs(Z, labels, args.classes)}"
        )
    print("targets: masked/ours >= 20, ours/floor <= 2 on CUDA")


if __name__ == "__main__":
    main()
