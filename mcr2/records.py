"""Run records: one folder per run, written atomically, readable without the code that wrote it.

A record folder ``<runs_dir>/<name>/seed<seed>-<key>/`` holds
  ``record.json``     status ("complete" | "failed"), the resolved config, its key, provenance
                      (git commit and dirty flag, library versions, device, host, eager or graphed
                      steps, runs sharing the GPU, launcher, executor, job: :func:`provenance`),
                      wall time and its seconds per phase (``phase_seconds``), data sources, the
                      summary metrics and events (e.g. the epoch masking switched on);
  ``history.csv``     one row per epoch (losses, R, Rc, ΔR, validation metrics);
  ``steps.npz``       one entry per column of the per-step series (epoch, step, loss, R, Rc,
                      delta_r, mcr2_on), float32 as trained, compressed (older records: ``steps.csv``);
  ``artefacts.npz``   small arrays the figures need (loaded with ``allow_pickle=False``).
No pickle anywhere. A run is written into a temporary sibling folder and renamed into place when
complete, under a per-record lock (:func:`record_lock`, :mod:`mcr2.locks`), so two processes never write the same
record, an interrupted run never leaves a folder that reads as complete, and a complete record is
only ever replaced by a complete one. Loading checks what it reads (:class:`RecordCorrupt` names
the folder and the way out).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import locks
from .config import Experiment, config_key, experiment_from_dict
from .locks import lock_mode

__all__ = [
    "RunRecord",
    "RecordCorrupt",
    "records_table",
    "record_dir",
    "record_lock",
    "lock_mode",
    "find_record",
    "complete_record_path",
    "load_record",
    "write_record",
    "check_runs_dir",
    "provenance",
    "LAUNCHERS",
    "update_record_json",
    "steps_kind",
    "steps_mix",
    "steps_mix_text",
    "default_runs_dir",
]

_REPO = Path(__file__).resolve().parent.parent
#: int8 quantisation of the unit-norm feature sample (Figure 7's heatmap): |error| ≤ 1/254 per
#: component, a quarter of the float32 size; the cosine statistics themselves are exact float64.
FEATURE_SAMPLE_SCALE = 1.0 / 127.0


class RecordCorrupt(RuntimeError):
    """A record folder that cannot be read as a record; the message names it and the way out."""

    def __init__(self, path: Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(
            f"run record {self.path} is unreadable: {problem}. It was not modified. To recover, move the "
            f"folder aside (or delete it) and train the run again, e.g. with retrain=True / `--retrain`."
        )


def default_runs_dir(profile: str) -> Path:
    """Where records live: ``$MCR2_RUNS/<profile>``, else ``results/paper`` for the paper profile
    (committed, so a CPU renders paper figures without training) and ``runs/<profile>`` otherwise."""
    env = os.environ.get("MCR2_RUNS")
    if env:
        return Path(env) / profile
    return _REPO / ("results" if profile == "paper" else "runs") / profile


def record_dir(exp: Experiment, runs_dir: Path) -> Path:
    """``<runs_dir>/<name>/seed<seed>-<key>``: the name and seed for people, the key for identity."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", exp.name):  # Experiment checks it; a folder never climbs out
        raise ValueError(f"experiment name {exp.name!r} cannot name a record folder: lower-case letters, digits and _")
    return Path(runs_dir) / exp.name / f"seed{exp.seed}-{config_key(exp)}"


def check_runs_dir(runs_dir: Path) -> Path:
    """Create ``runs_dir`` if needed and prove it writable now, before any training is spent."""
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        probe = runs_dir / f".write-probe-{uuid.uuid4().hex[:8]}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise OSError(
            f"cannot write run records into {runs_dir} ({type(err).__name__}: {err.strerror or err}); "
            f"pick a writable folder (runs_dir=..., `--runs-dir`, or $MCR2_RUNS) before training"
        ) from err
    return runs_dir


