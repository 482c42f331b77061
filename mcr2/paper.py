"""The paper profile in a GPU window: train the missing records inside a time budget.

    python -m mcr2 paper --dry-run --budget 600            # the plan: order, estimates (any machine)
    python -m mcr2 paper --budget 520 --jobs 4 --pack OUT/records.tar.xz    # on a GPU machine
    python -m mcr2 paper --import-pack records.tar.xz      # back here: records + measured costs
    python -m mcr2 paper --devices 0,1,2,3 --jobs 2        # every GPU of a machine, two runs on each
    python -m mcr2 paper --executor slurm --partition gpu --time 20    # a SLURM cluster (submitit)

Runs are ordered by what they are worth to the book (:data:`PRIORITY`: the Figure 5 trio first,
then Figure 1, then Figures 2a/3), seeds round by round within a group, and a run is started only
if its estimate (:mod:`mcr2.costs`, measured on the GPU) fits the budget left. ``--jobs N`` trains
N runs at once on each device, on N worker processes that each take one run after another
(:mod:`mcr2.workers`: the start of a process is paid once per worker, not once per run; the models
are small and one run leaves most of an H100 idle); the per-record lock (:func:`mcr2.records.record_lock`) keeps two processes
from training or writing the same record. At the deadline, runs still going are stopped (they
leave no record, only their lock-guarded temporary folders). Running it again continues where the
last one stopped: complete records are never trained twice.

``--devices`` (default: every visible CUDA device) spreads the runs over several GPUs, ``--jobs``
workers on each, a run going to the first free device in priority order; the plan, its budget
and ``--dry-run`` (which names each run's device) count the devices. ``--executor local|slurm``
submits the missing runs as submitit jobs instead (:mod:`mcr2.executors`).

The pack (``--pack``) holds the records this invocation made and ``costs.json``, the wall time of
each of its runs (for a worker's first run, its start included and named) with the number of runs
sharing the device (and ``streams``: whether they shared it as processes or as streams of one); it
is rewritten after every finished run (and keeps what a pack already there held), so a window cut
short still returns what finished; :mod:`mcr2.packs` writes it, with a manifest, and imports it.
Everything given is checked before the first run (the pack's path included), and SIGTERM stops
the workers with the runner. Needs only torch and torchvision.
"""
from __future__ import annotations

import argparse
import math
import queue
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import executors
from .config import ConfigError, parse_overrides
from .costs import COSTS_FILE, CostTableError, estimate, load_costs, worker_start_seconds
from .experiments import EXPERIMENTS, PROFILE_SEEDS, experiment
from .packs import PackError, check_pack_path, import_pack, pack_records, read_pack
from .records import RecordCorrupt, check_runs_dir, complete_record_path, default_runs_dir, find_record
from .workers import Worker

__all__ = ["PRIORITY", "AFTER_REPORT", "Planned", "plan_runs", "profile_table", "profile_seconds", "backgrounds_needed",
           "pack_records", "import_pack", "carried_pack", "add_arguments", "main_from_args"]

#: What each group of runs is for, most valuable first; experiments not named here come last.
PRIORITY: list[tuple[str, list[str]]] = [
    ("Figure 5: masking vs unmasked MCR² vs CE", ["seg_bg_mcr2_masked", "seg_bg_mcr2", "seg_bg_ce"]),
    ("Figure 1: classification across domains", ["cls_mnist_ce", "cls_mnist_mcr2", "cls_digits_ce", "cls_digits_mcr2"]),
    ("Figures 2a, 3: segmentation of plain MNIST", ["seg_mnist_mcr2", "seg_mnist_ce"]),
]
#: Experiments that explain the report's results rather than reproduce them (chapter 11): after every
#: experiment of the report, those outside PRIORITY included; one group per question, so that a window
#: cut short still completes a question's three seeds per arm (its verdicts need them).
AFTER_REPORT: list[tuple[str, list[str]]] = [
    ("Chapter 11, question 1: the head's collapse", ["seg_bg_mcr2_masked_gt", "seg_bg_mcr2_masked_lam01",
                                                      "seg_bg_mcr2_masked_nobg"]),
    ("Chapter 11, question 3: masked MCR² vs CE", ["seg_bg_ce_faults"]),
    ("Chapter 11, question 2: plain MNIST", ["seg_mnist_mcr2_masked", "seg_mnist_mcr2_r30"]),
]
#: Seconds kept at the end of the budget for the last pack.
PACK_RESERVE_S = 10.0
#: Most runs at once on one device (--jobs × --streams): beyond this the runs only wait on each other.
MAX_SLOTS = 16
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
    later = [(group, n) for group, members in AFTER_REPORT for n in members if n in wanted]
    out += [("other experiments", n) for n in wanted if n not in {m for _, m in out + later}]
    return out + later


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


