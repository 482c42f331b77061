"""tools/book.py's checks and page rules, on tiny notebooks: a missing data root stops it before any
work, an executed notebook holding an error output is never published, a page folds its code and
keeps the build log out, the status page lists the records each page read, and the HTML scan
finds every kind of build noise."""
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
    executed = tmp_path / "executed"
    notebook(executed / "01_bad.ipynb", error=True)
    monkeypatch.setattr(tool, "EXECUTED", executed)
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



# --------------------------------------------------------------------------- pages


def executed_chapter(tmp_path: Path, records=()) -> nbformat.NotebookNode:
    """A chapter as papermill leaves it: its parameters cell, papermill's, a training log, a table,
    a stray repr, a figure cell that hides its own input."""
    nb = nbformat.v4.new_notebook()
    out = nbformat.v4.new_output
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 03 Classification\n\nWhat it finds."),
        nbformat.v4.new_code_cell('profile = "auto"  # auto | smoke | paper\nseed = 0  # the first seed',
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('# Parameters\nprofile = "smoke"\nseed = 3\nprogress = "lines"\n',
                                  metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("runs = run_all(...)", outputs=[
            out("stream", name="stdout", text="[cls seed 0] epoch 1/4 loss 0.5\nchapter executed in 10.0 s\n"),
            out("stream", name="stderr", text="UserWarning: something\n"),
        ]),
        nbformat.v4.new_code_cell("table", outputs=[out("execute_result", execution_count=5, data={
            "text/html": "<table><tr><td>0.98</td></tr></table>", "text/plain": "0.98"})]),
        nbformat.v4.new_code_cell("ax.plot([1])", outputs=[out("execute_result", execution_count=6, data={
            "text/plain": "[<matplotlib.lines.Line2D at 0x7f00deadbeef>]"})]),
        nbformat.v4.new_code_cell("fig", metadata={"tags": ["remove-input"]}, outputs=[out("display_data", data={
            "image/png": "iVBORw0KGgo=", "text/plain": "<Figure size 700x300 with 1 Axes>"})]),
    ]
    nb.metadata[tool.META] = {"profile": "smoke", "parameters": {"seed": 3, "progress": "lines"}, "seconds": 12.3,
                              "executed": "2026-12-04 20:00 UTC", "records": list(records)}
    return nb


def test_a_page_folds_its_code_and_leaves_the_build_log_out(tmp_path):
    """Fault: every page showed papermill's parameters cell, training logs, the timing line and
    screens of code above the ledger."""
    nb = executed_chapter(tmp_path)
    page = tool.page_notebook(nb, "03_classification")
    assert len(nb.cells[3].outputs) == 2, "the executed notebook itself is not changed"
    tags = [c.metadata.get("tags", []) for c in page.cells]
    assert page.cells[1].cell_type == "markdown" and "Take this chapter home" in page.cells[1].source
    code = {c.source.splitlines()[0]: c for c in page.cells if c.cell_type == "code"}
    assert "remove-cell" in code['profile = "auto"  # auto | smoke | paper'].metadata.tags
    assert "remove-cell" in code["# Parameters"].metadata.tags
    assert "hide-input" in code["runs = run_all(...)"].metadata.tags and code["runs = run_all(...)"].outputs == []
    assert [list(o["data"]) for o in code["table"].outputs] == [["text/html", "text/plain"]]
    assert code["ax.plot([1])"].outputs == [], "a bare repr is not a result"
    assert code["fig"].metadata.tags == ["remove-input"] and len(code["fig"].outputs) == 1
    assert sum("hide-input" in t for t in tags) == 3

    home = page.cells[1].source
    assert "{download}`03_classification.py <take-home/03_classification.py>`" in home
    assert "{download}`03_classification.ipynb <take-home/03_classification.ipynb>`" in home
    assert ".venv/bin/python tools/book.py execute 03_classification --profile smoke -p seed='3'" in home
    assert "as this page ran them: `profile = 'smoke'`, `seed = 3`." in home and "progress" not in home.split("bash")[1].split("```")[0]
    nb.metadata[tool.META]["parameters"] = {"progress": "lines"}
    assert "make chapter NAME=03_classification PROFILE=smoke" in tool.page_notebook(nb, "03_classification").cells[1].source


def test_the_machine_folders_are_named(tmp_path, monkeypatch):
    data, runs = tmp_path / "data", tmp_path / "runs"
    monkeypatch.setenv("MCR2_DATA", str(data))
    monkeypatch.setenv("MCR2_RUNS", str(runs))
    text = f"data root={data} records {runs}/smoke/x and {ROOT}/results/paper/y in {ROOT}"
    assert tool.name_paths(text) == "data root=$MCR2_DATA records $MCR2_RUNS/smoke/x and results/paper/y in ."


def write_record(folder: Path, name: str, seed: int, device: str, commit: str, status="complete") -> Path:
    folder.mkdir(parents=True)
    record = {"status": status, "name": name, "profile": "paper", "seed": seed, "key": "abc", "config": {},
              "started": f"2026-11-2{seed}T10:00:00+0000",
              "provenance": {"git_commit": commit, "git_dirty": False, "device": {"type": "cuda", "name": device}}}
    (folder / "record.json").write_text(json.dumps(record))
    (folder / "history.csv").write_text("epoch,loss\n1,0.5\n")
    return folder


def test_execution_notes_the_records_a_chapter_read_and_logs_what_it_printed(tmp_path, monkeypatch, capsys):
    """A tiny chapter executed by papermill: the records it loaded (not those it only looked up) reach
    the notebook's metadata,
    what it printed reaches the build log, and the data root is named, not spelled out."""
    data = tmp_path / "data"
    monkeypatch.setenv("MCR2_DATA", str(data))
    monkeypatch.delenv("MCR2_RUNS", raising=False)
    seen = write_record(tmp_path / "runs" / "seg_bg_ce" / "seed1-abc", "seg_bg_ce", 1, "NVIDIA H100", "34eed0b3" * 5)
    write_record(tmp_path / "runs" / "seg_bg_ce" / "seed2-abc", "seg_bg_ce", 2, "NVIDIA H100", "0" * 40)  # planned, not rendered
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "tiny.py").write_text(
        "# %% [markdown]\n# # Tiny\n\n"
        "# %% tags=[\"parameters\"]\nprofile = \"auto\"  # the profile\nprogress = \"auto\"\n\n"
        f"# %%\nimport json, pathlib\nimport pandas as pd\nrecord = json.loads(pathlib.Path({str(seen)!r}, 'record.json').read_text())\n"
        f"plan = json.loads(pathlib.Path({str(seen.parent / 'seed2-abc')!r}, 'record.json').read_text())\n"
        f"history = pd.read_csv(pathlib.Path({str(seen)!r}, 'history.csv'))\n"
        f"print(\"epoch 1/4 data root={data}\")\n\n"
        "# %%\nfrom IPython.display import display\n"
        "display({'image/png': 'iVBORw0KGgo=', 'text/plain': 'figure'}, raw=True)\n"
    )
    monkeypatch.setattr(tool, "BOOK", tmp_path / "book")
    monkeypatch.setattr(tool, "LOGS", tmp_path / "logs")
    result = tool.execute("tiny", "smoke", out_dir=tmp_path / "executed")
    nb = nbformat.read(result["output"], as_version=4)
    assert not any(tool.BOOK_TAG in c.metadata.get("tags", []) for c in nb.cells), "the watching cells are removed"
    meta = nb.metadata[tool.META]
    assert meta["profile"] == "smoke" and meta["seconds"] > 0 and meta["parameters"] == {"progress": "lines"}
    (record,) = meta["records"]
    assert record == {"name": "seg_bg_ce", "profile": "paper", "seed": 1, "key": "abc", "device": "NVIDIA H100",
                      "commit": "34eed0b3", "started": "2026-11-21T10:00:00+0000"}
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "epoch 1/4 data root=$MCR2_DATA" in printed and str(data) not in printed
    assert "epoch 1/4 data root=$MCR2_DATA" in (tmp_path / "logs" / "tiny.log").read_text()
    assert "[tiny] cell" in capsys.readouterr().out


