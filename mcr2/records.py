"""Run records: one folder per run, written atomically, readable without the code that wrote it.

A record folder holds
  ``record.json``     status ("complete" | "failed"), the resolved config, its key, provenance
                      (git commit and dirty flag, library versions, device, wall time, data
                      sources), the summary metrics and events (e.g. the epoch masking switched on);
  ``history.csv``     one row per epoch (losses, R, Rc, ΔR, validation metrics);
  ``steps.csv``       one row per training step (loss, R, Rc, ΔR);
  ``artefacts.npz``   small arrays the figures need (loaded with ``allow_pickle=False``).
No pickle anywhere. A run is written into a temporary sibling folder and renamed into place
when complete, so an interrupted run never leaves a folder that reads as complete.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import Experiment, config_key, experiment_from_dict

__all__ = ["RunRecord", "records_table", "record_dir", "find_record", "load_record", "write_record", "provenance", "default_runs_dir"]

_REPO = Path(__file__).resolve().parent.parent


def default_runs_dir(profile: str) -> Path:
    """Where records live: ``$MCR2_RUNS/<profile>``, else ``results/paper`` for the paper profile
    (committed, so a CPU renders paper figures without training) and ``runs/<profile>`` otherwise."""
    env = os.environ.get("MCR2_RUNS")
    if env:
        return Path(env) / profile
    return _REPO / ("results" if profile == "paper" else "runs") / profile


def record_dir(exp: Experiment, runs_dir: Path) -> Path:
    """``<runs_dir>/<name>/seed<seed>-<key>``: the name and seed for people, the key for identity."""
    return Path(runs_dir) / exp.name / f"seed{exp.seed}-{config_key(exp)}"


@dataclass
class RunRecord:
    """A loaded run: config, record.json contents, per-epoch and per-step tables, artefacts."""

    path: Path
    config: Experiment
    record: dict
    history: pd.DataFrame
    steps: pd.DataFrame
    artefacts: dict

    @property
    def status(self) -> str:
        return self.record["status"]

    @property
    def summary(self) -> dict:
        return self.record.get("summary", {})

    def __repr__(self) -> str:
        return f"RunRecord({self.config.name!r}, seed={self.config.seed}, profile={self.config.profile!r}, status={self.status!r}, path={str(self.path)!r})"


def load_record(path: Path) -> RunRecord:
    path = Path(path)
    record = json.loads((path / "record.json").read_text())
    history, steps = _read_table(path / "history.csv"), _read_table(path / "steps.csv")
    artefacts = {}
    if (path / "artefacts.npz").exists():
        with np.load(path / "artefacts.npz", allow_pickle=False) as npz:
            artefacts = {k: npz[k] for k in npz.files}
    return RunRecord(path, experiment_from_dict(record["config"]), record, history, steps, artefacts)


def _read_table(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):  # a run that failed before its first epoch
        return pd.DataFrame()


def find_record(exp: Experiment, runs_dir: Path) -> RunRecord | None:
    """The complete record of exactly this config (and code version), or None."""
    path = record_dir(exp, runs_dir)
    if not (path / "record.json").exists():
        return None
    if json.loads((path / "record.json").read_text()).get("status") != "complete":
        return None
    return load_record(path)


def write_record(exp: Experiment, runs_dir: Path, record: dict, history: list[dict], steps: list[dict], artefacts: dict) -> Path:
    """Write the record into a temporary folder, then rename it into place (atomic on one filesystem)."""
    final = record_dir(exp, runs_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        pd.DataFrame(history).to_csv(tmp / "history.csv", index=False)
        pd.DataFrame(steps).to_csv(tmp / "steps.csv", index=False)
        np.savez_compressed(tmp / "artefacts.npz", **{k: np.asarray(v) for k, v in artefacts.items()})
        # record.json last: a folder without it is never read as a record.
        (tmp / "record.json").write_text(json.dumps(_jsonable(record), indent=1, allow_nan=True))
        if final.exists():
            old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
            final.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return x


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=_REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(device) -> dict:
    """Where and with what a run was made: commit, dirty flag, versions, device, host."""
    import torch
    import torchvision

    from . import __version__

    status = _git("status", "--porcelain", "--untracked-files=no")
    dev = {"type": str(device)}
    if getattr(device, "type", str(device)) == "cuda":
        dev["name"] = torch.cuda.get_device_name(device)
        dev["nondeterminism"] = (
            "cuDNN convolution backward and atomic adds (index_add / scatter) are not bitwise "
            "reproducible on CUDA: the same seed gives close, not identical, metrics"
        )
    else:
        dev["name"] = platform.processor() or platform.machine()
        dev["threads"] = torch.get_num_threads()
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "mcr2": __version__,
        "platform": platform.platform(),
        "device": dev,
    }


def records_table(records) -> pd.DataFrame:
    """One row per record (a dict name -> [records] or a list): what was rendered, from where."""
    if isinstance(records, dict):
        records = [r for recs in records.values() for r in recs]
    rows = []
    for r in records:
        prov = r.record.get("provenance", {})
        data = r.record.get("data", {}).get("train", {})
        rows.append({
            "experiment": r.config.name,
            "seed": r.config.seed,
            "profile": r.config.profile,
            "status": r.status,
            "epochs": r.config.optim.epochs,
            "train images": data.get("N"),
            "background source": data.get("background_source") or "none",
            "device": prov.get("device", {}).get("name"),
            "commit": (prov.get("git_commit") or "?")[:8] + ("+dirty" if prov.get("git_dirty") else ""),
            "wall time (s)": round(r.record.get("wall_time_s", float("nan")), 1),
            "record": str(r.path.relative_to(_REPO)) if r.path.is_relative_to(_REPO) else str(r.path),
        })
    return pd.DataFrame(rows)