def profile_seconds(runs_dir: Path, seeds: list[int] | None = None, jobs: int = 1, costs: dict | None = None,
                    devices: int = 1) -> dict:
    """Estimated seconds of the whole paper profile and of its missing runs on the cost table's
    device (:func:`estimate`, with the step the runs will take), ``jobs`` at once on each of
    ``devices`` devices: ``{"runs", "seconds", "missing", "missing_seconds", "device"}``; with more
    than one device, also the wall seconds of the runner's schedule (``wall_seconds``,
    ``missing_wall_seconds``: :func:`mcr2.executors.schedule`, worker starts included)."""
    costs = load_costs() if costs is None else costs
    plan = _whole_plan(runs_dir, seeds, jobs, costs)
    todo = [p for p in plan if not p.done]
    lanes = jobs * devices
    out = {"runs": len(plan), "seconds": sum(p.seconds for p in plan) / lanes, "missing": len(todo),
           "missing_seconds": sum(p.seconds for p in todo) / lanes, "device": costs.get("device")}
    if devices > 1:
        for key, runs in (("wall_seconds", plan), ("missing_wall_seconds", todo)):
            placed = executors.schedule([p.seconds for p in runs], list(range(devices)), jobs, worker_start_seconds(costs))
            out[key] = max((end for _, _, end in placed), default=0.0)
    return out


def _whole_plan(runs_dir: Path, seeds: list[int] | None, jobs: int, costs: dict | None) -> list[Planned]:
    """Every experiment of the paper profile at ``seeds`` (default: the profile's), as planned."""
    costs = load_costs() if costs is None else costs
    return plan_runs(PROFILE_SEEDS["paper"] if seeds is None else seeds, Path(runs_dir), costs, jobs)


def backgrounds_needed(plan: list[Planned]) -> list[str]:
    """The background datasets (``data.background``, e.g. cifar100) of the plan's missing runs: the
    pictures a GPU window must carry (tools/gpu_prepare.sh leaves them behind when none is needed)."""
    return sorted({experiment(p.name, "paper", p.seed).data.background for p in plan if not p.done} - {None})


