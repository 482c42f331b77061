"""Run records under faults: nothing complete is ever lost, and every unreadable record is named.

Each test reproduces one fault (issue: "Run records and the CLI that never lose work") and checks
either the clear error (RecordCorrupt names the folder and the way out) or the preserved record.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import mcr2.engine as engine
import mcr2.locks as locks
import mcr2.records as records
from mcr2.experiments import experiment
from mcr2.metrics import cosine_abs_blocks

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.exists() and "MCR2_DATA" not in os.environ, reason="needs ../shared/data")
TINY = {"data.train_limit": 40, "data.val_limit": 20, "optim.epochs": 2, "optim.batch_size": 20,
        "model.width": 8, "model.feature_dim": 16, "eval.feature_samples": 300, "eval.feature_keep": 50}


@pytest.fixture(autouse=True)
def data_root(monkeypatch):
    if "MCR2_DATA" not in os.environ:
        monkeypatch.setenv("MCR2_DATA", str(DATA))


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    """One complete tiny record (trained once), copied into each test's own runs dir."""
    root = tmp_path_factory.mktemp("runs")
    exp = experiment("seg_mnist_mcr2", "smoke", 0, **TINY)
    engine.run(exp, root, progress="off")
    return exp, root


@pytest.fixture
def rec(complete, tmp_path):
    exp, root = complete
    shutil.copytree(root, tmp_path / "runs")
    return exp, tmp_path / "runs", records.record_dir(exp, tmp_path / "runs")


def _no_training(monkeypatch):
    monkeypatch.setattr(engine._Trainer, "train", lambda self: pytest.fail("trained although it must not"))


# ------------------------------------------------------------------------------ loses data
@needs_data
def test_failed_retrain_keeps_the_complete_record(rec, monkeypatch):
    exp, runs, path = rec
    before = json.loads((path / "record.json").read_text())

    def broken_data(self):
        raise FileNotFoundError("MNIST is gone")

    monkeypatch.setattr(engine._Trainer, "_load_data", broken_data)
    with pytest.raises(FileNotFoundError):
        engine.run(exp, runs, retrain=True, progress="off")
    after = records.find_record(exp, runs)
    assert after is not None and after.record["started"] == before["started"]
    failed = list(path.parent.glob(f".failed-{path.name}-*"))
    assert len(failed) == 1 and json.loads((failed[0] / "record.json").read_text())["status"] == "failed"


@needs_data
def test_interrupted_retrain_keeps_the_complete_record(rec, monkeypatch):
    exp, runs, path = rec
    started = json.loads((path / "record.json").read_text())["started"]

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine._Trainer, "_build_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        engine.run(exp, runs, retrain=True, progress="off")
    assert records.find_record(exp, runs).record["started"] == started


@needs_data
@pytest.mark.parametrize("step", ["after the old record is set aside", "after the new one is renamed in"])
def test_a_kill_at_any_step_of_a_replacement_leaves_a_complete_record(rec, monkeypatch, step):
    exp, runs, path = rec
    old = records.load_record(path)
    real_rename, real_rmtree = Path.rename, shutil.rmtree

    class Killed(BaseException):
        pass

    def rename(self, target):
        out = real_rename(self, target)
        if step == "after the old record is set aside" and Path(target).name.startswith(".old-"):
            raise Killed
        return out

    def rmtree(p, *a, **k):
        if step == "after the new one is renamed in" and Path(p).name.startswith(".old-"):
            raise Killed
        return real_rmtree(p, *a, **k)

    monkeypatch.setattr(Path, "rename", rename)
    monkeypatch.setattr(records.shutil, "rmtree", rmtree)
    with pytest.raises(Killed):
        records.write_record(exp, runs, dict(old.record, started="new"), old.history.to_dict("records"),
                             old.steps.to_dict("records"), old.artefacts)
    monkeypatch.undo()
    found = records.find_record(exp, runs)  # without the lock: read from wherever it is
    assert found is not None and found.status == "complete"
    with records.record_lock(exp, runs):  # the next holder tidies up
        pass
    assert records.find_record(exp, runs).path == path
    assert not list(path.parent.glob(".old-*")) and not list(path.parent.glob(".tmp-*"))


def test_stale_temporary_folders_are_removed_under_the_lock(tmp_path):
    exp = experiment("seg_mnist_ce", "smoke", 0, **TINY)
    final = records.record_dir(exp, tmp_path)
    final.parent.mkdir(parents=True)
    (final.parent / f".tmp-{final.name}-deadbeef").mkdir()
    with records.record_lock(exp, tmp_path) as held:
        assert held
    assert not list(final.parent.glob(".tmp-*"))


