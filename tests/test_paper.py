"""`python -m mcr2 paper`: the plan, the budget, concurrent jobs, the pack and its import (CPU, tiny runs)."""
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from mcr2 import costs as cost_table
from mcr2 import packs, paper
from mcr2.config import ConfigError
from mcr2.packs import PackError
from mcr2.experiments import experiment
from mcr2.records import find_record, record_dir

from _fake_records import ROW, fake_record

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MCR2_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")

# A paper-profile config shrunk to seconds on a CPU (the records are then profile "custom").
TINY = ["data.train_limit=40", "data.val_limit=20", "optim.epochs=2", "optim.batch_size=20", "model.width=8",
        "model.feature_dim=16", "model.depth=2", "eval.fit_limit=40", "eval.feature_samples=300",
        "eval.feature_keep=50", "eval.every=1"]
COSTS = {"device": "test", "seconds": {"seg_bg_mcr2_masked": {"1": 70, "4": 140}, "seg_bg_ce": {"1": 50, "4": 100},
                                       "cls_mnist_ce": {"1": 160}, "cls_mnist_mcr2": {"1": 240}}, "sources": {}}


def _overrides():
    return {k: json.loads(v) for k, v in (item.split("=", 1) for item in TINY)}


def test_plan_puts_figure_5_first_then_figure_1_then_the_rest(tmp_path):
    plan = paper.plan_runs([0, 1, 2], tmp_path, COSTS, jobs=1)
    names = [p.name for p in plan]
    assert names[:3] == ["seg_bg_mcr2_masked", "seg_bg_mcr2", "seg_bg_ce"]  # seed 0 of the trio
    assert [p.seed for p in plan[:9]] == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # the trio's three seeds first
    assert names[9] == "cls_mnist_ce"
    first_plain = min(i for i, n in enumerate(names) if n.startswith("seg_mnist"))
    assert all(not n.startswith("cls_") or i < first_plain for i, n in enumerate(names) if n in
               {m for _, ms in paper.PRIORITY[1:2] for m in ms})
    assert not any(p.done for p in plan)


def test_estimates_use_measurements_then_the_median_slowdown_then_the_assumption():
    assert cost_table.estimate("seg_bg_ce", 4, COSTS)[0] == 100  # measured at 4 jobs
    seconds, why = cost_table.estimate("cls_mnist_ce", 4, COSTS)  # 160 alone × median(140/70, 100/50) = 2
    assert seconds == pytest.approx(320) and "median measured slowdown" in why
    no_ratio = {"seconds": {"cls_mnist_ce": {"1": 160}}, "sources": {}}
    seconds, why = cost_table.estimate("cls_mnist_ce", 3, no_ratio)
    assert seconds == pytest.approx(160 * cost_table._assumed_slowdown(3)) and "assumed" in why
    # An unmeasured experiment borrows a similar one's cost, or the slowest known.
    assert cost_table.estimate("seg_bg_mcr2", 1, COSTS) == (cost_table.estimate("seg_bg_mcr2", 1, COSTS)[0],
                                                      cost_table.estimate("seg_bg_mcr2", 1, COSTS)[1])
    assert cost_table.estimate("seg_mnist_ce", 1, COSTS)[0] == 240


def _main(*argv) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    paper.add_arguments(parser)
    return paper.main_from_args(parser.parse_args([str(a) for a in argv]))


def test_dry_run_prints_the_plan_on_a_cpu_and_trains_nothing(tmp_path, capsys):
    assert _main("--dry-run", "--budget", 600, "--runs-dir", tmp_path) == 0
    out = capsys.readouterr().out
    assert "seg_bg_mcr2_masked" in out and "estimate" in out and "no time" in out
    assert not any(tmp_path.iterdir())


