"""One training run, step by step, into a run record (what :func:`mcr2.engine.run` calls).

The trainer holds the model, data and optimiser of one :class:`~mcr2.config.Experiment`; its
seams are the step (:meth:`_Trainer._step_loss`), the evaluation (:class:`mcr2.evaluation.Evaluation`),
the masking switch (:class:`mcr2.masking.MaskSwitch`) and the record (:meth:`_Trainer._record`).
"""
from __future__ import annotations

import math
import os
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import data as mcr2_data
from .config import ARCHS, CODE_VERSION, Experiment, config_key
from .evaluation import Evaluation
from .graphs import GraphedStep, step_log
from .loss import MCR2Loss, pooled_rows, rate_reduction
from .masking import MaskSwitch, shared_gradient_norms
from .models import ClassifierHead, ResNet18Features, UNet
from .records import RunRecord, load_record, provenance, record_dir, update_record_json, write_record

__all__ = ["TrainingDiverged", "CUDNN_BENCHMARK", "CUDA_GRAPHS", "PHASES", "graphs_for", "epoch_order"]


#: Below this ε² a NaN loss is blamed on ε² rather than on the learning rate.
TINY_EPS_SQ = 1e-6


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the run's record is marked failed."""


class _Progress:
    def __init__(self, mode: str, exp: Experiment):
        if mode == "auto":
            mode = "bar" if _interactive() else "lines"
        if mode not in ("bar", "lines", "off"):
            raise ValueError(f"progress must be 'auto', 'bar', 'lines' or 'off', got {mode!r}")
        self.mode, self.exp = mode, exp
        self.bar = None

    def start_epoch(self, epoch: int, steps: int):
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=steps, desc=f"{self.exp.name} s{self.exp.seed} epoch {epoch}", leave=False)

    def step(self):
        if self.bar is not None:
            self.bar.update()

    def end_epoch(self, epoch: int, line: str):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.mode != "off":
            print(f"[{self.exp.name} seed {self.exp.seed}] epoch {epoch}/{self.exp.optim.epochs} {line}", flush=True)


def _interactive() -> bool:
    if sys.stderr.isatty():
        return True
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        return False
    # A live Jupyter kernel; papermill executions pass progress="lines" explicitly.
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _fmt(x) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


#: On CUDA, let cuDNN time its convolution algorithms once per shape and keep the fastest: the
#: batch shapes of a run are fixed, so the timing pays back within the first epoch.
CUDNN_BENCHMARK = True


def _graphs_setting(value: str) -> bool | frozenset:
    """MCR2_CUDA_GRAPHS: "1" every model, "0" none, or model archs separated by commas."""
    if value in ("", "1"):
        return True
    if value == "0":
        return False
    archs = frozenset(a.strip() for a in value.split(",") if a.strip())
    known = sorted(set(ARCHS.values()))
    if not archs or archs - set(known):
        raise ValueError(f"MCR2_CUDA_GRAPHS={value!r}: use 1 (every model), 0 (none) or model archs separated "
                         f"by commas ({', '.join(known)})")
    return archs


#: On one CUDA device, replay each full-batch training step as a CUDA graph (:class:`mcr2.graphs.
#: GraphedStep`): the same updates without the host's per-kernel launch cost, which bounds the small
#: ResNet18 steps (measured on an H100: 1.86x CE, 2.23x MCR², 1.02x the U-Net). MCR2_CUDA_GRAPHS=0
#: turns it off (e.g. to compare, or where a capture fails); MCR2_CUDA_GRAPHS=resnet18 keeps it for
#: those models only (tools/gpu_window.sh falls back to it when only the ResNet18/SGD checks pass).
CUDA_GRAPHS = _graphs_setting(os.environ.get("MCR2_CUDA_GRAPHS", "1"))


def graphs_for(arch: str) -> bool:
    """Whether a CUDA run of a ``model.arch`` model replays its steps as graphs (:data:`CUDA_GRAPHS`)."""
    return CUDA_GRAPHS if isinstance(CUDA_GRAPHS, bool) else arch in CUDA_GRAPHS


#: The phases of a run whose wall seconds a record holds (``record["phase_seconds"]``).
PHASES = ("setup", "train_steps", "evaluation", "writing")


