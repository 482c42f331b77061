"""Execute the book's chapters with papermill, build the HTML with Jupyter Book 1, open JupyterLab.

    python tools/book.py execute NAME [--html] [--profile auto|smoke|paper] [-p key=value ...]
    python tools/book.py build [--profile auto|smoke|paper] [--no-execute]
    python tools/book.py lab                    # JupyterLab on book/, the .py chapters as notebooks
    python tools/book.py pick --budget SECONDS  # the chapter whose missing paper records fit (GPU window)
    python tools/book.py verdicts [--readme]    # the claims ledger on the committed paper records

Chapters are jupytext percent-format ``book/NAME.py`` files. Each is read with jupytext and
executed by papermill into ``_build/executed/NAME.ipynb``: the executed notebooks live only under
``_build/`` and never touch the ``.py`` source. What a chapter prints (training logs, timings)
goes to the build log (and ``_build/logs/NAME.log``), and the machine's folders are named as a
reader knows them (``$MCR2_DATA``, ``$MCR2_RUNS``, paths relative to the repository).

``build`` stages the pages in ``_build/src``: each executed notebook as a page (code folded behind
a toggle, the parameters cells and printed output removed, a "take this chapter home" block with
the ``.py`` and ``.ipynb`` to download and the command that re-runs it), the status page's tables
(per chapter: run time, scale, seeds, device, commit and date of the records it read), then runs
``jupyter-book build`` there with warnings as errors; the HTML lands in ``_build/html`` and is
scanned for build noise (:func:`scan_html`). ``execute NAME --html`` rebuilds the HTML after the
chapter when every other chapter has been executed once. A chapter executed at the paper profile
on a CUDA kernel trains its missing records there (their provenance says launcher ``papermill``).

Profiles (``--profile``, else ``$MCR2_PROFILE``, else ``auto``): ``auto`` renders each experiment
at the paper profile where complete paper records are committed in ``results/paper`` (or CUDA is
here to train them) and at the smoke profile otherwise; ``smoke`` and ``paper`` force one.

Before any chapter runs, the data root is checked (``MCR2_DATA``, see mcr2.data); after, every
executed notebook is checked for error outputs: either failing stops with one message naming
what to fix, and a page showing a traceback is never published.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
BUILD = ROOT / "_build"
EXECUTED = BUILD / "executed"  # notebooks as papermill executed them (the .ipynb a reader downloads)
LOGS = BUILD / "logs"  # what each chapter printed: NAME.log
SRC = BUILD / "src"  # staged sources: _config.yml, _toc.yml, the pages made from the executed notebooks
HTML = BUILD / "html"
CSS = ROOT / "tools" / "book.css"  # wrapping lines, take-home buttons (staged into _assets/)
STATUS_TABLES = "status_tables.md"  # written beside book/status.md, which includes it
META = "mcr2_book"  # notebook metadata key: profile, parameters, seconds, date, records read
BOOK_TAG = "mcr2-book"  # cells tools/book.py adds around a chapter's own and removes after execution
PROFILES = ("auto", "smoke", "paper")
DEFAULT_PROFILE = "auto"  # per experiment: paper where its records exist (or CUDA is here), else smoke
ALLOWED_ERROR_TAG = "raises-exception"  # a cell tagged so may show an error on purpose (myst-nb's tag)


class BookError(SystemExit):
    """A failure with one clear message (printed without a traceback, exit status 1)."""

    def __init__(self, message: str):
        super().__init__(f"[book] error: {message}")


def toc_files() -> list[str]:
    """Every page of _toc.yml in order (root, parts, chapters, sections), without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


def chapters() -> list[str]:
    """Names of the executable chapters (book/NAME.py listed in _toc.yml)."""
    return [Path(f).name for f in toc_files() if (ROOT / f).with_suffix(".py").exists()]


def default_profile() -> str:
    """``$MCR2_PROFILE`` if set, else ``auto``."""
    env = os.environ.get("MCR2_PROFILE")
    if env:
        if env not in PROFILES:
            raise BookError(f"MCR2_PROFILE={env!r} is not a profile; choose one of {', '.join(PROFILES)}")
        return env
    return DEFAULT_PROFILE


def check_data(name: str | None = None) -> Path:
    """The data root, or one clear error before any chapter runs. The book reads MNIST, USPS and
    the CIFAR-100 backgrounds; chapter ``name``, where :func:`chapter_experiments` knows its runs,
    only what they train on (a GPU window may carry MNIST and USPS alone)."""
    sys.path.insert(0, str(ROOT))  # mcr2 from this checkout even when it is not installed
    from mcr2.data import DataNotFoundError, check_data_root

    try:
        return check_data_root(**_data_needs(name))
    except DataNotFoundError as err:
        raise BookError(f"{err}\nFor the book: MCR2_DATA=/path/to/data make book (or make chapter NAME=...)") from None