def test_paper_scale_on_a_cpu_is_refused_with_guidance(tmp_path):
    with pytest.raises(SystemExit, match="GPU.*--dry-run"):
        _main("--budget", 60, "--device", "cpu", "--runs-dir", tmp_path)
    with pytest.raises(SystemExit, match="--jobs"):
        _main("--jobs", 0, "--runs-dir", tmp_path)
    with pytest.raises(SystemExit, match="budget"):
        _main("--budget", -5, "--runs-dir", tmp_path)
    with pytest.raises(ConfigError, match="JSON"):
        _main("--set", "data.background=cifar10", "--dry-run", "--runs-dir", tmp_path)
    with pytest.raises(ConfigError, match="unknown"):
        _main("--set", "optim.nope=1", "--dry-run", "--runs-dir", tmp_path)
    with pytest.raises(ConfigError, match="seeds"):
        _main("--seeds", "-1", "--dry-run", "--runs-dir", tmp_path)


def test_no_run_starts_that_cannot_finish_in_the_budget(tmp_path, capsys):
    plan = paper.plan_runs([0], tmp_path, COSTS, jobs=1, names=["cls_mnist_mcr2"])
    done = paper.train_within(plan, budget=100, jobs=1, runs_dir=tmp_path, costs=COSTS)
    assert done == [] and "not started: cls_mnist_mcr2" in capsys.readouterr().out


@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data")
def test_two_jobs_train_each_record_once_pack_it_and_a_rerun_continues(tmp_path, monkeypatch):
    monkeypatch.setenv("MCR2_DATA", str(DATA))
    runs, pack = tmp_path / "runs", tmp_path / "out" / "records.tar.gz"
    names = ["seg_mnist_ce", "cls_mnist_ce"]
    cmd = [sys.executable, "-m", "mcr2.paper", "--budget", "600", "--jobs", "2", "--device", "cpu",
           "--runs-dir", str(runs), "--seeds", "0", "--only", *names, "--pack", str(pack)]
    for item in TINY:
        cmd += ["--set", item]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "2 of 2 runs complete" in out.stdout
    assert out.stdout.count("-- worker seconds:") == 2  # where each worker's time went
    assert out.stdout.count("paid by its first run") == 0  # two jobs, two runs: one run per worker
    made = sorted(p.parent for p in runs.glob("*/*/record.json"))
    assert len(made) == 2  # one folder per (experiment, seed): nothing trained or written twice
    assert not list(runs.glob("*/.tmp-*")) and not list(runs.glob("*/.old-*")) and not list(runs.glob("*/.failed-*"))
    for name in names:
        for seed in (0,):
            rec = find_record(experiment(name, "paper", seed, **_overrides()), runs)
            assert rec is not None and rec.status == "complete"
    with tarfile.open(pack) as tar:
        members = tar.getnames()
        costs = json.load(tar.extractfile("costs.json"))
    assert sorted({m.split("/")[0] + "/" + m.split("/")[1] for m in members if m.count("/") >= 1}) == \
        sorted(str(p.relative_to(runs)) for p in made)
    assert len(costs["runs"]) == 2 and all(r["returncode"] == 0 and r["wall_s"] > 0 for r in costs["runs"])
    assert all(0 < r["worker_start_s"] < r["wall_s"] for r in costs["runs"])  # each a worker's first run
    assert max(r["sharing"] for r in costs["runs"]) > 1  # two ran at once
    # Again: everything is complete, nothing is trained.
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 0 and "2 of 2 records complete, 0 to train" in again.stdout
    assert "not written" in again.stdout and tarfile.is_tarfile(pack)  # the first pack is kept
    assert sorted(p.parent for p in runs.glob("*/*/record.json")) == made
    # The pack imports into a fresh runs dir, every record checked; its times, of custom-profile
    # runs on a CPU, say nothing of a paper run on a GPU and leave the cost table as it was.
    costs_file = tmp_path / "costs.json"
    costs_file.write_text(json.dumps(COSTS))
    added = paper.import_pack(pack, tmp_path / "imported", costs_file)
    assert sorted(p.name for p in added) == sorted(p.name for p in made)
    merged = json.loads(costs_file.read_text())
    assert merged["seconds"] == COSTS["seconds"] and merged["folded"] == []
    assert paper.import_pack(pack, tmp_path / "imported", costs_file) == []  # kept, not overwritten


