"""Execute the book's chapters with papermill and build the HTML with Jupyter Book 1.

    python tools/book.py execute NAME [--profile smoke|paper] [-p key=value ...]
    python tools/book.py build [--profile smoke|paper] [--no-execute]

Chapters are jupytext percent-format ``book/NAME.py`` files. Each is read with jupytext and
executed by papermill into ``_build/src/book/NAME.ipynb``: the executed notebooks live only under
``_build/`` and never touch the ``.py`` source. ``build`` stages the book's text sources beside
them in ``_build/src`` and runs ``jupyter-book build`` there with warnings as errors; the HTML
lands in ``_build/html``.
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
PROFILES = ("smoke", "paper")


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
    env = os.environ.get("MCR2_PROFILE")
    if env:
        if env not in PROFILES:
            raise SystemExit(f"MCR2_PROFILE={env!r} is not a profile; choose one of {PROFILES}")
        return env
    import torch

    return "paper" if torch.cuda.is_available() else "smoke"


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
        raise SystemExit(f"no chapter {source.relative_to(ROOT)}; chapters: {known}")
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{name}.ipynb"
    nb = jupytext.read(source)
    # One concise line per epoch in an executed notebook, never a progress bar flooding the HTML.
    params = {"profile": profile, "progress": "lines", **(parameters or {})}
    print(f"[book] executing {name} (profile={profile})", flush=True)
    start = time.perf_counter()
    papermill.execute_notebook(
        nb,
        str(output),
        parameters=params,
        kernel_name="python3",
        language="python",
        cwd=str(BOOK),
        progress_bar=False,
    )
    seconds = time.perf_counter() - start
    executed = jupytext.read(output)
    figures = count_figures(executed)
    print(f"[book] {name}: {seconds:.1f} s, {figures} figure(s)", flush=True)
    if figures == 0:
        raise RuntimeError(f"chapter {name} executed but produced no figure")
    return {"name": name, "seconds": round(seconds, 2), "figures": figures, "output": str(output)}


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
            raise SystemExit(f"_toc.yml lists {page} but neither {page}.md nor an executed {page}.ipynb exists")
    mathjax = ROOT / "_vendor" / "mathjax"
    if not (mathjax / "tex-chtml.js").exists():
        raise SystemExit("MathJax is not vendored: run `make mathjax` (fetches it once from the npm registry)")
    shutil.rmtree(SRC / "_vendor", ignore_errors=True)
    shutil.copytree(mathjax, SRC / "_vendor" / "mathjax")


def build_html() -> Path:
    stage()
    # The jupyter-book beside this interpreter (the venv's), so the build uses the pinned version.
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent))
    if jb is None:
        raise SystemExit(f"jupyter-book is not installed beside {sys.executable}: run `make venv`")
    cmd = [jb, "build", str(SRC), "--path-output", str(ROOT), "-W", "-n", "--keep-going"]
    print("[book] " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    index = HTML / "index.html"
    if not index.exists():
        raise RuntimeError(f"jupyter-book finished but {index} is missing")
    return index


def parse_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not _:
            raise SystemExit(f"parameter {pair!r} is not key=value")
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
    bd = sub.add_parser("build", help="execute every chapter and build the HTML")
    bd.add_argument("--no-execute", action="store_true", help="reuse the executed notebooks in _build/src")
    for p in (ex, bd):
        p.add_argument("--profile", choices=PROFILES, default=None)
        p.add_argument("-p", "--param", action="append", default=[], help="papermill parameter key=value (JSON value)")
    args = parser.parse_args(argv)
    profile = args.profile or default_profile()
    params = parse_params(args.param)
    if args.command == "execute":
        execute(args.name, profile, params)
        return
    times = []
    if not args.no_execute:
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