@contextlib.contextmanager
def record_lock(exp: Experiment, runs_dir: Path, wait: bool = True):
    """Exclusive lock of one record (:func:`lock_mode`: ``flock`` on a hidden file beside it,
    released when the process ends, however it ends; or an O_EXCL lock file there, see
    :func:`mcr2.locks.file_lock`). Yields True when held; with ``wait=False`` yields False at once if
    another process holds it. Inside it, stale temporary folders of the record are removed and
    a record left half-replaced by a killed writer is restored."""
    final = record_dir(exp, runs_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    if locks.lock_mode(runs_dir) == "file":
        with locks.file_lock(final.parent / f".{final.name}.lockfile", wait) as held:
            if held:
                _tidy(final)
            yield held
        return
    lock_path = final.parent / f".{final.name}.lock"
    with open(lock_path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            # Another process trains or writes this record: say so, or a wait of minutes looks like a hang.
            notice = threading.Timer(locks.LOCK_NOTICE_S, _say_waiting, (exp, final, lock_path))
            notice.daemon = True
            notice.start()
            try:
                fcntl.flock(fh, fcntl.LOCK_EX)
            finally:
                notice.cancel()
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")  # who holds it, for the message of the next one waiting
        fh.flush()
        try:
            _tidy(final)
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _say_waiting(exp: Experiment, final: Path, lock_path: Path) -> None:
    try:
        holder = lock_path.read_text().strip()
    except OSError:
        holder = ""
    who = f"process {holder}" if holder.isdigit() else "another process"
    print(f"-- waiting for {exp.name} seed {exp.seed}: {who} holds the lock of its record {final} (training or "
          f"writing it); this continues when that ends (stop it, or delete nothing: the lock goes with the process)",
          file=sys.stderr, flush=True)


def _siblings(final: Path, prefix: str) -> list[Path]:
    return sorted(final.parent.glob(f"{prefix}-{final.name}-*"))


def _tidy(final: Path) -> None:
    """Under the lock: restore a record whose replacement was interrupted, drop leftovers."""
    olds = _siblings(final, ".old")
    if not (final / "record.json").exists() and olds:
        if final.exists():
            shutil.rmtree(final)
        olds[-1].rename(final)  # the complete record that was being replaced
        olds = olds[:-1]
    for leftover in olds + _siblings(final, ".tmp"):
        shutil.rmtree(leftover, ignore_errors=True)


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


def _read_json(path: Path) -> dict:
    folder = path.parent
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordCorrupt(folder, "record.json is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RecordCorrupt(folder, f"record.json is not valid JSON ({err})") from None
    if not isinstance(record, dict):
        raise RecordCorrupt(folder, f"record.json holds a {type(record).__name__}, not an object")
    for key in ("status", "config"):
        if key not in record:
            raise RecordCorrupt(folder, f"record.json has no {key!r}")
    return record


def _read_steps(path: Path) -> pd.DataFrame:
    if (path / "steps.npz").exists():
        try:
            with np.load(path / "steps.npz", allow_pickle=False) as npz:
                return pd.DataFrame({k: npz[k] for k in npz.files})
        except Exception as err:  # zipfile/ValueError/OSError: whatever a damaged file raises
            raise RecordCorrupt(path, f"steps.npz is damaged ({type(err).__name__}: {err})") from None
    if (path / "steps.csv").exists():
        return _read_csv(path, "steps.csv")
    return pd.DataFrame()


def _read_csv(path: Path, name: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path / name)
    except FileNotFoundError:
        return pd.DataFrame()
    except pd.errors.EmptyDataError:  # a run that failed before its first epoch
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise RecordCorrupt(path, f"{name} is not a readable CSV ({type(err).__name__}: {err})") from None


def _read_artefacts(path: Path) -> dict:
    if not (path / "artefacts.npz").exists():
        return {}
    try:
        with np.load(path / "artefacts.npz", allow_pickle=False) as npz:
            art = {k: npz[k] for k in npz.files}
    except Exception as err:
        raise RecordCorrupt(path, f"artefacts.npz is damaged ({type(err).__name__}: {err})") from None
    if "feature_sample_q8" in art:  # int8 storage of the unit-norm feature sample
        scale = float(art.pop("feature_sample_scale", FEATURE_SAMPLE_SCALE))
        art["feature_sample"] = art.pop("feature_sample_q8").astype(np.float32) * scale
    return art


def _check_complete(path: Path, exp: Experiment, record: dict, history: pd.DataFrame, steps: pd.DataFrame) -> None:
    """What a complete record must hold; anything less is reported, never rendered."""
    key = config_key(exp)
    if record.get("key") not in (None, key) or f"seed{exp.seed}-{key}" not in path.name:  # .old-… too
        raise RecordCorrupt(path, f"its config's key is {key}, but the record says {record.get('key')!r} "
                                  f"and the folder is {path.name!r} (a config edited or copied by hand?)")
    wall = record.get("wall_time_s")
    if not isinstance(wall, (int, float)) or isinstance(wall, bool) or not math.isfinite(wall):
        raise RecordCorrupt(path, f"wall_time_s is {wall!r}, not a number")
    for name in ("history.csv", "artefacts.npz"):
        if not (path / name).exists():
            raise RecordCorrupt(path, f"{name} is missing")
    epochs = exp.optim.epochs
    if len(history) != epochs or "epoch" not in history or list(history["epoch"]) != list(range(1, epochs + 1)):
        raise RecordCorrupt(path, f"history.csv has {len(history)} rows for {epochs} epochs (truncated?)")
    for col in ("loss", "R", "Rc"):
        if col not in history or not np.isfinite(history[col].to_numpy(dtype=float)).all():
            raise RecordCorrupt(path, f"history.csv column {col!r} is missing or not finite")
    _check_metrics(path, exp, history)
    _check_summary(path, record, history)
    if steps.empty or "epoch" not in steps or int(steps["epoch"].max()) != epochs:
        raise RecordCorrupt(path, f"the per-step series does not reach epoch {epochs} (truncated?)")


def _metric_columns(history: pd.DataFrame) -> list[str]:
    """The evaluation's columns: accuracies and IoUs (a class absent from the validation images
    has no accuracy: its ``*_classN_acc`` may be empty)."""
    return [c for c in history.columns if c.endswith(("_acc", "_iou")) and not re.search(r"_class\d+_acc$", c)]


def _check_metrics(path: Path, exp: Experiment, history: pd.DataFrame) -> None:
    """Every metric is a finite number on every epoch that was evaluated (each ``eval.every``-th
    and the last); ``bg_check_acc``, measured every epoch once present, is never NaN."""
    epochs = history["epoch"].to_numpy()
    evaluated = (epochs % exp.eval.every == 0) | (epochs == exp.optim.epochs)
    for col in _metric_columns(history):
        try:
            values = history[col].to_numpy(dtype=float)
        except (TypeError, ValueError):
            raise RecordCorrupt(path, f"history.csv column {col!r} holds something other than numbers") from None
        rows = np.ones_like(evaluated) if col == "bg_check_acc" else evaluated
        bad = ~np.isfinite(values[rows])
        if bad.any() or np.isinf(values).any():
            epoch = int(epochs[rows][bad][0]) if bad.any() else int(epochs[np.isinf(values)][0])
            raise RecordCorrupt(path, f"history.csv column {col!r} is not a finite number at epoch {epoch}")


def _same(a, b) -> bool:
    if isinstance(a, (bool, np.bool_)) or isinstance(b, (bool, np.bool_)) or isinstance(a, str) or isinstance(b, str):
        return str(a).lower() == str(b).lower()
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return False
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _check_summary(path: Path, record: dict, history: pd.DataFrame) -> None:
    """The summary is the last epoch's row, as training writes it: an edited one is found here."""
    summary = record.get("summary")
    if not isinstance(summary, dict):
        raise RecordCorrupt(path, f"record.json's summary is {type(summary).__name__}, not an object")
    last = history.iloc[-1]
    for key, value in summary.items():
        if key not in history.columns or not _same(value, last[key]):
            raise RecordCorrupt(path, f"record.json's summary {key}={value!r} is not history.csv's last row "
                                      f"({last.get(key, 'no such column')!r}): one of them was edited")


def load_record(path: Path) -> RunRecord:
    """Read a record folder; :class:`RecordCorrupt` (naming the folder) if it is not a sound one."""
    path = Path(path)
    record = _read_json(path / "record.json")
    try:
        exp = experiment_from_dict(record["config"])
    except (TypeError, ValueError, KeyError) as err:
        raise RecordCorrupt(path, f"its config does not describe an experiment ({type(err).__name__}: {err})") from None
    history, steps = _read_csv(path, "history.csv"), _read_steps(path)
    artefacts = _read_artefacts(path)
    if record["status"] == "complete":
        _check_complete(path, exp, record, history, steps)
    return RunRecord(path, exp, record, history, steps, artefacts)


def complete_record_path(exp: Experiment, runs_dir: Path) -> Path | None:
    """The folder of this config's complete record, reading its record.json only, or None.

    A record half-replaced by a killed writer (the new one not yet renamed in, the old one set
    aside as ``.old-…``) is found in its aside folder."""
    path = record_dir(exp, runs_dir)
    if not (path / "record.json").exists():
        olds = [p for p in _siblings(path, ".old") if (p / "record.json").exists()]
        if not olds:
            return None
        path = olds[-1]
    return path if _read_json(path / "record.json").get("status") == "complete" else None


def find_record(exp: Experiment, runs_dir: Path) -> RunRecord | None:
    """The complete record of exactly this config (and code version), loaded and checked, or None."""
    path = complete_record_path(exp, runs_dir)
    return None if path is None else load_record(path)


def _steps_arrays(steps: list[dict]) -> dict[str, np.ndarray]:
    """Per-step rows -> one compact column each (float32 as trained, ints, bools)."""
    frame = pd.DataFrame(steps)
    out = {}
    for col in frame.columns:
        values = frame[col].to_numpy()
        if values.dtype.kind == "f":
            values = values.astype(np.float32)
        elif values.dtype.kind in "iu":
            values = values.astype(np.int32)
        out[col] = values
    return out


def _artefact_arrays(artefacts: dict) -> dict[str, np.ndarray]:
    out = {k: np.asarray(v) for k, v in artefacts.items()}
    if "feature_sample" in out:
        sample = out.pop("feature_sample").astype(np.float32)
        out["feature_sample_q8"] = np.clip(np.round(sample / FEATURE_SAMPLE_SCALE), -127, 127).astype(np.int8)
        out["feature_sample_scale"] = np.float32(FEATURE_SAMPLE_SCALE)
    return out


def write_record(exp: Experiment, runs_dir: Path, record: dict, history: list[dict], steps: list[dict], artefacts: dict) -> Path:
    """Write the record into a temporary folder, then rename it into place (atomic on one filesystem).

    Call it holding :func:`record_lock`. A failed record never replaces a complete one: it goes
    to a hidden ``.failed-…`` sibling instead (its path is returned). Replacing a complete record
    sets the old one aside, renames the new one in, then deletes the old: a kill at any point
    leaves a complete record that :func:`find_record` (and the next lock holder) recovers."""
    final = record_dir(exp, runs_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    if record.get("status") != "complete" and (final / "record.json").exists():
        try:
            keep = _read_json(final / "record.json").get("status") == "complete"
        except RecordCorrupt:
            keep = False
        if keep:
            final = final.parent / f".failed-{final.name}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:4]}"
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        pd.DataFrame(history).to_csv(tmp / "history.csv", index=False)
        np.savez_compressed(tmp / "steps.npz", **_steps_arrays(steps))
        np.savez_compressed(tmp / "artefacts.npz", **_artefact_arrays(artefacts))
        # record.json last: a folder without it is never read as a record.
        (tmp / "record.json").write_text(json.dumps(_jsonable(record), indent=1, allow_nan=True))
        place_folder(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def place_folder(tmp: Path, final: Path) -> None:
    """Rename the complete folder ``tmp`` to ``final`` (call it holding :func:`record_lock`): a
    folder already there is set aside first and deleted last, so a kill at any point leaves a
    complete record that :func:`find_record` (and the next lock holder) recovers."""
    old = None
    if final.exists():
        old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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


#: What started a run, as ``MCR2_LAUNCHER`` says (provenance ``launcher``): ``cli`` (``python -m mcr2
#: run``), ``paper-runner`` (a worker of ``python -m mcr2 paper``), ``papermill`` (a chapter executed
#: by tools/book.py); unset, ``python`` (the library called from Python). Each sets it for what it
#: starts. ``MCR2_EXECUTOR`` names what scheduled the job (e.g. a cluster's executor) and
#: ``MCR2_JOB_ID`` its job (else ``SLURM_JOB_ID``); ``MCR2_SHARED_GPU_RUNS`` and ``MCR2_GPU_STREAMS`` say
#: how many runs the launcher trains at once on the device, and how many of those on streams of one
#: process (the paper runner: ``--jobs`` × ``--streams`` and ``--streams``).
LAUNCHERS = ("cli", "paper-runner", "papermill", "python")


def _env_count(name: str) -> int:
    value = os.environ.get(name, "").strip() or "1"
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"{name}={value!r}: a count of runs ≥ 1 (set by the launcher; unset means 1)")
    return count


def _cuda_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device)


def provenance(device, *, graphed: bool | None = None) -> dict:
    """Where, with what and how a run was made: commit, dirty flag, versions, device, host, and
    how it was launched (see :data:`LAUNCHERS`). ``graphed``: whether its training steps replay as
    CUDA graphs (``"graphed"``/``"eager"``; None: not said)."""
    import torch
    import torchvision

    from . import __version__

    commit, status, source = _git("rev-parse", "HEAD"), _git("status", "--porcelain", "--untracked-files=no"), "git"
    if commit is None and os.environ.get("MCR2_SOURCE_COMMIT"):
        # No repository here: the code is `git archive` of this commit (tools/gpu_window.sh), clean by construction.
        commit, status, source = os.environ["MCR2_SOURCE_COMMIT"].strip(), "", "git archive"
    dev = {"type": str(device)}
    cuda = getattr(device, "type", str(device).split(":")[0]) == "cuda"
    if cuda:
        dev["name"] = _cuda_name(device)
        dev["nondeterminism"] = (
            "cuDNN convolution backward and atomic adds (index_add / scatter) are not bitwise "
            "reproducible on CUDA: the same seed gives close, not identical, metrics"
        )
        index = getattr(device, "index", None)
        dev_index = index if index is not None else torch.cuda.current_device()
    else:
        dev["name"] = platform.processor() or platform.machine()
        dev["threads"] = torch.get_num_threads()
        dev_index = None
    return {
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "code_source": source if commit else None,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "mcr2": __version__,
        "platform": platform.platform(),
        "device": dev,
        "gpu_name": dev["name"] if cuda else None,
        "device_index": dev_index,
        "host": platform.node() or None,
        "graphed": None if graphed is None else ("graphed" if graphed else "eager"),
        "shared_gpu_runs": _env_count("MCR2_SHARED_GPU_RUNS"),
        "gpu_streams": _env_count("MCR2_GPU_STREAMS"),
        "launcher": os.environ.get("MCR2_LAUNCHER", "").strip() or "python",
        "executor": os.environ.get("MCR2_EXECUTOR", "").strip() or None,
        "job_id": (os.environ.get("MCR2_JOB_ID", "").strip() or os.environ.get("SLURM_JOB_ID", "").strip() or None),
    }


def update_record_json(path: Path, change) -> dict:
    """Apply ``change(record dict)`` to a written record's record.json, replacing the file atomically
    (a reader sees the old or the new one, never half of either). Call it holding the record's lock."""
    target = Path(path) / "record.json"
    record = _read_json(target)
    change(record)
    tmp = target.with_name(f".record.json.{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(json.dumps(_jsonable(record), indent=1, allow_nan=True))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return record


def steps_kind(r) -> str:
    """"graphed" or "eager": how a record's training steps ran. Records made before provenance said so
    read ``cuda_graphs``; those older still were trained before CUDA graphs existed here (eager)."""
    said = r.record.get("provenance", {}).get("graphed")
    return said or ("graphed" if r.record.get("cuda_graphs") else "eager")


def _as_records(records) -> list:
    if isinstance(records, dict):
        return [r for recs in records.values() for r in (recs if isinstance(recs, (list, tuple)) else [recs])]
    return list(records)


def steps_mix(records) -> dict[str, dict[str, list[int]]]:
    """The experiments whose seeds mix eager and graphed training steps:
    ``{name: {"eager": [seeds], "graphed": [seeds]}}`` (empty when no seed set mixes them)."""
    kinds: dict[str, dict[str, list[int]]] = {}
    for r in _as_records(records):
        kinds.setdefault(r.config.name, {}).setdefault(steps_kind(r), []).append(r.config.seed)
    return {name: {k: sorted(v) for k, v in sorted(by.items())} for name, by in kinds.items() if len(by) > 1}


def steps_mix_text(records) -> str:
    """One sentence for a page whose seed sets mix eager and graphed training steps, naming the
    seeds of each; "" when none does. Graphed steps make the same updates as eager ones, but CUDA
    does not make them bitwise equal, so such a seed set's spread holds both."""
    mix = steps_mix(records)
    if not mix:
        return ""
    parts = [f"{name} (eager: seed{'s' * (len(k['eager']) > 1)} {', '.join(map(str, k['eager']))}; graphed: "
             f"seed{'s' * (len(k['graphed']) > 1)} {', '.join(map(str, k['graphed']))})" for name, k in mix.items()]
    return ("The seeds of " + "; ".join(parts) + " mix eager training steps with steps replayed as CUDA graphs: "
            "the same updates, not bitwise the same numbers, so their spread over seeds holds both.")


def _phase_columns(r) -> dict:
    phases = r.record.get("phase_seconds") or {}
    return {f"{phase.replace('_', ' ')} (s)": (round(phases[phase], 1) if phase in phases else None)
            for phase in ("setup", "train_steps", "evaluation", "writing")}


def records_table(records) -> pd.DataFrame:
    """One row per record (a dict name -> [records] or a list): what was rendered, from where, and
    how it was made: wall seconds per phase, eager or graphed steps (:func:`steps_kind`), the runs
    that shared the GPU, the GPU, torch, launcher, executor, host and job (None where a record
    predates the field)."""
    rows = []
    for r in _as_records(records):
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
            **_phase_columns(r),
            "steps": steps_kind(r),
            "shared GPU runs": prov.get("shared_gpu_runs"),
            "GPU": prov.get("gpu_name") or ("none" if prov.get("device", {}).get("type") == "cpu" else None),
            "torch": prov.get("torch"),
            "launcher": prov.get("launcher"),
            "executor": prov.get("executor"),
            "host": prov.get("host"),
            "job": prov.get("job_id"),
            "record": str(r.path.relative_to(_REPO)) if r.path.is_relative_to(_REPO) else str(r.path),
        })
    return pd.DataFrame(rows)