def _paper_cmd(runs, *argv) -> list[str]:
    cmd = [sys.executable, "-m", "mcr2.paper", "--budget", "600", "--device", "cpu", "--runs-dir", str(runs),
           "--seeds", "0", *map(str, argv)]
    for item in TINY:
        cmd += ["--set", item]
    return cmd


@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data")
def test_one_worker_trains_runs_in_turn_and_each_as_it_would_alone(tmp_path, monkeypatch):
    """One job: one worker process takes both runs (its start paid once), and the second run's
    record, trained after the first in that process, equals the same run trained on its own."""
    from mcr2 import engine

    monkeypatch.setenv("MCR2_DATA", str(DATA))
    runs, pack = tmp_path / "runs", tmp_path / "records.tar"
    out = subprocess.run(_paper_cmd(runs, "--jobs", 1, "--pack", pack, "--only", "seg_mnist_ce", "cls_mnist_ce"),
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "2 of 2 runs complete" in out.stdout
    assert out.stdout.count("-- worker seconds:") == 2 and out.stdout.count("paid by its first run") == 1
    assert "+10 s for a new worker" in out.stdout  # the first run's plan counts the worker's start
    with tarfile.open(pack) as tar:
        rows = {r["name"]: r for r in json.load(tar.extractfile("costs.json"))["runs"]}
    assert rows["cls_mnist_ce"]["worker_start_s"] > 0 and rows["seg_mnist_ce"]["worker_start_s"] == 0  # Figure 1 first
    second = experiment("seg_mnist_ce", "paper", 0, **_overrides())
    in_worker = find_record(second, runs)
    alone = engine.run(second, tmp_path / "alone", device="cpu", progress="off")
    for field in ("loss", "R", "Rc", "delta_r"):
        assert in_worker.steps[field].tolist() == alone.steps[field].tolist(), field
    assert in_worker.record["summary"] == alone.record["summary"]


@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data")
def test_one_worker_with_two_streams_trains_two_runs_at_once_each_as_alone(tmp_path, monkeypatch):
    """--streams 2: one worker process trains both runs at once on two threads (CUDA streams on a
    GPU); each record equals the same run trained on its own."""
    from mcr2 import engine

    monkeypatch.setenv("MCR2_DATA", str(DATA))
    runs, pack = tmp_path / "runs", tmp_path / "records.tar"
    cmd = _paper_cmd(runs, "--jobs", 1, "--streams", 2, "--pack", pack, "--only", "seg_mnist_ce", "cls_mnist_ce")
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "2 of 2 runs complete" in out.stdout and "with 1 job of 2 streams" in out.stdout
    assert out.stdout.count("paid by its first run") == 1  # one worker for both
    with tarfile.open(pack) as tar:
        rows = json.load(tar.extractfile("costs.json"))["runs"]
    assert all(r["sharing"] > 1 for r in rows)  # they ran at once
    for name in ("seg_mnist_ce", "cls_mnist_ce"):
        exp = experiment(name, "paper", 0, **_overrides())
        together, alone = find_record(exp, runs), engine.run(exp, tmp_path / "alone", device="cpu", progress="off")
        for field in ("loss", "R", "Rc", "delta_r"):
            assert together.steps[field].tolist() == alone.steps[field].tolist(), (name, field)


@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data")
def test_a_failed_run_ends_its_worker_and_the_next_run_gets_a_fresh_one(tmp_path, monkeypatch):
    monkeypatch.setenv("MCR2_DATA", str(tmp_path / "no-data"))  # every run fails to load its data
    runs, pack = tmp_path / "runs", tmp_path / "records.tar"
    out = subprocess.run(_paper_cmd(runs, "--jobs", 1, "--pack", pack, "--only", "seg_mnist_ce", "cls_mnist_ce"),
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 1 and "0 of 2 runs complete" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("FAILED") == 2 and "paid by its first run" not in out.stdout  # two workers
    with tarfile.open(pack) as tar:  # what was tried comes back, though no record does
        rows = json.load(tar.extractfile("costs.json"))["runs"]
        assert sorted(tar.getnames()) == ["costs.json", "manifest.json"]
    assert [r["returncode"] for r in rows] == [1, 1]
    assert all(find_record(experiment(n, "paper", 0, **_overrides()), runs) is None for n in ("seg_mnist_ce", "cls_mnist_ce"))


def test_pack_refuses_unsafe_members(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        f = tmp_path / "x"
        f.write_text("x")
        tar.add(f, arcname="../escape")
    with pytest.raises(PackError, match="evil.tar, member ../escape: not a record's file"):
        paper.import_pack(evil, tmp_path / "runs", tmp_path / "c.json")
    assert not (tmp_path.parent / "escape").exists() and not (tmp_path / "runs").exists() or \
        not any((tmp_path / "runs").iterdir())


def test_pack_over_the_limit_is_an_error_not_a_silent_loss(tmp_path, monkeypatch):
    monkeypatch.setattr(packs, "PACK_LIMIT_BYTES", 10)
    (tmp_path / "runs" / "a" / "seed0-x").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "seed0-x" / "record.json").write_text("{}" * 100)
    with pytest.raises(PackError, match="MiB"):
        paper.pack_records([tmp_path / "runs" / "a" / "seed0-x"], tmp_path / "runs", tmp_path / "p.tar", [])
    assert not (tmp_path / "p.tar").exists() and list(tmp_path.iterdir()) == [tmp_path / "runs"]


def test_committed_paper_records_load_for_their_configs():
    found = 0
    for rec_json in (ROOT / "results" / "paper").glob("*/*/record.json"):
        meta = json.loads(rec_json.read_text())
        rec = find_record(experiment(meta["name"], "paper", meta["seed"]), ROOT / "results" / "paper")
        assert rec is not None and rec.path == rec_json.parent == record_dir(rec.config, ROOT / "results" / "paper")
        found += 1
    assert found >= 5


def test_cost_table_covers_every_experiment_of_the_priority_list():
    costs = cost_table.load_costs()
    for _, members in paper.PRIORITY:
        for name in members:
            assert name in costs["seconds"], name


@pytest.mark.skipif(not (ROOT.parent / "shared" / "gpu" / "unpack-data.sh").exists(), reason="needs ../shared/gpu")
def test_gpu_window_scripts_prepare_what_travels(tmp_path):
    assert subprocess.run(["bash", "-n", str(ROOT / "tools" / "gpu_window.sh")]).returncode == 0
    dest = tmp_path / "travel"
    out = subprocess.run(["bash", str(ROOT / "tools" / "gpu_prepare.sh"), "--classification-only", str(dest)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "of 67.1 MB" in out.stdout
    names = {p.name for p in dest.iterdir()}
    assert {"unpack-data.sh", "source.tar", "source.commit", "usps.bz2"} <= names
    assert not any(n.startswith("cifar") for n in names)  # classification only
    with tarfile.open(dest / "source.tar") as tar:
        members = tar.getnames()
    assert "mcr2/paper.py" in members and not any(m.startswith("results/") for m in members)
    # pytest travels for the window's graphs check, and needs nothing of this environment's site-packages.
    lib = tmp_path / "pylib"
    with tarfile.open(dest / "pytest.tar.xz") as tar:
        tar.extractall(lib)
    (tmp_path / "test_x.py").write_text("def test_x():\n    assert True\n")
    alone = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(lib)!r}); import pytest; "
                            f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', {str(tmp_path / 'test_x.py')!r}]))"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert alone.returncode == 0 and "1 passed" in alone.stdout, alone.stdout + alone.stderr


@pytest.mark.skipif(not (ROOT.parent / "shared" / "gpu" / "unpack-data.sh").exists(), reason="needs ../shared/gpu")
def test_gpu_window_rehearsed_on_the_cpu_returns_an_importable_pack(tmp_path):
    """tools/gpu_window.sh start to finish, as on a GPU machine but on this CPU with a tiny run:
    the data rebuilt from what travels, the committed code from source.tar, the graphs check, the
    runner on a worker, and the pack that comes back, which imports here."""
    travel, out, work = tmp_path / "travel", tmp_path / "out", tmp_path / "work"
    prep = subprocess.run(["bash", str(ROOT / "tools" / "gpu_prepare.sh"), "--classification-only", str(travel)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert prep.returncode == 0, prep.stderr
    env = {**os.environ, "MCR2_WINDOW_TMP": str(work), "MCR2_WINDOW_BENCH": "0",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # python3: this environment's
    cmd = ["bash", str(ROOT / "tools" / "gpu_window.sh"), str(travel), str(out), "300", "1",
           "--only", "cls_mnist_ce", "--seeds", "0", "--device", "cpu"]
    for item in TINY:
        cmd += ["--set", item]
    window = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    log = (out / "log.txt").read_text()
    assert window.returncode == 0, log[-4000:] + window.stderr[-2000:]
    for stage in ("== data at", "== graphs_check at", "== paper (budget", "== done at"):
        assert stage in log, stage
    assert "!! CUDA graphs" not in log and "1 of 1 runs complete" in log
    assert "code: commit " + (travel / "source.commit").read_text().strip() in log
    # The committed records went along (the plan saw them) and the new one came back packed.
    assert any((work / "mcr2-runs" / "paper").glob("*/*/record.json"))
    added = paper.import_pack(out / "records.tar.xz", tmp_path / "imported", tmp_path / "costs.json")
    assert [p.parent.name for p in added] == ["cls_mnist_ce"]
    rec = find_record(experiment("cls_mnist_ce", "paper", 0, **_overrides()), tmp_path / "imported")
    assert rec is not None and rec.record["provenance"]["git_commit"] == (travel / "source.commit").read_text().strip()


def test_backgrounds_needed_names_what_the_missing_runs_load(tmp_path):
    """What a GPU window must carry: CIFAR-100 only while a background experiment is missing."""
    both = paper.plan_runs([0], tmp_path, COSTS, names=["seg_bg_ce", "cls_mnist_ce"])
    assert paper.backgrounds_needed(both) == ["cifar100"]
    plain = paper.plan_runs([0], tmp_path, COSTS, names=["seg_mnist_ce", "cls_mnist_ce"])
    assert paper.backgrounds_needed(plain) == []
    for p in both:
        p.done = p.name == "seg_bg_ce"  # its record exists: nothing left that needs the pictures
    assert paper.backgrounds_needed(both) == []
    out = subprocess.run([sys.executable, "-m", "mcr2.paper", "--backgrounds-needed", "--runs-dir", str(tmp_path),
                          "--only", "seg_bg_mcr2", "cls_mnist_ce"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.split() == ["cifar100"], out.stderr


def test_eager_times_are_scaled_for_graphed_steps_until_a_graphed_run_replaces_them(tmp_path):
    """Estimates follow the step the runs will take: an eager-measured time is scaled by the
    measured graph speed-up of its model and loss; the first graphed measurement replaces the
    eager ones, and a later eager one does not move it."""
    costs = json.loads(json.dumps(COSTS))
    costs["graph_speedup"] = {"resnet18/ce": 2.0}
    eager, _ = cost_table.estimate("cls_mnist_ce", 1, costs, graphs=False)
    graphed, why = cost_table.estimate("cls_mnist_ce", 1, costs, graphs=True)
    assert eager == 160 and "CUDA graphs" in why
    assert graphed == pytest.approx(160 * ((1 - cost_table.TRAIN_SHARE) + cost_table.TRAIN_SHARE / 2.0))
    assert cost_table.estimate("seg_bg_ce", 1, costs, graphs=True)[0] == 50  # no speed-up measured: unchanged
    path = tmp_path / "costs.json"
    path.write_text(json.dumps(costs))
    row = {"name": "cls_mnist_ce", "returncode": 0, "sharing": 1.0, "device": "test", "date": "d", "profile": "paper",
           "device_type": "cuda"}
    merged = cost_table.merge_costs([{**row, "wall_s": 90.0, "cuda_graphs": True, "record": "r1"}], path)
    assert merged["seconds"]["cls_mnist_ce"]["1"] == 90.0 and merged["graphed"]["cls_mnist_ce"]["1"]
    assert cost_table.estimate("cls_mnist_ce", 1, merged, graphs=True)[0] == 90.0  # measured graphed: as is
    merged = cost_table.merge_costs([{**row, "wall_s": 170.0, "cuda_graphs": False, "record": "r2"}], path)
    assert merged["seconds"]["cls_mnist_ce"]["1"] == 90.0  # an eager time leaves the graphed estimate
    merged = cost_table.merge_costs([{**row, "wall_s": 100.0, "cuda_graphs": True, "record": "r3"}], path)
    assert merged["seconds"]["cls_mnist_ce"]["1"] == 95.0 and merged["runs"]["cls_mnist_ce"]["1"] == 2


def test_profile_table_and_totals_follow_the_plan(tmp_path):
    """Chapter 08's view of the paper profile: per experiment the seeds recorded and missing, the
    estimate per run; totals are the plan's sums (all missing in an empty runs dir)."""
    table = paper.profile_table(tmp_path, seeds=[0, 1], costs=COSTS)
    plan = paper.plan_runs([0, 1], tmp_path, COSTS)
    assert list(table["experiment"]) == list(dict.fromkeys(p.name for p in plan))
    assert (table["recorded"] == "–").all() and (table["missing"] == "0, 1").all()
    row = table.set_index("experiment").loc["seg_bg_ce"]
    assert row["per run (s)"] == f"{cost_table.estimate('seg_bg_ce', 1, COSTS)[0]:.0f}"
    totals = paper.profile_seconds(tmp_path, seeds=[0, 1], costs=COSTS)
    assert totals["runs"] == totals["missing"] == len(plan)
    assert totals["seconds"] == pytest.approx(sum(p.seconds for p in plan)) == totals["missing_seconds"]


def test_run_threads_print_whole_lines_so_reports_stay_findable():
    """A worker with several streams: lines printed by its run threads at once never mix, so each
    report starts a line of its own (print writes a text and its newline separately)."""
    import io
    import threading

    from mcr2.workers import FINISHED, _WholeLines

    out = io.StringIO()
    shared = _WholeLines(out)

    def chatter(tag):
        for i in range(500):
            print(f"[{tag}] epoch {i}", file=shared)
            if i % 100 == 0:
                print(FINISHED + json.dumps({"tag": tag, "i": i}), file=shared)

    threads = [threading.Thread(target=chatter, args=(t,)) for t in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 * 505
    reports = [json.loads(line[len(FINISHED):]) for line in lines if line.startswith(FINISHED)]
    assert len(reports) == 20 and all(FINISHED not in line[1:] for line in lines)
    assert all(line.startswith(FINISHED) or line.split("] epoch ")[1].isdigit() for line in lines)


# ------------------------------------------------------------------ the runner's faults (issue list 5)
def test_runner_refuses_before_any_run(tmp_path):
    """A no-op --set keeps the paper profile and its keys, so a CPU still refuses; --jobs has a
    bound; a seed or name given twice, an unknown name and a bad --pack path are refused before the
    plan, let alone the first run."""
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit, match="no CUDA device here: 1 runs would train at the paper profile"):
        _main("--budget", 60, "--device", "cpu", "--runs-dir", runs, "--only", "cls_mnist_ce", "--seeds", 0,
              "--set", "optim.epochs=100")
    with pytest.raises(SystemExit, match=r"--jobs × --streams ≤ 16"):
        _main("--jobs", 17, "--dry-run", "--runs-dir", runs)
    with pytest.raises(SystemExit, match=r"--jobs × --streams ≤ 16"):
        _main("--jobs", 4, "--streams", 5, "--dry-run", "--runs-dir", runs)
    with pytest.raises(ConfigError, match="--seeds names 0 more than once"):
        _main("--seeds", 0, 1, 0, "--dry-run", "--runs-dir", runs)
    with pytest.raises(ConfigError, match="--only names seg_bg_ce more than once"):
        _main("--only", "seg_bg_ce", "seg_bg_ce", "--dry-run", "--runs-dir", runs)
    with pytest.raises(ConfigError, match="--only seg_nope: no such experiment"):
        _main("--only", "seg_nope", "--dry-run", "--runs-dir", runs)
    (tmp_path / "file").write_text("")
    for bad, message in ((tmp_path / "file" / "records.tar.xz", "cannot be written"),
                         (tmp_path / "records.zip", "a .tar.xz")):
        with pytest.raises(PackError, match=message):
            _main("--budget", 60, "--device", "cpu", "--runs-dir", runs, "--pack", bad, *sum((["--set", t] for t in TINY), []))
    assert not runs.exists()


def test_import_pack_with_dry_run_checks_and_writes_nothing(tmp_path, capsys):
    made = tmp_path / "made"
    pack = tmp_path / "records.tar.xz"
    packs.pack_records([fake_record(made)], made, pack, [{**ROW, "name": "cls_mnist_ce", "seed": 0}])
    assert _main("--import-pack", pack, "--dry-run", "--runs-dir", tmp_path / "runs") == 0
    assert "would import" in capsys.readouterr().out and not (tmp_path / "runs").exists()


def test_an_existing_pack_keeps_its_records_or_is_refused(tmp_path):
    runs, pack = tmp_path / "runs", tmp_path / "records.tar"
    path = fake_record(runs)
    packs.pack_records([path], runs, pack, [{**ROW, "name": "cls_mnist_ce", "seed": 0}])
    paths, rows = paper.carried_pack(pack, runs)
    assert paths == [path] and rows[0]["name"] == "cls_mnist_ce"
    with pytest.raises(PackError, match=r"exists and holds cls_mnist_ce/seed0-\w+, which is not in .*Import it"):
        paper.carried_pack(pack, tmp_path / "elsewhere")
    pack.write_bytes(b"damaged")
    with pytest.raises(PackError, match="move it aside, or name another file"):
        paper.carried_pack(pack, runs)
    assert paper.carried_pack(tmp_path / "none.tar", runs) == ([], [])


class _KilledAfterWriting:
    """A worker that writes its run's complete record and is killed before it reports it."""

    def __init__(self, events, streams=1, device="auto", **launch):
        self.events, self.streams, self.device, self.busy, self.broken = events, streams, device, 0, False
        self.proc = type("P", (), {"pid": 0})()

    def submit(self, spec):
        fake_record(Path(spec["runs_dir"]), spec["name"], spec["seed"], **spec["overrides"])
        self.events.put((self, None))
        return True

    def returncode(self):
        return -9

    def close(self):
        return 0

    def stop(self):
        pass


def test_a_record_written_but_not_reported_goes_into_the_pack(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(paper, "Worker", _KilledAfterWriting)
    runs, pack = tmp_path / "runs", tmp_path / "records.tar"
    plan = paper.plan_runs([0], runs, COSTS, names=["cls_mnist_ce"])
    done = paper.train_within(plan, budget=1000, jobs=1, runs_dir=runs, costs=COSTS, pack=pack)
    assert [f.path for f in done] == [record_dir(experiment("cls_mnist_ce", "paper", 0), runs)]
    assert "after writing the complete record" in capsys.readouterr().out
    with tarfile.open(pack) as tar:
        rows = json.load(tar.extractfile("costs.json"))["runs"]
        assert any(n.endswith("/record.json") for n in tar.getnames())
    assert rows[0]["returncode"] == -9 and rows[0]["record"].startswith("cls_mnist_ce/seed0-")
    assert cost_table.foldable({**rows[0], "profile": "paper", "device_type": "cuda"}) is not None  # no report, no cost


@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data")
def test_sigterm_of_the_runner_stops_its_workers(tmp_path):
    import re
    import signal
    import time

    env = {**os.environ, "MCR2_DATA": str(DATA)}
    cmd = [c if c != "optim.epochs=2" else "optim.epochs=2000" for c in _paper_cmd(tmp_path / "runs", "--only", "cls_mnist_ce")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)
    pid = None
    for line in proc.stdout:
        found = re.search(r"worker pid (\d+)", line)
        if found:
            pid = int(found.group(1))
            break
    assert pid, "the runner started no worker"
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode != 0 and "Traceback" not in out, out[-3000:]

    def alive(p):
        try:
            state = Path(f"/proc/{p}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            return False
        return state != "Z"

    deadline = time.monotonic() + 15
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(pid), f"worker {pid} outlived the runner"
