"""The project's environments agree: `make venv` (pyproject.toml + requirements-pins.txt) and
`conda env create -f environment.yml` install the same pins and the same extras."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    """requirements-pins.txt as {name: version}; every line must be an exact pin."""
    pins = {}
    for line in (ROOT / "requirements-pins.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"requirements-pins.txt: {line!r} is not an exact pin"
        pins[req.name.lower()] = spec.version
    return pins


def _conda() -> tuple[list, list[str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    return deps, pip


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_torch_pins_are_the_ones_the_machines_hold():
    pins = _pins()
    assert pins.get("torch") == "2.14.1"
    assert pins.get("torchvision") == "0.29.1"


def test_environment_yml_installs_the_same_pins_as_make_venv():
    _, pip = _conda()
    conda_pins = {}
    for line in pip:
        if line.startswith("-"):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        conda_pins[req.name.lower()] = spec.version
    assert conda_pins == _pins()


def test_both_install_the_package_with_the_book_and_test_extras():
    _, pip = _conda()
    editable = [line for line in pip if line.startswith("-e")]
    assert [re.sub(r"\s+", " ", e) for e in editable] == ["-e .[book,test]"]
    extras = _pyproject()["project"]["optional-dependencies"]
    assert {"book", "test"} <= set(extras)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install .*-r requirements-pins\.txt .*-e '\.\[book,test\]'", makefile), (
        "the Makefile's venv target should install requirements-pins.txt and -e .[book,test]"
    )


def test_pins_satisfy_the_library_ranges_and_python():
    project = _pyproject()["project"]
    ranges = {Requirement(r).name.lower(): Requirement(r).specifier for r in project["dependencies"]}
    for name, version in _pins().items():
        if name in ranges:
            assert Version(version) in ranges[name], f"{name}=={version} outside pyproject's {ranges[name]}"
    deps, _ = _conda()
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    conda_python = python.split("=", 1)[1]
    assert Version(conda_python) in SpecifierSet(project["requires-python"])


def test_the_environment_has_a_notebook_front_end():
    """`make lab` / `jupyter lab`: JupyterLab and jupytext come with the book extra, which both
    `make venv` and environment.yml install (checked above)."""
    book = {Requirement(r).name.lower() for r in _pyproject()["project"]["optional-dependencies"]["book"]}
    assert {"jupyterlab", "jupytext", "papermill", "jupyter-book"} <= book
    assert "formats" in (ROOT / "jupytext.toml").read_text()  # .py chapters paired as notebooks


def test_the_library_asks_for_scipy():
    deps = {Requirement(r).name.lower(): Requirement(r).specifier for r in _pyproject()["project"]["dependencies"]}
    assert "scipy" in deps and Version("1.10") in deps["scipy"]


def test_make_targets_of_the_newcomer_path():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lab: .*\n\t\$\(BIN\)/python tools/book\.py lab", makefile, re.M)
    assert re.search(r"^chapter: .*\n(\t.*\n)*\t\$\(BIN\)/python tools/book\.py execute \$\(NAME\) --html", makefile, re.M)
    readme = (ROOT / "README.md").read_text()
    for command in (".venv/bin/python -m mcr2 list", "make lab", "make chapter NAME=", "MCR2_DATA="):
        assert command in readme, f"README does not show {command!r}"
    assert "\npython -m mcr2" not in readme, "README: run the CLI with the venv's python (.venv/bin/python)"


def _run_script(*args):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, *args], cwd=root, capture_output=True, text=True, timeout=600)


def test_benchmarks_run_on_a_tiny_input():
    """The benchmark scripts still run (their numbers are for people, not for assertions)."""
    for args in (["benchmarks/bench_loss.py", "--pixels", "3000", "--repeats", "1"],
                 ["benchmarks/bench_train.py", "--steps", "1", "--batch-size", "4"],
                 ["benchmarks/bench_resolution.py", "--images", "4", "--dim", "16", "--width", "4", "--repeats", "1"],
                 ["benchmarks/profile_loss.py", "--pixels", "3000", "--repeats", "1", "--rows", "3"],
                 ["benchmarks/profile_step.py", "--steps", "1", "--rows", "3"]):
        out = _run_script(*args)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "device:" in out.stdout