def _note_writing(path: Path, seconds: float) -> None:
    """Add the writing phase's seconds to a complete record just written (its record.json replaced
    atomically: the record stays complete whatever happens). A failure to add them costs only that
    number, never the record: it is said, and the run goes on."""
    try:
        update_record_json(path, lambda rec: rec["phase_seconds"].update(writing=round(seconds, 3)))
    except OSError as err:
        print(f"note: {path}/record.json keeps writing=0 in phase_seconds ({type(err).__name__}: {err})",
              file=sys.stderr, flush=True)


#: Runs trained at once on threads of one process (mcr2.workers) seed the global generator and draw
#: their initial weights from it one at a time.
_SEEDED_INIT = threading.Lock()


def epoch_order(exp: Experiment, n: int, epoch: int) -> torch.Tensor:
    """The training items of ``epoch`` in the order the steps take them, (n,) int64 on the CPU:
    reshuffled from the seed every epoch, or (``optim.shuffle`` false, the authors' code) the same
    order every epoch; with ``data.repeat_each`` r > 1, item i // r at position i (the authors'
    ``item // 3``: the first n / r items, each r times in a row)."""
    if exp.optim.shuffle:
        g = torch.Generator().manual_seed(exp.seed * 100_003 + epoch)
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    return order // exp.data.repeat_each if exp.data.repeat_each > 1 else order