_CONCURRENT = textwrap.dedent("""
    import json, sys
    from mcr2.engine import run
    from mcr2.experiments import experiment
    exp = experiment("cls_mnist_ce", "smoke", 0, **json.loads(sys.argv[2]))
    rec = run(exp, sys.argv[1], progress="off")
    print(json.dumps({"started": rec.record["started"], "path": str(rec.path)}))
""")


@needs_data
def test_two_identical_runs_at_once_train_once_and_keep_one_complete_record(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    tiny = json.dumps({**TINY, "eval.fit_limit": 40})
    procs = [subprocess.Popen([sys.executable, "-c", _CONCURRENT, str(tmp_path), tiny], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert results[0] == results[1]  # the second waited for the lock and loaded the first's record
    folder = Path(results[0]["path"]).parent
    assert [p.name for p in folder.iterdir() if not p.name.endswith(".lock")] == [Path(results[0]["path"]).name]


def test_an_unwritable_runs_dir_is_found_before_training(tmp_path, monkeypatch):
    _no_training(monkeypatch)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(OSError, match="cannot write run records"):
        engine.run(experiment("cls_mnist_ce", "smoke", 0, **TINY), not_a_dir)
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        if os.access(read_only, os.W_OK):  # root ignores permissions: nothing to test there
            pytest.skip("running as root: a read-only folder is still writable")
        with pytest.raises(OSError, match="cannot write run records"):
            engine.run(experiment("cls_mnist_ce", "smoke", 0, **TINY), read_only)
    finally:
        read_only.chmod(0o700)


# ------------------------------------------------------------------- unreadable records
@needs_data
@pytest.mark.parametrize("content", [b"", b'{"status": "comp', b"[]", b"\xff\xfe\x00garbage", b'{"config": {}}'])
def test_corrupt_record_json_names_the_folder_and_the_way_out(rec, content):
    exp, runs, path = rec
    (path / "record.json").write_bytes(content)
    with pytest.raises(records.RecordCorrupt, match=rf"{path.name}.*(retrain|delete)") as err:
        records.find_record(exp, runs)
    assert err.value.path == path


@needs_data
@pytest.mark.parametrize("fault", [
    "unknown config field", "null wall time", "truncated artefacts", "garbage steps", "truncated history",
    "missing history", "missing artefacts", "config of another key", "NaN history cells",
])
def test_damaged_record_contents_are_reported_not_rendered(rec, fault):
    exp, runs, path = rec
    meta = json.loads((path / "record.json").read_text())
    if fault == "unknown config field":
        meta["config"]["optim"]["warp_drive"] = 1
    elif fault == "null wall time":
        meta["wall_time_s"] = None
    elif fault == "config of another key":
        meta["config"]["optim"]["lr"] = 0.5
    (path / "record.json").write_text(json.dumps(meta))
    if fault == "truncated artefacts":
        data = (path / "artefacts.npz").read_bytes()
        (path / "artefacts.npz").write_bytes(data[: len(data) // 2])
    elif fault == "garbage steps":
        (path / "steps.npz").write_bytes(b"this is not a zip file")
    elif fault == "truncated history":
        lines = (path / "history.csv").read_text().splitlines()
        (path / "history.csv").write_text("\n".join(lines[:-1]) + "\n")
    elif fault == "missing history":
        (path / "history.csv").unlink()
    elif fault == "missing artefacts":
        (path / "artefacts.npz").unlink()
    elif fault == "NaN history cells":
        lines = (path / "history.csv").read_text().splitlines()
        header = lines[0].split(",")
        cells = lines[-1].split(",")
        cells[header.index("loss")] = ""
        (path / "history.csv").write_text("\n".join(lines[:-1] + [",".join(cells)]) + "\n")
    with pytest.raises(records.RecordCorrupt, match=path.name):
        records.load_record(path)


@needs_data
def test_a_corrupt_record_is_not_silently_retrained_over(rec, monkeypatch):
    exp, runs, path = rec
    (path / "record.json").write_text("{")
    _no_training(monkeypatch)
    with pytest.raises(records.RecordCorrupt):
        engine.run(exp, runs)


@needs_data
def test_storage_is_compact_and_reads_back(rec):
    exp, runs, path = rec
    loaded = records.load_record(path)
    with np.load(path / "steps.npz") as npz:
        assert npz["loss"].dtype == np.float32 and not any(v.dtype == object for v in npz.values())
    assert loaded.artefacts["feature_sample"].dtype == np.float32
    norms = np.linalg.norm(loaded.artefacts["feature_sample"], axis=1)
    assert np.allclose(norms, 1, atol=0.05)  # int8 storage of unit rows: |error| ≤ 1/254 per component
    k = exp.num_classes
    assert loaded.artefacts["cosine_abs_mean"].shape == (k, k)


def test_older_records_with_steps_csv_still_load(tmp_path):
    """The first paper records were written with steps.csv; the loader reads both."""
    import pandas as pd

    frame = pd.DataFrame({"epoch": [1, 1], "step": [1, 2], "loss": [0.5, 0.4], "R": [1.0, 1.1], "Rc": [0.5, 0.6],
                          "delta_r": [0.5, 0.5], "mcr2_on": [True, True]})
    frame.to_csv(tmp_path / "steps.csv", index=False)
    assert records._read_steps(tmp_path).equals(frame)


# --------------------------------------------------------- mean |cos| per class block (Figure 7)
def _reference_abs_blocks(Z, labels, k):
    Z = Z.double() / Z.double().norm(dim=1, keepdim=True)
    cos = (Z @ Z.T).abs()
    out = torch.full((k, k), float("nan"), dtype=torch.float64)
    for i in range(k):
        for j in range(k):
            a, b = (labels == i).nonzero().flatten(), (labels == j).nonzero().flatten()
            block = cos[a][:, b]
            if i == j:
                block = block[~torch.eye(len(a), dtype=torch.bool)]
            if block.numel():
                out[i, j] = block.mean()
    return out


def test_cosine_abs_blocks_matches_the_float64_pairwise_reference():
    g = torch.Generator().manual_seed(0)
    Z = torch.randn(300, 12, generator=g)
    labels = torch.randint(0, 5, (300,), generator=g)
    labels[labels == 4] = 3  # class 4 empty: NaN row and column
    labels[0] = 4  # ... but one sample: no within-class pair
    got = cosine_abs_blocks(Z, labels, 5, chunk=64)
    want = _reference_abs_blocks(Z, labels, 5)
    assert torch.allclose(got, want, atol=1e-6, equal_nan=True)
    assert torch.isnan(got[4, 4]) and torch.isfinite(got[4, 0])


def test_cosine_abs_blocks_sees_classes_sharing_one_subspace():
    """The signed mean of a class spread symmetrically over a shared subspace cancels to ≈ 0;
    the mean |cos| does not: between-class equals within-class."""
    g = torch.Generator().manual_seed(1)
    basis = torch.linalg.qr(torch.randn(64, 11, generator=g))[0]  # one 11-dim subspace of R^64
    Z = torch.randn(2000, 11, generator=g) @ basis.T
    labels = torch.arange(2000) % 10
    blocks = cosine_abs_blocks(Z, labels, 10)
    off = blocks[~torch.eye(10, dtype=torch.bool)]
    assert off.mean() > 0.2 and abs(off.mean() - blocks.diagonal().mean()) < 0.01


# ------------------------------------------------------------------------------ how a record was made
@needs_data
def test_a_record_holds_its_seconds_per_phase_and_how_it_was_made(rec):
    """The next GPU window plans from measured phases; every record says what made it."""
    exp, runs, path = rec
    loaded = records.load_record(path)  # the writing phase was added after the write: still sound
    phases = loaded.record["phase_seconds"]
    assert tuple(phases) == ("setup", "train_steps", "evaluation", "writing")
    assert all(phases[p] > 0 for p in phases), phases
    assert phases["setup"] + phases["train_steps"] + phases["evaluation"] >= loaded.record["wall_time_s"] * 0.9
    prov = loaded.record["provenance"]
    assert prov["graphed"] == "eager" and prov["gpu_name"] is None and prov["device_index"] is None
    assert prov["shared_gpu_runs"] == 1 and prov["host"] and prov["torch"] == torch.__version__
    assert {"launcher", "executor", "job_id"} <= set(prov)


def test_provenance_reads_the_launchers_contract_from_the_environment(monkeypatch):
    for name in ("MCR2_LAUNCHER", "MCR2_EXECUTOR", "MCR2_JOB_ID", "SLURM_JOB_ID", "MCR2_SHARED_GPU_RUNS", "MCR2_GPU_STREAMS"):
        monkeypatch.delenv(name, raising=False)
    prov = records.provenance(torch.device("cpu"), graphed=False)
    assert (prov["launcher"], prov["executor"], prov["job_id"], prov["graphed"]) == ("python", None, None, "eager")
    monkeypatch.setenv("MCR2_LAUNCHER", "paper-runner")
    monkeypatch.setenv("MCR2_EXECUTOR", "submitit")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("MCR2_SHARED_GPU_RUNS", "4")
    monkeypatch.setenv("MCR2_GPU_STREAMS", "2")
    prov = records.provenance(torch.device("cpu"))
    assert (prov["launcher"], prov["executor"], prov["job_id"]) == ("paper-runner", "submitit", "4242")
    assert (prov["shared_gpu_runs"], prov["gpu_streams"], prov["graphed"]) == (4, 2, None)
    monkeypatch.setenv("MCR2_JOB_ID", "7")  # the launcher's own id wins over the scheduler's
    assert records.provenance(torch.device("cpu"))["job_id"] == "7"
    monkeypatch.setenv("MCR2_SHARED_GPU_RUNS", "two")
    with pytest.raises(ValueError, match="MCR2_SHARED_GPU_RUNS='two'"):
        records.provenance(torch.device("cpu"))


def test_provenance_on_cuda_names_the_gpu_and_its_index(monkeypatch):
    monkeypatch.setattr(records, "_cuda_name", lambda device: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    prov = records.provenance(torch.device("cuda"), graphed=True)
    assert (prov["gpu_name"], prov["device_index"], prov["graphed"]) == ("NVIDIA H200", 3, "graphed")
    assert records.provenance(torch.device("cuda:1"))["device_index"] == 1
    assert prov["device"]["name"] == "NVIDIA H200"


def _as(r, seed: int, graphed: bool | None, **prov):
    """A copy of record ``r`` as seed ``seed``, with eager/graphed steps (None: an older record)."""
    import copy
    import dataclasses

    record = copy.deepcopy(r.record)
    record["provenance"].pop("graphed", None)
    record.pop("cuda_graphs", None)
    if graphed is not None:
        record["provenance"]["graphed"] = "graphed" if graphed else "eager"
    record["provenance"].update(prov)
    return dataclasses.replace(r, config=dataclasses.replace(r.config, seed=seed), record=record)


@needs_data
def test_the_run_table_shows_how_each_record_was_made_and_pages_name_mixed_seed_sets(rec):
    exp, runs, path = rec
    r = records.load_record(path)
    same = {"a": [_as(r, 0, False), _as(r, 1, None)]}  # an older record without the field: eager
    assert records.steps_mix(same) == {} and records.steps_mix_text(same) == ""
    mixed = {"a": [_as(r, 0, False, launcher="cli"), _as(r, 1, True, launcher="papermill", gpu_name="NVIDIA H200"),
                   _as(r, 2, True)]}
    assert records.steps_mix(mixed) == {exp.name: {"eager": [0], "graphed": [1, 2]}}
    text = records.steps_mix_text(mixed)
    assert f"{exp.name} (eager: seed 0; graphed: seeds 1, 2)" in text and "CUDA graphs" in text
    table = records.records_table(mixed)
    assert list(table["steps"]) == ["eager", "graphed", "graphed"]
    assert list(table["launcher"])[:2] == ["cli", "papermill"] and list(table["GPU"])[:2] == ["none", "NVIDIA H200"]
    for col in ("setup (s)", "train steps (s)", "evaluation (s)", "writing (s)", "shared GPU runs", "torch",
                "executor", "host", "job"):
        assert col in table, col
    old = _as(r, 0, None)
    old.record.pop("phase_seconds")
    assert records.records_table([old])["setup (s)"].isna().all()  # a record before phases: shown empty


@needs_data
def test_the_command_line_says_it_launched_its_runs(tmp_path, monkeypatch):
    from mcr2.cli import main

    monkeypatch.delenv("MCR2_LAUNCHER", raising=False)
    sets = [arg for k, v in TINY.items() for arg in ("--set", f"{k}={json.dumps(v)}")]
    assert main(["run", "seg_mnist_ce", *sets, "--runs-dir", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("seg_mnist_ce/seed0-*/record.json")
    assert json.loads(path.read_text())["provenance"]["launcher"] == "cli"
    assert "MCR2_LAUNCHER" not in os.environ  # main() leaves the environment as it was


def test_the_paper_runners_workers_tell_their_runs_how_they_share_the_gpu(monkeypatch):
    import io
    import queue

    from mcr2 import workers

    seen = {}

    class FakeProcess:
        def __init__(self, cmd, env, **kw):
            seen.update(env)
            self.stdout, self.stdin = io.StringIO(""), io.StringIO()

    monkeypatch.setattr(workers.subprocess, "Popen", FakeProcess)
    workers.Worker(queue.Queue(), streams=2, shared=4)
    assert (seen["MCR2_LAUNCHER"], seen["MCR2_SHARED_GPU_RUNS"], seen["MCR2_GPU_STREAMS"]) == ("paper-runner", "4", "2")


def test_update_record_json_replaces_the_file_whole(tmp_path):
    (tmp_path / "record.json").write_text(json.dumps({"status": "complete", "config": {}, "phase_seconds": {"writing": 0.0}}))
    records.update_record_json(tmp_path, lambda rec: rec["phase_seconds"].update(writing=0.5))
    assert json.loads((tmp_path / "record.json").read_text())["phase_seconds"] == {"writing": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temporary file left


# ------------------------------------------------------------------- records that load but lie
def _edit_history(path: Path, epoch: int, column: str, value: str) -> None:
    lines = (path / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[epoch].split(",")
    cells[header.index(column)] = value
    lines[epoch] = ",".join(cells)
    (path / "history.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("epoch, column, value", [
    (100, "mnist_acc", ""), (100, "usps_acc", "nan"), (5, "mnist_acc", ""), (50, "usps_acc", "inf"),
    (3, "mnist_acc", "-inf")])
def test_a_nan_in_a_metric_column_does_not_load_as_complete(tmp_path, epoch, column, value):
    """Metrics are measured every eval.every-th epoch (5 here) and at the last: there, each is a
    finite number; between them a cell is empty, never infinite."""
    from _fake_records import fake_record

    path = fake_record(tmp_path)
    records.load_record(path)  # sound as written
    _edit_history(path, epoch, column, value)
    with pytest.raises(records.RecordCorrupt, match=f"column '{column}' is not a finite number at epoch {epoch}"):
        records.load_record(path)


def test_an_empty_per_class_accuracy_is_a_class_absent_not_a_fault(tmp_path):
    from _fake_records import fake_record

    path = fake_record(tmp_path)
    history = (path / "history.csv").read_text().splitlines()
    history = [history[0] + ",mnist_class3_acc"] + [line + "," for line in history[1:]]
    (path / "history.csv").write_text("\n".join(history) + "\n")
    meta = json.loads((path / "record.json").read_text())
    meta["summary"]["mnist_class3_acc"] = float("nan")
    (path / "record.json").write_text(json.dumps(meta))
    assert records.load_record(path).status == "complete"


def test_a_summary_that_is_not_the_last_history_row_does_not_load(tmp_path):
    from _fake_records import fake_record

    path = fake_record(tmp_path)
    meta = json.loads((path / "record.json").read_text())
    meta["summary"]["mnist_acc"] = 0.999
    (path / "record.json").write_text(json.dumps(meta))
    with pytest.raises(records.RecordCorrupt, match="summary mnist_acc=0.999 is not history.csv's last row"):
        records.load_record(path)
    meta["summary"]["mnist_acc"] = 0.91
    meta["summary"]["made_up"] = 1.0
    (path / "record.json").write_text(json.dumps(meta))
    with pytest.raises(records.RecordCorrupt, match="summary made_up=1.0 is not history.csv's last row"):
        records.load_record(path)


@pytest.mark.parametrize("mode, message", [
    ("flock", "waiting for seg_mnist_ce seed 0: process {pid} holds the lock of its record"),
    ("file", "waiting for the record lock {path}: {host} pid {pid} holds it")])
def test_a_run_waiting_on_another_process_lock_says_what_it_waits_for(tmp_path, monkeypatch, capsys, mode, message):
    """Locks of two open files (flock) or two lock-file takers conflict even in one process: a
    thread holds the record's lock for a second; the main thread waits, and says so after
    LOCK_NOTICE_S."""
    import socket
    import threading
    import time

    monkeypatch.setenv("MCR2_LOCK", mode)
    monkeypatch.setattr(locks, "LOCK_NOTICE_S", 0.2)
    monkeypatch.setattr(locks, "LOCK_POLL_S", 0.05)
    exp = experiment("seg_mnist_ce", "smoke", 0, **TINY)
    held, release = threading.Event(), threading.Event()

    def holder():
        with records.record_lock(exp, tmp_path):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    threading.Timer(1.0, release.set).start()
    started = time.monotonic()
    with records.record_lock(exp, tmp_path) as got:
        assert got
    t.join()
    assert time.monotonic() - started >= 0.5
    err = capsys.readouterr().err
    final = records.record_dir(exp, tmp_path)
    assert message.format(pid=os.getpid(), host=socket.gethostname(),
                          path=final.parent / f".{final.name}.lockfile") in err, err
    with records.record_lock(exp, tmp_path):  # no wait, no message
        pass
    assert capsys.readouterr().err == ""
