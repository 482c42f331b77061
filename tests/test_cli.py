"""`python -m mcr2`: every bad input is refused with a clear message before any data is read or any
record folder is made; a tiny run with --set overrides writes its record where it is told."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mcr2.data
import mcr2.engine
import mcr2.records
from mcr2.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "data.train_limit=40", "--set", "data.val_limit=10", "--set", "optim.epochs=1",
        "--set", "optim.batch_size=20", "--set", "eval.feature_samples=200", "--set", "eval.feature_keep=50"]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Records in a temporary folder, data from the shared root, and no training unless allowed."""
    monkeypatch.setenv("MCR2_RUNS", str(tmp_path / "runs"))
    if "MCR2_DATA" not in os.environ:
        monkeypatch.setenv("MCR2_DATA", str(ROOT.parent / "shared" / "data"))


@pytest.fixture
def no_data(monkeypatch):
    """Reading any data (or training) fails the test: refusals must come first."""
    def boom(*a, **k):
        raise AssertionError("data was read before the input was checked")

    monkeypatch.setattr(mcr2.data, "digits", boom)
    monkeypatch.setattr(mcr2.data, "segmentation", boom)
    monkeypatch.setattr(mcr2.engine, "run", boom)


def refused(argv, capsys, code=2) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "seg_bg_mcr2_masked" in out and "profiles: smoke, paper" in out and "optim.epochs" in out


@pytest.mark.parametrize("item, message", [
    ("data.background=cifar10", """--set data.background='"cifar10"'"""),  # was a bare JSONDecodeError
    ("foo.bar=1", "unknown field 'foo.bar'"),  # was AttributeError
    ("optim.nope=1", "the fields of optim are: optim.optimizer"),  # was TypeError
    ('optim.epochs="x"', "optim.epochs='x' is not valid: an integer"),  # failed after loading data
    ("optim.epochs=2.5", "optim.epochs=2.5 is not valid: an integer"),
    ("optim.epochs=0", "optim.epochs=0 is not valid: an integer ≥ 1"),
    ("optim.batch_size=0", "optim.batch_size=0 is not valid: an integer ≥ 1"),
    ('data.val_domains="mnist"', 'a list such as ["mnist"]'),  # was "domain='m' is not valid"
    ("loss.eps_sq=0", "loss.eps_sq=0.0 is not valid: a number > 0"),
    ("optim.epochs", "not FIELD=VALUE"),
])
def test_bad_set_items_are_refused_before_any_data(item, message, capsys, no_data, tmp_path):
    err = refused(["run", "seg_bg_mcr2", "--set", item], capsys)
    assert message in err
    assert not (tmp_path / "runs").exists()  # no failed record folder


def test_negative_seeds_and_unknown_names(capsys, no_data):
    assert "seed -1 is negative" in refused(["run", "seg_bg_mcr2", "--seeds", "-1"], capsys)
    assert "unknown experiment 'nope'" in refused(["run", "nope"], capsys)
    assert "name at least one experiment" in refused(["run"], capsys)
    assert "unrecognized arguments: --bogus" in refused(["run", "seg_bg_mcr2", "--bogus"], capsys)