class _Trainer(Evaluation):
    def __init__(self, exp: Experiment, runs_dir: Path, device: torch.device, progress: str):
        self.exp, self.runs_dir, self.device = exp, runs_dir, device
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = CUDNN_BENCHMARK
        self.progress = _Progress(progress, exp)
        self.graphed = None  # the step as a CUDA graph, set up by train() (see CUDA_GRAPHS)
        self.seg = exp.data.task == "segmentation"
        self.k = exp.num_classes
        self.use_amp = exp.optim.amp and device.type == "cuda"
        self.channels_last = self.use_amp
        # Under torchrun: one process per device, each a share of every batch; rank 0 records.
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        # Steps replayed as CUDA graphs: one CUDA device, a model CUDA_GRAPHS names (its provenance says so).
        self.use_graphs = graphs_for(exp.model.arch) and device.type == "cuda" and self.world == 1

    # ---- set-up ------------------------------------------------------------------------
    def _load_data(self):
        d = self.exp.data
        common = dict(usps_layout=d.usps_layout)
        if self.seg:
            train = mcr2_data.segmentation(d.train_domain, "train", d.background, seed=d.seed, limit=d.train_limit, **common)
            vals = {dom: mcr2_data.segmentation(dom, "test", d.background, seed=d.seed, limit=d.val_limit, **common) for dom in d.val_domains}
        else:
            train = mcr2_data.digits(d.train_domain, "train", seed=d.seed, limit=d.train_limit, **common)
            vals = {dom: mcr2_data.digits(dom, "test", seed=d.seed, limit=d.val_limit, **common) for dom in d.val_domains}
        self.sources = {"train": train.source, **{f"val_{k}": v.source for k, v in vals.items()}}
        # The whole split as tensors on the device: no DataLoader between the data and the GPU.
        self.X, self.Y = train.tensors(self.device)
        self.val = {dom: v.tensors(self.device) for dom, v in vals.items()}
        # Checked once here, so that the step's MCR² can skip its per-step check (a host sync).
        for split, y in [("train", self.Y), *((f"val_{dom}", v[1]) for dom, v in self.val.items())]:
            if y.numel() and not (0 <= int(y.min()) and int(y.max()) < self.k):
                raise ValueError(f"{self.exp.name}: {split} labels must lie in [0, {self.k}), "
                                 f"got {int(y.min())}..{int(y.max())}")
        self.in_channels = self.X.shape[1]

    def _build_model(self):
        with _SEEDED_INIT:  # the global generator is seeded and drawn from by one run at a time
            self._build_model_seeded()

    def _build_model_seeded(self):
        m, loss = self.exp.model, self.exp.loss
        torch.manual_seed(self.exp.seed)
        normalize = loss.kind == "mcr2"  # CE learns unconstrained features for its head
        if m.arch == "resnet18":
            self.model = ResNet18Features(self.in_channels, m.feature_dim, m.width, normalize=normalize)
        elif m.arch == "unet":
            self.model = UNet(self.in_channels, m.feature_dim, m.width, m.depth,
                              background_head=loss.background_mask is not None, normalize=normalize)
        else:
            raise ValueError(f"unknown model.arch {m.arch!r}: 'resnet18' or 'unet'")
        self.head = ClassifierHead(m.feature_dim, self.k, m.head_hidden) if loss.kind == "ce" else None
        if loss.kind not in ("ce", "mcr2"):
            raise ValueError(f"unknown loss.kind {loss.kind!r}: 'ce' or 'mcr2'")
        if loss.background_mask not in (None, "predicted", "ground_truth"):
            raise ValueError(f"unknown loss.background_mask {loss.background_mask!r}")
        if loss.background_mask is not None and (loss.kind != "mcr2" or not self.seg):
            raise ValueError("background masking applies to MCR² segmentation only")
        modules = nn.ModuleList([self.model] + ([self.head] if self.head is not None else []))
        modules.to(self.device)
        if self.channels_last:
            modules.to(memory_format=torch.channels_last)
        self.modules = modules
        # Training forwards go through DDP (gradients averaged across ranks); evaluation uses the
        # plain modules, identical on every rank.
        wrap = (lambda mod: DistributedDataParallel(mod)) if self.world > 1 else (lambda mod: mod)
        self.train_model = wrap(self.model)
        self.train_head = wrap(self.head) if self.head is not None else None
        o = self.exp.optim
        if o.optimizer == "sgd":
            self.opt = torch.optim.SGD(modules.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        elif o.optimizer == "adam":
            self.opt = torch.optim.Adam(modules.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        else:
            raise ValueError(f"unknown optim.optimizer {o.optimizer!r}: 'sgd' or 'adam'")
        self.sched = torch.optim.lr_scheduler.ExponentialLR(self.opt, gamma=o.lr_decay)
        # Distributed MCR² is the loss of the global batch on every rank; DDP averages gradients
        # over ranks, so the MCR² term is scaled by the world size to give the global gradient.
        # check=False: no host sync in the step (labels are checked once when loaded, masks and pooled
        # weights are valid by construction; anything else would show as a NaN loss).
        self.mcr2 = MCR2Loss(self.k, eps_sq=loss.eps_sq, gamma=loss.gamma, distributed=self.world > 1, check=False)
        if loss.mcr2_resolution is not None and not self.seg:
            raise ValueError("loss.mcr2_resolution applies to segmentation only")

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.use_amp else nullcontext()

    def _prep(self, x):
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # ---- one step ----------------------------------------------------------------------
    def _features(self, x, train: bool = False):
        """Model output as rows: (B, d) or (B, d, H, W) -> (B·H·W, d), plus background logits."""
        out = (self.train_model if train else self.model)(self._prep(x))
        if self.seg:
            feats, bg = out.features, out.background_logits
            return feats, feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]), bg
        return out, out, None

    def _mcr2_term(self, feats, Z, y, keep=None):
        """MCR² over the pixels kept (all when ``keep`` is None), at full or pooled resolution."""
        res = self.exp.loss.mcr2_resolution
        if res is None:
            return self.mcr2(Z, y.reshape(-1), weights=None if keep is None else keep.reshape(-1))
        labels = y if keep is None else torch.where(keep, y, torch.full_like(y, -1))
        Zp, lp, wp = pooled_rows(feats, labels, res, self.k)  # (B·res², d): fewer rows, same classes
        return self.mcr2(Zp, lp, weights=wp)

    def _step_loss(self, x, y):
        """(loss to back-propagate, loss to log, monitored R/Rc of the batch)."""
        loss_cfg = self.exp.loss
        with self._autocast():
            feats, Z, bg = self._features(x, train=True)
            labels = y.reshape(-1)
            if loss_cfg.kind == "ce":
                logits = self.train_head(feats)
                loss = F.cross_entropy(logits.float(), y)
                with torch.no_grad():
                    rr = rate_reduction(F.normalize(Z.detach().float(), dim=1), labels, self.k, loss_cfg.eps_sq, check=False)
                return loss, loss, rr
            if bg is None:
                rr = self._mcr2_term(feats, Z, y)
                return self.world * rr.loss, rr.loss, rr
            # Background masking: CE on the head; MCR² over foreground pixels once switched on.
            fg_true = y > 0
            loss = F.cross_entropy(bg.float(), fg_true.long())
            if not self.mask_on:
                with torch.no_grad():
                    rr = rate_reduction(Z.detach(), labels, self.k, loss_cfg.eps_sq, weights=fg_true.reshape(-1), check=False)
                return loss, loss, rr
            rr = self._mcr2_term(feats, Z, y, self._mask_keep(bg, y))
            lam = loss_cfg.mcr2_weight
            return loss + lam * self.world * rr.loss, loss + lam * rr.loss, rr

    def _mask_keep(self, bg, y):
        """The pixels masked MCR² trains on, (B, H, W) bool: the true digit pixels (ground-truth mask)
        or those the head calls foreground, less the true background ones with ``mask_drop_background``."""
        loss_cfg = self.exp.loss
        if loss_cfg.background_mask == "ground_truth":
            return y > 0
        keep = bg.detach().argmax(1) == 1
        return keep & (y > 0) if loss_cfg.mask_drop_background else keep

    def _eager_step(self, x, y) -> torch.Tensor:
        """One training step as it runs without a CUDA graph; returns its log row (:func:`step_log`)."""
        loss, logged, rr = self._step_loss(x, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return step_log(logged, rr)

    # ---- evaluation --------------------------------------------------------------------

    def _record(self, started: float) -> dict:
        """The record's header: identity, resolved config and provenance (filled in as it runs)."""
        exp = self.exp
        return {
            "status": "running",
            "name": exp.name,
            "profile": exp.profile,
            "seed": exp.seed,
            "key": config_key(exp),
            "code_version": CODE_VERSION,
            "config": exp.to_dict(),
            "provenance": provenance(self.device, graphed=self.use_graphs),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        }

    def _epoch(self, epoch: int) -> torch.Tensor:
        """One pass over the training split in a seeded order; the per-step logs (loss, R, Rc, ΔR)
        stay on the device until the epoch ends (one host sync per epoch)."""
        exp, n, bs = self.exp, self.X.shape[0], self.exp.optim.batch_size
        perm = epoch_order(exp, n, epoch).to(self.device)
        batches = [perm[i:i + bs] for i in range(0, n, bs)]
        self.progress.start_epoch(epoch, len(batches))
        logs = torch.zeros(len(batches), 4, device=self.device)  # loss, R, Rc, ΔR per step
        for s, idx in enumerate(batches):
            idx = idx[self.rank::self.world]  # this rank's share of the batch
            step = self._eager_step if self.graphed is None else self.graphed
            logs[s] = step(self.X[idx], self.Y[idx])
            self.progress.step()
        logs = logs.cpu()
        if not torch.isfinite(logs[:, 0]).all():
            bad = int((~torch.isfinite(logs[:, 0])).nonzero()[0])
            # ε² far below float32's resolution of d/(m ε²) ZᵀZ makes the coding rate itself NaN, whatever the lr.
            tiny = exp.loss.kind == "mcr2" and exp.loss.eps_sq < TINY_EPS_SQ
            fix = (f"loss.eps_sq={exp.loss.eps_sq:g} is too small for float32's log-determinants: raise it (≥ "
                   f"{TINY_EPS_SQ:g}; the report uses 0.5)" if tiny else f"try a lower optim.lr (now {exp.optim.lr})")
            raise TrainingDiverged(
                f"{exp.name} (seed {exp.seed}): the loss became {logs[bad, 0].item()} at epoch {epoch}, "
                f"step {bad + 1}; {fix}. (The step's MCR² does not check "
                f"its weights on every step: a negative or non-finite weight would also show as NaN here.)"
            )
        self.sched.step()
        return logs

    def train(self) -> RunRecord:
        exp = self.exp
        started = time.time()
        record = self._record(started)
        history, steps = [], []
        # Wall seconds per phase (record["phase_seconds"]), measured here: set-up (data onto the device,
        # model, optimiser, graphs object, masking check images), training steps (the epochs' passes,
        # graph captures included), evaluation (masking checks, evaluations, the final artefacts) and
        # writing (the record's files; added to record.json once they are written).
        phases = dict.fromkeys(PHASES, 0.0)
        try:
            t_setup = time.perf_counter()
            self._load_data()
            record["data"] = self.sources
            self._build_model()
            record["parameters"] = sum(p.numel() for p in self.modules.parameters())
            self.graphed = GraphedStep(self) if self.use_graphs else None
            record["cuda_graphs"] = self.use_graphs
            switch = MaskSwitch(exp, *self.val[exp.data.val_domains[0]])
            self.mask_on = switch.on
            phases["setup"] = time.perf_counter() - t_setup
            images_seen, train_seconds = 0, 0.0
            for epoch in range(1, exp.optim.epochs + 1):
                t0 = time.perf_counter()
                logs = self._epoch(epoch)
                images_seen += self.X.shape[0]
                train_seconds += time.perf_counter() - t0
                phases["train_steps"] = train_seconds
                first = (epoch - 1) * len(logs)
                for s in range(len(logs)):
                    steps.append({"epoch": epoch, "step": first + s + 1, "loss": logs[s, 0].item(),
                                  "R": logs[s, 1].item(), "Rc": logs[s, 2].item(), "delta_r": logs[s, 3].item(),
                                  "mcr2_on": bool(self.mask_on)})
                row = {"epoch": epoch, "loss": logs[:, 0].mean().item(), "R": logs[:, 1].mean().item(),
                       "Rc": logs[:, 2].mean().item(), "delta_r": logs[:, 3].mean().item(),
                       "lr": self.opt.param_groups[0]["lr"], "mcr2_on": bool(self.mask_on)}
                t_eval = time.perf_counter()
                # Chapter 11's gradient diagnostic, in the mode of the epoch just trained (counted as evaluation).
                if switch.enabled and self.world == 1:
                    row.update(shared_gradient_norms(self))
                if switch.enabled:
                    self.modules.eval()
                    row["bg_check_acc"] = switch.check(self.model, self._prep, epoch, self.world, self.device)
                    self.modules.train()
                    self.mask_on = switch.on  # MCR² from the next epoch on
                if epoch % exp.eval.every == 0 or epoch == exp.optim.epochs:
                    row.update(self._evaluate())
                phases["evaluation"] += time.perf_counter() - t_eval
                row["seconds"] = time.perf_counter() - t0
                history.append(row)
                shown = {k: v for k, v in row.items() if k.endswith(("_acc",)) and "class" not in k}
                self.progress.end_epoch(epoch, f"loss {_fmt(row['loss'])} R {_fmt(row['R'])} Rc {_fmt(row['Rc'])} "
                                        + " ".join(f"{k} {_fmt(v)}" for k, v in shown.items()))
            record["summary"] = {k: v for k, v in history[-1].items() if k not in ("epoch", "seconds")}
            record["events"] = {"mask_switch_epoch": switch.switch_epoch}
            record["wall_time_s"] = time.time() - started
            record["train_images_per_s"] = images_seen / max(train_seconds, 1e-9)
            record["status"] = "complete"
            record["world_size"] = self.world
            if self.graphed is not None:  # what the graphs cost: one capture per mode (SGD: and per learning rate)
                record["cuda_graph_captures"] = self.graphed.captures
                record["cuda_graph_capture_s"] = round(self.graphed.capture_seconds, 3)
            t_art = time.perf_counter()
            artefacts = self._artefacts()
            phases["evaluation"] += time.perf_counter() - t_art
            record["phase_seconds"] = {k: round(v, 3) for k, v in phases.items()}
            path = record_dir(exp, self.runs_dir)
            if self.rank == 0:  # one record per run, written by rank 0 only
                t_write = time.perf_counter()
                path = write_record(exp, self.runs_dir, record, history, steps, artefacts)
                _note_writing(path, time.perf_counter() - t_write)
            if self.world > 1:
                dist.barrier()
            return load_record(path)
        except BaseException as err:
            record["status"] = "failed"
            record["error"] = f"{type(err).__name__}: {err}"
            record.setdefault("phase_seconds", {k: round(v, 3) for k, v in phases.items()})  # up to the failure
            record["wall_time_s"] = time.time() - started
            try:
                if self.rank == 0:  # never over a complete record: write_record puts it beside
                    write_record(exp, self.runs_dir, record, history, steps, {})
            except Exception:  # never hide the original error behind a failure to record it
                pass
            raise
