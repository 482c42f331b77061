"""Where the paper runner (:mod:`mcr2.paper`) trains: the GPUs of this machine, or a cluster's jobs.

    python -m mcr2 paper --devices 0,1,2,3 --jobs 2      # this machine: two worker processes per GPU
    python -m mcr2 paper --executor slurm --partition gpu --time 20     # one SLURM job per missing record
    python -m mcr2 paper --executor local --jobs 2       # the same jobs as local processes (how tests run it)

**Devices.** The 33 runs of the paper profile are independent, so they spread over devices
perfectly: ``--devices`` (default every visible CUDA device) gets ``--jobs`` worker processes per
device, and each run goes to the first free device in the plan's priority order (the device with
the fewest runs going, the first listed among equals). :func:`schedule` is the same rule on the
estimates: the plan, its budget and its wall time.

**Executors** (``--executor``), through submitit (the ``cluster`` extra):
``workers`` (the default) trains on this machine's devices in worker processes (:mod:`mcr2.workers`);
``slurm`` submits one job per missing record, or per group of short runs (``--group-seconds``), as
one SLURM job array; ``local`` runs the same jobs as local processes (submitit's LocalExecutor), at
most ``--jobs`` per device at once. Every job trains with :func:`mcr2.engine.run`, so under the
per-record lock (:func:`mcr2.records.record_lock`) and into the shared runs folder: a record that
another job finished meanwhile is loaded, not trained again, and a job killed mid-run leaves only a
temporary folder, which the next holder of the lock removes. A record whose lock is held when the
runner plans (a job still training it) is not submitted again.

**Provenance.** Each job and worker process is told how it was launched through the environment
(:func:`launch_env`): ``MCR2_LAUNCHER=paper-runner``, ``MCR2_EXECUTOR`` (workers, local or slurm)
and, in a job, ``MCR2_JOB_ID`` (submitit's job id); :func:`mcr2.records.provenance` writes them
into each record. Records from any executor load and render the same way.
"""
from __future__ import annotations

import math
import os
import sys
import time
import traceback
from pathlib import Path

__all__ = ["LAUNCHER", "EXECUTORS", "launch_env", "parse_devices", "visible_devices", "check_devices",
           "device_label", "schedule", "group_runs", "job_minutes", "default_log_dir", "slurm_parameters",
           "train_job", "submit_plan"]

#: What the records of the paper runner name as their launcher ($MCR2_LAUNCHER).
LAUNCHER = "paper-runner"
#: ``--executor`` choices: worker processes on this machine's devices, or submitit jobs.
EXECUTORS = ("workers", "local", "slurm")
#: A job's time limit when ``--time`` is not given: its runs' estimates × this, plus JOB_SLACK_MIN.
JOB_TIME_FACTOR = 2.0
#: Minutes added to every computed job time limit (start, data, queue-side overhead).
JOB_SLACK_MIN = 10
#: Seconds between looks at submitted jobs while waiting.
JOB_POLL_S = 1.0