def chapter_experiments(name: str) -> list[str] | None:
    """The experiments whose records chapter ``name`` renders with ``run_all`` (and trains where
    missing: at the paper profile, on a CUDA kernel), read from its source; None for a chapter that
    trains something else or nothing (synthetic features, the datasets, overridden variants)."""
    import ast

    import jupytext

    sys.path.insert(0, str(ROOT))
    from mcr2.experiments import CHAPTER_EXPERIMENTS, EXPERIMENTS

    nodes = []
    for cell in jupytext.read(BOOK / f"{name}.py").cells:
        if cell.cell_type == "code":
            try:
                nodes += ast.walk(ast.parse(cell.source))
            except SyntaxError:  # a cell of IPython magics: it trains nothing
                continue
    names: list[str] = []
    for node in nodes:
        func = node.func if isinstance(node, ast.Call) else None
        if getattr(func, "id", getattr(func, "attr", None)) not in ("run", "run_all"):
            continue
        if getattr(func, "id", getattr(func, "attr", None)) == "run" or not node.args or any(
                k.arg is None for k in node.keywords):
            return None  # one overridden run, or overrides for every run: not the paper profile's records
        try:  # a list literal, CHAPTER_EXPERIMENTS["topic"] or list(EXPERIMENTS)
            found = eval(compile(ast.Expression(node.args[0]), name, "eval"),
                         {"__builtins__": {"list": list}, "CHAPTER_EXPERIMENTS": CHAPTER_EXPERIMENTS,
                          "EXPERIMENTS": EXPERIMENTS})
        except Exception:
            return None
        names += [n for n in found if n not in names]
    return names or None


def _data_needs(name: str | None) -> dict:
    """check_data_root's arguments for chapter ``name`` (everything for the whole book or a chapter
    whose runs are not known)."""
    exps = None if name is None else chapter_experiments(name)
    if exps is None:
        return {}
    from mcr2.experiments import experiment

    datas = [experiment(n, "paper", 0).data for n in exps]
    return {"domains": tuple(dict.fromkeys(d for x in datas for d in (x.train_domain, *x.val_domains))),
            "backgrounds": tuple(dict.fromkeys(x.background for x in datas if x.background))}


#: Seconds a chapter takes beside training its missing records at the paper profile (the kernel, the
#: imports, the figures): a cautious guess until measured; the window's log prints each chapter's seconds.
CHAPTER_OVERHEAD_S = 90.0


def missing_paper_runs(name: str) -> list[tuple[str, int]] | None:
    """(experiment, seed) of chapter ``name``'s paper-profile records not yet complete (in
    ``$MCR2_RUNS/paper``, else results/paper); None where the chapter's runs are not known."""
    exps = chapter_experiments(name)
    if exps is None:
        return None
    from mcr2.experiments import PROFILE_SEEDS, experiment
    from mcr2.records import complete_record_path, default_runs_dir

    runs_dir = default_runs_dir("paper")
    return [(n, s) for n in exps for s in PROFILE_SEEDS["paper"]
            if complete_record_path(experiment(n, "paper", s), runs_dir) is None]


def pick_chapter(budget: float) -> tuple[str | None, list[str]]:
    """The chapter to execute at the paper profile in ``budget`` seconds: of those with missing
    records whose data is here, the one with the most estimated training that fits (its runs one
    after another, :func:`mcr2.costs.estimate`, plus :data:`CHAPTER_OVERHEAD_S`). Returns the name
    (None if none fits) and one line per chapter considered."""
    from mcr2.costs import estimate, load_costs
    from mcr2.data import DataNotFoundError, check_data_root

    costs, best, lines = load_costs(), (None, -1.0), []
    for name in chapters():
        missing = missing_paper_runs(name)
        if not missing:
            lines.append(f"{name}: {'no paper records to train' if missing == [] else 'trains no paper records of its own'}")
            continue
        seconds = sum(estimate(n, 1, costs)[0] for n, _ in missing) + CHAPTER_OVERHEAD_S
        what = f"{name}: {len(missing)} missing ({', '.join(f'{n} seed {s}' for n, s in missing)}), about {seconds:.0f} s"
        try:
            check_data_root(**_data_needs(name))
        except DataNotFoundError:
            lines.append(f"{what}: its data is not here")
            continue
        if seconds > budget:
            lines.append(f"{what}: over the {budget:.0f} s left")
            continue
        lines.append(f"{what}: fits")
        if seconds > best[1]:
            best = (name, seconds)
    return best[0], lines


