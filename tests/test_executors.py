"""The paper runner beyond one GPU (mcr2.executors): devices, submitit jobs, the lock on a shared
filesystem. On the CPU: fake device lists for the plan, submitit's LocalExecutor for the jobs."""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mcr2 import engine, executors, locks, paper, records
from mcr2.experiments import experiment
from mcr2.paper import Planned
from mcr2.records import complete_record_path, find_record, record_dir, record_lock

submitit = pytest.importorskip("submitit")

DATA = Path(os.environ.get("MCR2_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
# A paper-profile config shrunk to seconds on a CPU (as in test_paper.py; the records are "custom").
TINY = ["data.train_limit=40", "data.val_limit=20", "optim.epochs=2", "optim.batch_size=20", "model.width=8",
        "model.feature_dim=16", "model.depth=2", "eval.fit_limit=40", "eval.feature_samples=300",
        "eval.feature_keep=50", "eval.every=1"]
COSTS = {"device": "test", "seconds": {"seg_mnist_ce": {"1": 60}, "cls_mnist_ce": {"1": 100}}, "sources": {}}


def _tiny(*changes) -> list[str]:
    """TINY with some FIELD=JSON items changed."""
    changed = dict(item.split("=", 1) for item in [*TINY, *changes])
    return [f"{k}={v}" for k, v in changed.items()]


def _overrides(*changes):
    return {k: json.loads(v) for k, v in (item.split("=", 1) for item in _tiny(*changes))}


def _main(*argv) -> int:
    parser = argparse.ArgumentParser()
    paper.add_arguments(parser)
    return paper.main_from_args(parser.parse_args([str(a) for a in argv]))


def _tiny_args(*changes):
    return [a for item in _tiny(*changes) for a in ("--set", item)]


def _check_launch(rec, executor: str, job_id: str | None = None):
    """The launch fields of a record's provenance, where its provenance has them."""
    prov = rec.record["provenance"]
    if "executor" in prov:
        assert prov["executor"] == executor and prov["launcher"] == executors.LAUNCHER
        assert prov["host"] == socket.gethostname()
    if job_id is not None and "job_id" in prov:
        assert str(prov["job_id"]) == str(job_id)


# ------------------------------------------------------------------------------------------ devices
def test_schedule_spreads_runs_over_the_devices_before_they_share_one():
    placed = executors.schedule([50, 40, 30, 20, 10], [0, 1, 2], per_device=2, start_s=5)
    assert [d for d, _, _ in placed[:3]] == [0, 1, 2]  # each device's first worker before any second one
    assert [d for d, _, _ in placed[3:]] == [0, 1]  # then the second workers, first device first
    assert [end for _, _, end in placed] == [55, 45, 35, 25, 15]
    one = executors.schedule([50, 40, 30], [None], per_device=1)
    assert [end for _, _, end in one] == [50, 90, 120]
    # A run that would end past the budget is not started and takes no time: a shorter one still fits.
    cut = executors.schedule([50, 40, 30], [0], per_device=1, budget=85)
    assert [end for _, _, end in cut] == [50, None, 80]


def test_devices_are_parsed_and_checked_with_clear_errors():
    assert executors.parse_devices("0,1, 3") == [0, 1, 3]
    for bad in ("", "a,b", "0,0", "-1"):
        with pytest.raises(ValueError, match="--devices"):
            executors.parse_devices(bad)
    if not executors.visible_devices():
        with pytest.raises(ValueError, match="no CUDA device 5 here"):
            executors.check_devices([5])


def test_dry_run_on_a_fake_device_list_names_each_runs_device(tmp_path, capsys):
    """--devices is taken as given for the plan, so eight GPUs plan on this CPU; the wall time is
    the schedule's, far below one device's."""
    assert _main("--dry-run", "--devices", "0,1,2,3,4,5,6,7", "--runs-dir", tmp_path) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line[:3].strip().isdigit()]
    assert len(rows) == 3 * len(paper.ordered_names()) and [r[3] for r in rows[:8]] == [f"cuda:{i}" for i in range(8)]
    assert "8 devices (cuda:0, cuda:1" in out and "on each of 8 devices" in out
    eight = paper.profile_seconds(tmp_path, devices=8)
    one = paper.profile_seconds(tmp_path)
    assert one["seconds"] / 8 == pytest.approx(eight["seconds"])  # the run-seconds, spread
    assert one["seconds"] / 8 < eight["wall_seconds"] < one["seconds"] / 2  # the schedule's end: not perfect
    wall = float(out.split("end by about ")[1].split()[0])
    assert wall == pytest.approx(eight["missing_wall_seconds"], abs=1)
    with pytest.raises(SystemExit, match="--devices"):
        _main("--dry-run", "--devices", "0,x", "--runs-dir", tmp_path)
    with pytest.raises(SystemExit, match="leave out --device cpu"):
        _main("--dry-run", "--devices", "0,1", "--device", "cpu", "--runs-dir", tmp_path)


class _FakeWorker:
    """A worker that 'trains' each run for a moment and reports it (no process, no torch)."""
    made: list = []

    def __init__(self, events, streams=1, device="auto", shared=None):
        self.events, self.streams, self.device = events, streams, device
        self.busy, self.broken, self.runs = 0, False, 0
        _FakeWorker.made.append(self)

    def submit(self, spec):
        self.runs += 1
        done = {"name": spec["name"], "seed": spec["seed"], "status": "complete", "start_s": 0.0}
        seconds = 1.5 if self.device == "cuda:5" else 0.3  # a slow device and a fast one
        threading.Timer(seconds, self.events.put, args=((self, done),)).start()
        return True

    def close(self):
        return 0

    def stop(self):
        pass

    def returncode(self):
        return 0


def test_runs_go_to_the_first_free_device_and_count_sharing_per_device(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(paper, "Worker", _FakeWorker)
    _FakeWorker.made = []
    plan = paper.plan_runs([0, 1], tmp_path, COSTS, names=["seg_mnist_ce", "cls_mnist_ce"])
    done = paper.train_within(plan, 600, 1, tmp_path, COSTS, devices=[3, 5])
    out = capsys.readouterr().out
    starts = [line.split(" on ")[1].split()[0] for line in out.splitlines() if line.startswith("-- start")]
    # One on each device, then each run goes to the device that frees first: the fast one, twice.
    assert starts == ["cuda:3", "cuda:5", "cuda:3", "cuda:3"]
    assert sorted((w.device, w.runs) for w in _FakeWorker.made) == [("cuda:3", 3), ("cuda:5", 1)]  # one worker each
    assert len(done) == 4 and all(f.sharing == pytest.approx(1.0, abs=0.05) for f in done)  # alone on its device


# ---------------------------------------------------------------------------------------- the lock
def test_lock_mode_is_chosen_by_environment_or_filesystem(tmp_path, monkeypatch):
    monkeypatch.delenv("MCR2_LOCK", raising=False)
    assert records.lock_mode(tmp_path) == ("file" if locks._filesystem_type(tmp_path) in
                                           locks.NETWORK_FILESYSTEMS else "flock")
    monkeypatch.setattr(locks, "_filesystem_type", lambda path: "nfs4")
    assert records.lock_mode(tmp_path) == "file"  # auto: lock files on NFS
    monkeypatch.setenv("MCR2_LOCK", "flock")
    assert records.lock_mode(tmp_path) == "flock"
    monkeypatch.setenv("MCR2_LOCK", "nfs")
    with pytest.raises(ValueError, match="MCR2_LOCK='nfs'.*auto, flock, file"):
        records.lock_mode(tmp_path)


def test_lock_file_excludes_breaks_stale_holders_and_keeps_live_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("MCR2_LOCK", "file")
    exp = experiment("seg_mnist_ce", "paper", 0, **_overrides())
    final = record_dir(exp, tmp_path)
    lock = final.parent / f".{final.name}.lockfile"
    with record_lock(exp, tmp_path) as held:
        assert held
        holder = json.loads(lock.read_text())
        assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid()
        with record_lock(exp, tmp_path, wait=False) as again:
            assert again is False  # held: even by this process
    assert not lock.exists()  # released
    # A holder on another host, heartbeat fresh: kept. Silent for LOCK_STALE_S: broken.
    lock.write_text(json.dumps({"host": "node-17", "pid": 1, "token": "x"}))
    with record_lock(exp, tmp_path, wait=False) as held:
        assert held is False
    old = time.time() - locks.LOCK_STALE_S - 5
    os.utime(lock, (old, old))
    with record_lock(exp, tmp_path, wait=False) as held:
        assert held and json.loads(lock.read_text())["pid"] == os.getpid()
    # A holder on this host whose process is gone: broken at once.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = gone.pid
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead, "token": "y"}))
    with record_lock(exp, tmp_path, wait=False) as held:
        assert held
        # Taken over meanwhile (this holder stalled past LOCK_STALE_S): its end leaves the new lock alone.
        lock.write_text(json.dumps({"host": "node-3", "pid": 7, "token": "z"}))
    assert json.loads(lock.read_text())["token"] == "z"
    assert not list(final.parent.glob("*.stale-*"))