def launch_env(executor: str, job_id: str | None = None) -> dict[str, str]:
    """The environment variables that tell a record how its run was launched."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    env = {"MCR2_LAUNCHER": LAUNCHER, "MCR2_EXECUTOR": executor}
    if job_id is not None:
        env["MCR2_JOB_ID"] = str(job_id)
    return env


# ---------------------------------------------------------------------------------------- devices
def parse_devices(text: str) -> list[int]:
    """``--devices 0,1,3`` -> [0, 1, 3]; a clear error for anything else."""
    try:
        devices = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ValueError(f"--devices {text!r}: give CUDA device indices separated by commas, e.g. 0,1,2,3") from None
    if not devices or any(d < 0 for d in devices) or len(set(devices)) != len(devices):
        raise ValueError(f"--devices {text!r}: give distinct CUDA device indices ≥ 0, e.g. 0,1,2,3")
    return devices


def visible_devices() -> list[int]:
    """Every CUDA device this process sees (none on a CPU machine)."""
    import torch

    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def check_devices(devices: list[int]) -> None:
    """Before training: each index names a device this process sees."""
    seen = visible_devices()
    missing = [d for d in devices if d not in seen]
    if missing:
        raise ValueError(f"--devices {','.join(map(str, devices))}: no CUDA device {', '.join(map(str, missing))} "
                         f"here (this process sees {len(seen)}: {', '.join(map(str, seen)) or 'none'}; "
                         f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")


def device_label(device: int | None, default: str = "cuda") -> str:
    """``cuda:N`` for a device index; ``default`` (the one device, e.g. cpu) for None."""
    return default if device is None else f"cuda:{device}"


def schedule(seconds: list[float], devices: list, per_device: int, start_s: float = 0.0,
             budget: float | None = None) -> list[tuple[object, float, float | None]]:
    """The plan's list schedule, run by run in priority order: each run goes to the worker that
    frees first (every worker begins with its start, ``start_s``), the first free device among
    equals, so runs spread over the devices before they share one. A run that would end past
    ``budget`` is not started (its end is None) and takes no worker time.
    Returns (device, start, end or None) per run."""
    # Workers round-robin over devices: at a tie the next device's worker comes before a second one.
    lanes = [[d, start_s] for _ in range(per_device) for d in devices]
    out = []
    for s in seconds:
        lane = min(lanes, key=lambda item: item[1])
        begin, end = lane[1], lane[1] + s
        if budget is not None and end > budget:
            out.append((lane[0], begin, None))
            continue
        lane[1] = end
        out.append((lane[0], begin, end))
    return out


# -------------------------------------------------------------------------------------------- jobs
def group_runs(runs: list, group_seconds: float = 0.0) -> list[list]:
    """Runs (with ``seconds``) into jobs, in order: consecutive runs shorter than ``group_seconds``
    share a job while their estimates add up to at most that; a longer run has a job of its own.
    ``group_seconds`` 0: one job per run."""
    groups: list[list] = []
    total = math.inf
    for run in runs:
        if run.seconds < group_seconds and total + run.seconds <= group_seconds:
            groups[-1].append(run)
            total += run.seconds
        else:
            groups.append([run])
            total = run.seconds if run.seconds < group_seconds else math.inf
    return groups


def job_minutes(group: list, given: int | None = None) -> int:
    """A job's time limit in minutes: ``given`` (``--time``), else its runs' estimates ×
    :data:`JOB_TIME_FACTOR` + :data:`JOB_SLACK_MIN`."""
    if given is not None:
        return int(given)
    seconds = sum(r.seconds for r in group)
    if not math.isfinite(seconds):
        raise ValueError("no cost estimate for some runs of this job: give its time limit with --time MINUTES")
    return int(math.ceil(seconds * JOB_TIME_FACTOR / 60)) + JOB_SLACK_MIN


def default_log_dir() -> Path:
    """Where submitit keeps each job's pickles and logs: ``$MCR2_RUNS/submitit``, else
    ``runs/submitit`` of the checkout (ignored by git). On a cluster it must be on the shared filesystem."""
    env = os.environ.get("MCR2_RUNS")
    return Path(env) / "submitit" if env else Path(__file__).resolve().parent.parent / "runs" / "submitit"


def slurm_parameters(minutes: int, partition: str | None, gpus: int, cpus_per_task: int | None = None,
                     mem_gb: float | None = None, extra: list[str] | None = None, parallel: int | None = None) -> dict:
    """The parameters of :class:`submitit.SlurmExecutor` for one job of the runner (``extra``:
    ``--slurm KEY=VALUE`` items, sbatch options such as account=… or constraint=…)."""
    params: dict = {"time": int(minutes), "gpus_per_node": gpus, "ntasks_per_node": 1, "nodes": 1,
                    "job_name": "mcr2-paper"}
    if partition:
        params["partition"] = partition
    if cpus_per_task:
        params["cpus_per_task"] = cpus_per_task
    if mem_gb:
        params["mem"] = f"{int(math.ceil(mem_gb))}GB"
    if parallel:
        params["array_parallelism"] = parallel
    more = {}
    for item in extra or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--slurm {item!r}: give KEY=VALUE, an sbatch option without its dashes (e.g. account=lab)")
        more[key.strip().replace("-", "_")] = value
    if more:
        params["additional_parameters"] = more
    return params


def train_job(specs: list[dict], runs_dir: str, env: dict[str, str]) -> list[dict]:
    """What a job runs (in its own process, local or on a cluster node): each of its runs in turn
    through :func:`mcr2.engine.run`, under the per-record lock, into ``runs_dir``; one outcome per
    run, failed ones included (a later run of the job still trains)."""
    import socket

    import submitit

    job_id = submitit.JobEnvironment().job_id
    os.environ.update(env)
    os.environ.update(launch_env(env["MCR2_EXECUTOR"], job_id))
    from .engine import run
    from .experiments import experiment

    out = []
    for s in specs:
        started = time.time()
        outcome = {"name": s["name"], "seed": s["seed"], "job_id": job_id, "host": socket.gethostname()}
        try:
            rec = run(experiment(s["name"], "paper", s["seed"], **s["overrides"]), Path(runs_dir), device=s["device"],
                      progress="lines")
            outcome.update(status=rec.status, path=str(rec.path), error=None)
        except Exception as err:  # reported with the job's outcome; the job's next run still goes
            traceback.print_exc()
            outcome.update(status="failed", path=None, error=f"{type(err).__name__}: {err}")
        outcome["wall_s"] = round(time.time() - started, 1)
        print(f"== {s['name']} seed {s['seed']}: {outcome['status']}" +
              (f", {outcome['path']}" if outcome["path"] else f" ({outcome['error']})"), flush=True)
        out.append(outcome)
    return out


def _held_elsewhere(exp, runs_dir: Path) -> bool:
    """The record's lock is held now: a job or worker is training it."""
    from .records import record_lock

    with record_lock(exp, runs_dir, wait=False) as held:
        return not held


