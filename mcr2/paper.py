"""The paper profile in a GPU window: train the missing records inside a time budget.

    python -m mcr2 paper --dry-run --budget 600            # the plan: order, estimates (any machine)
    python -m mcr2 paper --budget 520 --jobs 4 --pack OUT/records.tar.xz    # on a GPU machine
    python -m mcr2 paper --import-pack records.tar.xz      # back here: records + measured costs

Runs are ordered by what they are worth to the book (:data:`PRIORITY`: the Figure 5 trio first,
then Figure 1, then Figures 2a/3), seeds round by round within a group, and a run is started only
if its estimate (:mod:`mcr2.costs`, measured on the GPU) fits the budget left. ``--jobs N`` trains
N runs at once on one device, on N worker processes that each take one run after another
(:mod:`mcr2.workers`: the start of a process is paid once per worker, not once per run; the models
are small and one run leaves most of an H100 idle); the per-record lock (:func:`mcr2.records.record_lock`) keeps two processes
from training or writing the same record. At the deadline, runs still going are stopped (they
leave no record, only their lock-guarded temporary folders). Running it again continues where the
last one stopped: complete records are never trained twice.

The pack (``--pack``) holds the records this invocation made and ``costs.json``, the wall time of
each of its runs (for a worker's first run, its start included and named) with the number of runs
sharing the device (and ``streams``: whether they shared it as processes or as streams of one); it
is rewritten after every finished run, so a window cut short still returns what finished. Needs
only torch and torchvision.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import queue
import shutil
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, parse_overrides
from .costs import COSTS_FILE, estimate, load_costs, merge_costs, worker_start_seconds
from .experiments import EXPERIMENTS, PROFILE_SEEDS, experiment
from .records import check_runs_dir, complete_record_path, default_runs_dir, find_record, load_record, record_dir
from .workers import Worker

__all__ = ["PRIORITY", "Planned", "plan_runs", "profile_table", "profile_seconds", "backgrounds_needed",
           "pack_records", "import_pack", "add_arguments", "main_from_args"]

#: What each group of runs is for, most valuable first; experiments not named here come last.
PRIORITY: list[tuple[str, list[str]]] = [
    ("Figure 5: masking vs unmasked MCR² vs CE", ["seg_bg_mcr2_masked", "seg_bg_mcr2", "seg_bg_ce"]),
    ("Figure 1: classification across domains", ["cls_mnist_ce", "cls_mnist_mcr2", "cls_digits_ce", "cls_digits_mcr2"]),
    ("Figures 2a, 3: segmentation of plain MNIST", ["seg_mnist_mcr2", "seg_mnist_ce"]),
]
#: Seconds kept at the end of the budget for the last pack.
PACK_RESERVE_S = 10.0
#: Largest pack (the files that come back from a GPU machine are at most 16 MiB each).
PACK_LIMIT_BYTES = 16 * 2**20
#: Seconds between looks at the running processes.
POLL_S = 0.5


@dataclass
class Planned:
    name: str
    seed: int
    group: str
    seconds: float  # estimated wall seconds, alone on the device
    source: str  # where the estimate comes from
    done: bool = False  # a complete record exists already
    path: Path | None = None


@dataclass
class Finished:
    run: Planned
    returncode: int
    wall_s: float
    sharing: float  # mean number of runs on the device while it ran (itself included)
    path: Path | None = field(default=None)


# ------------------------------------------------------------------------------------- the plan
def ordered_names(names: list[str] | None = None) -> list[tuple[str, str]]:
    """(group, experiment) in the order of :data:`PRIORITY`, then the rest of EXPERIMENTS."""
    wanted = list(EXPERIMENTS) if names is None else list(names)
    for n in wanted:
        if n not in EXPERIMENTS:
            raise KeyError(f"unknown experiment {n!r}; known: {', '.join(EXPERIMENTS)}")
    out = [(group, n) for group, members in PRIORITY for n in members if n in wanted]
    out += [("other experiments", n) for n in wanted if n not in {m for _, m in out}]
    return out


def plan_runs(seeds: list[int], runs_dir: Path, costs: dict, jobs: int = 1, names: list[str] | None = None,
              overrides: dict | None = None) -> list[Planned]:
    """Every (experiment, seed) in priority order: within a group seed by seed, so that a group
    gets its three seeds before the next group starts."""
    overrides = overrides or {}
    plan = []
    groups: dict[str, list[str]] = {}
    for group, name in ordered_names(names):
        groups.setdefault(group, []).append(name)
    for group, members in groups.items():
        for seed in seeds:
            for name in members:
                exp = experiment(name, "paper", seed, **overrides)
                found = complete_record_path(exp, runs_dir)
                seconds, source = estimate(name, jobs, costs)
                plan.append(Planned(name, seed, group, seconds, source, done=found is not None, path=found))
    return plan


def profile_table(runs_dir: Path, seeds: list[int] | None = None, jobs: int = 1, costs: dict | None = None):
    """The paper profile per experiment, as the runner plans it: seeds with a complete record, the
    estimated wall seconds of one run (:func:`estimate`, for the step the runs will take) and what
    that estimate rests on. A pandas DataFrame, in priority order."""
    import pandas as pd

    plan = _whole_plan(runs_dir, seeds, jobs, costs)
    rows = {}
    for p in plan:
        row = rows.setdefault(p.name, {"experiment": p.name, "for": p.group, "recorded": [], "missing": [],
                                       "per run (s)": f"{p.seconds:.0f}", "estimate from": p.source})
        row["recorded" if p.done else "missing"].append(p.seed)
    frame = pd.DataFrame(rows.values())
    for col in ("recorded", "missing"):
        frame[col] = frame[col].map(lambda seeds: ", ".join(map(str, seeds)) or "–")
    return frame


def profile_seconds(runs_dir: Path, seeds: list[int] | None = None, jobs: int = 1, costs: dict | None = None) -> dict:
    """Estimated seconds of the whole paper profile and of its missing runs on the cost table's
    device (:func:`estimate`, with the step the runs will take): ``{"runs", "seconds", "missing",
    "missing_seconds", "device"}``."""
    costs = load_costs() if costs is None else costs
    plan = _whole_plan(runs_dir, seeds, jobs, costs)
    todo = [p for p in plan if not p.done]
    return {"runs": len(plan), "seconds": sum(p.seconds for p in plan) / jobs, "missing": len(todo),
            "missing_seconds": sum(p.seconds for p in todo) / jobs, "device": costs.get("device")}


def _whole_plan(runs_dir: Path, seeds: list[int] | None, jobs: int, costs: dict | None) -> list[Planned]:
    """Every experiment of the paper profile at ``seeds`` (default: the profile's), as planned."""
    costs = load_costs() if costs is None else costs
    return plan_runs(PROFILE_SEEDS["paper"] if seeds is None else seeds, Path(runs_dir), costs, jobs)


def backgrounds_needed(plan: list[Planned]) -> list[str]:
    """The background datasets (``data.background``, e.g. cifar100) of the plan's missing runs: the
    pictures a GPU window must carry (tools/gpu_prepare.sh leaves them behind when none is needed)."""
    return sorted({experiment(p.name, "paper", p.seed).data.background for p in plan if not p.done} - {None})


def print_plan(plan: list[Planned], budget: float | None, at_once: int, costs: dict) -> None:
    todo = [p for p in plan if not p.done]
    print(f"paper profile: {len(plan) - len(todo)} of {len(plan)} records complete, {len(todo)} to train; "
          f"{at_once} run{'s' * (at_once > 1)} at once" + (f", budget {budget:.0f} s" if budget else ""))
    # A greedy list schedule: each run goes to the lane (worker) that frees first; each lane starts
    # with its worker's start.
    lanes = [worker_start_seconds(costs)] * at_once
    print(f"{'#':>3} {'experiment':22s} {'seed':>4} {'estimate':>9} {'ends at':>8}  {'':9s} group / estimate from")
    for i, p in enumerate(todo, 1):
        lane = min(range(at_once), key=lanes.__getitem__)
        end = lanes[lane] + p.seconds
        fits = budget is None or end <= budget - PACK_RESERVE_S
        if fits:
            lanes[lane] = end
        ends = f"{end:>7.0f}s" if fits else f"{'—':>8s}"
        print(f"{i:>3} {p.name:22s} {p.seed:>4} {p.seconds:>8.0f}s {ends}  {'' if fits else 'no time':9s} "
              f"{p.group} / {p.source}")
    if todo:
        print(f"estimated: all {len(todo)} runs take about {sum(p.seconds for p in todo) / at_once:.0f} s with "
              f"{at_once} at once" + (f"; the runs that fit this budget end by about {max(lanes):.0f} s"
                                                  if budget else ""))


# -------------------------------------------------------------------------------------- packing
def pack_records(paths: list[Path], runs_dir: Path, dest: Path, costs_rows: list[dict]) -> int:
    """Write the record folders (relative to ``runs_dir``) and ``costs.json`` into one tar archive
    (compressed by ``dest``'s suffix: .tar.xz, .tar.gz/.tgz or .tar), atomically. Returns bytes."""
    dest = Path(dest)
    mode = "w:xz" if dest.name.endswith(".xz") else "w:gz" if dest.name.endswith((".gz", ".tgz")) else "w"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    with tarfile.open(tmp, mode) as tar:
        for path in paths:
            tar.add(path, arcname=str(Path(path).relative_to(runs_dir)))
        data = json.dumps({"runs": costs_rows}, indent=1).encode()
        info = tarfile.TarInfo("costs.json")
        info.size, info.mtime = len(data), int(time.time())
        tar.addfile(info, io.BytesIO(data))
    size = tmp.stat().st_size
    if size > PACK_LIMIT_BYTES:
        tmp.unlink()
        raise ValueError(f"the pack would be {size / 2**20:.1f} MiB, over the {PACK_LIMIT_BYTES / 2**20:.0f} MiB "
                         f"that come back from a GPU machine: pack fewer runs per file")
    os.replace(tmp, dest)
    return size


def import_pack(pack: Path, runs_dir: Path, costs_path: Path = COSTS_FILE) -> list[Path]:
    """Unpack the records of a pack into ``runs_dir`` (each checked with :func:`load_record` and
    its config's key; a complete record already there is kept) and merge its measured wall times
    into the cost table. Returns the record folders added."""
    import tempfile

    runs_dir = check_runs_dir(runs_dir)
    added = []
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(pack) as tar:
        for member in tar.getmembers():
            if member.name.startswith("/") or ".." in Path(member.name).parts or not (member.isfile() or member.isdir()):
                raise ValueError(f"{pack}: refusing the member {member.name!r} (absolute, '..' or a link)")
        tar.extractall(tmp)
        rows = json.loads((Path(tmp) / "costs.json").read_text())["runs"] if (Path(tmp) / "costs.json").exists() else []
        for rec_json in sorted(Path(tmp).glob("*/*/record.json")):
            rec = load_record(rec_json.parent)  # raises RecordCorrupt, naming it, if unsound
            if rec.status != "complete":
                continue
            target = record_dir(rec.config, runs_dir)
            if rec_json.parent.name != target.name:
                raise ValueError(f"{pack}: {rec_json.parent.name} does not match its config's key ({target.name})")
            if (target / "record.json").exists():
                print(f"kept the record already in {target}")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(rec_json.parent, target)
            load_record(target)
            added.append(target)
    if rows:
        merge_costs(rows, costs_path)
    return added


@dataclass
class _Running:
    run: Planned
    worker: Worker
    started: float  # monotonic time it was handed to its worker
    shared: float = 0.0  # integral of the number of runs on the device over its time (seconds)
    seen: float = 0.0  # the time up to which ``shared`` is counted


def train_within(plan: list[Planned], budget: float, jobs: int, runs_dir: Path, costs: dict, device: str = "auto",
                 overrides: dict | None = None, pack: Path | None = None, device_name: str | None = None,
                 streams: int = 1) -> list[Finished]:
    """Train the plan's missing runs on ``jobs`` worker processes (:mod:`mcr2.workers`, each taking
    one run after another, or ``streams`` at once on threads and CUDA streams), none started past
    what the budget allows."""
    overrides = overrides or {}
    start = time.monotonic()
    deadline = start + budget - PACK_RESERVE_S
    pending = [p for p in plan if not p.done]
    events: queue.Queue = queue.Queue()
    slots = jobs * streams  # runs at once on the device
    running: dict[tuple[Worker, str, int], _Running] = {}
    workers: list[Worker] = []  # alive and not broken: they take runs
    finished: list[Finished] = []
    rows: list[dict] = []
    start_s = worker_start_seconds(costs)
    stopped = False  # the deadline has stopped the runs still going

    def left() -> float:
        return deadline - time.monotonic()

    def count_sharing() -> None:  # before the set of running runs changes
        now = time.monotonic()
        for r in running.values():
            r.shared += (now - r.seen) * len(running)
            r.seen = now

    def repack():
        if pack is not None:
            made = [f.path for f in finished if f.path is not None]
            size = pack_records(made, runs_dir, pack, rows)
            print(f"-- packed {len(made)} records into {pack} ({size / 2**20:.2f} MiB)", flush=True)

    def finish(r: _Running, rc: int, outcome: dict | None) -> None:
        wall = time.monotonic() - r.started
        sharing = r.shared / wall if wall > 0 else 1.0
        p = r.run
        found = find_record(experiment(p.name, "paper", p.seed, **overrides), runs_dir) if rc == 0 else None
        finished.append(Finished(p, rc, wall, sharing, None if found is None else found.path))
        rows.append({"name": p.name, "seed": p.seed, "returncode": rc, "wall_s": round(wall, 1),
                     "worker_start_s": (outcome or {}).get("start_s"), "sharing": round(sharing, 2), "streams": streams,
                     "device": device_name, "date": time.strftime("%Y-%m-%d"),
                     "record_wall_s": None if found is None else round(found.record["wall_time_s"], 1),
                     "cuda_graphs": None if found is None else bool(found.record.get("cuda_graphs", False))})
        print(f"-- {'done' if found else 'FAILED'} {p.name} seed {p.seed}: {wall:.0f} s wall, "
              f"{sharing:.1f} runs sharing the device on average (rc {rc})", flush=True)
        if found is not None:
            repack()

    try:
        while pending or running:
            # Start what fits, most valuable first; a long run that does not fit lets a shorter one
            # go. A run that needs a new worker also needs the worker's start.
            while len(running) < slots and pending:
                sharing = min(slots, len(running) + len(pending))
                free = [w for w in workers if w.busy < w.streams]
                extra = 0.0 if free else start_s
                fits = ((p, est) for p in pending for est in [estimate(p.name, sharing, costs)[0]] if est + extra <= left())
                pick, est = next(fits, (None, None))
                if pick is None:
                    break
                pending.remove(pick)
                if free:
                    worker = min(free, key=lambda w: w.busy)
                else:
                    worker = Worker(events, streams)
                    workers.append(worker)
                print(f"-- start {pick.name} seed {pick.seed} at {time.monotonic() - start:.0f} s (estimate {est:.0f} s "
                      f"with {sharing} sharing{'' if extra == 0 else f', +{extra:.0f} s for a new worker'}, "
                      f"{left():.0f} s left)", flush=True)
                count_sharing()
                now = time.monotonic()
                running[worker, pick.name, pick.seed] = _Running(pick, worker, now, seen=now)
                worker.busy += 1
                worker.submit({"name": pick.name, "seed": pick.seed, "runs_dir": str(runs_dir), "device": device,
                               "overrides": overrides})
            if not running:
                for p in pending:
                    print(f"-- not started: {p.name} seed {p.seed} (estimate {estimate(p.name, 1, costs)[0]:.0f} s "
                          f"> {max(left(), 0):.0f} s left)", flush=True)
                break
            if left() <= 0 and not stopped:
                stopped = True
                for r in running.values():
                    print(f"-- budget spent: stopping {r.run.name} seed {r.run.seed} (no record is written)", flush=True)
                for worker in {r.worker for r in running.values()}:
                    worker.stop()  # its end arrives on events
            try:
                worker, outcome = events.get(timeout=max(min(left(), POLL_S), 0.01))
            except queue.Empty:
                continue
            count_sharing()
            if outcome is None:  # the process ended: its runs still going were stopped, or it crashed
                if worker in workers:
                    workers.remove(worker)
                rc = worker.returncode()
                for key in [key for key in running if key[0] is worker]:
                    finish(running.pop(key), rc if rc != 0 else -15, None)
                continue
            worker.busy -= 1
            ok = outcome["status"] == "complete"
            finish(running.pop((worker, outcome["name"], outcome["seed"])), 0 if ok else 1, outcome)
            if not ok and worker in workers:  # a failed run's worker gets no further run, and ends
                worker.broken = True
                workers.remove(worker)
            if worker.broken and worker.busy == 0:
                worker.close()
    finally:
        for worker in workers:
            (worker.close if worker.busy == 0 else worker.stop)()
        for worker in {r.worker for r in running.values()}:
            worker.stop()
    if pack is not None and finished and not any(f.path for f in finished):
        repack()  # no record, but costs.json still says what was tried and how it ended
    elif pack is not None and not finished:
        print(f"-- nothing trained: {pack} not written", flush=True)
    return finished


def _device_name(device: str) -> tuple[str, str | None]:
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    return device, name


# ------------------------------------------------------------------------------------------ CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="wall seconds for the whole invocation; no run starts that cannot finish in it")
    p.add_argument("--jobs", type=int, default=1, help="runs at once on one device (that many worker processes, each taking one run after another)")
    p.add_argument("--streams", type=int, default=1, metavar="N",
                   help="runs at once in each worker, each on a thread and CUDA stream of its own (the kernels of "
                        "separate processes time-slice, those of streams in one process can overlap: measure the gain "
                        "first with benchmarks/bench_train.py --streams N)")
    p.add_argument("--seeds", type=int, nargs="+", default=PROFILE_SEEDS["paper"])
    p.add_argument("--only", nargs="+", metavar="NAME", default=None, help="these experiments only")
    p.add_argument("--pack", type=Path, default=None, metavar="FILE",
                   help="write the records made here into one archive (.tar.xz/.tar.gz/.tar, ≤ 16 MiB)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit (any machine)")
    p.add_argument("--import-pack", type=Path, default=None, metavar="FILE",
                   help="unpack a pack's records into the runs dir and merge its measured costs")
    p.add_argument("--backgrounds-needed", action="store_true",
                   help="print the background datasets the missing runs need, one per line (none: nothing), and exit")
    p.add_argument("--runs-dir", type=Path, default=None, help="default: results/paper")
    p.add_argument("--device", default="auto")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="override a field in every run (tests: tiny runs; the records are then 'custom')")