def print_plan(plan: list[Planned], budget: float | None, at_once: int, costs: dict, devices: list | None = None,
               default_device: str = "cuda") -> float:
    """Print the plan as the runner will follow it: ``at_once`` runs on each of ``devices`` (None:
    one device, named ``default_device``), each run on the worker that frees first
    (:func:`mcr2.executors.schedule`). Returns the estimated wall seconds of the runs that fit."""
    devices = devices or [None]
    todo = [p for p in plan if not p.done]
    where = f"{len(devices)} devices ({', '.join(executors.device_label(d, default_device) for d in devices)})" \
        if len(devices) > 1 else executors.device_label(devices[0], default_device)
    print(f"paper profile: {len(plan) - len(todo)} of {len(plan)} records complete, {len(todo)} to train; "
          f"{at_once} run{'s' * (at_once > 1)} at once on {where}" + (f", budget {budget:.0f} s" if budget else ""))
    placed = executors.schedule([p.seconds for p in todo], devices, at_once, worker_start_seconds(costs),
                                None if budget is None else budget - PACK_RESERVE_S)
    print(f"{'#':>3} {'experiment':22s} {'seed':>4} {'device':>7} {'estimate':>9} {'ends at':>8}  {'':9s} "
          f"group / estimate from")
    for i, (p, (device, _, end)) in enumerate(zip(todo, placed), 1):
        ends = f"{end:>7.0f}s" if end is not None else f"{'—':>8s}"
        print(f"{i:>3} {p.name:22s} {p.seed:>4} {executors.device_label(device, default_device):>7} {p.seconds:>8.0f}s "
              f"{ends}  {'' if end is not None else 'no time':9s} {p.group} / {p.source}")
    wall = max((end for _, _, end in placed if end is not None), default=0.0)
    if todo:
        fitting = sum(end is not None for _, _, end in placed)
        print(f"estimated: {fitting} of {len(todo)} runs, {sum(p.seconds for p in todo):.0f} run-seconds, end by about "
              f"{wall:.0f} s wall with {at_once} at once on " + (f"each of {len(devices)} devices " if len(devices) > 1 else
                                                                   f"{executors.device_label(devices[0], default_device)} ") +
              f"(the longest run alone: {max(p.seconds for p in todo):.0f} s)")
    return wall


@dataclass
class _Running:
    run: Planned
    worker: Worker
    started: float  # monotonic time it was handed to its worker
    shared: float = 0.0  # integral of the number of runs on the device over its time (seconds)
    seen: float = 0.0  # the time up to which ``shared`` is counted


