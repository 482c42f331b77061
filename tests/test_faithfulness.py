"""The faithfulness appendix's measured evaluation choices: which runs measure them at each
profile, that the paper profile trains its missing ones on CUDA only (the smoke profile anywhere),
and that on a CPU the appendix renders the records it has and names the missing ones with the
commands that make them instead of failing."""
from __future__ import annotations

from pathlib import Path

import pytest

from mcr2 import engine, faithfulness
from mcr2.config import CODE_VERSION, config_key
from mcr2.experiments import experiment
from mcr2.faithfulness import (
    BATCHNORM_TOPIC,
    FIT_TOPIC,
    evaluation_arms,
    evaluation_effects,
    evaluation_profile,
    measure_evaluation,
    missing_text,
)
from mcr2.records import write_record


def _write(runs_root: Path, exp, mnist: float, usps: float) -> None:
    """A complete classification record of ``exp`` ending at the given accuracies."""
    epochs = exp.optim.epochs
    history = [{"epoch": e, "loss": 1.0, "R": 10.0, "Rc": 8.0, "delta_r": 2.0, "lr": 0.1, "seconds": 1.0,
                "mnist_acc": mnist, "usps_acc": usps} for e in range(1, epochs + 1)]
    steps = [{"epoch": e, "step": e, "loss": 1.0, "R": 10.0, "Rc": 8.0, "delta_r": 2.0} for e in range(1, epochs + 1)]
    record = {"status": "complete", "name": exp.name, "profile": exp.profile, "seed": exp.seed, "key": config_key(exp),
              "code_version": CODE_VERSION, "config": exp.to_dict(),
              "provenance": {"git_commit": "feedface" * 5, "git_dirty": False},
              "data": {"train": {"N": 60_000}}, "summary": history[-1], "wall_time_s": 1.0}
    write_record(exp, runs_root / exp.profile, record, history, steps, {})


def test_arms_change_one_setting_each_and_say_how_to_train_it():
    smoke = evaluation_arms("smoke", 0)
    assert [a.topic for a in smoke] == [BATCHNORM_TOPIC] * 2 + [FIT_TOPIC] * 2
    assert [a.experiment.profile for a in smoke] == ["smoke", "custom", "smoke", "custom"]
    assert smoke[1].experiment.eval.recalibrate_bn is False and smoke[3].experiment.eval.fit_limit == 200  # 600 / 3
    paper = evaluation_arms("paper", 2)
    # At the paper profile a third of MNIST is the default fit, so the run on all images is the changed one.
    assert [a.experiment.profile for a in paper] == ["paper", "custom", "custom", "paper"]
    assert paper[2].experiment.eval.fit_limit is None and paper[3].experiment.eval.fit_limit == 20_000
    for arm in paper:
        assert arm.experiment == experiment(arm.experiment.name, "paper", 2, **arm.overrides)
    assert paper[1].command() == ("python -m mcr2 run cls_mnist_ce --profile paper --seeds 2 "
                                  "--set eval.recalibrate_bn=false")
    assert paper[2].command().endswith("--set eval.fit_limit=null")
    assert paper[3].command() == "python -m mcr2 run cls_mnist_mcr2 --profile paper --seeds 2"
    with pytest.raises(ValueError, match="'smoke' or 'paper'"):
        evaluation_arms("auto")


@pytest.mark.parametrize("profile, device, trains", [("paper", "cuda", True), ("paper", "cpu", False),
                                                     ("smoke", "cpu", True)])
def test_missing_runs_train_on_cuda_or_on_the_smoke_profile_only(monkeypatch, profile, device, trains):
    asked = []

    def fake_run(exp, *, device, progress, train_if_missing):
        asked.append((exp, train_if_missing))
        raise engine.RecordMissing(exp.name)

    monkeypatch.setattr(engine, "run", fake_run)
    arms = measure_evaluation(profile, 0, device=device, progress="off")
    assert [exp for exp, _ in asked] == [a.experiment for a in evaluation_arms(profile, 0)]
    assert {train for _, train in asked} == {trains}
    assert all(a.record is None for a in arms)


def test_paper_profile_on_a_cpu_renders_what_it_has_and_names_the_missing_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MCR2_RUNS", str(tmp_path))
    assert evaluation_profile("auto", 0, "cpu") == "smoke"  # no paper records of the four runs here
    assert evaluation_profile("auto", 0, "cuda") == "paper" and evaluation_profile("paper", 0, "cpu") == "paper"
    arms = evaluation_arms("paper", 0)
    _write(tmp_path, arms[0].experiment, 0.986, 0.276)  # the committed paper CE record, say

    measured = measure_evaluation("paper", 0, device="cpu")  # no training, no RecordMissing
    assert [a.record is not None for a in measured] == [True, False, False, False]
    assert not (tmp_path / "custom").exists()  # nothing trained
    effects = evaluation_effects(measured)
    assert effects[BATCHNORM_TOPIC] == ("paper cls_mnist_ce, seed 0: MNIST 0.986, USPS 0.276 re-estimated; "
                                       "with the training-time running averages: no record yet")
    assert effects[FIT_TOPIC].count("no record yet") == 2
    faithfulness.deviations_table(effects)  # the appendix's table takes them
    text = missing_text(measured)
    assert "cls_mnist_ce seed 0 with eval.recalibrate_bn = false" in text
    assert "`python tools/book.py execute 10_faithfulness --profile paper`" in text
    for arm in measured[1:]:
        assert f"`{arm.command()}`" in text
    assert f"`{arms[0].command()}`" not in text

    for arm in arms[1:]:
        _write(tmp_path, arm.experiment, 0.9, 0.3)
    complete = measure_evaluation("paper", 0, device="cpu")
    assert missing_text(complete) == "" and evaluation_profile("auto", 0, "cpu") == "paper"
    assert "no record yet" not in "".join(evaluation_effects(complete).values())