def test_devices_that_are_not_here(capsys, no_data, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "no CUDA device is available" in refused(["run", "seg_bg_mcr2", "--device", "cuda"], capsys)
    assert "--device 'foo'" in refused(["run", "seg_bg_mcr2", "--device", "foo"], capsys)


def test_paper_profile_without_cuda_refuses_with_commands_the_cli_accepts(capsys, no_data, monkeypatch):
    """Fault: `run ... --profile paper` on a CPU silently started GPU-scale training."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = refused(["run", "seg_bg_mcr2", "seg_bg_ce", "--profile", "paper", "--seeds", "1", "2"], capsys)
    assert "no CUDA device" in err and "seg_bg_mcr2 seed 1, seg_bg_mcr2 seed 2, seg_bg_ce seed 1" in err
    commands = [line.strip() for line in err.splitlines() if line.strip().startswith("python -m mcr2 ")]
    assert len(commands) == 3
    for command in commands:  # each suggested command parses (none says --profile custom)
        args, rest = build_parser().parse_known_args(command.replace("SECONDS", "60").split()[3:])
        if args.command == "paper":
            import mcr2.paper

            paper_parser = argparse.ArgumentParser()
            mcr2.paper.add_arguments(paper_parser)
            assert paper_parser.parse_args(rest).budget == 60
        else:
            assert args.command == "run" and not rest
    assert "--profile paper --seeds 1 2" in err and "--profile smoke" in err
    err = refused(["run", "seg_bg_mcr2", "--profile", "paper", "--retrain"], capsys)
    assert "To retrain: seg_bg_mcr2 seed 0" in err and "--seeds 0 --retrain" in err


def test_paper_profile_loads_complete_records_on_a_cpu(capsys, monkeypatch, tmp_path):
    """Only missing paper records are refused: complete ones load without CUDA."""
    from mcr2.experiments import experiment

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    exp = experiment("seg_mnist_mcr2", "paper", 0)
    loaded = []
    monkeypatch.setattr(mcr2.records, "find_record", lambda e, d: object() if e == exp else None)

    class Fake:
        status, path, record = "complete", tmp_path, {"wall_time_s": None}

    def fake_run(e, runs_dir, **kw):
        loaded.append(e)
        return Fake()

    monkeypatch.setattr(mcr2.engine, "run", fake_run)
    assert main(["run", "seg_mnist_mcr2", "--profile", "paper"]) == 0
    assert loaded == [exp] and "time unknown" in capsys.readouterr().out  # a null wall time prints


def test_missing_data_root_is_refused_before_any_record_folder(capsys, monkeypatch, tmp_path, no_data):
    monkeypatch.setenv("MCR2_DATA", str(tmp_path / "nowhere"))
    err = refused(["run", "seg_bg_mcr2", *TINY], capsys, code=1)
    assert "data root" in err and "does not exist" in err and "MCR2_DATA" in err
    assert not (tmp_path / "runs").exists()


def test_unwritable_runs_dir_is_refused_before_training(capsys, tmp_path, no_data):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    err = refused(["run", "seg_bg_mcr2", *TINY, "--runs-dir", str(blocker)], capsys, code=1)
    assert "cannot write run records" in err


def test_paper_subcommand_dispatches_to_mcr2_paper(monkeypatch):
    import mcr2.paper

    seen = {}

    def fake_main(args):
        seen["args"] = args
        return 3

    monkeypatch.setattr(mcr2.paper, "main_from_args", fake_main)
    with pytest.raises(SystemExit) as e:
        main(["paper", "--dry-run", "--budget", "60"])
    assert e.value.code == 3 and seen["args"].dry_run and seen["args"].budget == 60
    monkeypatch.setattr(mcr2.paper, "main_from_args", lambda args: 0)
    assert main(["paper", "--dry-run"]) == 0


def test_paper_subcommand_bad_fields_are_named_without_a_traceback(capsys):
    message = refused(["paper", "--seeds", "-1", "--dry-run"], capsys)
    assert "seed" in message and "-1" in message and "Traceback" not in message
    assert "unknown field 'optim.nope'" in refused(["paper", "--set", "optim.nope=1", "--dry-run"], capsys)


def test_a_tiny_run_with_overrides_writes_its_record(tmp_path, capsys):
    runs = tmp_path / "my-runs"
    assert main(["run", "seg_mnist_mcr2", *TINY, "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "== seg_mnist_mcr2 seed 0: complete" in out
    (record,) = runs.glob("seg_mnist_mcr2/seed0-*/record.json")
    assert '"profile": "custom"' in record.read_text()


def test_the_module_entry_point_exits_non_zero_without_a_traceback(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "MCR2_RUNS": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "mcr2", "run", "seg_bg_mcr2", "--profile", "paper"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "python -m mcr2 run seg_bg_mcr2 --profile paper --seeds 0" in out.stderr


# ------------------------------------------------------------------ errors that name what to fix
def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("content, message", [(b"", "the file is empty"), (b"PK\x03\x04 a zip" * 30, "not a readable tar"),
                                              (None, "no such file")])
def test_empty_missing_or_non_tar_packs_are_one_line(tmp_path, capsys, content, message):
    pack = tmp_path / "records.tar.xz"
    if content is not None:
        pack.write_bytes(content)
    line = _one_line(refused(["paper", "--import-pack", str(pack)], capsys, code=1))
    assert message in line and str(pack) in line


def test_a_bad_cost_table_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    import mcr2.costs

    table = tmp_path / "paper_costs.json"
    monkeypatch.setattr(mcr2.costs, "COSTS_FILE", table)
    for content, field in (("{nope", "not valid JSON"), ('{"seconds": {"cls_mnist_ce": {"1": "fast"}}}',
                                                         "seconds.cls_mnist_ce.1 is 'fast'")):
        table.write_text(content)
        line = _one_line(refused(["paper", "--dry-run", "--runs-dir", str(tmp_path / "runs")], capsys, code=1))
        assert str(table) in line and field in line and "git checkout" in line


def test_a_full_disk_names_the_record(tmp_path, capsys, monkeypatch):
    import errno

    def full(exp, runs_dir, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mcr2.engine, "run", full)
    line = _one_line(refused(["run", "cls_mnist_ce", *TINY, "--runs-dir", str(tmp_path / "runs")], capsys, code=1))
    assert "cls_mnist_ce seed 0: its record" in line and str(tmp_path / "runs" / "cls_mnist_ce" / "seed0-") in line
    assert "the disk is full" in line and "Free space" in line


def test_non_integer_num_classes_is_named():
    from mcr2.loss import rate_reduction

    Z, labels = torch.nn.functional.normalize(torch.randn(20, 4), dim=1), torch.randint(0, 2, (20,))
    with pytest.raises(ValueError, match=r"num_classes must be an integer ≥ 1 .*got 2.5"):
        rate_reduction(Z, labels, 2.5)
    assert torch.isfinite(rate_reduction(Z, labels, torch.tensor(2)).loss)  # an integer tensor is an integer


def test_a_tiny_eps_sq_divergence_blames_eps_sq_not_the_learning_rate(monkeypatch):
    from mcr2.experiments import experiment
    from mcr2.training import TrainingDiverged, _Trainer

    def diverged(name, **overrides):
        trainer = _Trainer(experiment(name, "smoke", 0, **overrides), None, torch.device("cpu"), "off")
        trainer.in_channels = 1
        trainer._build_model()
        trainer.mask_on = True
        trainer.X, trainer.Y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
        monkeypatch.setattr(trainer, "_eager_step", lambda x, y: torch.tensor([float("nan")] * 4))
        with pytest.raises(TrainingDiverged) as err:
            trainer._epoch(1)
        return str(err.value)

    assert "loss.eps_sq=1e-30 is too small" in diverged("cls_mnist_mcr2", **{"loss.eps_sq": 1e-30})
    assert "lower optim.lr" in diverged("cls_mnist_mcr2") and "eps_sq" not in diverged("cls_mnist_mcr2").split(";")[1][:40]
    assert "lower optim.lr" in diverged("cls_mnist_ce", **{"loss.eps_sq": 1e-30})  # CE has no coding rate


def test_too_few_cifar_pictures_are_named(tmp_path):
    import numpy as np

    from mcr2.data import DataCorruptError
    from mcr2.data.backgrounds import _load_backgrounds

    np.savez(tmp_path / "cifar100_images.npz", images=np.zeros((3, 32, 32, 3), np.uint8))
    with pytest.raises(DataCorruptError, match=r"holds 3 pictures, too few") as err:
        _load_backgrounds("cifar100", "val", tmp_path, download=False)
    assert "cifar100_images.npz" in str(err.value)


def test_book_tool_names_damaged_notebooks_and_bad_parameters(tmp_path):
    import jupytext

    from _book_tool import book

    for content in ("{not json", "[1, 2]", '{"cells": [3]}'):
        (tmp_path / "03_x.ipynb").write_text(content)
        with pytest.raises(book.BookError, match=r"03_x.ipynb is damaged .*make chapter NAME=03_x") as err:
            book.notebook_errors(tmp_path / "03_x.ipynb")
        assert "\n" not in str(err.value)
    nb = jupytext.read(ROOT / "book" / "01_rate_reduction.py")
    with pytest.raises(book.BookError, match=r"-p num_classes=2.5: chapter 01_rate_reduction's num_classes is int "
                                             r"\(default 4\), not float"):
        book.check_params("01_rate_reduction", nb, book.parse_params(["num_classes=2.5"]))
    with pytest.raises(book.BookError, match="eps_sq is float"):
        book.check_params("01_rate_reduction", nb, book.parse_params(["eps_sq=small"]))
    with pytest.raises(book.BookError, match="has no parameter 'epochs'"):
        book.check_params("01_rate_reduction", nb, {"epochs": 3})
    book.check_params("01_rate_reduction", nb, book.parse_params(["eps_sq=1", "seed=3", "progress=lines"]))
    book.check_params("01_rate_reduction", nb, {"epochs": 3}, every_param=False)  # a build: not this chapter's
    with pytest.raises(book.BookError, match="the profile is chosen with --profile"):
        book.parse_params(["profile=paper"])