def main_from_args(args: argparse.Namespace) -> int:
    runs_dir = Path(args.runs_dir) if args.runs_dir else default_runs_dir("paper")
    if args.import_pack:
        added = import_pack(args.import_pack, runs_dir)
        for path in added:
            print(f"imported {path}")
        print(f"{len(added)} records imported into {runs_dir}; cost table {COSTS_FILE} updated")
        return 0
    if args.jobs < 1 or args.streams < 1:
        raise SystemExit(f"--jobs and --streams must be ≥ 1, got {args.jobs} and {args.streams}")
    slots = args.jobs * args.streams  # runs at once on the device
    if args.budget is not None and not args.budget > 0:
        raise SystemExit(f"--budget must be a positive number of seconds, got {args.budget}")
    overrides = parse_overrides(args.set)  # ConfigError naming the item (the CLI prints it, exit 2)
    if any(seed < 0 for seed in args.seeds):
        raise ConfigError(f"--seeds must be ≥ 0, got {args.seeds}")
    costs = load_costs()
    plan = plan_runs(args.seeds, runs_dir, costs, slots, args.only, overrides)
    if args.backgrounds_needed:
        print("\n".join(backgrounds_needed(plan)))
        return 0
    print_plan(plan, args.budget, slots, costs)
    if args.dry_run:
        return 0
    device, device_name = _device_name(args.device)
    if device == "cpu" and not overrides:
        raise SystemExit("no CUDA device here: the paper profile is GPU-scale (hours on a CPU). Run this on a "
                         "GPU machine, or print the plan with --dry-run")
    check_runs_dir(runs_dir)
    started = time.monotonic()
    done = train_within(plan, args.budget if args.budget else math.inf, args.jobs, runs_dir, costs, device,
                        overrides, args.pack, device_name, args.streams)
    total = time.monotonic() - started
    ok = [f for f in done if f.path is not None]
    print(f"== {len(ok)} of {len(done)} runs complete in {total:.0f} s on {device_name or device} "
          f"with {args.jobs} job{'s' * (args.jobs > 1)}" + (f" of {args.streams} streams" if args.streams > 1 else ""))
    for f in done:
        print(f"   {f.run.name:22s} seed {f.run.seed}  {f.wall_s:6.0f} s  sharing {f.sharing:.1f}  rc {f.returncode}")
    return 0 if len(ok) == len(done) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m mcr2.paper", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    try:
        sys.exit(main_from_args(parser.parse_args()))
    except ConfigError as err:
        parser.error(str(err))
