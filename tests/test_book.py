"""The book: chapters execute with injected parameters, the whole book builds with warnings as
errors, every page holds its figures and captions, a page built from paper-profile records says
so, no page shows build noise, every chapter offers its downloads and re-run command, the status
page lists the records behind each page, MathJax is served locally, and a chapter renders in
headless Chromium.

All tests here are marked ``book`` (slow): ``pytest -m "not book"`` skips them.
"""
from __future__ import annotations

import ast
import html as html_lib
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_CHAPTER = "01_rate_reduction"
# Built on the "auto" profile over a runs root holding one committed paper record (PAPER_RECORD)
# beside the smoke records: the introduction and one chapter that renders it with a smoke run.
PAPER_PAGE = "04_segmentation"
PAPER_RECORD = "seg_mnist_mcr2"
AUTO_PAGES = ("intro", PAPER_PAGE)



from _book_tool import book  # noqa: E402

pytestmark = pytest.mark.book

# ```{glue:figure} key / ```{figure} path / :::{figure-md} ... with a :name: option.
_FIGURE_DIRECTIVE = re.compile(r"^\s*(?:```+|:::+)\s*\{(?:glue:figure|figure|figure-md)\}", re.M)


def _read(path: Path):
    return nbformat.read(str(path), as_version=4)


