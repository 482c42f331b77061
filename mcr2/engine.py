"""Train one configured experiment and write its run record; nothing here is specific to a chapter.

    rec = mcr2.engine.run(mcr2.experiments.experiment("seg_bg_mcr2_masked", "smoke", seed=0))

``run`` loads the complete record of the same config (and :data:`~mcr2.config.CODE_VERSION`)
instead of retraining, unless ``retrain=True``. Losses: CE over a classifier head, or MCR² over
unit-norm features with a nearest-subspace classifier fitted on *training* features only.
Background masking (report §2.2.1): loss = CE(background head) until the head's accuracy on
fixed validation images reaches the threshold, then CE + MCR² over the pixels the head calls
foreground (or the ground-truth foreground: the authors' variant).
"""
from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import data as mcr2_data
from .config import CODE_VERSION, Experiment, config_key
from .loss import MCR2Loss, pooled_rows, rate_reduction
from .metrics import binary_accuracy, confusion_matrix, cosine_abs_blocks, segmentation_scores
from .models import ClassifierHead, ResNet18Features, UNet
from .records import (
    RunRecord,
    check_runs_dir,
    default_runs_dir,
    find_record,
    load_record,
    provenance,
    record_dir,
    record_lock,
    write_record,
)
from .subspace import NearestSubspace

