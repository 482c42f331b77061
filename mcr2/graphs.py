"""The training step replayed as a CUDA graph (opt-in; measured by ``benchmarks/bench_train.py``).

    step = GraphedStep(trainer)           # a built CUDA ``_Trainer`` (model and optimizer made)
    logs[s] = step(X[idx], Y[idx])        # one training step; (loss, R, Rc, ΔR) of that step

A training step launches a few hundred small kernels; replaying them as one captured CUDA graph
removes the per-kernel launch cost of the host. This follows PyTorch's "CUDA Graphs" notes for
whole-network capture: warm-up steps on a side stream, static input buffers, gradients set to None
before capture (the graph owns them), autocast without its weight-cast cache, one memory pool shared
by successive captures.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import torch

__all__ = ["GraphedStep", "step_log", "THREADED_CAPTURE"]

#: Set by a worker that trains several runs at once on threads (:mod:`mcr2.workers`, ``--streams``):
#: each graph is then captured on a stream of its own (not PyTorch's one shared capture stream) in
#: "thread_local" mode, so that another thread's CUDA work during a capture is not an error.
THREADED_CAPTURE = False


def _holds_lr(opt: torch.optim.Optimizer) -> bool:
    """Whether a captured ``opt.step()`` can read its learning rate from a device tensor that the
    graph keeps (Adam/AdamW with ``capturable=True`` take a tensor lr), so that the scheduler's
    change of it needs no new capture. SGD's step turns a tensor lr into a Python number (a host
    sync, which a capture forbids): its graph bakes the learning rate in instead."""
    return isinstance(opt, torch.optim.Adam)


def _capture_key(trainer, lr_held: bool = False) -> tuple:
    """What a captured step bakes in and the trainer changes during a run: the mode (``mask_on``:
    MCR² switched on or not) and, unless the graph holds them (``lr_held``, see :func:`_holds_lr`),
    the learning rates (Python floats inside the optimizer's kernels, changed by the scheduler)."""
    lrs = () if lr_held else tuple(float(g["lr"]) for g in trainer.opt.param_groups)
    return bool(trainer.mask_on), lrs


def _make_capturable(opt: torch.optim.Optimizer) -> None:
    """Let ``opt.step()`` be captured. SGD is capturable as it is (its state lives on the device);
    Adam needs ``capturable=True`` (its step counters on the device), which gives the same update up
    to rounding. Anything else is refused rather than failing inside the capture."""
    for group in opt.param_groups:
        if "capturable" in group:
            if not group["capturable"]:
                group["capturable"] = True
                for p in group["params"]:
                    state = opt.state.get(p, {})
                    if torch.is_tensor(state.get("step")):
                        state["step"] = state["step"].to(p.device)
        elif type(opt) is not torch.optim.SGD:
            raise ValueError(f"CUDA graphs: cannot capture the step of {type(opt).__name__} "
                             "(SGD, or an optimizer with a 'capturable' option, e.g. Adam)")


@contextmanager
def _uncached_autocast(trainer):
    """Within the block, ``trainer._autocast()`` gives the same autocast without its cache of cast
    weights (a capture must not keep or reuse casts made outside it)."""
    ctx = trainer._autocast()
    if not isinstance(ctx, torch.autocast):  # no AMP: nothing to change
        yield
        return
    trainer._autocast = lambda: torch.autocast(ctx.device, dtype=ctx.fast_dtype, cache_enabled=False)
    try:
        yield
    finally:
        del trainer._autocast  # the class's method again


def step_log(logged, rr) -> torch.Tensor:
    """(loss, R, Rc, ΔR) of a training step as one float32 tensor: the row the trainer logs."""
    return torch.stack([logged.detach().float(), rr.discriminative.detach(), rr.compressive.detach(),
                        rr.delta_r.detach()]).float()


class GraphedStep:
    """One training step of ``trainer`` (``_step_loss``, ``zero_grad``, ``backward``, ``opt.step``),
    replayed from a captured CUDA graph for batches of the first batch's shape.

    Calling it with a batch ``(x, y)`` takes one training step and returns its (loss, R, Rc, ΔR)
    on the device. For a replay that tensor is the graph's static output: the next call overwrites
    it, so copy it first (``logs[s] = step(x, y)`` does).

    The sequence of parameter updates is the same as the eager loop's, one update per call and per
    batch: the first ``warmup`` calls in each mode (``trainer.mask_on``) run eagerly on a side
    stream (lazy initialisation: cuDNN algorithm choice, optimizer state), the next call captures
    the step and replays it once (capture alone executes nothing), later calls replay. A batch of
    another shape (the ragged last batch of an epoch) runs eagerly. The graph bakes in the mode, so
    the MCR² switch captures again into the same memory pool and drops the old graph. Adam's
    learning rates are device tensors the graph reads (:func:`_holds_lr`; each is set from the
    param group's float before a replay that follows the scheduler's step, the same float32 value
    the optimizer's kernels would be given), so a run with Adam captures once per mode. SGD's graph
    bakes its learning rates in, and a change of them captures again (:func:`_capture_key`).

    CUDA and one process only. Adam's param groups are switched to ``capturable=True``.
    """

    def __init__(self, trainer, warmup: int = 3):
        device = torch.device(trainer.device)
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device; this trainer runs on {device}")
        if getattr(trainer, "world", 1) > 1:
            raise ValueError(f"CUDA graphs are not supported for distributed training (world size {trainer.world})")
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1 (the optimizer's state is made by a first eager step), got {warmup}")
        _make_capturable(trainer.opt)
        self.trainer, self.warmup, self.device = trainer, warmup, device
        self.eager_steps = {}  # mode -> eager warm-up steps taken in it
        self.captures = 0  # how many graphs were captured (for benchmarks, tests and the record)
        self.capture_seconds = 0.0  # host seconds spent capturing them
        self.lr_held = _holds_lr(trainer.opt)
        groups = trainer.opt.param_groups
        # The learning rates a graph reads (Adam), and the floats they were last set from.
        self._lr = [torch.tensor(float(g["lr"]), device=device) for g in groups] if self.lr_held else []
        self._lr_from = [float(g["lr"]) for g in groups]
        self._side = torch.cuda.Stream(device)
        self._x = self._y = None  # static inputs, allocated at the first call
        self._graph = self._out = self._key = self._pool = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._x is None:
            self._x, self._y = torch.empty_like(x), torch.empty_like(y)
        if (x.shape, x.dtype, y.shape, y.dtype) != (self._x.shape, self._x.dtype, self._y.shape, self._y.dtype):
            return self._eager(x, y)  # another shape: the ragged last batch
        key = _capture_key(self.trainer, self.lr_held)
        mode = key[0]
        if key != self._key and self.eager_steps.get(mode, 0) < self.warmup:
            self.eager_steps[mode] = self.eager_steps.get(mode, 0) + 1
            return self._on_side_stream(x, y)
        self._x.copy_(x)
        self._y.copy_(y)
        self._set_lr()
        if key != self._key:
            self._capture(key)
        self._graph.replay()
        return self._out

    # ---- internals ---------------------------------------------------------------------
    def _eager(self, x, y) -> torch.Tensor:
        return self.trainer._eager_step(x, y)

    def _on_side_stream(self, x, y) -> torch.Tensor:
        current = torch.cuda.current_stream(self.device)
        self._side.wait_stream(current)
        with torch.cuda.stream(self._side):
            out = self._eager(x, y)
        current.wait_stream(self._side)
        return out

    def _set_lr(self) -> None:
        """The graph's learning rates from the param groups' floats, where the scheduler changed them
        (a fill on the stream, before the replay that reads it; no host sync)."""
        for i, group in enumerate(self.trainer.opt.param_groups if self.lr_held else ()):
            lr = float(group["lr"])
            if lr != self._lr_from[i]:
                self._lr[i].fill_(lr)
                self._lr_from[i] = lr

    @contextmanager
    def _graph_lr(self):
        """During the capture, the param groups hold the graph's lr tensors (Adam reads them on the
        device); the floats are back after it, for the scheduler, the log and the eager steps."""
        groups = self.trainer.opt.param_groups if self.lr_held else []
        floats = [g["lr"] for g in groups]
        for group, lr in zip(groups, self._lr):
            group["lr"] = lr
        try:
            yield
        finally:
            for group, lr in zip(groups, floats):
                group["lr"] = lr

    def _capture(self, key) -> None:
        """Capture the step on the static inputs. The old graph stays alive during the capture (its
        pool, shared, stays alive with it) and is dropped after; it is never replayed again."""
        t = self.trainer
        started = time.perf_counter()
        self._out = None  # the old graph's output may be reused by the new capture
        t.opt.zero_grad(set_to_none=True)  # gradients allocated by (and owned by) the graph
        graph = torch.cuda.CUDAGraph()
        threaded = dict(stream=torch.cuda.Stream(self.device), capture_error_mode="thread_local") if THREADED_CAPTURE else {}
        with _uncached_autocast(t), self._graph_lr(), torch.cuda.graph(graph, pool=self._pool, **threaded):
            loss, logged, rr = t._step_loss(self._x, self._y)
            loss.backward()
            t.opt.step()
            out = step_log(logged, rr)
        if self._pool is None:
            self._pool = graph.pool()
        self._graph, self._out, self._key = graph, out, key
        self.captures += 1
        self.capture_seconds += time.perf_counter() - started