def _errors(nb) -> list[str]:
    """Error outputs and tracebacks printed by any code cell."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
            text = out.get("text", "") if out.get("output_type") == "stream" else ""
            if "Traceback" in text:
                found.append(f"cell {i}: traceback in {out.get('name')}: {text[:200]}")
    return found


def _stream_text(nb) -> str:
    return "".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream"
    )


def _glue_names(nb) -> set[str]:
    return {
        out.get("metadata", {}).get("scrapbook", {}).get("name")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("metadata", {}).get("scrapbook")
    }


def _figure_directives(nb) -> int:
    return sum(len(_FIGURE_DIRECTIVE.findall(c.source)) for c in nb.cells if c.cell_type == "markdown")


def _page(name: str) -> str:
    """toc entry of chapter NAME, e.g. book/01_rate_reduction."""
    return next(f for f in book.toc_files() if Path(f).name == name)


def _text(html: str) -> str:
    """What a reader sees of some HTML: tags dropped, entities decoded, whitespace collapsed."""
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", html)))


def _paper_runs_root(root: Path) -> Path:
    """A runs root ($MCR2_RUNS) with the committed paper record of PAPER_RECORD (seed 0) and,
    through a link, the smoke records of the default runs folder (trained there once if missing)."""
    from mcr2.experiments import experiment
    from mcr2.records import default_runs_dir, record_dir

    committed = record_dir(experiment(PAPER_RECORD, "paper", 0), ROOT / "results" / "paper")
    if not (committed / "record.json").exists():
        pytest.fail(f"the paper record {committed} is not committed: the paper-page test reads it")
    shutil.copytree(committed, root / "paper" / PAPER_RECORD / committed.name)
    smoke = default_runs_dir("smoke")
    smoke.mkdir(parents=True, exist_ok=True)
    (root / "smoke").symlink_to(smoke.resolve(), target_is_directory=True)
    return root


# --------------------------------------------------------------------------- one chapter


def test_chapter_executes_with_injected_parameters(tmp_path):
    params = {"seed": 3, "feature_dim": 16, "samples_per_class": 60, "eps_sq": 0.25}
    result = book.execute(FIRST_CHAPTER, "smoke", params, out_dir=tmp_path)
    out = Path(result["output"])
    assert out.parent == tmp_path and out.exists()
    nb = _read(out)

    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1, "papermill should inject exactly one parameters cell"
    assigned = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(injected[0].source).body
        if isinstance(node, ast.Assign)
    }
    assert assigned == {**params, "profile": "smoke", "progress": "lines"}
    # The injected values reached the code, not just the cell.
    assert "profile=smoke seed=3 d=16 k=4 m_j=60 eps_sq=0.25" in _stream_text(nb)

    assert not _errors(nb)
    assert {"rr-curves", "ns-accuracy", "cosine"} <= _glue_names(nb)
    assert result["figures"] == book.count_figures(nb) >= 3
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for mime, data in output.get("data", {}).items():
                if mime.endswith("image/png"):
                    assert len(data) > 1000, "figure is (nearly) empty"


# --------------------------------------------------------------------------- the whole book


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """Execute every page of _toc.yml and build the HTML, once: the chapters on the smoke profile,
    AUTO_PAGES on "auto" over :func:`_paper_runs_root` (so one experiment is at paper scale)."""
    chapters = book.chapters()
    assert FIRST_CHAPTER in chapters and set(AUTO_PAGES) <= set(chapters)
    runs_root = _paper_runs_root(tmp_path_factory.mktemp("runs"))
    for name in chapters:
        if name not in AUTO_PAGES:
            book.execute(name, "smoke")
            continue
        saved = os.environ.get("MCR2_RUNS")
        os.environ["MCR2_RUNS"] = str(runs_root)  # the papermill kernel inherits it
        try:
            book.execute(name, "auto")
        finally:
            if saved is None:
                os.environ.pop("MCR2_RUNS")
            else:
                os.environ["MCR2_RUNS"] = saved
    book.build_html()
    return {
        name: {
            "notebook": _read(book.SRC / "book" / f"{name}.ipynb"),
            "html": (book.HTML / f"{_page(name)}.html").read_text(encoding="utf-8"),
            "path": book.HTML / f"{_page(name)}.html",
        }
        for name in chapters
    }


def test_book_index_exists(built_book):
    assert (book.HTML / "index.html").exists()
    for page in book.toc_files():
        assert (book.HTML / f"{page}.html").exists(), f"{page} listed in _toc.yml but not built"


def test_every_chapter_page_holds_its_figures_and_captions(built_book):
    for name, chapter in built_book.items():
        nb, html = chapter["notebook"], chapter["html"]
        figures = book.count_figures(nb)
        assert figures >= 1, f"{name}: executed notebook holds no figure"
        images = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]+)\"", html)
        assert len(images) >= figures, f"{name}: {len(images)} <img> in the HTML, {figures} figures in the notebook"
        for src in images:
            if not src.startswith("data:"):
                assert (chapter["path"].parent / src).resolve().exists(), f"{name}: missing image {src}"

        captioned = _figure_directives(nb)
        numbers = re.findall(r'<span class="caption-number">Book fig\. (\d+) </span>', html)
        assert len(numbers) == captioned, f"{name}: {captioned} figure directives, {len(numbers)} numbered captions"
        assert len(re.findall(r"<figcaption>", html)) >= captioned
        for key in re.findall(r"^:name:\s*(\S+)", "\n".join(c.source for c in nb.cells if c.cell_type == "markdown"), re.M):
            assert f'id="{key}"' in html, f"{name}: figure {key} has no anchor in the HTML"
        # Every {numref} resolved to a number (sphinx -n would also fail the build).
        assert "std-numref" in html or captioned == 0

    first = built_book[FIRST_CHAPTER]["html"]
    for key in ("fig-rr-curves", "fig-ns-accuracy", "fig-cosine"):
        assert f'href="#{key}"' in first, f"{key} is never cross-referenced"
    assert "Rate reduction in one page" in first


def test_page_from_paper_records_names_the_paper_profile(built_book):
    """On "auto", the chapter renders PAPER_RECORD from its paper record and its CE baseline at the
    smoke profile; its captions say so per experiment, and the introduction lists it at paper scale."""
    page = built_book[PAPER_PAGE]
    captions = [_text(c) for c in re.findall(r"<figcaption>(.*?)</figcaption>", page["html"], re.S)]
    assert captions, f"{PAPER_PAGE}: no figure captions"
    for caption in captions:
        assert re.search(rf"{PAPER_RECORD}\b[^;]*\bprofile paper\b", caption), caption
        assert "profile smoke" in caption, caption  # the CE baseline has no paper record here
    text = _text(page["html"])
    assert re.search(r"\bdifferent profiles\b", text), "the page does not warn that MCR² and CE ran at different profiles"

    intro = _text(built_book["intro"]["html"])
    assert re.search(rf"1 of \d+ experiments is rendered at the paper profile: {PAPER_RECORD}\b", intro), intro[:3000]
    assert "Not yet at paper scale" in intro and "python -m mcr2 paper --budget SECONDS" in intro


def test_the_built_pages_show_no_build_noise(built_book):
    """Fault: every page showed papermill's parameters cell, chapters showed training logs, the
    build machine's data path and "chapter executed in 10.0 s" (issue: a book read in five minutes)."""
    found = book.scan_html()
    assert found == [], "\n".join(found)


