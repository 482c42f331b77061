"""Execute the book's chapters with papermill, build the HTML with Jupyter Book 1, open JupyterLab.

    python tools/book.py execute NAME [--html] [--profile auto|smoke|paper] [-p key=value ...]
    python tools/book.py build [--profile auto|smoke|paper] [--no-execute]
    python tools/book.py lab                    # JupyterLab on book/, the .py chapters as notebooks
    python tools/book.py pick --budget SECONDS  # the chapter whose missing paper records fit (GPU window)

Chapters are jupytext percent-format ``book/NAME.py`` files. Each is read with jupytext and
executed by papermill into ``_build/src/book/NAME.ipynb``: the executed notebooks live only under
``_build/`` and never touch the ``.py`` source. ``build`` stages the book's text sources beside
them in ``_build/src`` and runs ``jupyter-book build`` there with warnings as errors; the HTML
lands in ``_build/html``. ``execute NAME --html`` rebuilds the HTML after the chapter when every
other chapter has been executed once. A chapter executed at the paper profile on a CUDA kernel
trains its missing records there (their provenance says launcher ``papermill``).

Profiles (``--profile``, else ``$MCR2_PROFILE``, else ``auto``): ``auto`` renders each experiment
at the paper profile where complete paper records are committed in ``results/paper`` (or CUDA is
here to train them) and at the smoke profile otherwise; ``smoke`` and ``paper`` force one.

Before any chapter runs, the data root is checked (``MCR2_DATA``, see mcr2.data); after, every
executed notebook is checked for error outputs: either failing stops with one message naming
what to fix, and a page showing a traceback is never published.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
BUILD = ROOT / "_build"
SRC = BUILD / "src"  # staged sources: _config.yml, _toc.yml, pages and executed notebooks
HTML = BUILD / "html"
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
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    found = []
    for i, cell in enumerate(nb.get("cells", []), start=1):
        if ALLOWED_ERROR_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        for out in cell.get("outputs", []) or []:
            if out.get("output_type") == "error":
                found.append(f"cell {i}: {out.get('ename', 'Error')}: {out.get('evalue', '')}".rstrip(": "))
    return found


def check_executed(names: list[str], folder: Path | None = None) -> None:
    """Every chapter has an executed notebook (in ``folder``, default _build/src/book) and none
    holds an error output; else one message naming each chapter, its first error and the command
    that re-executes it."""
    folder = SRC / "book" if folder is None else Path(folder)
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


def execute(name: str, profile: str, parameters: dict | None = None, out_dir: Path = SRC / "book") -> dict:
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
    _hide_injected_parameters(output)
    executed = jupytext.read(output)
    figures = count_figures(executed)
    print(f"[book] {name}: {seconds:.1f} s, {figures} figure(s)", flush=True)
    errors = notebook_errors(output)
    if errors:  # e.g. a cell tagged to continue on errors
        raise BookError(f"chapter {name} holds an error output: {errors[0]} (see {output})")
    if figures == 0:
        raise BookError(f"chapter {name} executed but produced no figure")
    return {"name": name, "seconds": round(seconds, 2), "figures": figures, "output": str(output)}


def _hide_injected_parameters(path: Path) -> None:
    """Give papermill's injected-parameters cell the display tags (e.g. remove-cell) of the
    chapter's own parameters cell, so a page that hides one hides both."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    tags = lambda cell: cell.get("metadata", {}).get("tags", [])  # noqa: E731
    own = next((c for c in nb.cells if "parameters" in tags(c)), None)
    display = [t for t in tags(own) if t.startswith(("remove-", "hide-"))] if own is not None else []
    injected = [c for c in nb.cells if "injected-parameters" in tags(c)]
    if not display or not injected:
        return
    for cell in injected:
        cell.setdefault("metadata", {})["tags"] = sorted(set(tags(cell)) | set(display))
    nbformat.write(nb, path)


def stage() -> None:
    """Copy the text sources (config, toc, markdown pages, vendored MathJax) into _build/src."""
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, SRC / name)
    for page in toc_files():
        md = (ROOT / page).with_suffix(".md")
        if md.exists():
            (SRC / md.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(md, SRC / md.relative_to(ROOT))
        elif not (SRC / page).with_suffix(".ipynb").exists():
            raise BookError(f"_toc.yml lists {page} but neither {page}.md nor an executed {page}.ipynb exists")
    mathjax = ROOT / "_vendor" / "mathjax"
    if not (mathjax / "tex-chtml.js").exists():
        raise BookError("MathJax is not vendored: run `make mathjax` (fetches it once from the npm registry)")
    shutil.rmtree(SRC / "_vendor", ignore_errors=True)
    shutil.copytree(mathjax, SRC / "_vendor" / "mathjax")


def build_html() -> Path:
    check_executed(chapters())
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


def parse_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not _:
            raise BookError(f"parameter {pair!r} is not key=value")
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
    profile = args.profile or default_profile()
    params = parse_params(args.param)
    if args.command == "execute":
        if args.name not in chapters():
            raise BookError(f"no chapter {args.name!r}; chapters: {', '.join(chapters())}")
        check_data(args.name)
        execute(args.name, profile, params)
        if args.html:
            missing = [n for n in chapters() if not (SRC / "book" / f"{n}.ipynb").exists()]
            if missing:
                print(f"[book] HTML not rebuilt: {', '.join(missing)} not executed yet "
                      f"(`make book` executes every chapter once)", flush=True)
                return
            print(f"[book] built {build_html()}", flush=True)
        return
    times = []
    if not args.no_execute:
        check_data()
        for name in chapters():
            times.append(execute(name, profile, params))
        BUILD.mkdir(exist_ok=True)
        (BUILD / "chapter_times.json").write_text(json.dumps({"profile": profile, "chapters": times}, indent=1))
        total = sum(t["seconds"] for t in times)
        print(f"[book] executed {len(times)} chapters on profile {profile} in {total:.0f} s", flush=True)
    index = build_html()
    print(f"[book] built {index}", flush=True)


if __name__ == "__main__":
    main()