def test_lock_file_holder_keeps_its_lock_fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("MCR2_LOCK", "file")
    monkeypatch.setattr(locks, "LOCK_HEARTBEAT_S", 0.05)
    exp = experiment("seg_mnist_ce", "paper", 0, **_overrides())
    final = record_dir(exp, tmp_path)
    with record_lock(exp, tmp_path):
        lock = final.parent / f".{final.name}.lockfile"
        os.utime(lock, (1, 1))
        time.sleep(0.3)
        assert time.time() - lock.stat().st_mtime < 5


# -------------------------------------------------------------------------------------------- jobs
def test_short_runs_share_jobs_and_jobs_get_time_limits():
    runs = [Planned(n, 0, "g", s, "t") for n, s in (("a", 70), ("b", 70), ("c", 500), ("d", 30), ("e", 70), ("f", 70))]
    assert [[r.name for r in g] for g in executors.group_runs(runs)] == [[r.name] for r in runs]
    grouped = executors.group_runs(runs, group_seconds=150)
    assert [[r.name for r in g] for g in grouped] == [["a", "b"], ["c"], ["d", "e"], ["f"]]
    assert executors.job_minutes(grouped[0]) == 5 + executors.JOB_SLACK_MIN  # 140 s × 2 → 5 min
    assert executors.job_minutes(grouped[0], given=30) == 30


