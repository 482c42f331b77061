"""The CUDA-graph training step: its clear errors and re-capture key (CPU), and that it trains as
the eager loop does (CUDA only)."""
from types import SimpleNamespace

import pytest
import torch

from mcr2.experiments import experiment
from mcr2.graphs import GraphedStep, _capture_key, _holds_lr, _make_capturable, _uncached_autocast, step_log
from mcr2.training import _Trainer


def _trainer(name: str, device: torch.device, mask_on: bool = True, **overrides):
    """A built trainer without data (as benchmarks/bench_train.py makes one), plus a random batch."""
    exp = experiment(name, "smoke", 0, **overrides)
    trainer = _Trainer(exp, None, device, "off")
    seg = exp.data.task == "segmentation"
    channels = 3 if exp.data.background else 1
    trainer.in_channels = channels
    trainer._build_model()
    trainer.mask_on = mask_on
    return trainer, channels, seg


def _batch(bs, channels, seg, device, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(bs, channels, 28, 28, generator=g)
    y = torch.randint(0, 11, (bs, 28, 28), generator=g) if seg else torch.randint(0, 10, (bs,), generator=g)
    return x.to(device), y.to(device)


def test_cpu_trainer_is_refused():
    trainer, _, _ = _trainer("cls_mnist_mcr2", torch.device("cpu"))
    with pytest.raises(ValueError, match="CUDA device.*cpu"):
        GraphedStep(trainer)


def test_distributed_and_bad_warmup_are_refused():
    fake = SimpleNamespace(device=torch.device("cuda"), world=2)
    with pytest.raises(ValueError, match="distributed.*world size 2"):
        GraphedStep(fake)
    with pytest.raises(ValueError, match="warmup"):
        GraphedStep(SimpleNamespace(device=torch.device("cuda"), world=1), warmup=0)


def test_capture_key_follows_scheduler_and_mode():
    """SGD's graph bakes the learning rate in (a scheduler step captures again); Adam's graph reads
    it from a tensor it holds, so only the mode is in its key."""
    trainer, _, _ = _trainer("seg_bg_mcr2_masked", torch.device("cpu"), mask_on=False, **{"optim.optimizer": "sgd"})
    assert trainer.exp.optim.lr_decay != 1 and not _holds_lr(trainer.opt)
    key = _capture_key(trainer)
    assert key == (False, (trainer.exp.optim.lr,))
    trainer.mask_on = True
    assert _capture_key(trainer) == (True, key[1])
    trainer.opt.step()  # (no grads: nothing moves) keeps the scheduler from warning about the order
    trainer.sched.step()
    assert _capture_key(trainer)[1] != key[1]
    assert _capture_key(trainer)[1] == (pytest.approx(trainer.exp.optim.lr * trainer.exp.optim.lr_decay),)
    adam, _, _ = _trainer("seg_bg_mcr2_masked", torch.device("cpu"), mask_on=False)
    assert adam.exp.optim.optimizer == "adam" and _holds_lr(adam.opt)
    adam.opt.step()
    adam.sched.step()
    assert _capture_key(adam, lr_held=True) == (False, ())


def test_graphs_setting_names_models_or_all_or_none(monkeypatch):
    from mcr2 import training

    assert training._graphs_setting("1") is True and training._graphs_setting("0") is False
    assert training._graphs_setting("resnet18") == {"resnet18"}
    assert training._graphs_setting("resnet18, unet") == {"resnet18", "unet"}
    with pytest.raises(ValueError, match="MCR2_CUDA_GRAPHS='vgg'.*resnet18, unet"):
        training._graphs_setting("vgg")
    monkeypatch.setattr(training, "CUDA_GRAPHS", frozenset({"resnet18"}))
    assert training.graphs_for("resnet18") and not training.graphs_for("unet")
    from mcr2 import costs

    table = {"seconds": {"cls_mnist_ce": {"1": 100}, "seg_bg_ce": {"1": 100}}, "sources": {},
             "graph_speedup": {"resnet18/ce": 2.0, "unet/ce": 2.0}}
    assert costs.estimate("cls_mnist_ce", 1, table)[0] < 100 == costs.estimate("seg_bg_ce", 1, table)[0]


def test_optimizers_made_capturable_or_refused():
    p = torch.nn.Parameter(torch.ones(3))
    adam = torch.optim.Adam([p], lr=0.1)
    p.grad = torch.ones(3)
    adam.step()  # state made with its step counter on the host
    _make_capturable(adam)
    assert adam.param_groups[0]["capturable"] and adam.state[p]["step"].device == p.device
    sgd = torch.optim.SGD([p], lr=0.1)
    _make_capturable(sgd)  # nothing to change
    with pytest.raises(ValueError, match="LBFGS"):
        _make_capturable(torch.optim.LBFGS([p]))


def test_uncached_autocast_is_scoped():
    class Fake:
        def _autocast(self):
            return torch.autocast("cpu", dtype=torch.bfloat16)

    t = Fake()
    with _uncached_autocast(t):
        inner = t._autocast()
        assert not inner._cache_enabled and inner.fast_dtype == torch.bfloat16 and inner.device == "cpu"
    assert t._autocast()._cache_enabled  # the method again


def _state(trainer) -> list[torch.Tensor]:
    """What a step moves: parameters, then buffers (BatchNorm's running statistics and counts)."""
    return list(trainer.modules.parameters()) + list(trainer.modules.buffers())


def _copy_state(dst, src) -> None:
    """``dst`` takes ``src``'s parameters, buffers and optimizer state (where both have one: none
    exists before a first step)."""
    with torch.no_grad():
        for x, y in zip(_state(dst), _state(src), strict=True):
            x.copy_(y)
        for pa, pb in zip(dst.modules.parameters(), src.modules.parameters()):
            sa, sb = dst.opt.state.get(pa), src.opt.state.get(pb)
            for k, v in (sb or {}).items():
                if sa and torch.is_tensor(v) and torch.is_tensor(sa.get(k)):
                    sa[k].copy_(v)


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().double().reshape(-1) for t in tensors])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
# Each step starts the eager trainer, and an eager rerun, from the graphed trainer's state (its
# parameters, BatchNorm buffers and optimizer state), then gives the three the same batch: the
# graphed step must log the loss the eager step logs and make the update it makes (parameters and
# BatchNorm buffers), within the spread of the eager step against its own rerun (MCR²'s atomics;
# CE is deterministic) or a floor. A replay that never steps the optimizer (an update of 0), or
# steps it with a stale learning rate (SGD: no re-capture after the decay; Adam: its lr tensor
# left at the old value, an update about twice the eager one), is off by ~50-100 %.
# The ids name the optimizer: tools/gpu_window.sh re-checks the SGD ones alone (-k sgd, the ResNet18
# runs of the paper profile) when the whole check fails.
@pytest.mark.parametrize("name, overrides, floor, captures", [
    pytest.param("cls_mnist_ce", {}, 1e-3, 2, id="cls_mnist_ce-sgd"),
    pytest.param("cls_mnist_ce", {"optim.optimizer": "adam", "optim.lr": 0.01}, 1e-3, 1, id="cls_mnist_ce-adam"),
    pytest.param("cls_mnist_mcr2", {}, 1e-2, 2, id="cls_mnist_mcr2-sgd"),
    pytest.param("seg_bg_mcr2_masked", {}, 1e-2, 1, id="seg_bg_mcr2_masked-adam")])
