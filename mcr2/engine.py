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

from pathlib import Path

import torch
import torch.distributed as dist

from .config import Experiment
from .masking import background_check
from .records import (
    RunRecord,
    check_runs_dir,
    complete_record_path,
    default_runs_dir,
    find_record,
    record_dir,
    record_lock,
)
from .training import TrainingDiverged, _Trainer

__all__ = ["run", "run_all", "profile_plan", "TrainingDiverged", "RecordMissing", "resolve_device", "background_check"]


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
    ``seeds`` narrows the seeds considered. Nothing is trained, and only record.json files are read.
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
        have = [s for s in wanted if complete_record_path(experiment(name, "paper", s, **overrides),
                                                          runs_dir or default_runs_dir("paper"))]
        plan[name] = ("paper", have) if have else ("smoke", PROFILE_SEEDS["smoke"] if seeds is None else list(seeds))
    return plan
