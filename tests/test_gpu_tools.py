"""The GPU window's chapter path, rehearsed on this CPU: the notebook stack that gpu_prepare.sh packs
executes a chapter with only the GPU machine's packages beside it, a chapter executed by papermill
trains its records in the kernel and they say so, tools/book.py picks the chapter whose missing
records fit, and the records a chapter made come back in a pack that imports."""
from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from _book_tool import book as tool  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PACKED = ROOT.parent / "shared" / "gpu"
TINY = {"data.train_limit": 40, "data.val_limit": 20, "optim.epochs": 2, "optim.batch_size": 20,
        "model.width": 8, "model.feature_dim": 16, "eval.feature_samples": 300, "eval.feature_keep": 50}
needs_data = pytest.mark.skipif(not DATA.exists() and "MCR2_DATA" not in os.environ, reason="needs ../shared/data")


@pytest.fixture(autouse=True)
def data_root(monkeypatch):
    if "MCR2_DATA" not in os.environ:
        monkeypatch.setenv("MCR2_DATA", str(DATA))


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def gpu_like_python(tmp: Path) -> Path:
    """A Python whose only packages are the GPU machine's (tools/gpu_site.txt and what they require,
    as installed here): a venv without site-packages of its own, whose .pth names a folder of links
    to those installs. Returns its bin folder."""
    listed = [line.strip() for line in (ROOT / "tools" / "gpu_site.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    dists, todo = {}, list(listed)
    while todo:
        name = _norm(todo.pop())
        if name in dists:
            continue
        try:
            dists[name] = md.distribution(name)
        except md.PackageNotFoundError:
            assert name not in map(_norm, listed), f"{name} (tools/gpu_site.txt) is not installed here to rehearse with"
            dists[name] = None  # a requirement of another platform (e.g. CUDA libraries on this CPU machine)
            continue
        for req in map(Requirement, dists[name].requires or []):
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    site = tmp / "gpu-site"
    site.mkdir()
    for dist in filter(None, dists.values()):
        for top in {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            if dist.locate_file(top).exists() and not (site / top).exists():
                (site / top).symlink_to(dist.locate_file(top))
    venv = tmp / "gpu-python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "gpu-site.pth").write_text(f"{site}\n")
    return venv / "bin"


def _clean_env(**more) -> dict:
    """This environment without what points Python at this checkout or marks a launcher."""
    drop = ("PYTHONPATH", "MCR2_LAUNCHER", "MCR2_EXECUTOR", "MCR2_JOB_ID", "MCR2_RUNS", "VIRTUAL_ENV")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **more}


@pytest.mark.skipif(not (PACKED / "unpack-data.sh").exists(), reason="needs ../shared/gpu")
def test_a_window_executes_a_chapter_with_the_packed_notebook_stack_and_the_gpu_machines_packages_only(tmp_path):
    """tools/gpu_window.sh on a Python holding only the GPU machine's packages: the notebook stack
    that gpu_prepare.sh downloaded from PyPI and packed for this Python executes a chapter with
    papermill (debugpy and jedi left behind), and the executed notebook comes back."""
    bin_dir = gpu_like_python(tmp_path)
    python3 = str(bin_dir / "python3")
    for missing in ("papermill", "jupytext", "ipykernel", "myst_nb", "debugpy", "jedi", "mcr2"):
        probe = subprocess.run([python3, "-c", f"import {missing}"], capture_output=True, env=_clean_env(), cwd=tmp_path)
        assert probe.returncode != 0, f"{missing} is importable in the rehearsal's Python: it is not the GPU machine's"
    travel, out, work = tmp_path / "travel", tmp_path / "out", tmp_path / "work"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"  # the wheels of the Python that rehearses
    prep = subprocess.run(["bash", str(ROOT / "tools" / "gpu_prepare.sh"), "--classification-only", str(travel)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "MCR2_GPU_PYTHON": version,
                               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert prep.returncode == 0, "gpu_prepare.sh failed (it downloads the notebook wheels from PyPI):\n" + prep.stderr[-3000:]
    assert (travel / "notebook.tar.xz").exists() and "notebook stack for Python" in prep.stdout
    env = _clean_env(MCR2_WINDOW_TMP=str(work), MCR2_WINDOW_BENCH="0", MCR2_WINDOW_CHAPTER="04_segmentation -p seeds=[0]",
                     PATH=f"{bin_dir}:{os.environ['PATH']}", JUPYTER_DATA_DIR=str(tmp_path / "jupyter"))
    cmd = ["bash", str(ROOT / "tools" / "gpu_window.sh"), str(travel), str(out), "400", "1",
           "--only", "cls_mnist_ce", "--device", "cpu", "--dry-run"]  # the runner plans only: test_paper.py trains
    window = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    log = (out / "log.txt").read_text()
    assert window.returncode == 0, log[-5000:] + window.stderr[-2000:]
    for line in ("notebook: carried", "pytest: carried", "== chapter at", "[book] executing 04_segmentation (profile=paper)",
                 "chapter 04_segmentation: exit status 0", "-- chapter records: 0 new", "== paper (budget"):
        assert line in log, line
    assert "!! CUDA graphs" not in log
    nb = json.loads((out / "04_segmentation.ipynb").read_text())
    assert tool.notebook_errors(out / "04_segmentation.ipynb") == []
    text = json.dumps(nb)
    assert "profile paper" in text and "application/papermill.record/" in text  # paper records, glued by myst_nb


def test_the_packing_fails_clearly_when_pypi_cannot_be_reached(tmp_path):
    """No silent window without papermill: a prepare that cannot download the wheels stops, saying so."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", MCR2_WHEEL_CACHE=str(tmp_path / "cache"))
    prep = subprocess.run(["bash", str(ROOT / "tools" / "gpu_prepare.sh"), "--classification-only", str(tmp_path / "travel")],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert prep.returncode == 1
    assert "could not download the notebook wheels" in prep.stderr and "--no-notebook" in prep.stderr
    assert not (tmp_path / "travel" / "notebook.tar.xz").exists()


@needs_data
def test_a_chapter_executed_by_papermill_trains_its_missing_records_in_the_kernel(tmp_path, monkeypatch):
    """What `tools/book.py execute NAME` does on a GPU kernel, at a tiny scale: the chapter's run is
    trained inside the kernel, and its record says papermill launched it, with its phases' seconds."""
    from mcr2.experiments import experiment
    from mcr2.records import find_record

    book_dir = tmp_path / "book"
    book_dir.mkdir()
    (book_dir / "tiny.py").write_text(
        "# %% tags=[\"parameters\"]\nprofile = \"smoke\"\nprogress = \"off\"\nruns_dir = None\n\n"
        "# %%\nimport matplotlib.pyplot as plt\nfrom mcr2.engine import run\nfrom mcr2.experiments import experiment\n"
        f"rec = run(experiment('seg_mnist_mcr2', profile, 0, **{TINY!r}), runs_dir, progress=progress)\n"
        "plt.plot(rec.history['loss'])\nplt.show()\n")
    monkeypatch.setattr(tool, "BOOK", book_dir)
    monkeypatch.delenv("MCR2_LAUNCHER", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the kernel imports this checkout's mcr2
    runs = tmp_path / "runs"
    result = tool.execute("tiny", "smoke", {"runs_dir": str(runs)}, out_dir=tmp_path / "out")
    assert result["figures"] == 1 and "MCR2_LAUNCHER" not in os.environ  # set for the kernel only
    rec = find_record(experiment("seg_mnist_mcr2", "smoke", 0, **TINY), runs)
    assert rec is not None and rec.record["provenance"]["launcher"] == "papermill"
    assert set(rec.record["phase_seconds"]) == {"setup", "train_steps", "evaluation", "writing"}


def test_chapters_runs_are_read_from_their_sources():
    """The chapters whose records a window can plan: run_all over a named list; not those that train
    overridden variants or nothing."""
    from mcr2.experiments import CHAPTER_EXPERIMENTS, EXPERIMENTS

    assert tool.chapter_experiments("03_classification") == CHAPTER_EXPERIMENTS["classification"]
    assert tool.chapter_experiments("04_segmentation") == CHAPTER_EXPERIMENTS["segmentation"]
    assert tool.chapter_experiments("07_feature_space") == ["seg_bg_mcr2", "seg_bg_mcr2_masked"]
    assert sorted(tool.chapter_experiments("09_claims")) == sorted(EXPERIMENTS)
    for name in ("01_rate_reduction", "08_scaling", "10_faithfulness"):
        assert tool.chapter_experiments(name) is None, name
    assert tool._data_needs("04_segmentation") == {"domains": ("mnist",), "backgrounds": ()}
    assert tool._data_needs("06_masking")["backgrounds"] == ("cifar100",)


def test_pick_names_the_largest_chapter_whose_missing_records_fit(tmp_path, monkeypatch, capsys):
    """Over an empty runs root every record is missing: the budget decides which chapter fits."""
    from mcr2.costs import estimate, load_costs
    from mcr2.experiments import PROFILE_SEEDS

    monkeypatch.setenv("MCR2_RUNS", str(tmp_path))
    costs, seeds = load_costs(), len(PROFILE_SEEDS["paper"])
    need = {n: seeds * sum(estimate(e, 1, costs)[0] for e in tool.chapter_experiments(n)) + tool.CHAPTER_OVERHEAD_S
            for n in ("04_segmentation", "06_masking")}
    assert need["04_segmentation"] < need["06_masking"]
    name, lines = tool.pick_chapter(need["04_segmentation"] + 1)
    assert name == "04_segmentation" and any(line.startswith("06_masking") and "over the" in line for line in lines)
    assert tool.pick_chapter(need["04_segmentation"] - 1)[0] is None
    tool.main(["pick", "--budget", str(need["04_segmentation"] + 1)])
    out = capsys.readouterr()
    assert out.out.strip() == "04_segmentation" and "[book] pick: 04_segmentation: 6 missing" in out.err


@needs_data
def test_records_a_chapter_trained_come_back_in_a_pack_that_imports(tmp_path):
    """tools/gpu_records.py: records complete before the chapter stay out; the new one is packed
    with its measured seconds, and `mcr2 paper --import-pack` takes it and its cost."""
    sys.path.insert(0, str(ROOT / "tools"))
    import gpu_records

    from mcr2 import engine, paper
    from mcr2.experiments import experiment

    runs = tmp_path / "runs"
    old = engine.run(experiment("seg_mnist_ce", "paper", 0, **TINY), runs, progress="off")
    before = gpu_records.complete_records(runs)
    assert before == [f"seg_mnist_ce/{old.path.name}"]
    new = engine.run(experiment("seg_mnist_mcr2", "paper", 0, **TINY), runs, progress="off")
    assert gpu_records.main(["list", str(runs)]) == 0
    (tmp_path / "before.txt").write_text("\n".join(before))
    assert gpu_records.main(["pack", str(runs), str(tmp_path / "before.txt"), str(tmp_path / "c.tar.xz")]) == 0
    costs = tmp_path / "costs.json"
    shutil.copy(ROOT / "mcr2" / "paper_costs.json", costs)
    added = paper.import_pack(tmp_path / "c.tar.xz", tmp_path / "imported", costs)
    assert [p.name for p in added] == [new.path.name]
    row = gpu_records.cost_row(new.record)
    assert row["wall_s"] == pytest.approx(sum(new.record["phase_seconds"].values()), abs=0.1)
    assert json.loads(costs.read_text())["runs"]["seg_mnist_mcr2"]  # its time folded into the table
    assert gpu_records.pack_new(runs, before + [f"seg_mnist_mcr2/{new.path.name}"], tmp_path / "none.tar.xz") == []
    assert not (tmp_path / "none.tar.xz").exists()