def test_the_status_page_lists_each_page_its_time_and_records(tmp_path, monkeypatch):
    records = [{"name": "seg_bg_ce", "profile": "paper", "seed": s, "key": "k", "device": "NVIDIA H100",
                "commit": "34eed0b3", "started": f"2026-11-2{s}T10:00:00+0000"} for s in (0, 1, 2)]
    records.append({"name": "cls_mnist_ce", "profile": "smoke", "seed": 0, "key": "k", "device": "x86_64",
                    "commit": "d8f8ca9a+dirty", "started": "2026-12-04T20:00:00+0000"})
    monkeypatch.setattr(tool, "EXECUTED", tmp_path)
    nbformat.write(executed_chapter(tmp_path, records), tmp_path / "06_masking.ipynb")
    nbformat.write(executed_chapter(tmp_path), tmp_path / "01_rate_reduction.ipynb")
    text = tool.status_tables(["01_rate_reduction", "06_masking"])
    rows = [line for line in text.splitlines() if line.startswith("| {doc}")]
    assert "Executed on profile `smoke` (2 pages), on 2026-12-04 20:00 UTC." in text
    assert rows[0] == "| {doc}`01_rate_reduction` | 12 s | — | — |"
    assert rows[1] == "| {doc}`06_masking` | 12 s | seg_bg_ce (3) | cls_mnist_ce (1) |"
    assert "| {doc}`06_masking` | seg_bg_ce | paper | 0, 1, 2 | NVIDIA H100 | 34eed0b3 | 2026-11-20 to 2026-11-22 |" in rows
    assert "| {doc}`06_masking` | cls_mnist_ce | smoke | 0 | x86_64 | d8f8ca9a+dirty | 2026-12-04 |" in rows