def train_within(plan: list[Planned], budget: float, jobs: int, runs_dir: Path, costs: dict, device: str = "auto",
                 overrides: dict | None = None, pack: Path | None = None, device_name: str | None = None,
                 streams: int = 1, devices: list[int] | None = None,
                 carried: tuple[list[Path], list[dict]] | None = None) -> list[Finished]:
    """Train the plan's missing runs on ``jobs`` worker processes per device (:mod:`mcr2.workers`,
    each taking one run after another, or ``streams`` at once on threads and CUDA streams), none
    started past what the budget allows. ``devices``: CUDA indices, a run going to the first free
    one (the fewest runs going, the first listed among equals); None: ``device`` alone.
    ``carried``: the records and cost rows of a pack already at ``pack`` (:func:`carried_pack`),
    which every rewrite keeps."""
    overrides = overrides or {}
    carried_paths, carried_rows = carried or ([], [])
    start = time.monotonic()
    deadline = start + budget - PACK_RESERVE_S
    pending = [p for p in plan if not p.done]
    events: queue.Queue = queue.Queue()
    devices = list(devices) if devices else [None]
    labels = {d: executors.device_label(d, device) for d in devices}  # what each worker's runs are given
    per_device = jobs * streams  # runs at once on one device
    slots = per_device * len(devices)
    running: dict[tuple[Worker, str, int], _Running] = {}
    workers: list[Worker] = []  # alive and not broken: they take runs
    finished: list[Finished] = []
    rows: list[dict] = []
    start_s = worker_start_seconds(costs)
    stopped = False  # the deadline has stopped the runs still going

    def left() -> float:
        return deadline - time.monotonic()

    def on(d) -> int:  # runs going on device d
        return sum(r.worker.device == labels[d] for r in running.values())

    def count_sharing() -> None:  # before the set of running runs changes
        now = time.monotonic()
        for r in running.values():
            r.shared += (now - r.seen) * sum(o.worker.device == r.worker.device for o in running.values())
            r.seen = now

    def repack():
        if pack is not None:
            made = list(dict.fromkeys([*carried_paths, *(f.path for f in finished if f.path is not None)]))
            size = pack_records(made, runs_dir, pack, [*carried_rows, *rows])
            print(f"-- packed {len(made)} records into {pack} ({size / 2**20:.2f} MiB)", flush=True)

    def finish(r: _Running, rc: int, outcome: dict | None) -> None:
        wall = time.monotonic() - r.started
        sharing = r.shared / wall if wall > 0 else 1.0
        p = r.run
        # Looked for whatever the report says: a worker killed after renaming its record into place
        # (and before reporting it) has still made it.
        found = _complete(p, runs_dir, overrides)
        if found is not None and rc != 0:
            print(f"-- {p.name} seed {p.seed}: its worker ended (rc {rc}) after writing the complete record "
                  f"{found.path}; it goes into the pack", flush=True)
        finished.append(Finished(p, rc, wall, sharing, None if found is None else found.path))
        # The return code stays the worker's: a time without its report (and its worker's start) is
        # not folded into the cost table, though the record travels.
        rows.append({"name": p.name, "seed": p.seed, "returncode": rc,
                     "record": None if found is None else found.path.relative_to(runs_dir).as_posix(),
                     "wall_s": round(wall, 1),
                     "worker_start_s": (outcome or {}).get("start_s"), "sharing": round(sharing, 2), "streams": streams,
                     "device": device_name, "worker_device": r.worker.device, "date": time.strftime("%Y-%m-%d"),
                     "record_wall_s": None if found is None else round(found.record["wall_time_s"], 1),
                     "cuda_graphs": None if found is None else bool(found.record.get("cuda_graphs", False))})
        print(f"-- {'done' if found else 'FAILED'} {p.name} seed {p.seed} on {r.worker.device}: {wall:.0f} s wall, "
              f"{sharing:.1f} runs sharing the device on average (rc {rc})", flush=True)
        if found is not None:
            repack()

    try:
        while pending or running:
            if _SIGNALLED:  # SIGTERM: unwind like Ctrl-C, the finally below stops the workers
                raise SystemExit(128 + _SIGNALLED[-1])
            # Start what fits, most valuable first; a long run that does not fit lets a shorter one
            # go. A run that needs a new worker also needs the worker's start.
            while len(running) < slots and pending:
                d = min((d for d in devices if on(d) < per_device), key=on)  # the first free device
                # Runs the device will hold: its share of what is going and waiting, at least one more.
                sharing = min(per_device, max(on(d) + 1, math.ceil(min(slots, len(running) + len(pending)) / len(devices))))
                free = [w for w in workers if w.busy < w.streams and w.device == labels[d]]
                extra = 0.0 if free else start_s
                fits = ((p, est) for p in pending for est in [estimate(p.name, sharing, costs)[0]] if est + extra <= left())
                pick, est = next(fits, (None, None))
                if pick is None:
                    break
                pending.remove(pick)
                if free:
                    worker = min(free, key=lambda w: w.busy)
                else:
                    worker = Worker(events, streams, labels[d], shared=per_device)
                    workers.append(worker)
                print(f"-- start {pick.name} seed {pick.seed} on {labels[d]} at {time.monotonic() - start:.0f} s (estimate {est:.0f} s "
                      f"with {sharing} sharing{'' if extra == 0 else f', +{extra:.0f} s for a new worker'}, "
                      f"{left():.0f} s left; worker pid {getattr(getattr(worker, 'proc', None), 'pid', '?')})", flush=True)
                count_sharing()
                now = time.monotonic()
                running[worker, pick.name, pick.seed] = _Running(pick, worker, now, seen=now)
                worker.busy += 1
                worker.submit({"name": pick.name, "seed": pick.seed, "runs_dir": str(runs_dir), "overrides": overrides})
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
        # Stopped (the deadline, SIGTERM, an error) between writing a record and reporting it: the
        # record is complete, and travels.
        late = [r for r in running.values() if _complete(r.run, runs_dir, overrides) is not None]
        for r in late:
            running.pop((r.worker, r.run.name, r.run.seed))
            finish(r, -15, None)
    if pack is not None and finished and not any(f.path for f in finished):
        repack()  # no record, but costs.json still says what was tried and how it ended
    elif pack is not None and not finished:
        print(f"-- nothing trained: {pack} not written", flush=True)
    return finished