__all__ = ["run", "run_all", "profile_plan", "TrainingDiverged", "RecordMissing", "resolve_device", "background_check"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the run's record is marked failed."""


class RecordMissing(LookupError):
    """No complete record exists and training was not allowed (e.g. the paper profile on a CPU)."""


def resolve_device(device=None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def run(
    exp: Experiment,
    runs_dir: str | Path | None = None,
    *,
    retrain: bool = False,
    train_if_missing: bool = True,
    device=None,
    progress: str = "auto",
) -> RunRecord:
    """The run record of ``exp``: loaded when a complete one exists, else trained and written.

    runs_dir: where records live (default :func:`~mcr2.records.default_runs_dir` of the profile).
    retrain: train even if a complete record exists (it is replaced only once the new one is
    complete; a failed or interrupted retrain leaves it as it was).
    train_if_missing: False raises :class:`RecordMissing` instead of training.
    Training holds the record's lock (:func:`~mcr2.records.record_lock`): a second process asking
    for the same run waits, then loads the record the first one wrote.
    progress: "bar" (tqdm per epoch), "lines" (one line per epoch), "off", or "auto"
    (bar in a terminal or a live notebook, lines otherwise).
    """
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir(exp.profile)
    if not retrain:
        found = find_record(exp, runs_dir)
        if found is not None:
            return found
    if not train_if_missing:
        how = (f"`python -m mcr2 paper --budget SECONDS` (or `python -m mcr2 run {exp.name} --profile paper "
               f"--seeds {exp.seed}`) on a machine with a GPU" if exp.profile == "paper" else
               f"`python -m mcr2 run {exp.name} --profile smoke --seeds {exp.seed}` (with `--set FIELD=JSON` "
               f"for each field this config changes)")
        raise RecordMissing(
            f"no complete record of {exp.name} (seed {exp.seed}, profile {exp.profile}) in {runs_dir} "
            f"(expected {record_dir(exp, runs_dir)}). Train it with {how}, or render the smoke profile."
        )
    check_runs_dir(runs_dir)  # an unwritable folder is found now, not after the training
    if dist.is_available() and dist.is_initialized():
        # Every rank must train together: rank 0 alone writes (and its lock guards the write).
        return _Trainer(exp, runs_dir, resolve_device(device), progress).train()
    with record_lock(exp, runs_dir):
        if not retrain:
            found = find_record(exp, runs_dir)  # made by another process while this one waited
            if found is not None:
                return found
        return _Trainer(exp, runs_dir, resolve_device(device), progress).train()


def run_all(
    names: list[str],
    profile: str,
    seeds: list[int] | None = None,
    *,
    runs_dir: str | Path | None = None,
    retrain: bool = False,
    train_if_missing: bool | None = None,
    device=None,
    progress: str = "auto",
    **overrides,
) -> dict[str, list[RunRecord]]:
    """Records of several experiments × seeds: ``{name: [record per seed]}``.

    profile: "smoke", "paper", or "auto": each experiment at the paper profile where complete
    paper records of it exist (or CUDA is here to train them), else at the smoke profile
    (:func:`profile_plan` says which, per experiment). Each record's ``config.profile`` tells.
    seeds: default :data:`~mcr2.experiments.PROFILE_SEEDS` of the profile. train_if_missing:
    default True, except for the paper profile without CUDA, where a missing record raises
    :class:`RecordMissing` rather than starting a GPU-scale run on a CPU.
    overrides: dotted fields changed in every experiment (e.g. ``**{"optim.epochs": 2}``).
    """
    from .experiments import experiment

    plan = profile_plan(names, profile, seeds, runs_dir=runs_dir, device=device, **overrides)
    out: dict[str, list[RunRecord]] = {}
    for name, (prof, prof_seeds) in plan.items():
        train = train_if_missing
        if train is None:
            train = prof != "paper" or resolve_device(device).type == "cuda"
        out[name] = [
            run(experiment(name, prof, seed, **overrides), runs_dir, retrain=retrain,
                train_if_missing=train, device=device, progress=progress)
            for seed in prof_seeds
        ]
    return out


def profile_plan(
    names: list[str],
    profile: str = "auto",
    seeds: list[int] | None = None,
    *,
    runs_dir: str | Path | None = None,
    device=None,
    **overrides,
) -> dict[str, tuple[str, list[int]]]:
    """Which profile and seeds :func:`run_all` renders per experiment: ``{name: (profile, seeds)}``.

    For "auto": ("paper", the seeds with a complete paper record) where there is at least one
    such record and no CUDA, ("paper", all paper seeds) with CUDA, else ("smoke", smoke seeds).
    ``seeds`` narrows the seeds considered. Nothing is trained or loaded beyond record.json.
    """
    from .experiments import PROFILE_SEEDS, experiment

    if profile not in ("auto", *PROFILE_SEEDS):
        raise ValueError(f"profile must be 'auto' or one of {', '.join(PROFILE_SEEDS)}, got {profile!r}")
    plan: dict[str, tuple[str, list[int]]] = {}
    for name in names:
        if profile != "auto":
            plan[name] = (profile, PROFILE_SEEDS[profile] if seeds is None else list(seeds))
            continue
        wanted = PROFILE_SEEDS["paper"] if seeds is None else list(seeds)
        if resolve_device(device).type == "cuda":
            plan[name] = ("paper", wanted)
            continue
        have = [s for s in wanted
                if find_record(experiment(name, "paper", s, **overrides), runs_dir or default_runs_dir("paper"))]
        plan[name] = ("paper", have) if have else ("smoke", PROFILE_SEEDS["smoke"] if seeds is None else list(seeds))
    return plan


# --------------------------------------------------------------------------------------------
# Background masking switch


def background_check(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, batch_size: int) -> float:
    """Accuracy of the background head on fixed validation images (the switch of §2.2.1)."""
    correct = total = 0
    with torch.no_grad():
        for i in range(0, images.shape[0], batch_size):
            out = model(images[i:i + batch_size])
            fg = masks[i:i + batch_size] > 0
            correct += binary_accuracy(out.background_logits.float(), fg) * fg.numel()
            total += fg.numel()
    return correct / max(total, 1)


# --------------------------------------------------------------------------------------------


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


class _Trainer:
    def __init__(self, exp: Experiment, runs_dir: Path, device: torch.device, progress: str):
        self.exp, self.runs_dir, self.device = exp, runs_dir, device
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = CUDNN_BENCHMARK
        self.progress = _Progress(progress, exp)
        self.seg = exp.data.task == "segmentation"
        self.k = exp.num_classes
        self.use_amp = exp.optim.amp and device.type == "cuda"
        self.channels_last = self.use_amp
        # Under torchrun: one process per device, each a share of every batch; rank 0 records.
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1

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
        self.in_channels = self.X.shape[1]

    def _build_model(self):
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
        self.mcr2 = MCR2Loss(self.k, eps_sq=loss.eps_sq, gamma=loss.gamma, distributed=self.world > 1)
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
                    rr = rate_reduction(F.normalize(Z.detach().float(), dim=1), labels, self.k, loss_cfg.eps_sq)
                return loss, loss, rr
            if bg is None:
                rr = self._mcr2_term(feats, Z, y)
                return self.world * rr.loss, rr.loss, rr
            # Background masking: CE on the head; MCR² over foreground pixels once switched on.
            fg_true = y > 0
            loss = F.cross_entropy(bg.float(), fg_true.long())
            if not self.mask_on:
                with torch.no_grad():
                    rr = rate_reduction(Z.detach(), labels, self.k, loss_cfg.eps_sq, weights=fg_true.reshape(-1))
                return loss, loss, rr
            keep = fg_true if loss_cfg.background_mask == "ground_truth" else bg.detach().argmax(1) == 1
            rr = self._mcr2_term(feats, Z, y, keep)
            lam = loss_cfg.mcr2_weight
            return loss + lam * self.world * rr.loss, loss + lam * rr.loss, rr

    # ---- evaluation --------------------------------------------------------------------
    def _batches(self, n, bs):
        return [slice(i, min(i + bs, n)) for i in range(0, n, bs)]

    @torch.no_grad()
    def _fit_classifier(self) -> NearestSubspace | None:
        if self.exp.loss.kind != "mcr2":
            return None
        d = self.exp.model.feature_dim
        r = self.exp.eval.n_components or max(1, d // self.k)
        ns = NearestSubspace(r)
        n = self.X.shape[0] if self.exp.eval.fit_limit is None else min(self.exp.eval.fit_limit, self.X.shape[0])
        masked = self.exp.loss.background_mask is not None
        for sl in self._batches(n, self.exp.optim.batch_size):
            with self._autocast():
                _, Z, _ = self._features(self.X[sl])
            labels = self.Y[sl].reshape(-1)
            if masked:  # the subspaces model the foreground classes; the head decides background
                labels = torch.where(labels > 0, labels, torch.full_like(labels, -1))
            ns.partial_fit(Z.float(), labels, self.k)
        return ns.finalize()

    @torch.no_grad()
    def _predict(self, x, ns):
        """Predicted class per image (B,) or per pixel (B, H, W), and background-head logits."""
        with self._autocast():
            feats, Z, bg = self._features(x)
            if self.head is not None:
                pred = self.head(feats).float().argmax(1)
            else:
                pred = ns.predict(Z.float()).view(feats.shape[0], *feats.shape[2:])
        if bg is not None:
            pred = torch.where(bg.float().argmax(1) == 1, pred, torch.zeros_like(pred))
        return pred, (None if bg is None else bg.float())

    @torch.no_grad()
    def _recalibrate_batchnorm(self):
        """Re-estimate BatchNorm running statistics on training images (cumulative average).

        Evaluation runs in eval mode on running statistics; after few steps (the smoke profile)
        their exponential average still remembers the initial (0, 1) and a CE head trained on
        batch statistics misreads them. Training itself never uses running statistics.
        """
        norms = [m for m in self.modules.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms or not self.exp.eval.recalibrate_bn:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average over the passes below
        self.modules.train()
        n = self.X.shape[0] if self.exp.eval.fit_limit is None else min(self.exp.eval.fit_limit, self.X.shape[0])
        with self._autocast():
            for sl in self._batches(n, self.exp.optim.batch_size):
                self._features(self.X[sl])
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum

    @torch.no_grad()
    def _evaluate(self) -> dict:
        self._recalibrate_batchnorm()
        self.modules.eval()
        ns = self._fit_classifier()
        metrics = {}
        bs = self.exp.optim.batch_size
        for dom, (X, Y) in self.val.items():
            if self.seg:
                conf = torch.zeros(self.k, self.k, dtype=torch.long, device=self.device)
                bg_correct = 0.0
                for sl in self._batches(X.shape[0], bs):
                    pred, bg = self._predict(X[sl], ns)
                    conf += confusion_matrix(pred, Y[sl], self.k)
                    if bg is not None:
                        bg_correct += binary_accuracy(bg, Y[sl] > 0) * Y[sl].numel()
                scores = segmentation_scores(conf)
                for key in ("foreground_acc", "pixel_acc", "background_acc", "mean_iou"):
                    metrics[f"{dom}_{key}"] = scores[key]
                for c, acc in enumerate(scores["per_class_acc"]):
                    metrics[f"{dom}_class{c}_acc"] = acc
                if self.exp.loss.background_mask is not None:
                    metrics[f"{dom}_bg_head_acc"] = bg_correct / Y.numel()
            else:
                correct = 0
                for sl in self._batches(X.shape[0], bs):
                    pred, _ = self._predict(X[sl], ns)
                    correct += int((pred == Y[sl]).sum())
                metrics[f"{dom}_acc"] = correct / X.shape[0]
        self.modules.train()
        self._last_ns = ns
        return metrics

    @torch.no_grad()
    def _artefacts(self) -> dict:
        """Small arrays for the figures: previews of fixed validation images, a pixel-feature sample."""
        if not self.seg:
            return {}
        self.modules.eval()
        dom = self.exp.data.val_domains[0]
        X, Y = self.val[dom]
        n = min(self.exp.eval.preview_images, X.shape[0])
        pred, bg = self._predict(X[:n], self._last_ns)
        art = {
            "preview_images": X[:n].cpu().numpy().astype(np.float16),
            "preview_masks": Y[:n].cpu().numpy().astype(np.uint8),
            "preview_pred": pred.cpu().numpy().astype(np.uint8),
        }
        if bg is not None:
            art["preview_fg_prob"] = bg.softmax(1)[:, 1].cpu().numpy().astype(np.float16)
        # Random validation pixels (seeded, the report's "25 000 randomly sampled"): the cosine
        # block sums over all of them are exact from per-class feature sums; a subset is kept.
        g = torch.Generator().manual_seed(self.exp.seed + 12345)
        total = Y.numel()
        count = min(self.exp.eval.feature_samples, total)
        idx = torch.randperm(total, generator=g)[:count].to(self.device)
        img, pix = idx // Y[0].numel(), idx % Y[0].numel()
        feats, labels = [], []
        for chunk in torch.split(torch.arange(count, device=self.device), 4096):
            order = torch.unique(img[chunk])
            with self._autocast():
                f, _, _ = self._features(X[order])
            f = f.float().flatten(2)  # (b, d, H·W)
            pos = torch.searchsorted(order, img[chunk])
            feats.append(f[pos, :, pix[chunk]])
            labels.append(Y.flatten(1)[img[chunk], pix[chunk]])
        Z = F.normalize(torch.cat(feats), dim=1)
        labels = torch.cat(labels)
        # Mean |cos| per class block over every sampled pixel (Figure 7, the claims ledger).
        art["cosine_abs_mean"] = cosine_abs_blocks(Z, labels, self.k).cpu().numpy()
        art["cosine_class_counts"] = torch.bincount(labels, minlength=self.k).cpu().numpy()
        sums = torch.zeros(self.k, Z.shape[1], device=self.device).index_add_(0, labels, Z)
        counts = torch.bincount(labels, minlength=self.k).double()
        block_sums = (sums @ sums.T).double()
        self_sims = torch.zeros(self.k, device=self.device).index_add_(0, labels, (Z * Z).sum(1)).double()
        block_sums -= torch.diag(self_sims)  # drop each pixel's similarity with itself
        pairs = torch.outer(counts, counts) - torch.diag(counts)
        art["cosine_block_sums"] = block_sums.cpu().numpy()
        art["cosine_block_pairs"] = pairs.cpu().numpy()
        keep = min(self.exp.eval.feature_keep, count)
        art["feature_sample"] = Z[:keep].cpu().numpy()  # stored as int8 (records.FEATURE_SAMPLE_SCALE)
        art["feature_labels"] = labels[:keep].cpu().numpy().astype(np.uint8)
        self.modules.train()
        return art

    # ---- the loop ----------------------------------------------------------------------
    def train(self) -> RunRecord:
        exp = self.exp
        started = time.time()
        record = {
            "status": "running",
            "name": exp.name,
            "profile": exp.profile,
            "seed": exp.seed,
            "key": config_key(exp),
            "code_version": CODE_VERSION,
            "config": exp.to_dict(),
            "provenance": provenance(self.device),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        }
        history, steps = [], []
        try:
            self._load_data()
            record["data"] = self.sources
            self._build_model()
            record["parameters"] = sum(p.numel() for p in self.modules.parameters())
            self.mask_on = exp.loss.background_mask is None
            mask_switch_epoch = None
            check = None
            if exp.loss.background_mask is not None:
                vx, vy = self.val[exp.data.val_domains[0]]
                check = (vx[: exp.loss.mask_check_images], vy[: exp.loss.mask_check_images])
            n = self.X.shape[0]
            bs = exp.optim.batch_size
            images_seen, train_seconds = 0, 0.0
            for epoch in range(1, exp.optim.epochs + 1):
                t0 = time.perf_counter()
                g = torch.Generator().manual_seed(exp.seed * 100_003 + epoch)
                perm = torch.randperm(n, generator=g).to(self.device)
                batches = [perm[i:i + bs] for i in range(0, n, bs)]
                self.progress.start_epoch(epoch, len(batches))
                logs = torch.zeros(len(batches), 4, device=self.device)  # loss, R, Rc, ΔR per step
                for s, idx in enumerate(batches):
                    idx = idx[self.rank::self.world]  # this rank's share of the batch
                    loss, logged, rr = self._step_loss(self.X[idx], self.Y[idx])
                    self.opt.zero_grad(set_to_none=True)
                    loss.backward()
                    self.opt.step()
                    logs[s] = torch.stack([logged.detach().float(), rr.discriminative.detach(), rr.compressive.detach(), rr.delta_r.detach()])
                    self.progress.step()
                logs = logs.cpu()  # one host sync per epoch
                if not torch.isfinite(logs[:, 0]).all():
                    bad = int((~torch.isfinite(logs[:, 0])).nonzero()[0])
                    raise TrainingDiverged(
                        f"{exp.name} (seed {exp.seed}): the loss became {logs[bad, 0].item()} at epoch {epoch}, "
                        f"step {bad + 1}; try a lower optim.lr (now {exp.optim.lr})"
                    )
                self.sched.step()
                images_seen += n
                train_seconds += time.perf_counter() - t0
                for s in range(len(batches)):
                    steps.append({"epoch": epoch, "step": (epoch - 1) * len(batches) + s + 1, "loss": logs[s, 0].item(),
                                  "R": logs[s, 1].item(), "Rc": logs[s, 2].item(), "delta_r": logs[s, 3].item(),
                                  "mcr2_on": bool(self.mask_on)})
                row = {"epoch": epoch, "loss": logs[:, 0].mean().item(), "R": logs[:, 1].mean().item(),
                       "Rc": logs[:, 2].mean().item(), "delta_r": logs[:, 3].mean().item(),
                       "lr": self.opt.param_groups[0]["lr"], "mcr2_on": bool(self.mask_on)}
                if check is not None:
                    self.modules.eval()
                    acc = background_check(self.model, self._prep(check[0]), check[1], bs)
                    if self.world > 1:  # one decision for all ranks
                        t = torch.tensor([acc], dtype=torch.float64, device=self.device)
                        dist.all_reduce(t)
                        acc = t.item() / self.world
                    self.modules.train()
                    row["bg_check_acc"] = acc
                    if not self.mask_on and acc >= exp.loss.mask_threshold:
                        self.mask_on = True  # MCR² from the next epoch on
                        mask_switch_epoch = epoch
                if epoch % exp.eval.every == 0 or epoch == exp.optim.epochs:
                    row.update(self._evaluate())
                row["seconds"] = time.perf_counter() - t0
                history.append(row)
                shown = {k: v for k, v in row.items() if k.endswith(("_acc",)) and "class" not in k}
                self.progress.end_epoch(epoch, f"loss {_fmt(row['loss'])} R {_fmt(row['R'])} Rc {_fmt(row['Rc'])} "
                                        + " ".join(f"{k} {_fmt(v)}" for k, v in shown.items()))
            record["summary"] = {k: v for k, v in history[-1].items() if k not in ("epoch", "seconds")}
            record["events"] = {"mask_switch_epoch": mask_switch_epoch}
            record["wall_time_s"] = time.time() - started
            record["train_images_per_s"] = images_seen / max(train_seconds, 1e-9)
            record["status"] = "complete"
            record["world_size"] = self.world
            artefacts = self._artefacts()
            path = record_dir(exp, self.runs_dir)
            if self.rank == 0:  # one record per run, written by rank 0 only
                path = write_record(exp, self.runs_dir, record, history, steps, artefacts)
            if self.world > 1:
                dist.barrier()
            return load_record(path)
        except BaseException as err:
            record["status"] = "failed"
            record["error"] = f"{type(err).__name__}: {err}"
            record["wall_time_s"] = time.time() - started
            try:
                if self.rank == 0:
                    write_record(exp, self.runs_dir, record, history, steps, {})
            except Exception:  # never hide the original error behind a failure to record it
                pass
            raise