# --------------------------------------------------------------------------- the HTML scan


_CLEAN_PAGE = """<html><body><main>
<h1>Masking</h1><p>Masked MCR² reaches 0.96 on digit pixels.</p>
<div class="cell tag_hide-input docutils container"><details><div class="cell_input docutils container">
<pre>print(f"chapter executed in {time.perf_counter() - started:.1f} s")  # UserWarning: folded code is not read</pre>
</div></details><div class="cell_output docutils container"><img src="_images/x.png"/></div></div>
<p>See <a href="https://github.com/ryanchankh/mcr2">the original code</a>, records in results/paper/ and mcr2/data/root.py.</p>
</main></body></html>"""


@pytest.mark.parametrize("noise, what", [
    ('<div class="cell_output"><div class="output stream highlight-myst-ansi"><pre>[seg seed 0] epoch 3/6 loss</pre></div></div>',
     "printed output (a log)"),
    ('<div class="cell tag_injected-parameters"><pre># Parameters</pre></div>', "papermill's parameters cell"),
    ("<p>Traceback (most recent call last):</p>", "a traceback"),
    ("<p>/work/main/.venv/lib/python3.11/site-packages/x.py:3: FutureWarning: deprecated</p>", "a warning"),
    ("<p>&lt;Figure size 700x300 with 2 Axes&gt;</p>", "a raw Python repr"),
    ("<p>RunRecord('seg_bg_ce', seed=0)</p>", "a raw Python repr"),
    ("<p>chapter executed in 10.0 s</p>", "a timing log"),
    ("<p>data root=/home/alice/data</p>", "an absolute path"),
    (f'<p>records in {ROOT}/results/paper</p>', "an absolute path of this machine"),
])
def test_the_html_scan_finds_each_kind_of_build_noise(tmp_path, noise, what):
    (tmp_path / "clean.html").write_text(_CLEAN_PAGE)
    (tmp_path / "noisy.html").write_text(_CLEAN_PAGE.replace("</main>", noise + "</main>"))
    assert tool.scan_html(tmp_path, ["clean"]) == []
    found = tool.scan_html(tmp_path, ["noisy"])
    assert found and all(f.startswith("noisy: ") for f in found)
    assert any(f.startswith(f"noisy: {what}:") for f in found), found


def test_the_readme_verdict_block_is_rewritten_in_place(tmp_path, monkeypatch):
    """The README's verdict table is regenerated between its markers; the text around it stays."""
    assert tool.VERDICTS_BEGIN in (ROOT / "README.md").read_text() and tool.VERDICTS_END in (ROOT / "README.md").read_text()
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nBefore.\n\n{tool.VERDICTS_BEGIN}\n| old |\n{tool.VERDICTS_END}\n\nAfter.\n")
    monkeypatch.setattr(tool, "README", readme)
    monkeypatch.setattr(tool, "verdicts_table", lambda: f"{tool.VERDICTS_BEGIN}\n| new |\n{tool.VERDICTS_END}")
    tool.write_readme_verdicts()
    assert readme.read_text() == f"# Title\n\nBefore.\n\n{tool.VERDICTS_BEGIN}\n| new |\n{tool.VERDICTS_END}\n\nAfter.\n"
    readme.write_text("# No block\n")
    with pytest.raises(tool.BookError, match="no verdict block"):
        tool.write_readme_verdicts()