def test_every_page_folds_its_code_and_offers_its_chapter_to_take_home(built_book):
    for name, chapter in built_book.items():
        html = chapter["html"]
        assert "Take this chapter home" in html, name
        for suffix in (".py", ".ipynb"):
            links = re.findall(rf'<a class="reference download internal"[^>]*href="([^"]+/{re.escape(name + suffix)})"', html)
            assert links, f"{name}: no download of {name}{suffix}"
            assert (chapter["path"].parent / links[0]).resolve().exists(), f"{name}: {links[0]} is missing"
        assert re.search(rf"make chapter NAME ?= ?{name} PROFILE ?=", _text(html)), f"{name}: no re-run command"
        tags = [set(c.metadata.get("tags", [])) for c in chapter["notebook"].cells if c.cell_type == "code"]
        assert all(t & set(book._FOLDED) for t in tags), f"{name}: a code cell is not folded away"
        folded = sum("hide-input" in t for t in tags)
        assert len(re.findall(r'<div class="cell [^"]*\btag_hide-input\b', html)) == folded, name
        assert "tag_parameters" not in html and "tag_injected-parameters" not in html, name
    log = (book.LOGS / f"{FIRST_CHAPTER}.log").read_text()
    assert "profile=smoke seed=0" in log, "what chapter 01 printed is in the build log"


def test_the_status_page_lists_each_chapter_and_the_records_behind_it(built_book):
    status = _text((book.HTML / "book" / "status.html").read_text(encoding="utf-8"))
    meta = built_book[PAPER_PAGE]["notebook"].metadata[book.META]
    assert {(r["name"], r["profile"]) for r in meta["records"]} >= {(PAPER_RECORD, "paper")}
    assert meta["seconds"] > 0 and meta["profile"] == "auto"
    titles = {}
    for name, chapter in built_book.items():
        title = re.search(r"<h1>([^<]*)<a class=\"headerlink\"", chapter["html"])
        titles[name] = _text(title.group(1)).strip() if title else name
        assert titles[name] in status, f"{name} is not on the status page"
    # Its row: run time, then the experiment at paper scale with its one seed.
    assert re.search(rf"{re.escape(titles[PAPER_PAGE])} \d+ s {PAPER_RECORD} \(1\)", status), status[:2000]
    assert re.search(rf"{PAPER_RECORD} paper 0 NVIDIA", status), status[:2000]


def test_executed_chapters_hold_no_errors(built_book):
    for name, chapter in built_book.items():
        assert not _errors(chapter["notebook"]), name
        assert "Traceback" not in chapter["html"], name


def test_mathjax_is_served_locally(built_book):
    assert (book.HTML / "_static" / "mathjax" / "tex-chtml.js").exists()
    pages = [book.HTML / f"{p}.html" for p in book.toc_files()]
    with_math = 0
    for page in pages:
        html = page.read_text(encoding="utf-8")
        scripts = re.findall(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", html)
        if 'class="math' in html:  # Sphinx adds MathJax only to pages with maths
            assert any(re.search(r"(^|/)_static/mathjax/tex-chtml\.js", s) for s in scripts), f"{page}: no local MathJax"
            with_math += 1
        remote = [s for s in scripts if re.match(r"(https?:)?//", s)]
        assert not remote, f"{page}: scripts loaded from the network: {remote}"
        assert not re.search(r"cdn\.jsdelivr|cdnjs|mathjax@|polyfill\.io", html, re.I), f"{page}: CDN URL"
    assert with_math >= 2, "the introduction and chapter 1 typeset maths"


# --------------------------------------------------------------------------- rendered in a browser


def _chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(candidate)
        if path:
            return path
    return None


def _run_chromium(exe: str, profile_dir: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
        f"--user-data-dir={profile_dir}",
    ]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=180)


def test_chapter_renders_in_headless_chromium(built_book, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    chapter = built_book[FIRST_CHAPTER]
    url = chapter["path"].resolve().as_uri()

    dom = _run_chromium(exe, tmp_path / "profile-dom", "--virtual-time-budget=5000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    static_images = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]+)\"", chapter["html"])
    rendered_images = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]+)\"", dom.stdout)
    assert len(rendered_images) >= len(static_images) >= book.count_figures(chapter["notebook"])
    assert "mjx-container" in dom.stdout, "MathJax did not typeset the page"
    assert "<mjx-merror" not in dom.stdout, "MathJax reported a TeX error"

    shot = tmp_path / "shot.png"
    run = _run_chromium(exe, tmp_path / "profile-shot", "--virtual-time-budget=5000", f"--screenshot={shot}",
                        "--window-size=1200,2000", url)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1200, 2000)
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 200, "screenshot is (nearly) blank"
