"""Chapter 11's experiments and diagnostics: every new experiment trains at smoke scale, the new
knobs leave the existing experiments' keys and training alone, the new history columns are right on
constructed cases (against slow loops), old records load without them, and the verdicts follow the
ledger's rule."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import mcr2.training as training
from mcr2 import differences, paper
from mcr2.claims import DIGIT_EDGE_COLUMN
from mcr2.config import LATER_FIELDS, ConfigError, config_key, experiment_from_dict
from mcr2.costs import load_costs
from mcr2.evaluation import digit_edge, digit_errors, edge_counts
from mcr2.experiments import DIFFERENCE_EXPERIMENTS, EXPERIMENTS, PROFILES, experiment
from mcr2.masking import shared_gradient_norms, shared_parameters
from mcr2.metrics import confusion_matrix
from mcr2.records import find_record, load_record

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "results" / "paper"
needs_data = pytest.mark.skipif(
    not (ROOT.parent / "shared" / "data" / "MNIST").exists() and "MCR2_DATA" not in __import__("os").environ,
    reason="needs MNIST/CIFAR-100: set MCR2_DATA (CI points it at ../shared/data)",
)

# Tiny runs; the masked ones switch MCR² on after the first epoch (threshold 0.05), so the masked
# MCR² step and its diagnostics both run.
TINY = {"data.train_limit": 24, "data.val_limit": 12, "optim.epochs": 2, "optim.batch_size": 12,
        "eval.feature_samples": 300, "eval.feature_keep": 50, "eval.preview_images": 2,
        "loss.mask_check_images": 6}
MASKED_TINY = {**TINY, "loss.mask_threshold": 0.05}


@pytest.fixture(autouse=True)
def data_root(monkeypatch):
    import os

    if "MCR2_DATA" not in os.environ:
        monkeypatch.setenv("MCR2_DATA", str(ROOT.parent / "shared" / "data"))


def tiny(name, seed=0, **more):
    masked = EXPERIMENTS[name]["loss"].get("background_mask") is not None
    return experiment(name, "smoke", seed, **{**(MASKED_TINY if masked else TINY), **more})


# --------------------------------------------------------------------------- config and keys


def test_new_knobs_leave_every_existing_key_alone():
    for name in set(EXPERIMENTS) - set(DIFFERENCE_EXPERIMENTS):
        for profile in PROFILES:
            d = experiment(name, profile).to_dict()
            for dotted in LATER_FIELDS:
                part, field = dotted.split(".")
                assert field not in d[part], (name, profile, dotted)
    # The committed records' keys (written before the knobs existed) are still what the configs give.
    found = 0
    for rec_json in sorted(PAPER.glob("*/seed*/record.json")):
        meta = json.loads(rec_json.read_text())
        exp = experiment(meta["name"], "paper", meta["seed"])
        assert config_key(exp) == meta["key"] and find_record(exp, PAPER) is not None, rec_json
        found += 1
    assert found >= 5


@pytest.mark.parametrize("dotted, value", [("data.repeat_each", 3), ("optim.shuffle", False),
                                           ("loss.mask_drop_background", True)])
def test_a_later_field_enters_the_key_only_when_changed(dotted, value):
    base = experiment("seg_bg_mcr2_masked", "smoke")
    changed = base.replace(**{dotted: value})
    part, field = dotted.split(".")
    assert changed.to_dict()[part][field] == value
    assert config_key(changed) != config_key(base)
    assert experiment_from_dict(changed.to_dict()) == changed
    assert experiment_from_dict(base.to_dict()) == base


def test_new_knobs_are_checked():
    with pytest.raises(ConfigError, match="mask_drop_background"):
        experiment("seg_bg_mcr2", "smoke", **{"loss.mask_drop_background": True})
    with pytest.raises(ConfigError, match="data.repeat_each"):
        experiment("seg_bg_ce", "smoke", **{"data.repeat_each": 0})


def test_each_difference_experiment_changes_one_thing_of_a_report_experiment():
    base = {"seg_bg_mcr2_masked_gt": "seg_bg_mcr2_masked", "seg_bg_mcr2_masked_lam01": "seg_bg_mcr2_masked",
            "seg_bg_mcr2_masked_nobg": "seg_bg_mcr2_masked", "seg_mnist_mcr2_masked": "seg_mnist_mcr2",
            "seg_mnist_mcr2_r30": "seg_mnist_mcr2", "seg_bg_ce_faults": "seg_bg_ce"}
    assert set(base) == set(DIFFERENCE_EXPERIMENTS)
    for name, of in base.items():
        a, b = experiment(name, "paper").to_dict(), experiment(of, "paper").to_dict()
        diff = {(p, f) for p in ("data", "model", "loss", "optim", "eval")
                for f in set(a[p]) | set(b[p]) if a[p].get(f) != b[p].get(f)}
        assert 1 <= len(diff) <= 2, (name, diff)  # the faults: two settings of one fault family
    assert all(c.arm in EXPERIMENTS and c.baseline in EXPERIMENTS for c in differences.CAUSES)


def test_paper_runner_puts_the_difference_experiments_after_every_report_experiment(tmp_path):
    plan = paper.plan_runs([0, 1, 2], tmp_path, load_costs())
    names = [p.name for p in plan]
    first = min(i for i, n in enumerate(names) if n in DIFFERENCE_EXPERIMENTS)
    assert set(names[first:]) == set(DIFFERENCE_EXPERIMENTS)
    assert all(n not in DIFFERENCE_EXPERIMENTS for n in names[:first])
    assert sorted(n for _, members in paper.AFTER_REPORT for n in members) == sorted(DIFFERENCE_EXPERIMENTS)
    # Question 1's three arms get their three seeds before anything else of the chapter starts.
    q1 = {"seg_bg_mcr2_masked_gt", "seg_bg_mcr2_masked_lam01", "seg_bg_mcr2_masked_nobg"}
    assert set(names[first:first + 9]) == q1 and [p.seed for p in plan[first:first + 9]] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_epoch_order_repeats_items_and_keeps_batches_fixed():
    exp = experiment("seg_bg_ce_faults", "smoke")
    one, two = training.epoch_order(exp, 12, 1), training.epoch_order(exp, 12, 2)
    assert one.tolist() == two.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    plain = experiment("seg_bg_ce", "smoke")
    g = torch.Generator().manual_seed(plain.seed * 100_003 + 1)
    assert training.epoch_order(plain, 12, 1).tolist() == torch.randperm(12, generator=g).tolist()
    assert training.epoch_order(plain, 12, 1).tolist() != training.epoch_order(plain, 12, 2).tolist()


# --------------------------------------------------------------------------- the new columns


def _slow_columns(pred: np.ndarray, target: np.ndarray) -> dict:
    """acc_digit_edge and the error split by loops over pixels, float64."""
    B, H, W = target.shape
    edge_right = edge_all = digits = as_bg = wrong = 0
    pixels = fg_pred = 0
    for b in range(B):
        for i in range(H):
            for j in range(W):
                t, p = int(target[b, i, j]), int(pred[b, i, j])
                pixels += 1
                fg_pred += p != 0
                if t == 0:
                    continue
                digits += 1
                as_bg += p == 0
                wrong += p != 0 and p != t
                near = [(i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)]
                if any(0 <= a < H and 0 <= c < W and target[b, a, c] == 0 for a, c in near):
                    edge_all += 1
                    edge_right += p == t
    return {"acc_digit_edge": edge_right / edge_all, "digit_as_background": as_bg / digits,
            "digit_wrong_digit": wrong / digits, "pred_foreground_share": fg_pred / pixels}


def test_edge_accuracy_and_error_split_match_slow_loops():
    g = torch.Generator().manual_seed(0)
    target = torch.zeros(3, 7, 9, dtype=torch.long)
    target[:, 1:6, 2:8] = torch.randint(1, 11, (3, 5, 6), generator=g)  # digit blocks, some touching the border
    target[1, :, 0] = 4
    target[2, 3, 4] = 0  # a hole: its 4 neighbours are edge pixels
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.6, target, torch.randint(0, 11, target.shape, generator=g))
    counts = edge_counts(pred, target)
    errors = digit_errors(confusion_matrix(pred, target, 11))
    slow = _slow_columns(pred.numpy(), target.numpy())
    assert int(counts[0]) / int(counts[1]) == pytest.approx(slow["acc_digit_edge"], abs=1e-12)
    for key in ("digit_as_background", "digit_wrong_digit", "pred_foreground_share"):
        assert errors[key] == pytest.approx(slow[key], abs=1e-12), key
    # The hole's four neighbours are edge pixels; outside the image is not background.
    edge = digit_edge(target)
    assert bool(edge[2, 2, 4]) and bool(edge[2, 4, 4]) and bool(edge[2, 3, 3]) and bool(edge[2, 3, 5])
    assert not bool(digit_edge(torch.ones(1, 3, 3, dtype=torch.long)).any())


def test_error_split_and_foreground_accuracy_add_up_to_one():
    g = torch.Generator().manual_seed(1)
    target, pred = torch.randint(0, 11, (4, 6, 6), generator=g), torch.randint(0, 11, (4, 6, 6), generator=g)
    conf = confusion_matrix(pred, target, 11)
    e = digit_errors(conf)
    fg_acc = int(torch.diagonal(conf)[1:].sum()) / int(conf[1:].sum())
    assert fg_acc + e["digit_as_background"] + e["digit_wrong_digit"] == pytest.approx(1.0, abs=1e-12)


@needs_data
def test_gradient_norms_match_separate_backward_passes_and_touch_nothing(tmp_path):
    exp = tiny("seg_bg_mcr2_masked_lam01")
    t = training._Trainer(exp, tmp_path, torch.device("cpu"), "off")
    t._load_data()
    t._build_model()
    t.mask_on = True
    t.modules.train()
    bn = {k: v.clone() for k, v in t.model.state_dict().items() if "running" in k or "num_batches" in k}
    norms = shared_gradient_norms(t)
    assert all(p.grad is None for p in t.modules.parameters())
    for k, v in t.model.state_dict().items():
        if k in bn:
            assert torch.equal(v, bn[k]), k
    # Reference: each term back-propagated alone into .grad, norms summed in float64.
    shared = shared_parameters(t.model)
    assert 0 < len(shared) < len(list(t.model.parameters()))  # the output conv is not shared
    x, y = t.X[:exp.optim.batch_size], t.Y[:exp.optim.batch_size]
    for column, term in (("grad_ce_shared", "ce"), ("grad_mcr2_shared", "mcr2")):
        t.opt.zero_grad(set_to_none=True)
        feats, Z, bg = t._features(x)
        if term == "ce":
            loss = torch.nn.functional.cross_entropy(bg.float(), (y > 0).long())
        else:
            loss = exp.loss.mcr2_weight * t._mcr2_term(feats, Z, y, t._mask_keep(bg, y)).loss
        loss.backward()
        ref = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in shared if p.grad is not None))
        assert norms[column] == pytest.approx(ref, rel=1e-5), column


@needs_data
def test_diagnostics_leave_training_unchanged(tmp_path, monkeypatch):
    exp = tiny("seg_bg_mcr2_masked")
    with_diag = training._Trainer(exp, tmp_path / "a", torch.device("cpu"), "off").train()
    monkeypatch.setattr(training, "shared_gradient_norms", lambda trainer: {})
    without = training._Trainer(exp, tmp_path / "b", torch.device("cpu"), "off").train()
    assert with_diag.record["events"]["mask_switch_epoch"] == 1  # MCR² trained in epoch 2
    assert {"grad_ce_shared", "grad_mcr2_shared"} <= set(with_diag.history.columns)
    assert not {"grad_ce_shared", "grad_mcr2_shared"} & set(without.history.columns)
    np.testing.assert_array_equal(with_diag.steps["loss"].to_numpy(), without.steps["loss"].to_numpy())
    shared = [c for c in without.history.columns if c != "seconds"]
    pd.testing.assert_frame_equal(with_diag.history[shared], without.history[shared])


@needs_data
@pytest.mark.parametrize("name", list(DIFFERENCE_EXPERIMENTS))
def test_every_difference_experiment_trains_at_smoke_scale(name, tmp_path):
    from mcr2.engine import run

    rec = run(tiny(name), tmp_path, progress="off")
    assert rec.status == "complete" and len(rec.history) == 2
    h = rec.history
    for col in (DIGIT_EDGE_COLUMN, "mnist_digit_as_background", "mnist_digit_wrong_digit",
                "mnist_pred_foreground_share"):
        values = h[col].to_numpy(dtype=float)
        assert np.isfinite(values).all() and ((0 <= values) & (values <= 1)).all(), col
    split = h["mnist_foreground_acc"] + h["mnist_digit_as_background"] + h["mnist_digit_wrong_digit"]
    np.testing.assert_allclose(split.to_numpy(dtype=float), 1.0, atol=1e-9)
    masked = rec.config.loss.background_mask is not None
    assert ({"grad_ce_shared", "grad_mcr2_shared"} <= set(h.columns)) == masked
    if masked:
        assert rec.record["events"]["mask_switch_epoch"] == 1 and bool(rec.steps["mcr2_on"].iloc[-1])
        assert (h["grad_ce_shared"] > 0).all() and (h["grad_mcr2_shared"] > 0).all()
        assert differences.grad_ratio_at_switch(rec) > 0
        assert math.isfinite(differences.head_low_after_switch(rec))
    assert differences.error_split(rec)["source"] == "all validation pixels"
    assert load_record(rec.path).config == rec.config


# --------------------------------------------------------------------------- old records and verdicts


def test_old_records_load_and_read_without_the_new_columns():
    rec = find_record(experiment("seg_bg_mcr2_masked", "paper", 0), PAPER)
    assert rec is not None
    assert DIGIT_EDGE_COLUMN not in rec.history.columns and "grad_ce_shared" not in rec.history.columns
    assert math.isnan(differences.grad_ratio_at_switch(rec))
    split = differences.error_split(rec)
    assert split["source"].endswith("preview images") and 0 <= split["as_background"] <= 1
    assert 0.5 < differences.head_low_after_switch(rec) <= differences.head_best_after_switch(rec) <= 1


def _fake(name, profile, seed, head_low, fg=0.9):
    """A record-like object of a masked run that switched after epoch 2 of 4."""
    exp = experiment(name, profile, seed)
    h = pd.DataFrame({"epoch": [1, 2, 3, 4], "mnist_bg_head_acc": [0.9, 0.99, head_low, 0.98],
                      "mnist_foreground_acc": [0.1, 0.2, 0.5, fg], "mnist_background_acc": [0.9] * 4})
    return SimpleNamespace(config=exp, history=h, record={"events": {"mask_switch_epoch": 2}}, artefacts={})


def test_a_cause_is_decided_only_by_three_paper_seeds_per_arm():
    def records(profile, arm_values, seeds=3):
        return {"seg_bg_mcr2_masked": [_fake("seg_bg_mcr2_masked", profile, s, 0.84 + 0.002 * s) for s in range(seeds)],
                "seg_bg_mcr2_masked_lam01": [_fake("seg_bg_mcr2_masked_lam01", profile, s, v)
                                             for s, v in enumerate(arm_values[:seeds])]}

    def verdict(recs):
        table = differences.cause_verdicts(recs, 1)
        return table[table["cause"].str.startswith("MCR²'s gradient")].iloc[0]

    row = verdict(records("paper", [0.97, 0.975, 0.98]))
    assert row["verdict"] == "supported" and "n = 3/3" in row["test"]
    assert verdict(records("paper", [0.80, 0.79, 0.81]))["verdict"].startswith("contradicted")
    assert verdict(records("paper", [0.70, 0.99, 0.84]))["verdict"].startswith("not supported")
    smoke = verdict(records("smoke", [0.97, 0.975, 0.98]))
    assert smoke["verdict"] == "undecided" and "smoke profile" in smoke["why"]
    two = verdict(records("paper", [0.97, 0.975], seeds=2))
    assert two["verdict"] == "undecided" and "≥ 3 per arm" in two["why"]
    mixed = records("paper", [0.97, 0.975, 0.98])
    mixed["seg_bg_mcr2_masked_lam01"] = records("smoke", [0.97, 0.975, 0.98])["seg_bg_mcr2_masked_lam01"]
    row = verdict(mixed)
    assert row["verdict"] == "undecided" and row["test"].startswith("none: runs of different profiles")
    other = differences.cause_verdicts(records("paper", [0.97, 0.975, 0.98]), 1)
    assert (other.loc[other["cause"].str.contains("ground truth"), "why"].str.contains("no records")).all()


def test_decide_command_names_the_missing_runs_and_their_cost(tmp_path):
    command, seconds = differences.decide_command(1, tmp_path)
    assert command.startswith("python -m mcr2 paper --only ") and "--budget" in command
    for name in differences.question_experiments(1):
        assert name in command
    assert seconds > 0 and int(command.rsplit(" ", 1)[1]) >= seconds


# --------------------------------------------------------------------------- the chapter


def test_chapter_is_in_the_book_after_chapter_7_and_papermill_reads_its_parameters():
    import ast

    import jupytext
    from papermill.translators import PythonTranslator

    toc = (ROOT / "_toc.yml").read_text()
    assert "book/07_feature_space\n      - file: book/11_why_results_differ\n" in toc
    nb = jupytext.read(ROOT / "book" / "11_why_results_differ.py")
    assert nb.cells[0].source.startswith("# Why the results differ")
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    parsed = PythonTranslator.inspect(cell)
    assigned = [node.targets[0].id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)]
    assert [p.name for p in parsed] == assigned
    defaults = {p.name: p.default for p in parsed}
    assert defaults["profile"] == '"auto"' and "progress" in defaults
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    # Verdicts come from the ledger's rule in mcr2.differences, never from the chapter's own tests.
    assert "cause_verdicts" in code and "welch" not in code and "ttest" not in code