def _make_executor(kind: str, log_dir: Path):
    try:
        import submitit
    except ImportError:
        raise SystemExit(f"--executor {kind} needs submitit: pip install -e '.[cluster]' (or pip install submitit)") from None
    if kind == "local":
        return submitit.LocalExecutor(log_dir)
    try:
        return submitit.SlurmExecutor(log_dir)
    except RuntimeError as err:  # no srun: not on a SLURM login node
        raise SystemExit(f"--executor slurm: {err} Run it on the cluster's login node, or --executor local here") from None


def submit_plan(plan: list, runs_dir: Path, overrides: dict, *, kind: str, log_dir: Path | None = None,
                devices: list | None = None, per_device: int = 1, group_seconds: float = 0.0,
                minutes: int | None = None, partition: str | None = None, cpus_per_task: int | None = None,
                mem_gb: float | None = None, slurm_extra: list[str] | None = None, device: str = "auto",
                wait: bool = True) -> int:
    """Submit the plan's missing runs as submitit jobs (``kind``: local or slurm) and, with
    ``wait``, follow them to the end with a progress bar. Returns 0 when every run submitted
    ended with a complete record (or there was nothing to submit)."""
    from .experiments import experiment

    if kind not in ("local", "slurm"):
        raise ValueError(f"submit_plan runs submitit jobs (local or slurm), not {kind!r}")
    runs_dir = Path(runs_dir)
    todo = []
    for p in (p for p in plan if not p.done):
        if _held_elsewhere(experiment(p.name, "paper", p.seed, **overrides), runs_dir):
            print(f"-- {p.name} seed {p.seed}: its lock is held (a job is training it): not submitted again", flush=True)
        else:
            todo.append(p)
    if not todo:
        print("-- nothing to submit: every record of the plan is complete or in training", flush=True)
        return 0
    groups = group_runs(todo, group_seconds)
    log_dir = Path(log_dir) if log_dir is not None else default_log_dir()
    log_dir.mkdir(parents=True, exist_ok=True)
    executor = _make_executor(kind, log_dir)
    env = launch_env(kind)
    for name in ("MCR2_LOCK", "MCR2_DATA", "MCR2_CUDA_GRAPHS"):  # what the submitter chose, in every job
        if os.environ.get(name):
            env[name] = os.environ[name]
    devices = devices or [None]
    gpus = 0 if device == "cpu" else 1

    def specs(group):
        return [{"name": p.name, "seed": p.seed, "overrides": overrides, "device": device} for p in group]

    jobs: list[tuple[object, list, object]] = []  # (job, runs, device index or None)
    queue = list(groups)

    def submit_local(group, dev):
        # One device per job: the job sees it as its cuda:0 (CUDA_VISIBLE_DEVICES), as on a cluster node.
        executor.update_parameters(timeout_min=job_minutes(group, minutes),
                                   gpus_per_node=0 if dev is None else 1,
                                   visible_gpus=() if dev is None else (dev,))
        job = executor.submit(train_job, specs(group), str(runs_dir), env)
        jobs.append((job, group, dev))
        print(f"-- job {job.job_id}{'' if dev is None else f' on cuda:{dev}'}: "
              + ", ".join(f"{p.name} seed {p.seed}" for p in group), flush=True)

    print(f"-- {len(todo)} runs in {len(groups)} {kind} job{'s' * (len(groups) > 1)}; logs in {log_dir}", flush=True)
    if kind == "slurm":
        longest = max(job_minutes(g, minutes) for g in groups)
        executor.update_parameters(**slurm_parameters(longest, partition, gpus, cpus_per_task, mem_gb, slurm_extra))
        with executor.batch():  # one job array
            batch = [(executor.submit(train_job, specs(g), str(runs_dir), env), g) for g in groups]
        for job, group in batch:
            jobs.append((job, group, None))
            print(f"-- job {job.job_id}: " + ", ".join(f"{p.name} seed {p.seed}" for p in group), flush=True)
        queue = []
    elif not wait:  # nobody stays to start the rest: everything now, one device after another
        for i, group in enumerate(queue):
            submit_local(group, devices[i % len(devices)])
        queue = []
    if not wait:
        print(f"-- submitted {len(jobs)} jobs and not waiting (--no-wait): run the same command again to see "
              f"what finished; a rerun submits only what is still missing", flush=True)
        return 0
    return _follow(jobs, queue, devices, per_device, submit_local)