def test_slurm_parameters_make_the_sbatch_script(tmp_path):
    from submitit.slurm.slurm import _make_sbatch_string

    params = executors.slurm_parameters(20, "gpu", 1, cpus_per_task=8, mem_gb=31.5, extra=["account=lab", "qos=short"])
    script = _make_sbatch_string(command="python -m x", folder=tmp_path, **params)
    for line in ("--partition=gpu", "--time=20", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=32GB",
                 "--account=lab", "--qos=short", "--job-name=mcr2-paper"):
        assert f"#SBATCH {line}" in script, line
    with pytest.raises(ValueError, match="KEY=VALUE"):
        executors.slurm_parameters(20, None, 1, extra=["account"])
    with pytest.raises(SystemExit, match="--budget, --pack and --streams"):
        _main("--executor", "local", "--budget", 60, "--runs-dir", tmp_path)


def test_launch_env_names_the_executor_and_job():
    assert executors.launch_env("slurm", "123_4") == {"MCR2_LAUNCHER": "paper-runner", "MCR2_EXECUTOR": "slurm",
                                                       "MCR2_JOB_ID": "123_4"}
    assert "MCR2_JOB_ID" not in executors.launch_env("workers")
    with pytest.raises(ValueError, match="executor"):
        executors.launch_env("kubernetes")


