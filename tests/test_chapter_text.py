"""What the experiment chapters say comes from the records: no chapter computes a verdict of its
own (every one comes from the claims ledger's evaluator), every chapter defaults to the "auto"
profile, and the masking chapter, executed on hand-made records, describes what those records
hold: a page built from paper records names the paper profile and tells the head's collapse
and recovery; a masked run that never switched on is labelled as such, never captioned as
masked MCR²."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pytest
from papermill.translators import PythonTranslator

from mcr2.config import CODE_VERSION, config_key
from mcr2.experiments import experiment
from mcr2.records import write_record

ROOT = Path(__file__).resolve().parents[1]
VERDICT_CHAPTERS = {"03_classification": ["1", "2a", "2b"], "05_backgrounds": ["3"], "06_masking": ["4", "5"],
                    "07_feature_space": ["6"], "09_claims": None}
AUTO_CHAPTERS = [*VERDICT_CHAPTERS, "10_faithfulness"]


def _code(name: str) -> str:
    nb = jupytext.read(ROOT / "book" / f"{name}.py")
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def _parameters(name: str):
    nb = jupytext.read(ROOT / "book" / f"{name}.py")
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return cell, PythonTranslator.inspect(cell)


# --------------------------------------------------------------------------- static checks


@pytest.mark.parametrize("name", list(VERDICT_CHAPTERS))
def test_chapters_print_only_the_ledgers_verdicts(name):
    code = _code(name)
    # No verdict of its own: no "holds", no claim flags, no comparisons of result tables.
    assert not re.search(r"\bholds\b|does not hold", code), name
    assert not re.search(r"^\s*claim\d*\s*=", code, re.M), name
    assert not re.search(r"(acc|fg|rates|summary|un|ma)\s*\[[^\]]*\]\s*[<>]=?", code), name
    tree = ast.parse(code)
    imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "mcr2.claims"
                for a in node.names}
    if VERDICT_CHAPTERS[name] is None:
        assert "evaluate_claims" in imported
    else:
        assert {"claims_table", "verdict_text"} <= imported, name
        for label in VERDICT_CHAPTERS[name]:
            assert f'"{label}"' in code, f"{name} does not show claim {label}"


@pytest.mark.parametrize("name", AUTO_CHAPTERS)
def test_chapters_default_to_the_auto_profile_and_papermill_reads_every_parameter(name):
    cell, parsed = _parameters(name)
    assigned = [node.targets[0].id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)]
    assert [p.name for p in parsed] == assigned, f"papermill cannot parse a line of {name}'s parameters cell"
    defaults = {p.name: p.default for p in parsed}
    assert defaults["profile"] == '"auto"' and "progress" in defaults


# --------------------------------------------------------------------------- the masking chapter on made-up records


def _write(runs_root: Path, name: str, profile: str, rows: list[dict], switch=None, fg_prob: float = 0.9):
    """A complete record of ``name`` whose per-epoch history is ``rows`` (epochs from 1)."""
    exp = experiment(name, profile, 0)
    assert len(rows) == exp.optim.epochs
    rng = np.random.default_rng(0)
    n = 4
    masks = np.zeros((n, 28, 28), np.uint8)
    masks[:, 8:20, 10:18] = rng.integers(1, 11, size=(n, 1, 1))
    history = [{"epoch": e, "loss": 1.0, "R": 10.0 + e, "Rc": 8.0, "delta_r": 2.0 + e, "lr": 1e-3,
                "mcr2_on": switch is not None and e > switch, "seconds": 1.0, **row} for e, row in enumerate(rows, 1)]
    steps = [{"epoch": e, "step": e, "loss": 1.0, "R": 10.0, "Rc": 8.0, "delta_r": 2.0, "mcr2_on": True}
             for e in range(1, len(rows) + 1)]
    artefacts = {"preview_images": rng.random((n, 3, 28, 28)).astype(np.float16), "preview_masks": masks,
                 "preview_pred": masks.copy()}
    if exp.loss.background_mask is not None:
        artefacts["preview_fg_prob"] = np.where(masks > 0, fg_prob, 0.0).astype(np.float16)
    record = {"status": "complete", "name": name, "profile": profile, "seed": 0, "key": config_key(exp),
              "code_version": CODE_VERSION, "config": exp.to_dict(),
              "provenance": {"git_commit": "feedface" * 5, "git_dirty": False},
              "data": {"train": {"N": 300}}, "summary": history[-1], "events": {"mask_switch_epoch": switch},
              "wall_time_s": 1.0}
    write_record(exp, runs_root / profile, record, history, steps, artefacts)


def _segmentation_rows(epochs: int, fg) -> list[dict]:
    return [{"mnist_foreground_acc": fg(e), "mnist_background_acc": 0.98, "mnist_pixel_acc": 0.95,
             "mnist_mean_iou": 0.5} for e in range(1, epochs + 1)]


def _execute(tmp_path, monkeypatch, profile: str) -> str:
    """Execute 06_masking on the records under tmp_path/runs; all the page's printed and glued text."""
    monkeypatch.setenv("MCR2_RUNS", str(tmp_path / "runs"))
    from _book_tool import book

    out = book.execute("06_masking", profile, {"profile": profile, "device": "cpu"}, out_dir=tmp_path / "out")
    nb = nbformat.read(out["output"], as_version=4)
    texts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            assert o.get("output_type") != "error", o
            texts.append(o.get("text", ""))
            for mime, value in o.get("data", {}).items():
                if "markdown" in mime or "text/plain" in mime or "text/html" in mime:
                    texts.append(value if isinstance(value, str) else str(value))
    return "\n".join(texts)


