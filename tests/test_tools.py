"""tools/book.py's checks, without executing a chapter: a missing data root stops it before any
work, and an executed notebook holding an error output is never published."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
from _book_tool import book as tool  # noqa: E402


def notebook(path: Path, error: bool, tags=()) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1 / 0" if error else "1 + 1", metadata={"tags": list(tags)})
    if error:
        cell.outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                               traceback=["Traceback ...", "ZeroDivisionError: division by zero"])]
    else:
        cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=1)]
    nb.cells = [nbformat.v4.new_markdown_cell("# A page"), cell]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_error_outputs_are_found_and_name_the_chapter(tmp_path):
    """Fault: `build --no-execute` published a page showing a traceback, with exit code 0."""
    notebook(tmp_path / "01_good.ipynb", error=False)
    notebook(tmp_path / "02_bad.ipynb", error=True)
    assert tool.notebook_errors(tmp_path / "01_good.ipynb") == []
    assert tool.notebook_errors(tmp_path / "02_bad.ipynb") == ["cell 2: ZeroDivisionError: division by zero"]
    tool.check_executed(["01_good"], tmp_path)
    with pytest.raises(tool.BookError) as e:
        tool.check_executed(["01_good", "02_bad"], tmp_path)
    message = str(e.value.code)
    assert "02_bad: cell 2: ZeroDivisionError: division by zero" in message and "01_good" not in message
    assert "make chapter NAME=02_bad" in message


def test_a_cell_tagged_raises_exception_may_show_its_error(tmp_path):
    notebook(tmp_path / "x.ipynb", error=True, tags=["raises-exception"])
    assert tool.notebook_errors(tmp_path / "x.ipynb") == []


def test_unexecuted_chapters_are_named(tmp_path):
    with pytest.raises(tool.BookError, match=r"not executed yet: 03_missing .*make chapter"):
        tool.check_executed(["03_missing"], tmp_path)


def test_build_no_execute_refuses_a_notebook_with_an_error(tmp_path, monkeypatch):
    src = tmp_path / "src"
    notebook(src / "book" / "01_bad.ipynb", error=True)
    monkeypatch.setattr(tool, "SRC", src)
    monkeypatch.setattr(tool, "chapters", lambda: ["01_bad"])
    monkeypatch.setattr(tool, "stage", lambda: pytest.fail("staged a page holding an error"))
    with pytest.raises(tool.BookError, match="01_bad: cell 2: ZeroDivisionError") as e:
        tool.main(["build", "--no-execute"])
    assert e.value.code.startswith("[book] error:")  # exit status 1 with this one message


@pytest.mark.parametrize("command", [["build"], ["execute", "01_rate_reduction"]])
def test_a_missing_data_root_stops_before_any_chapter(command, tmp_path, monkeypatch, capsys):
    """Fault: `make book` without MCR2_DATA ran chapter 01, then failed inside 02 under a traceback."""
    monkeypatch.setenv("MCR2_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(tool, "execute", lambda *a, **k: pytest.fail("a chapter ran without data"))
    with pytest.raises(tool.BookError) as e:
        tool.main(command)
    message = str(e.value.code)
    assert "does not exist" in message and "MCR2_DATA" in message and "make book" in message
    monkeypatch.delenv("MCR2_DATA")
    monkeypatch.setattr(tool.Path, "cwd", lambda: tmp_path)
    if not (ROOT / "data" / "usps.bz2").exists():  # the project's default folder holds no data
        with pytest.raises(tool.BookError, match="MCR2_DATA is not set"):
            tool.main(command)


def test_profiles_default_to_auto(monkeypatch):
    monkeypatch.delenv("MCR2_PROFILE", raising=False)
    assert tool.default_profile() == "auto" and tool.PROFILES == ("auto", "smoke", "paper")
    monkeypatch.setenv("MCR2_PROFILE", "smoke")
    assert tool.default_profile() == "smoke"
    monkeypatch.setenv("MCR2_PROFILE", "huge")
    with pytest.raises(tool.BookError, match="MCR2_PROFILE='huge' is not a profile"):
        tool.default_profile()


def test_parameters_are_json_or_text():
    assert tool.parse_params(["seeds=[0, 1]", "name=abc"]) == {"seeds": [0, 1], "name": "abc"}
    with pytest.raises(tool.BookError, match="not key=value"):
        tool.parse_params(["seeds"])


def test_lab_opens_python_files_as_notebooks(tmp_path, monkeypatch):
    """`make lab`: the .py chapters open as notebooks, configured in this environment only."""
    calls = []
    monkeypatch.setattr(tool.sys, "prefix", str(tmp_path))
    monkeypatch.setattr(tool.shutil, "which", lambda name, path=None: f"/venv/bin/{name}")
    monkeypatch.setattr(tool.os, "execv", lambda exe, argv: calls.append(argv))
    monkeypatch.setattr(tool, "check_data", lambda: tmp_path)
    tool.main(["lab", "--no-browser"])
    (argv,) = calls
    assert argv[0] == "/venv/bin/jupyter-lab" and "--LabApp.default_url=/lab/tree/book" in argv
    assert "--no-browser" in argv
    settings = json.loads((tmp_path / "share/jupyter/lab/settings/overrides.json").read_text())
    assert settings["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]["python"] == "Jupytext Notebook"