def _complete(p: Planned, runs_dir: Path, overrides: dict):
    """The complete record of a planned run as it is now, or None (a damaged one is no record)."""
    try:
        return find_record(experiment(p.name, "paper", p.seed, **overrides), runs_dir)
    except RecordCorrupt as err:
        print(f"-- {p.name} seed {p.seed}: {err}", flush=True)
        return None


def carried_pack(pack: Path, runs_dir: Path) -> tuple[list[Path], list[dict]]:
    """What a pack already at ``pack`` holds, to keep in its rewrites: its records (each must be
    complete in ``runs_dir``, as on the machine that made it) and cost rows. Nothing if there is
    none; :class:`PackError` if it cannot be read or holds a record not here (import it first)."""
    if not Path(pack).exists():
        return [], []
    with tempfile.TemporaryDirectory(prefix="mcr2-pack-") as tmp:
        try:
            read = read_pack(pack, Path(tmp))
        except PackError as err:
            raise PackError(f"{err} (--pack would replace it: move it aside, or name another file)") from None
    paths = []
    for packed in read.records:
        here = find_record(packed.record.config, runs_dir)
        if here is None:
            raise PackError(f"pack {pack} exists and holds {packed.member}, which is not in {runs_dir}: rewriting it "
                            f"would drop that record. Import it (--import-pack {pack}) or move it aside first")
        paths.append(here.path)
    print(f"-- {pack} exists: its {len(paths)} records and {len(read.rows)} cost rows stay in it", flush=True)
    return paths, read.rows


#: Signals received while the runner trains (see :func:`_terminated`).
_SIGNALLED: list[int] = []


def _terminated(signum, frame):
    """Note a SIGTERM; the runner's loop unwinds at its next poll (within ``POLL_S``). Raising here
    instead could land inside ``queue.get``'s lock handling and end in 'release unlocked lock'."""
    _SIGNALLED.append(signum)


def _device_name(device: str, devices: list[int] | None = None) -> tuple[str, str | None]:
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    first = devices[0] if devices else 0
    name = torch.cuda.get_device_name(first) if device.startswith("cuda") and torch.cuda.is_available() else None
    return device, name


def _devices(args: argparse.Namespace) -> tuple[list[int] | None, str]:
    """(the CUDA indices to spread runs over, or None for the one ``--device``; that device's name
    in the plan). ``--devices`` is taken as given (a fake list plans on any machine); else every
    visible CUDA device, unless ``--device`` names one."""
    if args.devices is not None:
        if args.device not in ("auto", "cuda"):
            raise SystemExit(f"--devices {args.devices} spreads runs over CUDA devices; leave out --device {args.device}")
        try:
            return executors.parse_devices(args.devices), "cuda"
        except ValueError as err:
            raise SystemExit(str(err)) from None
    if args.device in ("auto", "cuda"):
        seen = executors.visible_devices()
        if seen:
            return seen, "cuda"
    return None, "cpu" if args.device == "auto" else args.device


