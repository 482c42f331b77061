"""Command line: train experiments into run records (the entry point for GPU machines).

    python -m mcr2 run cls_digits_mcr2 seg_bg_mcr2_masked --profile paper --seeds 0 1 2
    python -m mcr2 run --all --profile smoke
    python -m mcr2 list
    torchrun --nproc-per-node 4 -m mcr2 run seg_bg_mcr2_masked --profile paper   # one process per GPU
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.distributed as dist

from .engine import run
from .experiments import EXPERIMENTS, PROFILES, experiment
from .records import default_runs_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mcr2", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list experiments and profiles")
    r = sub.add_parser("run", help="train experiments (complete records are loaded, not retrained)")
    r.add_argument("names", nargs="*", help=f"experiments: {', '.join(EXPERIMENTS)}")
    r.add_argument("--all", action="store_true", help="every experiment")
    r.add_argument("--profile", choices=list(PROFILES), default="smoke")
    r.add_argument("--seeds", type=int, nargs="+", default=[0])
    r.add_argument("--runs-dir", default=None, help="default: results/paper for paper, runs/<profile> otherwise")
    r.add_argument("--device", default="auto")
    r.add_argument("--retrain", action="store_true")
    r.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help='override a field, e.g. --set optim.epochs=3 (the profile becomes "custom")')
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, spec in EXPERIMENTS.items():
            print(f"{name:22s} {spec['data']['task']:15s} {spec['loss']}")
        print("profiles:", ", ".join(PROFILES))
        return
    device, rank = args.device, 0
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        # Started by torchrun: one process per device, NCCL on GPUs, gloo on CPUs.
        cuda = torch.cuda.is_available() and device in ("auto", "cuda")
        dist.init_process_group("nccl" if cuda else "gloo")
        rank = dist.get_rank()
        if cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
    names = list(EXPERIMENTS) if args.all else args.names
    if not names:
        parser.error("name at least one experiment, or --all")
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    summary = []
    start = time.time()
    for name in names:
        for seed in args.seeds:
            exp = experiment(name, args.profile, seed, **overrides)
            runs_dir = args.runs_dir or default_runs_dir(exp.profile)
            rec = run(exp, runs_dir, retrain=args.retrain, device=device, progress="lines" if rank == 0 else "off")
            wall = rec.record.get("wall_time_s", float("nan"))
            if rank == 0:
                print(f"== {name} seed {seed}: {rec.status}, {wall:.1f} s, {rec.path}", flush=True)
            summary.append({"name": name, "seed": seed, "wall_time_s": wall, "path": str(rec.path)})
    if rank == 0:
        print(f"== total {time.time() - start:.1f} s for {len(summary)} runs")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