def test_graphed_step_trains_like_eager(name, overrides, floor, captures):
    """Same state, same batches: 6 full steps, a learning-rate decay (SGD: a re-capture; Adam: the
    graph's lr tensor set), 2 more steps and a ragged batch (eager): per step the same logged loss
    and the same update of the parameters and of BatchNorm's buffers."""
    step = _assert_steps_like_eager(name, torch.device("cuda"), overrides, floor, lambda t: GraphedStep(t, warmup=3))
    assert step.captures == captures


def _assert_steps_like_eager(name, device, overrides, floor, make_step):
    """Run ``make_step(trainer)`` beside the eager step (and an eager rerun) as described above;
    AssertionError naming the part (loss, params, buffers) that is off. Returns the step."""
    eager, channels, seg = _trainer(name, device, **overrides)
    rerun, _, _ = _trainer(name, device, **overrides)
    graphed, _, _ = _trainer(name, device, **overrides)
    for t in (eager, rerun):
        if device.type == "cuda":  # (capturable optimizers are CUDA's)
            _make_capturable(t.opt)  # same Adam arithmetic on every side
    step = make_step(graphed)
    bs = eager.exp.optim.batch_size
    sizes = [bs] * 6 + ["decay"] + [bs] * 2 + [bs // 2 + 1]
    spread = {"loss": 0.0, "params": 0.0, "buffers": 0.0}
    off = {"loss": [], "params": [], "buffers": []}
    n_params = len(list(graphed.modules.parameters()))
    n_buffers = len(list(graphed.modules.buffers()))
    assert n_buffers > 0  # BatchNorm's running statistics are checked too
    for i, size in enumerate(sizes):
        if size == "decay":
            for trainer in (eager, rerun, graphed):  # as the scheduler does, whatever the profile's decay
                for group in trainer.opt.param_groups:
                    group["lr"] *= 0.5
            continue
        x, y = _batch(size, channels, seg, device, i)
        _copy_state(eager, graphed)  # (no optimizer state anywhere before the first step)
        _copy_state(rerun, graphed)
        before = _state(graphed)[: n_params + n_buffers]
        before = [_flat(before[:n_params]), _flat(before[n_params:])]
        logs = {"eager": eager._eager_step(x, y), "rerun": rerun._eager_step(x, y), "graphed": step(x, y).clone()}
        moved = {}
        for side, trainer in (("eager", eager), ("rerun", rerun), ("graphed", graphed)):
            now = _state(trainer)[: n_params + n_buffers]
            moved[side] = (_flat(now[:n_params]) - before[0], _flat(now[n_params:]) - before[1])
        loss = {k: logs[k][0].double().reshape(1) for k in logs}
        spread["loss"] = max(spread["loss"], _rel(loss["rerun"], loss["eager"]))
        off["loss"].append(_rel(loss["graphed"], loss["eager"]))
        for j, part in enumerate(("params", "buffers")):
            spread[part] = max(spread[part], _rel(moved["rerun"][j], moved["eager"][j]))
            off[part].append(_rel(moved["graphed"][j], moved["eager"][j]))
    assert [g["lr"] for g in graphed.opt.param_groups] == [g["lr"] for g in eager.opt.param_groups]  # floats again
    for part in off:
        tol = min(0.25, max(floor, 4 * spread[part]))  # never so loose that a missing or doubled update passes
        assert max(off[part]) <= tol, (part, [round(v, 5) for v in off[part]], "eager rerun spread", spread[part])
    return step


def _no_optimizer_step(trainer):
    def step(x, y):
        loss, logged, rr = trainer._step_loss(x, y)
        trainer.opt.zero_grad(set_to_none=True)
        loss.backward()
        return step_log(logged, rr)
    return step


def _stale_lr(trainer):
    first = [g["lr"] for g in trainer.opt.param_groups]

    def step(x, y):
        now = [g["lr"] for g in trainer.opt.param_groups]
        for g, lr in zip(trainer.opt.param_groups, first):
            g["lr"] = lr
        try:
            return trainer._eager_step(x, y)
        finally:
            for g, lr in zip(trainer.opt.param_groups, now):
                g["lr"] = lr
    return step


def _frozen_buffers(trainer):
    def step(x, y):
        kept = [b.clone() for b in trainer.modules.buffers()]
        row = trainer._eager_step(x, y)
        with torch.no_grad():
            for b, k in zip(trainer.modules.buffers(), kept):
                b.copy_(k)
        return row
    return step


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the check, not the machine: CPU only (a GPU window's time is dear)")
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_step_check_fails_a_replay_that_skips_the_optimizer_or_its_lr_or_batchnorm(optimizer):
    """The check of the graphed step, run on this CPU with stand-ins for the graph: the eager step
    itself passes; a step that never calls the optimizer, one that keeps the learning rate from
    before the decay, and one that leaves BatchNorm's statistics alone each fail, naming the part."""
    cpu, overrides = torch.device("cpu"), {"optim.optimizer": optimizer, "optim.lr": 0.01, "optim.batch_size": 8}
    _assert_steps_like_eager("cls_mnist_ce", cpu, overrides, 1e-3, lambda t: t._eager_step)
    for fault, part in ((_no_optimizer_step, "'params'"), (_stale_lr, "'params'"), (_frozen_buffers, "'buffers'")):
        with pytest.raises(AssertionError, match=part):
            _assert_steps_like_eager("cls_mnist_ce", cpu, overrides, 1e-3, fault)


def _switch_threshold(accuracies: list[float], last: int) -> tuple[float, int, float]:
    """A switch threshold as far as possible from every accuracy the check measured (the switch
    epoch then cannot flip with rounding), switching at an epoch before ``last``: (threshold, the
    epoch it switches after, its margin)."""
    best = None
    cuts = sorted(set(accuracies))
    for lo, hi in zip(cuts, cuts[1:]):
        t = (lo + hi) / 2
        epoch = next(i for i, a in enumerate(accuracies, 1) if a >= t)
        margin = min(abs(a - t) for a in accuracies)
        if epoch < last and (best is None or margin > best[2]):
            best = (t, epoch, margin)
    if best is None:  # one accuracy only: just under the first
        best = (accuracies[0] - 0.01, 1, 0.01)
    return best


def test_switch_threshold_keeps_a_margin():
    t, epoch, margin = _switch_threshold([0.90, 0.94, 0.952, 0.99], last=4)
    assert epoch < 4 and margin == pytest.approx(min(abs(a - t) for a in [0.90, 0.94, 0.952, 0.99]))
    assert margin >= 0.019 and (t, epoch) == (pytest.approx(0.92), 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_whole_run_with_graphs_matches_eager(tmp_path, monkeypatch):
    """A whole masked run through engine.run (Adam's learning rate decaying every epoch, the MCR²
    switch, evaluation between epochs) with the step graphed and without: same switch epoch, close
    metrics, and one capture per mode whatever the number of epochs. The switch threshold is set
    from an eager run that never switches, as far from every check accuracy as the accuracies allow
    (the smoke threshold, 0.95, was 0.002 from one: rounding on a GPU could flip the epoch)."""
    import os

    from mcr2 import engine, training

    if "MCR2_DATA" not in os.environ:
        pytest.skip("MCR2_DATA not set")
    tiny = {"data.train_limit": 400, "data.val_limit": 100, "optim.epochs": 4, "optim.batch_size": 50,
            "data.background": None}  # MNIST only
    monkeypatch.setattr(training, "CUDA_GRAPHS", False)
    probe = engine.run(experiment("seg_bg_mcr2_masked", "smoke", 0, **tiny, **{"loss.mask_threshold": 1.0}),
                       tmp_path / "probe", device="cuda", progress="off")
    threshold, epoch, margin = _switch_threshold(probe.history["bg_check_acc"].tolist(), last=4)
    exp = experiment("seg_bg_mcr2_masked", "smoke", 0, **tiny, **{"loss.mask_threshold": threshold})
    runs = {}
    for graphs in (False, True):
        monkeypatch.setattr(training, "CUDA_GRAPHS", graphs)
        runs[graphs] = engine.run(exp, tmp_path / str(graphs), device="cuda", progress="off")
    assert runs[True].record["cuda_graphs"] and not runs[False].record["cuda_graphs"]
    # one capture per mode (before and after the MCR² switch): the lr decay of 4 epochs captures nothing
    assert 1 <= runs[True].record["cuda_graph_captures"] <= 2 and "cuda_graph_captures" not in runs[False].record
    assert runs[False].record["events"]["mask_switch_epoch"] == epoch, (threshold, margin)
    assert runs[True].record["events"] == runs[False].record["events"], (threshold, margin)
    a, b = runs[False].history, runs[True].history
    assert len(a) == len(b) == 4
    torch.testing.assert_close(torch.tensor(b["loss"].to_numpy()), torch.tensor(a["loss"].to_numpy()),
                               atol=0.1, rtol=0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_runs_on_threads_and_streams_capture_at_once_and_train_like_eager(monkeypatch):
    """What a worker with --streams does: two graphed runs on two threads, each on its own CUDA
    stream, warm up, capture (thread_local, at the same time) and replay; each ends where the eager
    loop ends with the same batches (CE with SGD: deterministic, so a tight check)."""
    import threading

    from mcr2 import graphs

    monkeypatch.setattr(graphs, "THREADED_CAPTURE", True)
    device = torch.device("cuda")
    pairs = [(_trainer("cls_mnist_ce", device)[0], _trainer("cls_mnist_ce", device)[0]) for _ in range(2)]
    bs = pairs[0][0].exp.optim.batch_size
    batches = [_batch(bs, 1, False, device, i) for i in range(8)]
    errors = []

    def work(graphed_trainer):
        try:
            step = GraphedStep(graphed_trainer, warmup=3)
            with torch.cuda.stream(torch.cuda.Stream(device)):
                for x, y in batches:
                    step(x, y)
                torch.cuda.current_stream(device).synchronize()
            assert step.captures == 1
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(graphed,)) for _, graphed in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for eager, graphed in pairs:
        for x, y in batches:
            eager._eager_step(x, y)
        for a, b in zip(eager.modules.parameters(), graphed.modules.parameters()):
            torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