# ------------------------------------------------------------------------------------------ CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="wall seconds for the whole invocation; no run starts that cannot finish in it")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at once on each device (that many worker processes per device, each taking one run "
                        "after another; with --executor local, that many jobs per device at once; "
                        "--jobs × --streams ≤ 16)")
    p.add_argument("--devices", default=None, metavar="I,J,…",
                   help="CUDA devices to spread the runs over, e.g. 0,1,2,3 (default: every visible one); "
                        "with --dry-run any list plans, GPUs or not")
    p.add_argument("--streams", type=int, default=1, metavar="N",
                   help="runs at once in each worker, each on a thread and CUDA stream of its own (the kernels of "
                        "separate processes time-slice, those of streams in one process can overlap: measure the gain "
                        "first with benchmarks/bench_train.py --streams N)")
    p.add_argument("--seeds", type=int, nargs="+", default=PROFILE_SEEDS["paper"])
    p.add_argument("--only", nargs="+", metavar="NAME", default=None, help="these experiments only")
    p.add_argument("--pack", type=Path, default=None, metavar="FILE",
                   help="write the records made here into one archive (.tar.xz/.tar.gz/.tar, ≤ 16 MiB)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit (any machine); with --import-pack: check the pack, write nothing")
    p.add_argument("--import-pack", type=Path, default=None, metavar="FILE",
                   help="check a pack whole, then install its records into the runs dir and fold its measured costs "
                        "into the cost table (mcr2.packs)")
    p.add_argument("--backgrounds-needed", action="store_true",
                   help="print the background datasets the missing runs need, one per line (none: nothing), and exit")
    p.add_argument("--runs-dir", type=Path, default=None, help="default: results/paper")
    p.add_argument("--device", default="auto")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="override a field in every run (tests: tiny runs; the records are then 'custom')")
    c = p.add_argument_group("jobs through submitit (--executor local or slurm; mcr2.executors)")
    c.add_argument("--executor", choices=executors.EXECUTORS, default="workers",
                   help="workers: worker processes on this machine's devices (default); slurm: one SLURM job per "
                        "missing record (or group, --group-seconds); local: the same jobs as local processes")
    c.add_argument("--no-wait", action="store_true", help="submit and return at once (a rerun submits only what is missing)")
    c.add_argument("--partition", default=None, help="SLURM partition")
    c.add_argument("--time", type=int, default=None, metavar="MINUTES",
                   help=f"each job's time limit (default: its runs' estimates × {executors.JOB_TIME_FACTOR:g} "
                        f"+ {executors.JOB_SLACK_MIN} min)")
    c.add_argument("--group-seconds", type=float, default=0.0, metavar="SECONDS",
                   help="runs estimated shorter than this share a job, up to this many estimated seconds a job "
                        "(default 0: one job per record)")
    c.add_argument("--cpus-per-task", type=int, default=None, help="SLURM cpus per job (data loading)")
    c.add_argument("--mem-gb", type=float, default=None, help="SLURM memory per job, GB")
    c.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, without its dashes (e.g. --slurm account=lab --slurm qos=short)")
    c.add_argument("--log-dir", type=Path, default=None,
                   help="submitit's job folder (default: $MCR2_RUNS/submitit, else runs/submitit; on a cluster, "
                        "on the shared filesystem)")


