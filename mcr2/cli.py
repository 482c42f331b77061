"""Command line: train experiments into run records (the entry point for GPU machines).

    python -m mcr2 list
    python -m mcr2 run seg_bg_mcr2_masked --profile smoke --set optim.epochs=2
    python -m mcr2 run cls_digits_mcr2 seg_bg_mcr2_masked --profile paper --seeds 0 1 2   # GPU
    python -m mcr2 paper --budget 520 --jobs 4       # the missing paper records in a time budget
    torchrun --nproc-per-node 4 -m mcr2 run seg_bg_mcr2_masked --profile paper   # one process per GPU

Everything given is checked before any data is read: experiment names, ``--set FIELD=JSON``
items (names and values, :mod:`mcr2.config`), seeds, the device, and the paper profile, which
refuses to train on a machine without CUDA (its complete records in results/paper still load).
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
import time

from .config import ConfigError, field_names, parse_overrides
from .experiments import EXPERIMENTS, PROFILES, experiment


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed {text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed {value} is negative; seeds are integers ≥ 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mcr2", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list experiments, profiles and the fields --set can change")
    r = sub.add_parser("run", help="train experiments (complete records are loaded, not retrained)")
    r.add_argument("names", nargs="*", help=f"experiments: {', '.join(EXPERIMENTS)}")
    r.add_argument("--all", action="store_true", help="every experiment")
    r.add_argument("--profile", choices=list(PROFILES), default="smoke")
    r.add_argument("--seeds", type=_seed, nargs="+", default=[0], help="integers ≥ 0 (default: 0)")
    r.add_argument("--runs-dir", default=None, help="default: $MCR2_RUNS/<profile>, else results/paper for "
                                                    "paper and runs/<profile> otherwise")
    r.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    r.add_argument("--retrain", action="store_true", help="train even where a complete record exists")
    r.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="change a field, with a JSON value: --set optim.epochs=3, "
                        "--set data.background='\"cifar10\"' (the profile becomes \"custom\"); "
                        "`python -m mcr2 list` shows the fields")
    # Its options are parsed by mcr2.paper itself, imported only when it runs (see main).
    sub.add_parser("paper", add_help=False,
                   help="train the missing paper-profile records inside a time budget (GPU machine); "
                        "`python -m mcr2 paper --help` for its options")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command != "paper" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "list":
        for name, spec in EXPERIMENTS.items():
            print(f"{name:22s} {spec['data']['task']:15s} {spec['loss']}")
        print("profiles:", ", ".join(PROFILES))
        print("fields (--set FIELD=JSON):", ", ".join(f for f in field_names() if "." in f))
        return 0
    if args.command == "paper":
        from . import paper

        paper_parser = argparse.ArgumentParser(prog="python -m mcr2 paper", description=paper.__doc__,
                                               formatter_class=argparse.RawDescriptionHelpFormatter)
        paper.add_arguments(paper_parser)
        from .costs import CostTableError
        from .packs import PackError
        from .records import RecordCorrupt

        try:
            rc = paper.main_from_args(paper_parser.parse_args(rest))
        except ConfigError as err:  # e.g. a bad --set item or seed: the field is named, no traceback
            _fail(str(err), code=2)
        except (PackError, CostTableError, RecordCorrupt, OSError) as err:  # each names its file and the fix
            _fail(str(err))
        if rc:
            raise SystemExit(rc)
        return 0
    return _run(parser, args)


def _fail(message: str, code: int = 1):
    print(f"python -m mcr2: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def _run(parser: argparse.ArgumentParser, args) -> int:
    import torch

    from .data import DataNotFoundError, check_data_root
    from .engine import TrainingDiverged, run
    from .records import RecordCorrupt, check_runs_dir, default_runs_dir, find_record, record_dir

    names = list(EXPERIMENTS) if args.all else args.names
    if not names:
        parser.error("name at least one experiment, or --all")
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment {', '.join(map(repr, unknown))}; known: {', '.join(EXPERIMENTS)}")
    try:
        overrides = parse_overrides(args.set)
        runs = [(experiment(name, args.profile, seed, **overrides), name, seed) for name in names for seed in args.seeds]
    except ConfigError as err:
        parser.error(str(err))
    try:
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                              "cpu" if args.device == "auto" else args.device)
    except RuntimeError as err:
        parser.error(f"--device {args.device!r}: {err}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available here; use --device cpu or auto")

    def runs_dir_of(exp):
        return args.runs_dir or default_runs_dir(exp.profile)

    try:
        missing = [(exp, name, seed) for exp, name, seed in runs
                   if args.retrain or find_record(exp, runs_dir_of(exp)) is None]
    except RecordCorrupt as err:
        _fail(str(err))
    paper_missing = [(name, seed) for exp, name, seed in missing if exp.profile == "paper"]
    if paper_missing and device.type != "cuda":
        where = next(runs_dir_of(exp) for exp, _, _ in missing if exp.profile == "paper")
        todo = ", ".join(f"{n} seed {s}" for n, s in paper_missing)
        smoke = " ".join(dict.fromkeys(n for n, _ in paper_missing))
        seeds = " ".join(str(s) for s in dict.fromkeys(s for _, s in paper_missing))
        _fail(
            f"the paper profile is GPU-scale (ResNet18/U-Net of width 64, 60 000 training images, "
            f"30-100 epochs: hours on a CPU) and this machine has no CUDA device. "
            f"{'To retrain' if args.retrain else 'Missing paper records'}: {todo} "
            f"(in {where}). On a machine with a GPU run\n"
            f"    python -m mcr2 run {smoke} --profile paper --seeds {seeds}{' --retrain' * args.retrain}\n"
            f"or, for all missing paper records within a time budget,\n"
            f"    python -m mcr2 paper --budget SECONDS\n"
            f"Here, the same experiments at the smoke scale:\n"
            f"    python -m mcr2 run {smoke} --profile smoke",
            code=2,
        )
    try:
        for exp, _, _ in missing:
            d = exp.data
            check_data_root(domains=(d.train_domain, *d.val_domains),
                            backgrounds=() if d.background is None else (d.background,))
        for folder in dict.fromkeys(runs_dir_of(exp) for exp, _, _ in missing):
            check_runs_dir(folder)
    except (DataNotFoundError, OSError) as err:
        _fail(str(err))

    rank = 0
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        # Started by torchrun: one process per device, NCCL on GPUs, gloo on CPUs.
        cuda = device.type == "cuda"
        dist.init_process_group("nccl" if cuda else "gloo")
        rank = dist.get_rank()
        if cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = torch.device(f"cuda:{local}")
    launcher = os.environ.get("MCR2_LAUNCHER")
    os.environ["MCR2_LAUNCHER"] = "cli"  # the records' provenance: made by `python -m mcr2 run`
    start, done = time.time(), 0
    try:
        for exp, name, seed in runs:
            rec = run(exp, runs_dir_of(exp), retrain=args.retrain, device=device,
                      progress="lines" if rank == 0 else "off")
            wall = rec.record.get("wall_time_s")
            if rank == 0:
                took = f"{wall:.1f} s" if isinstance(wall, (int, float)) else "time unknown"
                print(f"== {name} seed {seed}: {rec.status}, {took}, {rec.path}", flush=True)
            done += 1
    except (DataNotFoundError, RecordCorrupt, TrainingDiverged) as err:
        _fail(f"{exp.name} seed {exp.seed}: {err}")
    except OSError as err:  # e.g. a full disk while the record is written: named, never a traceback
        where = record_dir(exp, runs_dir_of(exp))
        why = "the disk is full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else f"{type(err).__name__}: {err}"
        _fail(f"{exp.name} seed {exp.seed}: its record {where} could not be written ({why}); nothing half-written "
              f"reads as a record, and a complete one already there is kept. Free space and run it again")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        if launcher is None:  # as it was (main() may be called from Python)
            os.environ.pop("MCR2_LAUNCHER", None)
        else:
            os.environ["MCR2_LAUNCHER"] = launcher
    if rank == 0:
        print(f"== total {time.time() - start:.1f} s for {done} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