@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data")
def test_local_jobs_write_each_record_once_as_in_process_and_a_rerun_submits_nothing(tmp_path, monkeypatch, capsys):
    """--executor local, two records: two submitit jobs at once, each record written exactly once
    and equal to the same run trained in this process; the records name their executor and job."""
    monkeypatch.setenv("MCR2_DATA", str(DATA))
    runs, logs = tmp_path / "runs", tmp_path / "jobs"
    names = ["cls_mnist_ce", "seg_mnist_ce"]
    argv = ["--executor", "local", "--jobs", 2, "--device", "cpu", "--runs-dir", runs, "--log-dir", logs,
            "--seeds", 0, "--only", *names, *_tiny_args()]
    assert _main(*argv) == 0
    out = capsys.readouterr().out
    job_ids = [line.split()[2].rstrip(":") for line in out.splitlines() if line.startswith("-- job ")]
    assert len(job_ids) == 2 and "== 2 of 2 runs complete in 2 jobs" in out
    made = sorted(p.parent for p in runs.glob("*/*/record.json"))
    assert len(made) == 2
    assert not list(runs.glob("*/.tmp-*")) and not list(runs.glob("*/.old-*")) and not list(runs.glob("*/.failed-*"))
    for name, job_id in zip(names, job_ids):  # Figure 1 first, as planned
        exp = experiment(name, "paper", 0, **_overrides())
        in_job = find_record(exp, runs)
        assert in_job is not None and in_job.path in made
        _check_launch(in_job, "local", job_id)
        alone = engine.run(exp, tmp_path / "alone", device="cpu", progress="off")
        for field in ("loss", "R", "Rc", "delta_r"):
            assert in_job.steps[field].tolist() == alone.steps[field].tolist(), (name, field)
        assert in_job.record["summary"] == alone.record["summary"]
    submitted = sorted(p.name for p in logs.iterdir())
    assert _main(*argv) == 0  # again: everything complete, nothing submitted
    out = capsys.readouterr().out
    assert "0 to train" in out and "nothing to submit" in out and "-- job " not in out
    assert sorted(p.name for p in logs.iterdir()) == submitted
    assert sorted(p.parent for p in runs.glob("*/*/record.json")) == made


@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data")
def test_a_job_killed_mid_run_leaves_no_record_and_the_next_run_trains_it(tmp_path, monkeypatch, capsys):
    """The lock-file mode (as on NFS): a job killed outright (SIGKILL) while it trains leaves its
    lock file and no complete record; the next invocation breaks the dead holder's lock, submits
    the run again and writes the record."""
    monkeypatch.setenv("MCR2_DATA", str(DATA))
    monkeypatch.setenv("MCR2_LOCK", "file")
    runs, logs = tmp_path / "runs", tmp_path / "jobs"
    extra = ["optim.epochs=4"]  # long enough to be caught training
    exp = experiment("seg_mnist_ce", "paper", 0, **_overrides(*extra))
    final = record_dir(exp, runs)
    lock = final.parent / f".{final.name}.lockfile"
    argv = ["--executor", "local", "--device", "cpu", "--runs-dir", runs, "--log-dir", logs, "--seeds", 0,
            "--only", "seg_mnist_ce", *_tiny_args(*extra)]
    assert _main(*argv, "--no-wait") == 0
    deadline = time.time() + 240
    while not (lock.exists() and locks._lock_holder(lock).get("pid")):
        assert time.time() < deadline, "the job never took the record's lock"
        time.sleep(0.02)
    holder = locks._lock_holder(lock)
    assert holder["host"] == socket.gethostname()
    os.kill(holder["pid"], signal.SIGKILL)
    while True:  # gone (the job's controller reaps it)
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    assert complete_record_path(exp, runs) is None and not (final / "record.json").exists()
    assert lock.exists()  # what the dead holder left
    capsys.readouterr()
    assert _main(*argv) == 0
    out = capsys.readouterr().out
    assert "broke the stale lock" in out and "== 1 of 1 runs complete in 1 jobs" in out
    rec = find_record(exp, runs)
    assert rec is not None and rec.status == "complete"
    _check_launch(rec, "local")
    assert not lock.exists() and not list(final.parent.glob(".tmp-*"))