def _masked_rows(epochs, check, fg, bg):
    rows = _segmentation_rows(epochs, fg)
    for e, row in enumerate(rows, 1):
        row.update(bg_check_acc=check(e), mnist_background_acc=bg(e), mnist_bg_head_acc=check(e) - 0.01)
    return rows


@pytest.mark.book
def test_masking_page_from_paper_records_tells_the_collapse_and_recovery(tmp_path, monkeypatch):
    epochs = experiment("seg_bg_mcr2_masked", "paper").optim.epochs
    collapsed = range(4, 7)
    _write(tmp_path / "runs", "seg_bg_mcr2_masked", "paper", _masked_rows(
        epochs, check=lambda e: 0.96 if e < 3 else 0.991 if e == 3 else 0.857 if e in collapsed else 0.97,
        fg=lambda e: 0.0 if e in collapsed else 0.13 if e < 4 else 0.95,
        bg=lambda e: 1.0 if e in collapsed else 0.98), switch=3)
    _write(tmp_path / "runs", "seg_bg_mcr2", "paper", _segmentation_rows(epochs, lambda e: 0.9))
    _write(tmp_path / "runs", "seg_bg_ce", "paper", _segmentation_rows(epochs, lambda e: 0.93))
    page = _execute(tmp_path, monkeypatch, "auto")
    assert "profile paper" in page and "(paper profile, 30 epochs)" in page
    assert "reached the threshold 0.99 after epoch 3" in page and "MCR² trained from epoch 4 on" in page
    assert "At epochs 4–6 the head called (almost) every pixel background" in page
    assert "From epoch 7 it recovered" in page
    assert "These runs switch at 0.99." in page
    assert "inconclusive (leaning" in page and "1 seed (≥ 3 per arm needed)" in page


@pytest.mark.book
def test_masked_run_that_never_switched_on_is_labelled_on_the_page(tmp_path, monkeypatch):
    epochs = experiment("seg_bg_mcr2_masked", "smoke").optim.epochs
    _write(tmp_path / "runs", "seg_bg_mcr2_masked", "smoke", _masked_rows(
        epochs, check=lambda e: 0.85 + 0.01 * e, fg=lambda e: 0.0, bg=lambda e: 1.0), switch=None, fg_prob=0.0)
    _write(tmp_path / "runs", "seg_bg_mcr2", "smoke", _segmentation_rows(epochs, lambda e: 0.2))
    _write(tmp_path / "runs", "seg_bg_ce", "smoke", _segmentation_rows(epochs, lambda e: 0.1))
    page = _execute(tmp_path, monkeypatch, "smoke")
    assert "MCR² never switched on" in page
    assert "trained from epoch" not in page and "switched MCR² on" not in page
    assert "the second row is black" in page
    assert "MCR² never trained in seg_bg_mcr2_masked" in page  # the ledger's reason, on the page
    assert "The masked run: seed 0: MCR² never switched on" in page