def notebook_errors(path: Path) -> list[str]:
    """The error outputs of an executed notebook, one line each: ``cell N: Name: value``."""
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(nb, dict) or not isinstance(nb.get("cells", []), list):
            raise ValueError("not a notebook: no list of cells")
    except (UnicodeDecodeError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        raise BookError(f"the executed notebook {path} is damaged ({' '.join(str(err).split())}); execute the "
                        f"chapter again: `make chapter NAME={Path(path).stem}`") from None
    found = []
    for i, cell in enumerate(nb.get("cells", []), start=1):
        if not isinstance(cell, dict):
            raise BookError(f"the executed notebook {path} is damaged (cell {i} is not an object); execute the "
                            f"chapter again: `make chapter NAME={Path(path).stem}`")
        if ALLOWED_ERROR_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        for out in cell.get("outputs", []) or []:
            if out.get("output_type") == "error":
                found.append(f"cell {i}: {out.get('ename', 'Error')}: {out.get('evalue', '')}".rstrip(": "))
    return found


def check_executed(names: list[str], folder: Path | None = None) -> None:
    """Every chapter has an executed notebook (in ``folder``, default _build/executed) and none
    holds an error output; else one message naming each chapter, its first error and the command
    that re-executes it."""
    folder = EXECUTED if folder is None else Path(folder)
    missing = [n for n in names if not (folder / f"{n}.ipynb").exists()]
    if missing:
        raise BookError(
            f"not executed yet: {', '.join(missing)} (no {folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder}"
            f"/NAME.ipynb). Execute them with `make book`, or one by one with `make chapter NAME=...`"
        )
    failed = {n: errs for n in names if (errs := notebook_errors(folder / f"{n}.ipynb"))}
    if failed:
        lines = [f"  {n}: {errs[0]}" + (f" (and {len(errs) - 1} more)" if len(errs) > 1 else "")
                 for n, errs in failed.items()]
        raise BookError(
            "executed chapters hold error outputs; the book is not built from them:\n" + "\n".join(lines)
            + "\nFix the chapter and execute it again: " + ", ".join(f"`make chapter NAME={n}`" for n in failed)
        )


def count_figures(nb) -> int:
    """Image outputs of the code cells, including figures stored by myst-nb's ``glue(..., display=False)``
    (their MIME type carries the prefix ``application/papermill.record/``)."""
    return sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if any(mime.endswith(("image/png", "image/svg+xml")) for mime in out.get("data", {}))
    )


# --------------------------------------------------------------------------- executing a chapter

# Run first in the chapter's kernel: notes every run record the chapter loads (its history.csv is
# read only when a record is rendered; planning reads record.json alone), through Python's audit
# hook on open(), so the status page lists the records behind each page without the chapter
# declaring them. The last cell prints their folders; both cells are removed after execution.
_WATCH_RECORDS = """\
import os as _book_os, sys as _book_sys
_book_records = set()
def _book_watch(event, args):
    if event == "open" and args:
        path = _book_os.fspath(args[0]) if isinstance(args[0], _book_os.PathLike) else args[0]
        if isinstance(path, str) and _book_os.path.basename(path) == "history.csv":
            _book_records.add(_book_os.path.dirname(_book_os.path.abspath(path)))
_book_sys.addaudithook(_book_watch)
"""
_REPORT_RECORDS = "import json as _book_json\nprint(_book_json.dumps(sorted(_book_records)))\n"


def _book_cell(source: str):
    import nbformat

    return nbformat.v4.new_code_cell(source, metadata={"tags": [BOOK_TAG, "remove-cell"]})


def path_names() -> list[tuple[str, str]]:
    """(absolute folder of this machine, the name a reader knows it by), longest first: the data
    root is ``$MCR2_DATA``, a runs root ``$MCR2_RUNS``, the repository ``.`` (paths in it become
    relative), the home folder ``~``."""
    sys.path.insert(0, str(ROOT))
    from mcr2.data import data_root

    names = {str(data_root()): "$MCR2_DATA", str(ROOT): ".", str(Path.home()): "~"}
    if os.environ.get("MCR2_RUNS"):
        names[str(Path(os.environ["MCR2_RUNS"]).resolve())] = "$MCR2_RUNS"
        names[os.environ["MCR2_RUNS"].rstrip("/")] = "$MCR2_RUNS"
    names = {folder: name for folder, name in names.items() if len(folder) > 1}  # never rename "/"
    return sorted(names.items(), key=lambda item: -len(item[0]))


def name_paths(text: str, names: list[tuple[str, str]] | None = None) -> str:
    """``text`` with this machine's folders named as :func:`path_names` says."""
    for folder, name in path_names() if names is None else names:
        if name == ".":
            text = text.replace(folder + "/", "")  # a path inside the repository, relative to it
        text = text.replace(folder, name)
    return text


def _name_output_paths(nb, names) -> None:
    """Name the machine's folders in every text an output carries (streams, tables, markdown, glued
    values); images other than SVG hold no text."""
    def named(value):
        if isinstance(value, str):
            return name_paths(value, names)
        if isinstance(value, list):
            return [named(v) for v in value]
        return value

    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if "text" in out:
                out["text"] = named(out["text"])
            for mime, value in out.get("data", {}).items():
                if "image/" not in mime or mime.endswith("svg+xml"):
                    out["data"][mime] = named(value)