def _follow(jobs: list, queue: list, devices: list, per_device: int, submit_local) -> int:
    """Wait for the jobs (starting queued local ones as devices free up), with a progress bar;
    print what finished, what failed and the job ids."""
    from tqdm import tqdm

    total = len(jobs) + len(queue)
    results: list[tuple[object, list, list[dict] | None, str | None]] = []
    pending = list(jobs)

    def fill():
        while queue:
            busy = [dev for _, _, dev in pending]
            free = [d for d in devices if busy.count(d) < per_device]
            if not free:
                return
            dev = min(free, key=busy.count)  # the first free device, fewest jobs first
            before = len(jobs)
            submit_local(queue.pop(0), dev)
            pending.extend(jobs[before:])

    fill()
    with tqdm(total=total, unit="job", desc="jobs", file=sys.stdout, dynamic_ncols=True) as bar:
        try:
            while pending:
                time.sleep(JOB_POLL_S)
                for item in [item for item in pending if item[0].done()]:
                    pending.remove(item)
                    job, group, _ = item
                    try:
                        outcomes, error = job.result(), None
                    except Exception as err:  # killed, timed out, or failed outside a run
                        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                        outcomes, error = None, f"{type(err).__name__}: {first}"
                    results.append((job, group, outcomes, error))
                    bar.update(1)
                    for line in _describe(job, group, outcomes, error):
                        bar.write(line)
                fill()
        except KeyboardInterrupt:
            bar.write(f"-- stopped waiting; jobs {', '.join(job.job_id for job, _, _ in pending) or 'none'} are left "
                      f"as they are ({len(queue)} not submitted): run the same command again to follow what is missing")
            raise
    ok = sum(o["status"] == "complete" for _, _, outs, _ in results for o in outs or [])
    runs = sum(len(g) for _, g, _, _ in results)
    failed_jobs = [job.job_id for job, _, outs, err in results if err or any(o["status"] != "complete" for o in outs)]
    print(f"== {ok} of {runs} runs complete in {len(results)} jobs ({', '.join(j.job_id for j, *_ in results)})"
          + (f"; failed jobs: {', '.join(failed_jobs)} (their logs: {results[0][0].paths.folder})" if failed_jobs else ""),
          flush=True)
    return 0 if ok == runs else 1


def _describe(job, group: list, outcomes: list[dict] | None, error: str | None) -> list[str]:
    if outcomes is None:
        return [f"-- FAILED job {job.job_id} ({error}): " + ", ".join(f"{p.name} seed {p.seed}" for p in group)
                + f" left no record; stderr: {job.paths.stderr}"]
    return [f"-- {'done' if o['status'] == 'complete' else 'FAILED'} {o['name']} seed {o['seed']} in job {job.job_id} "
            f"on {o['host']}: {o['wall_s']:.0f} s" + (f", {o['path']}" if o["path"] else f" ({o['error']})")
            for o in outcomes]