def main_from_args(args: argparse.Namespace) -> int:
    """The command. Everything given is checked before any run starts; a refusal raises
    :class:`~mcr2.config.ConfigError` (an option's value), :class:`~mcr2.packs.PackError` or
    SystemExit, each one line (``python -m mcr2 paper`` prints it without a traceback)."""
    runs_dir = Path(args.runs_dir) if args.runs_dir else default_runs_dir("paper")
    if args.import_pack:
        added = import_pack(args.import_pack, runs_dir, dry_run=args.dry_run)
        for path in added:
            print(f"{'would import' if args.dry_run else 'imported'} {path}")
        if args.dry_run:
            print(f"--dry-run: {args.import_pack} is sound; {len(added)} records would be imported into {runs_dir} "
                  f"(nothing was written)")
        else:
            print(f"{len(added)} records imported into {runs_dir}; cost table {COSTS_FILE} updated")
        return 0
    if not 1 <= args.jobs <= MAX_SLOTS or not 1 <= args.streams <= MAX_SLOTS or args.jobs * args.streams > MAX_SLOTS:
        raise SystemExit(f"--jobs and --streams must be ≥ 1, with --jobs × --streams ≤ {MAX_SLOTS} runs at once on "
                         f"one device, got {args.jobs} and {args.streams}")
    slots = args.jobs * args.streams  # runs at once on one device
    if args.budget is not None and not (args.budget > 0 and math.isfinite(args.budget)):
        raise SystemExit(f"--budget must be a positive number of seconds, got {args.budget}")
    jobs_mode = args.executor != "workers"
    if jobs_mode and (args.budget is not None or args.pack is not None or args.streams > 1):
        raise SystemExit(f"--budget, --pack and --streams drive the worker processes; with --executor {args.executor} "
                         f"each job has a time limit (--time) and writes into the runs folder")
    overrides = parse_overrides(args.set)  # ConfigError naming the item (the CLI prints it, exit 2)
    if any(seed < 0 for seed in args.seeds):
        raise ConfigError(f"--seeds must be ≥ 0, got {args.seeds}")
    for option, values in (("--seeds", args.seeds), ("--only", args.only or [])):
        twice = sorted({str(v) for v in values if values.count(v) > 1})
        if twice:
            raise ConfigError(f"{option} names {', '.join(twice)} more than once: each run is planned once")
    unknown = [n for n in args.only or [] if n not in EXPERIMENTS]
    if unknown:
        raise ConfigError(f"--only {' '.join(unknown)}: no such experiment; known: {', '.join(EXPERIMENTS)}")
    if args.pack is not None:
        check_pack_path(args.pack)  # before the first run, not after it
    costs = load_costs()
    plan = plan_runs(args.seeds, runs_dir, costs, slots, args.only, overrides)
    if args.backgrounds_needed:
        print("\n".join(backgrounds_needed(plan)))
        return 0
    devices, default_device = _devices(args)
    if args.executor == "slurm":  # the plan of the cluster: every job at once, on a GPU of its own
        print_plan(plan, None, max(1, sum(not p.done for p in plan)), costs, None, "job")
    else:
        print_plan(plan, args.budget, slots, costs, devices, default_device)
    if args.dry_run:
        return 0
    if args.executor == "slurm":  # the submitting machine needs no GPU: the jobs' nodes have them
        check_runs_dir(runs_dir)
        return executors.submit_plan(plan, runs_dir, overrides, kind="slurm", log_dir=args.log_dir,
                                     group_seconds=args.group_seconds, minutes=args.time, partition=args.partition,
                                     cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb, slurm_extra=args.slurm,
                                     device=args.device, wait=not args.no_wait)
    device, device_name = _device_name(args.device, devices)
    real = [p for p in plan if not p.done and experiment(p.name, "paper", p.seed, **overrides).profile == "paper"]
    if device == "cpu" and real:
        raise SystemExit(f"no CUDA device here: {len(real)} runs would train at the paper profile's scale, under its "
                         f"keys (hours on a CPU; a --set that changes nothing keeps them). Run this on a GPU machine, "
                         f"or print the plan with --dry-run")
    if devices is not None:
        try:
            executors.check_devices(devices)
        except ValueError as err:
            raise SystemExit(str(err)) from None
    carried = carried_pack(args.pack, runs_dir) if args.pack is not None else None
    check_runs_dir(runs_dir)
    if jobs_mode:  # local: the same jobs as on a cluster, as processes of this machine
        return executors.submit_plan(plan, runs_dir, overrides, kind="local", log_dir=args.log_dir,
                                     devices=devices, per_device=args.jobs, group_seconds=args.group_seconds,
                                     minutes=args.time, device="cpu" if device == "cpu" else "auto",
                                     wait=not args.no_wait)
    started = time.monotonic()
    # SIGTERM (a window's end, `timeout`, `kill`) unwinds like Ctrl-C: the workers are stopped with
    # the runner, never left behind, and a record written but not yet reported still goes into the pack.
    _SIGNALLED.clear()
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        done = train_within(plan, args.budget if args.budget else math.inf, args.jobs, runs_dir, costs, device,
                            overrides, args.pack, device_name, args.streams, devices, carried)
    finally:
        signal.signal(signal.SIGTERM, previous)
    total = time.monotonic() - started
    ok = [f for f in done if f.path is not None]
    where = f"{len(devices)} devices" if devices and len(devices) > 1 else (device_name or device)
    print(f"== {len(ok)} of {len(done)} runs complete in {total:.0f} s on {where} "
          f"with {args.jobs} job{'s' * (args.jobs > 1)}{' per device' * bool(devices and len(devices) > 1)}"
          + (f" of {args.streams} streams" if args.streams > 1 else ""))
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
    except (PackError, CostTableError, RecordCorrupt, OSError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        sys.exit(1)