def _record_summary(folder: str) -> dict | None:
    """What the status page says of a run record: its name, profile, seed, device, commit, date."""
    try:
        record = json.loads((Path(folder) / "record.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or record.get("status") != "complete":
        return None
    prov = record.get("provenance", {})
    config = record.get("config", {})
    return {
        "name": record.get("name") or config.get("name"),
        "profile": record.get("profile") or config.get("profile"),
        "seed": record.get("seed", config.get("seed")),
        "key": record.get("key"),
        "device": prov.get("device", {}).get("name") or prov.get("device", {}).get("type"),
        "commit": (prov.get("git_commit") or "?")[:8] + ("+dirty" if prov.get("git_dirty") else ""),
        "started": record.get("started"),
    }


def _finish_executed(path: Path, name: str, profile: str, params: dict, seconds: float) -> None:
    """After papermill: take out the record-watching cells (keeping what they found), name the
    machine's folders, log what the chapter printed, and note profile, parameters, run time, date
    and records in the notebook's metadata (the status page reads them)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    own = [c for c in nb.cells if BOOK_TAG in c.get("metadata", {}).get("tags", [])]
    nb.cells = [c for c in nb.cells if c not in own]
    printed = "".join(o.get("text", "") for c in own[-1:] for o in c.get("outputs", []) if o.get("output_type") == "stream")
    try:
        folders = json.loads(printed.strip().splitlines()[-1]) if printed.strip() else []
    except json.JSONDecodeError:
        folders = []
    records = sorted((r for r in map(_record_summary, folders) if r), key=lambda r: (r["name"], r["profile"], r["seed"]))
    names = path_names()
    _name_output_paths(nb, names)
    nb.metadata[META] = {
        "profile": profile,
        "parameters": {k: v for k, v in params.items() if k != "profile"},
        "seconds": round(seconds, 1),
        "executed": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "records": records,
    }
    nbformat.write(nb, path)
    log = _printed(nb)
    LOGS.mkdir(parents=True, exist_ok=True)
    (LOGS / f"{name}.log").write_text(log, encoding="utf-8")
    if log:
        print("".join(f"  [{name}] {line}\n" for line in log.splitlines()), end="", flush=True)


def _printed(nb) -> str:
    """What the code cells printed (stdout, stderr), cell by cell: the build log's share of a chapter."""
    parts = []
    for i, cell in enumerate(nb.cells, start=1):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "stream":
                prefix = "stderr: " if out.get("name") == "stderr" else ""
                parts += [f"cell {i}: {prefix}{line}" for line in out.get("text", "").splitlines()]
    return "".join(line + "\n" for line in parts)


def execute(name: str, profile: str, parameters: dict | None = None, out_dir: Path = EXECUTED,
            every_param: bool = True) -> dict:
    """Execute book/NAME.py with papermill; returns {name, seconds, figures, output}.

    Raises if a cell raised (papermill) or the executed chapter holds no figure.
    """
    import jupytext
    import papermill

    source = BOOK / f"{name}.py"
    if not source.exists():
        known = ", ".join(chapters())
        raise BookError(f"no chapter {source.relative_to(ROOT)}; chapters: {known}")
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{name}.ipynb"
    nb = jupytext.read(source)
    check_params(name, nb, parameters or {}, every_param)
    nb.cells = [_book_cell(_WATCH_RECORDS), *nb.cells, _book_cell(_REPORT_RECORDS)]
    # One concise line per epoch in an executed notebook, never a progress bar flooding the HTML.
    params = {"profile": profile, "progress": "lines", **(parameters or {})}
    print(f"[book] executing {name} (profile={profile})", flush=True)
    start = time.perf_counter()
    launcher = os.environ.get("MCR2_LAUNCHER")
    os.environ["MCR2_LAUNCHER"] = "papermill"  # the kernel inherits it: records trained there say so
    try:
        papermill.execute_notebook(
            nb,
            str(output),
            parameters=params,
            kernel_name="python3",
            language="python",
            cwd=str(BOOK),
            progress_bar=False,
        )
    except papermill.PapermillExecutionError as err:
        print("".join(line + "\n" for line in err.traceback), file=sys.stderr, flush=True)  # the cell's own
        raise BookError(f"chapter {name} failed in cell [{err.exec_count}]: {err.ename}: {err.evalue} "
                        f"(the executed notebook, with its traceback: {output})") from None
    finally:
        if launcher is None:
            os.environ.pop("MCR2_LAUNCHER", None)
        else:
            os.environ["MCR2_LAUNCHER"] = launcher
    seconds = time.perf_counter() - start
    _finish_executed(output, name, profile, params, seconds)
    executed = jupytext.read(output)
    figures = count_figures(executed)
    print(f"[book] {name}: {seconds:.1f} s, {figures} figure(s)", flush=True)
    errors = notebook_errors(output)
    if errors:  # e.g. a cell tagged to continue on errors
        raise BookError(f"chapter {name} holds an error output: {errors[0]} (see {output})")
    if figures == 0:
        raise BookError(f"chapter {name} executed but produced no figure")
    return {"name": name, "seconds": round(seconds, 2), "figures": figures, "output": str(output)}


# --------------------------------------------------------------------------- pages

_FOLDED = ("remove-cell", "remove-input", "hide-cell", "hide-input")  # a cell tagged so is already out of sight
_PARAMETERS = ("parameters", "injected-parameters")  # papermill's cells: knobs, listed in the take-home block


def _knobs(nb) -> list[tuple[str, str, str]]:
    """(name, value this page ran with, comment) of each knob of the chapter's parameters cell."""
    import ast

    tags = lambda cell: cell.get("metadata", {}).get("tags", [])  # noqa: E731
    own = next((c for c in nb.cells if "parameters" in tags(c)), None)
    if own is None:
        return []
    ran = dict(nb.metadata.get(META, {}).get("parameters", {}), profile=nb.metadata.get(META, {}).get("profile"))
    knobs = []
    for line in own.source.splitlines():
        try:
            (node,) = ast.parse(line.split("  #")[0]).body
        except (SyntaxError, ValueError):
            continue
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            key = node.targets[0].id
            value = repr(ran[key]) if ran.get(key) is not None else ast.unparse(node.value)
            knobs.append((key, value, line.partition("#")[2].strip() if "#" in line else ""))
    return knobs


def rerun_command(name: str, meta: dict) -> str:
    """The one command that re-runs chapter NAME as this build ran it (from a clone, MCR2_DATA set)."""
    params = {k: v for k, v in meta.get("parameters", {}).items() if k not in ("profile", "progress")}
    profile = meta.get("profile", DEFAULT_PROFILE)
    if not params:
        return f"make chapter NAME={name} PROFILE={profile}"
    extra = " ".join(f"-p {k}='{json.dumps(v)}'" for k, v in params.items())
    return f".venv/bin/python tools/book.py execute {name} --profile {profile} {extra}"


def take_home_cell(name: str, nb):
    """The block each page opens with: the chapter's .py and executed .ipynb to download, the
    command that re-runs it, and its knobs as this page ran them."""
    import nbformat

    meta = nb.metadata.get(META, {})
    knobs = _knobs(nb)
    lines = [
        "````{admonition} Take this chapter home",
        ":class: take-home",
        "",
        f"{{download}}`{name}.py <take-home/{name}.py>` (the source; Jupyter opens it as a notebook) "
        f"{{download}}`{name}.ipynb <take-home/{name}.ipynb>` (this page, executed)",
        "",
        "Re-run it from a clone of the repository, with `MCR2_DATA` naming the data folder:",
        "",
        "```bash",
        rerun_command(name, meta),
        "```",
    ]
    if knobs:
        lines += ["", "Its knobs (the `parameters` cell of the `.py`; `-p NAME=VALUE` changes one), as this page ran them: "
                  + ", ".join(f"`{k} = {v}`" for k, v, _ in knobs) + "."]
    lines.append("````")
    return nbformat.v4.new_markdown_cell("\n".join(lines), metadata={"tags": [BOOK_TAG]})


def page_notebook(nb, name: str):
    """The page a reader sees, made from an executed notebook (a copy; ``nb`` is not changed).

    Code is folded behind a toggle (``hide-input``) unless the chapter tagged the cell itself; the
    parameters cells are removed; printed output (logs, timings, warnings: the build log holds
    them) and plain-text reprs are taken out; the take-home block follows the first text cell.
    """
    import copy

    page = copy.deepcopy(nb)
    for cell in page.cells:
        if cell.cell_type != "code":
            continue
        tags = list(cell.get("metadata", {}).get("tags", []))
        if any(t in tags for t in _PARAMETERS):
            tags.append("remove-cell")
        elif not any(t in tags for t in _FOLDED):
            tags.append("hide-input")
        cell.setdefault("metadata", {})["tags"] = tags
        cell.outputs = [
            out for out in cell.get("outputs", [])
            if out.get("output_type") not in ("stream",)
            and not (out.get("output_type") in ("execute_result", "display_data") and set(out.get("data", {})) <= {"text/plain"})
        ]
    first_text = next((i for i, c in enumerate(page.cells) if c.cell_type == "markdown"), -1)
    page.cells.insert(first_text + 1, take_home_cell(name, nb))
    return page


def stage_pages(names: list[str]) -> None:
    """Write each executed chapter as a page into _build/src/book, with its downloads beside it."""
    import nbformat

    take_home = SRC / "book" / "take-home"
    shutil.rmtree(take_home, ignore_errors=True)
    take_home.mkdir(parents=True)
    for name in names:
        nb = nbformat.read(EXECUTED / f"{name}.ipynb", as_version=4)
        nbformat.write(page_notebook(nb, name), SRC / "book" / f"{name}.ipynb")
        shutil.copy2(BOOK / f"{name}.py", take_home / f"{name}.py")
        shutil.copy2(EXECUTED / f"{name}.ipynb", take_home / f"{name}.ipynb")


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def status_tables(names: list[str]) -> str:
    """The status page's tables (MyST markdown) from the executed notebooks' metadata: per chapter
    its run time and the experiments it rendered at each scale; per chapter and experiment the
    records it loaded (seeds, device, commit, date)."""
    import nbformat

    chapters_rows, runs_rows, profiles, dates = [], [], {}, []
    for name in names:
        meta = nbformat.read(EXECUTED / f"{name}.ipynb", as_version=4).metadata.get(META, {})
        profiles.setdefault(meta.get("profile", "?"), []).append(name)
        dates.append(meta.get("executed", "?"))
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in meta.get("records", []):
            groups.setdefault((r["name"], r["profile"]), []).append(r)
        scale: dict[str, list[str]] = {"paper": [], "smoke": []}
        for (exp, profile), recs in groups.items():
            seeds = sorted({r["seed"] for r in recs})
            scale.setdefault(profile, []).append(f"{exp} ({len(seeds)})")
            made = sorted({(r.get("started") or "?")[:10] for r in recs})
            runs_rows.append([
                f"{{doc}}`{name}`", exp, profile,
                ", ".join(map(str, seeds)) + (f" ({len(recs)} runs)" if len(recs) > len(seeds) else ""),
                ", ".join(sorted({str(r.get("device")) for r in recs})),
                ", ".join(sorted({r["commit"] for r in recs})),
                made[0] if len(made) == 1 else f"{made[0]} to {made[-1]}",
            ])
        seconds = meta.get("seconds")
        chapters_rows.append([f"{{doc}}`{name}`", "?" if seconds is None else f"{seconds:.0f} s",
                              ", ".join(scale["paper"]) or "—", ", ".join(scale["smoke"]) or "—"])

    def table(header, rows):
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(out + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows])

    asked = "; ".join(f"`{p}` ({len(pages)} page{'s' if len(pages) != 1 else ''})" for p, pages in profiles.items())
    known = sorted(d for d in dates if d != "?")
    when = (f", from {known[0]} to {known[-1]}" if known and known[0] != known[-1] else f", on {known[0]}" if known else "")
    return (
        f"## Chapters\n\nExecuted on profile {asked}{when}. Experiments are listed with the number of "
        f"seeds behind them.\n\n"
        + table(["page", "executed in", "at paper scale (seeds)", "at smoke scale (seeds)"], chapters_rows)
        + "\n\n## The records behind each page\n\n"
        + (table(["page", "experiment", "profile", "seeds", "device", "commit", "made on"], runs_rows)
           if runs_rows else "No page of this build loaded a run record.")
        + "\n"
    )


def stage() -> None:
    """Copy the text sources (config, toc, markdown pages, vendored MathJax, the book's CSS) into
    _build/src, write the executed chapters there as pages and the status page's tables."""
    names = chapters()
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, SRC / name)
    stage_pages(names)
    for page in toc_files():
        md = (ROOT / page).with_suffix(".md")
        if md.exists():
            (SRC / md.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(md, SRC / md.relative_to(ROOT))
            if STATUS_TABLES in md.read_text(encoding="utf-8"):
                (SRC / md.relative_to(ROOT)).with_name(STATUS_TABLES).write_text(status_tables(names), encoding="utf-8")
        elif not (SRC / page).with_suffix(".ipynb").exists():
            raise BookError(f"_toc.yml lists {page} but neither {page}.md nor an executed {page}.ipynb exists")
    mathjax = ROOT / "_vendor" / "mathjax"
    if not (mathjax / "tex-chtml.js").exists():
        raise BookError("MathJax is not vendored: run `make mathjax` (fetches it once from the npm registry)")
    shutil.rmtree(SRC / "_vendor", ignore_errors=True)
    shutil.copytree(mathjax, SRC / "_vendor" / "mathjax")
    (SRC / "_assets").mkdir(exist_ok=True)
    shutil.copy2(CSS, SRC / "_assets" / CSS.name)


def build_html() -> Path:
    check_executed(chapters())
    SRC.mkdir(parents=True, exist_ok=True)
    stage()
    # The jupyter-book beside this interpreter (the venv's), so the build uses the pinned version.
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent))
    if jb is None:
        raise BookError(f"jupyter-book is not installed beside {sys.executable}: run `make venv`")
    cmd = [jb, "build", str(SRC), "--path-output", str(ROOT), "-W", "-n", "--keep-going"]
    print("[book] " + " ".join(cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise BookError("jupyter-book reported errors or warnings (above); the HTML is incomplete")
    index = HTML / "index.html"
    if not index.exists():
        raise BookError(f"jupyter-book finished but {index} is missing")
    return index


# --------------------------------------------------------------------------- build noise

# What must never reach a page, as (what, pattern over the text a reader sees).
_NOISE_TEXT = (
    ("a traceback", re.compile(r"Traceback \(most recent call last\)|^\s*File \"[^\"]+\", line \d+", re.M)),
    ("a warning", re.compile(r"\b\w*Warning\b(?=:)|^\s*warnings\.warn", re.M)),
    ("a raw Python repr", re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>|\bat 0x[0-9a-f]{6,}\b|<Figure size [\d.]+x[\d.]+ with"
                                     r"|<(?:matplotlib|Axes|torch|pandas)[\w.:]*[ >]|\b\w+Record\(|\btensor\(\[")),
    ("a timing log", re.compile(r"\bexecuted in [\d.]+ ?s\b")),
    ("a training log", re.compile(r"\bepoch \d+/\d+\b")),
    ("papermill's parameters cell", re.compile(r"^# Parameters$", re.M)),
    ("an absolute path", re.compile(r"(?<![\w.~$/:-])/(?:home|root|work|tmp|usr|opt|mnt|srv|var|scratch|data|Users|private)/[\w.-]+")),
)
# Output areas that are logs or reprs, and cells that are papermill's, by the classes myst-nb gives them.
_NOISE_CLASSES = (
    ("printed output (a log)", "output stream"),
    ("printed output (stderr)", "output stderr"),
    ("a plain-text repr", "output text_plain"),
    ("a traceback", "output traceback"),
    ("papermill's parameters cell", "tag_injected-parameters"),
    ("the chapter's parameters cell", "tag_parameters"),
)


def _excerpt(text: str, at: int) -> str:
    return re.sub(r"\s+", " ", text[max(0, at - 40): at + 80]).strip()


def scan_html(html_dir: Path = HTML, pages: list[str] | None = None) -> list[str]:
    """Build noise on the built pages, one line each (``page: what: excerpt``): tracebacks,
    warnings, raw Python reprs, printed logs and timings, papermill's parameters cells, and any
    absolute path of this machine (anywhere in the HTML) or of a usual system folder (in the text
    a reader sees). Folded code (the toggles) is not text a reader sees, but its paths count."""
    from bs4 import BeautifulSoup

    html_dir = Path(html_dir)
    machine = [folder for folder, _ in path_names()] + [str(Path(tempfile.gettempdir()).resolve()), sys.prefix]
    machine = [m for m in machine if len(m) > 4]
    found = []
    for page in pages if pages is not None else toc_files():
        path = html_dir / f"{page}.html"
        html = path.read_text(encoding="utf-8")
        for folder in machine:
            match = re.search(rf"(?<![\w.-]){re.escape(folder)}(?![\w.-])", html)
            if match:
                at = match.start()
                found.append(f"{page}: an absolute path of this machine: {_excerpt(html, at)!r}")
        soup = BeautifulSoup(html, "html.parser")
        main = soup.find("main") or soup
        for what, cls in _NOISE_CLASSES:
            for node in main.select("." + ".".join(cls.split())):
                found.append(f"{page}: {what}: {node.get_text(' ', strip=True)[:120]!r}")
        for node in main.select(".cell_input, script, style"):
            node.decompose()
        text = main.get_text("\n")
        for what, pattern in _NOISE_TEXT:
            for match in pattern.finditer(text):
                at = match.start()
                found.append(f"{page}: {what}: {_excerpt(text, at)!r}")
    return found


# --------------------------------------------------------------------------- the README's verdicts

README = ROOT / "README.md"
VERDICTS_BEGIN = "<!-- verdicts: written by `.venv/bin/python tools/book.py verdicts --readme` -->"
VERDICTS_END = "<!-- /verdicts -->"


def committed_records() -> dict:
    """The complete paper-profile records in results/paper (``$MCR2_RUNS/paper``), per experiment:
    what the ledger can judge without training anything."""
    sys.path.insert(0, str(ROOT))
    from mcr2.experiments import EXPERIMENTS, PROFILE_SEEDS, experiment
    from mcr2.records import default_runs_dir, find_record

    found = {}
    for name in EXPERIMENTS:
        records = [find_record(experiment(name, "paper", seed), default_runs_dir("paper")) for seed in PROFILE_SEEDS["paper"]]
        if any(records):
            found[name] = [r for r in records if r is not None]
    return found


def verdicts_table() -> str:
    """The claims ledger (mcr2.claims.evaluate_claims) on the committed paper records, as a short
    markdown table: claim, what the report says, the verdict (or the leaning when inconclusive),
    seeds."""
    from mcr2.claims import evaluate_claims

    records = committed_records()
    ledger = evaluate_claims(records)
    rows = ["| claim | the report says | verdict | seeds |", "|---|---|---|---|"]
    for row in ledger.to_dict("records"):
        statement = re.sub(r"\s*\((?:§|Fig\.)[^)]*\)", "", row["report statement"]).rstrip(".")  # the report's section
        if row["verdict"] != "inconclusive":
            verdict = f"**{row['verdict']}**"
        elif row["leaning"] in ("✓", "✗"):
            verdict = f"inconclusive, leaning {row['leaning']}"
        else:
            verdict = "not yet run at paper scale" if str(row["why"]).startswith("no records") else "inconclusive"
        rows.append(f"| {row['claim']} | {_cell(statement)} | {verdict} | {row['seeds'] or '—'} |")
    runs = sum(len(v) for v in records.values())
    return (f"{VERDICTS_BEGIN}\n" + "\n".join(rows) + f"\n\nFrom the {runs} paper-profile run records committed in "
            f"`results/paper/` ({len(records)} of the report's experiments).\n{VERDICTS_END}")


def write_readme_verdicts() -> None:
    """Replace the verdict table between the README's markers with :func:`verdicts_table`."""
    text = README.read_text(encoding="utf-8")
    if VERDICTS_BEGIN not in text or VERDICTS_END not in text:
        raise BookError(f"README.md has no verdict block (lines {VERDICTS_BEGIN!r} ... {VERDICTS_END!r})")
    head, rest = text.split(VERDICTS_BEGIN, 1)
    README.write_text(head + verdicts_table() + rest.split(VERDICTS_END, 1)[1], encoding="utf-8")


def lab(argv: list[str]) -> None:
    """JupyterLab on book/, with the .py chapters opening as notebooks (jupytext, jupytext.toml).

    The default viewer of Python files is set for this environment only (JupyterLab's settings
    overrides under ``sys.prefix``), never in the user's own settings.
    """
    jupyter = shutil.which("jupyter-lab", path=str(Path(sys.executable).parent))
    if jupyter is None:
        raise BookError(f"JupyterLab is not installed beside {sys.executable}: run `make venv`")
    try:
        check_data()
    except BookError as err:  # editing needs no data; running the chapters does
        print(f"[book] warning: {err.code.removeprefix('[book] error: ')}", file=sys.stderr, flush=True)
    settings = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    overrides = settings / "overrides.json"
    current = json.loads(overrides.read_text()) if overrides.exists() else {}
    viewers = current.setdefault("@jupyterlab/docmanager-extension:plugin", {}).setdefault("defaultViewers", {})
    viewers["python"] = "Jupytext Notebook"
    overrides.write_text(json.dumps(current, indent=2) + "\n")
    cmd = [jupyter, f"--ServerApp.root_dir={ROOT}", "--LabApp.default_url=/lab/tree/book", *argv]
    if os.geteuid() == 0 and "--allow-root" not in argv:  # containers often run as root
        cmd.append("--allow-root")
    print("[book] " + " ".join(cmd), flush=True)
    os.execv(cmd[0], cmd)


def chapter_params(nb) -> dict:
    """The defaults of a chapter's ``parameters`` cell: ``{name: value}`` for each literal assignment."""
    import ast

    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    out = {}
    for node in ast.parse(cell.source).body if cell is not None else []:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                out[node.targets[0].id] = None  # not a literal: any value
    return out


def check_params(name: str, nb, params: dict, every_param: bool = True) -> None:
    """Each ``-p`` value names a parameter of the chapter (``every_param``; a whole build passes
    each chapter only those it has) and has its default's type (an int where the default is an int,
    a float also where it is a float, a list where a list...)."""
    defaults = chapter_params(nb)
    for key, value in params.items():
        if key not in defaults and not every_param:
            continue
        if key not in defaults:
            raise BookError(f"-p {key}=...: chapter {name} has no parameter {key!r}; its parameters: "
                            f"{', '.join(defaults)}")
        default = defaults[key]
        if default is None or value is None:
            continue
        kind = float if isinstance(default, float) else type(default)
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
        ok = ok or (kind is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise BookError(f"-p {key}={json.dumps(value)}: chapter {name}'s {key} is {kind.__name__ if kind is not list else 'a list'} "
                            f"(default {json.dumps(default)}), not {type(value).__name__}: e.g. -p {key}={json.dumps(default)}")


def parse_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not _:
            raise BookError(f"parameter {pair!r} is not key=value")
        if key.strip() == "profile":  # it would bypass --profile's choices and $MCR2_PROFILE
            raise BookError(f"-p {pair}: the profile is chosen with --profile ({', '.join(PROFILES)}), not -p")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("execute", help="execute one chapter")
    ex.add_argument("name")
    ex.add_argument("--html", action="store_true",
                    help="then rebuild the HTML (when every other chapter has been executed once)")
    bd = sub.add_parser("build", help="execute every chapter and build the HTML")
    bd.add_argument("--no-execute", action="store_true", help="reuse the executed notebooks in _build/src")
    for p in (ex, bd):
        p.add_argument("--profile", choices=PROFILES, default=None,
                       help=f"default: $MCR2_PROFILE, else {DEFAULT_PROFILE} (paper where its records exist, else smoke)")
        p.add_argument("-p", "--param", action="append", default=[], help="papermill parameter key=value (JSON value)")
    pk = sub.add_parser("pick", help="print the chapter whose missing paper records fit SECONDS (a GPU window)")
    pk.add_argument("--budget", type=float, required=True, metavar="SECONDS")
    sub.add_parser("lab", help="open JupyterLab on book/ with the .py chapters as notebooks "
                               "(other options go to jupyter-lab, e.g. --no-browser --port 8890)")
    vd = sub.add_parser("verdicts", help="print the claims ledger on the committed paper records (the README's table)")
    vd.add_argument("--readme", action="store_true", help="write it into README.md's verdict block")
    args, extra = parser.parse_known_args(argv)
    if args.command == "lab":
        lab(extra)
        return
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "pick":  # the chapter on stdout (nothing if none fits), the reasons on stderr
        sys.path.insert(0, str(ROOT))
        name, lines = pick_chapter(args.budget)
        print("\n".join(f"[book] pick: {line}" for line in lines), file=sys.stderr, flush=True)
        print(name or "")
        return
    if args.command == "verdicts":
        write_readme_verdicts() if args.readme else print(verdicts_table())
        return
    profile = args.profile or default_profile()
    params = parse_params(args.param)
    if args.command == "execute":
        if args.name not in chapters():
            raise BookError(f"no chapter {args.name!r}; chapters: {', '.join(chapters())}")
        check_data(args.name)
        execute(args.name, profile, params)
        if args.html:
            missing = [n for n in chapters() if not (EXECUTED / f"{n}.ipynb").exists()]
            if missing:
                print(f"[book] HTML not rebuilt: {', '.join(missing)} not executed yet "
                      f"(`make book` executes every chapter once)", flush=True)
                return
            publish()
        return
    times = []
    if not args.no_execute:
        check_data()
        for name in chapters():
            times.append(execute(name, profile, params, every_param=False))
        BUILD.mkdir(exist_ok=True)
        (BUILD / "chapter_times.json").write_text(json.dumps({"profile": profile, "chapters": times}, indent=1))
        total = sum(t["seconds"] for t in times)
        print(f"[book] executed {len(times)} chapters on profile {profile} in {total:.0f} s", flush=True)
    publish()


def publish() -> Path:
    """Build the HTML, then refuse it if a page shows build noise (:func:`scan_html`)."""
    index = build_html()
    found = scan_html()
    if found:
        raise BookError(f"the built pages show build noise ({len(found)} finding(s)); fix the chapter or "
                        f"tools/book.py's page rules:\n  " + "\n  ".join(found[:30]))
    print(f"[book] built {index}", flush=True)
    return index


if __name__ == "__main__":
    main()
