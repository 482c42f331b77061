"""The cost table of the paper profile: how long one run takes on the GPU, per experiment and per
number of runs sharing the device, measured by the runner (:mod:`mcr2.paper`) and kept in
``paper_costs.json``; the estimates its plan starts runs by.

A time measured with eager steps is scaled for CUDA-graph steps (:func:`graph_factor`) until a
graphed run of the experiment replaces it (:func:`merge_costs`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from .experiments import EXPERIMENTS, experiment

__all__ = ["COSTS_FILE", "TRAIN_SHARE", "CostTableError", "load_costs", "foldable", "estimate", "graph_factor", "merge_costs", "worker_start_seconds"]

#: Measured wall seconds of one run per experiment and per number of runs sharing the device.
COSTS_FILE = Path(__file__).with_name("paper_costs.json")
#: Slowdown of one run per extra run sharing the device, used only until the costs file holds a
#: measurement at that sharing level (a guess: time-slicing fills the launch gaps of small models).
ASSUMED_SLOWDOWN_PER_EXTRA_JOB = 0.5
#: Share of an eager paper run's wall time spent in training steps, the part CUDA graphs speed up
#: (H100 records: cls_mnist_ce 145 of 152 s, seg_mnist_mcr2 ~50 of 63 s); kept low, so that
#: estimates scaled for graphs err long rather than have runs stopped at the deadline.
TRAIN_SHARE = 0.85
#: Seconds from launching a worker process to its first run's start (interpreter, torch, CUDA
#: context), used until a window measures it (``worker_start_s`` in the table): the H100 runs of
#: 2026-11-26 each spent 14–20 s outside their record, start, artefacts, writing and exit together.
ASSUMED_WORKER_START_S = 10.0


class CostTableError(ValueError):
    """The cost table cannot be read; the message names the file, the field and the fix."""


def load_costs(path: Path | None = None) -> dict:
    """``{"device": str, "seconds": {name: {jobs: seconds}}, "sources": {name: {jobs: str}},
    "graphed": {name: {jobs: bool}} (measured with CUDA-graph steps), "graph_speedup": {arch/loss: ×}}``.
    A table that is not one raises :class:`CostTableError` naming the field."""
    path = COSTS_FILE if path is None else path
    try:
        costs = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {"device": None, "seconds": {}, "sources": {}}
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CostTableError(f"the cost table {path} is not valid JSON ({err}); restore it with "
                             f"`git checkout -- {path}`") from None
    _check_table(costs, path)
    costs.setdefault("seconds", {})
    costs.setdefault("sources", {})
    return costs


def _check_table(costs, path) -> None:
    def bad(field: str, value, wants: str) -> CostTableError:
        return CostTableError(f"the cost table {path}: {field} is {value!r}, not {wants}; restore it with "
                              f"`git checkout -- {path}`")

    if not isinstance(costs, dict):
        raise bad("the whole file", type(costs).__name__, "a JSON object")
    for group in ("seconds", "sources", "graphed", "runs", "graph_speedup"):
        if not isinstance(costs.get(group, {}), dict):
            raise bad(group, costs[group], "an object")
    for name, per in costs.get("seconds", {}).items():
        if not isinstance(per, dict):
            raise bad(f"seconds.{name}", per, "an object of seconds per number of runs sharing the device")
        for level, seconds in per.items():
            if not str(level).isdigit() or int(level) < 1:
                raise bad(f"seconds.{name} key", level, "a number of runs ≥ 1")
            if not _finite_positive(seconds):
                raise bad(f"seconds.{name}.{level}", seconds, "a finite positive number of seconds")
    start = costs.get("worker_start_s")
    if start is not None and not (_finite_positive(start) or start == 0):
        raise bad("worker_start_s", start, "a finite number of seconds ≥ 0")
    for key, speedup in costs.get("graph_speedup", {}).items():
        if key != "about" and not _finite_positive(speedup):
            raise bad(f"graph_speedup.{key}", speedup, "a finite positive factor")


def _finite_positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _similar(name: str, table: dict) -> str | None:
    """A measured experiment of the same task, training domain and loss (e.g. a layout variant)."""
    spec = EXPERIMENTS[name]
    for other in table:
        o = EXPERIMENTS.get(other)
        if o and all(o["data"][k] == spec["data"][k] for k in ("task", "train_domain")) \
                and o["loss"]["kind"] == spec["loss"]["kind"] and o["data"].get("background") == spec["data"].get("background"):
            return other
    return None


def estimate(name: str, jobs: int, costs: dict, graphs: bool | None = None) -> tuple[float, str]:
    """Wall seconds of one run of ``name`` while ``jobs`` runs share the device, and why.

    ``graphs`` (default :func:`mcr2.training.graphs_for` its model): the runs will replay their
    steps as CUDA graphs; a time measured with eager steps is then scaled by :func:`graph_factor`."""
    seconds, why, base_name, level = _measured_estimate(name, jobs, costs)
    graphs = _graphs_default(name) if graphs is None else graphs
    if graphs and base_name is not None and not costs.get("graphed", {}).get(base_name, {}).get(str(level)):
        factor, speedup_note = graph_factor(name, costs)
        if factor != 1.0:
            return seconds * factor, f"{why}, eager; × {factor:.2f} for CUDA graphs ({speedup_note})"
    return seconds, why


def _graphs_default(name: str) -> bool:
    from .training import graphs_for

    return graphs_for(experiment(name, "paper", 0).model.arch)


def graph_factor(name: str, costs: dict) -> tuple[float, str]:
    """How much of an eager run's wall time remains when its steps are replayed as CUDA graphs:
    the training share divided by the step's measured speed-up (``graph_speedup`` in the cost
    table, per model and loss: bench_train --cuda-graphs on), the rest (start, data, evaluation)
    unchanged. 1.0 where no speed-up was measured."""
    exp = experiment(name, "paper", 0)
    key = f"{exp.model.arch}/{exp.loss.kind}"
    speedup = costs.get("graph_speedup", {}).get(key)
    if not isinstance(speedup, (int, float)) or speedup <= 1.0:
        return 1.0, f"no speed-up measured for {key}"
    return (1.0 - TRAIN_SHARE) + TRAIN_SHARE / speedup, f"{key} steps {speedup:.2f}× faster"


def _measured_estimate(name: str, jobs: int, costs: dict) -> tuple[float, str, str | None, int | None]:
    """(seconds, why, the experiment measured, the sharing level measured) from the table as it is."""
    table = costs["seconds"]
    base_name = name if name in table else _similar(name, table)
    if base_name is None:
        known = [min(v.values()) for v in table.values() if v]
        return (max(known) if known else math.inf), "no measurement: the slowest known run", None, None
    per_jobs = {int(k): float(v) for k, v in table[base_name].items()}
    note = "" if base_name == name else f" (as {base_name})"
    if jobs in per_jobs:
        source = costs["sources"].get(base_name)
        source = source.get(str(jobs)) if isinstance(source, dict) else source if jobs == 1 else None
        why = source if source and source.startswith("estimated") else f"measured at {jobs} job{'s' * (jobs > 1)}"
        return per_jobs[jobs], f"{why}{note}", base_name, jobs
    ratios = _measured_slowdowns(table, jobs)
    base_jobs = min(per_jobs)
    alone = per_jobs[base_jobs] / _assumed_slowdown(base_jobs)
    if ratios:
        factor = sorted(ratios)[len(ratios) // 2]
        return alone * factor, f"alone × {factor:.2f} (median measured slowdown at {jobs} jobs){note}", base_name, base_jobs
    return (alone * _assumed_slowdown(jobs), f"alone × {_assumed_slowdown(jobs):.2f} (assumed slowdown at {jobs} jobs){note}",
            base_name, base_jobs)


def _assumed_slowdown(jobs: int) -> float:
    return 1.0 + ASSUMED_SLOWDOWN_PER_EXTRA_JOB * (jobs - 1)


def _measured_slowdowns(table: dict, jobs: int) -> list[float]:
    out = []
    for per_jobs in table.values():
        per_jobs = {int(k): float(v) for k, v in per_jobs.items()}
        if 1 in per_jobs and jobs in per_jobs:
            out.append(per_jobs[jobs] / per_jobs[1])
    return out


def worker_start_seconds(costs: dict) -> float:
    """Seconds a new worker process takes before its first run starts: measured (the table's
    ``worker_start_s``), else :data:`ASSUMED_WORKER_START_S`."""
    measured = costs.get("worker_start_s")
    return float(measured) if isinstance(measured, (int, float)) else ASSUMED_WORKER_START_S


def foldable(row: dict) -> str | None:
    """Why a measured run must not move the table, or None if it may: only a complete run
    (return code 0) of a paper-profile record trained on CUDA, with a finite positive wall time
    (and a worker start, if any, below it) tells what a paper run costs on the GPU."""
    if row.get("returncode") != 0:
        return f"return code {row.get('returncode')!r}: it did not complete"
    if not row.get("record"):
        return "no record of it came back"
    if row.get("profile") != "paper":
        return f"its record is of the {row.get('profile')!r} profile, not the paper's"
    if row.get("device_type") != "cuda":
        return f"it trained on {row.get('device_type')!r}, not CUDA"
    wall, start = row.get("wall_s"), row.get("worker_start_s") or 0.0
    if not _finite_positive(wall):
        return f"its wall time {wall!r} is not a finite positive number"
    if not (isinstance(start, (int, float)) and math.isfinite(start) and 0 <= start < wall):
        return f"its worker start {start!r} is not a finite number of seconds in [0, {wall})"
    sharing = row.get("sharing")
    if not (_finite_positive(sharing) and sharing <= 64):
        return f"its sharing {sharing!r} is not a number of runs in (0, 64]"
    return None


def merge_costs(rows: list[dict], costs_path: Path | None = None) -> dict:
    """Fold measured runs into the cost table: per experiment and sharing level (rounded), the
    mean over every run measured there (``runs`` counts them), each record once (``folded`` lists
    them), and only the runs :func:`foldable` admits (the others are printed and skipped). A run
    that was its worker's first counts without the worker's start, which goes to the table's
    ``worker_start_s`` (the mean of every start measured). Each level's source says on which
    devices and when it was measured."""
    costs_path = COSTS_FILE if costs_path is None else costs_path
    costs = load_costs(costs_path)
    counts = costs.setdefault("runs", {})
    folded = set(costs.get("folded", []))
    measured_on = costs.setdefault("measured_on", {})
    admitted = []
    for row in rows:
        why = foldable(row)
        if why is None and row["record"] in folded:
            why = "its record's time is in the table already"
        if why is not None:
            print(f"cost table: not folding {row.get('name')} seed {row.get('seed')} ({why})")
            continue
        folded.add(row["record"])
        admitted.append(row)
    starts = [r["worker_start_s"] for r in admitted if r.get("worker_start_s")]
    if starts:
        n = costs.get("worker_starts", 0)
        costs["worker_start_s"] = round((costs.get("worker_start_s", 0.0) * n + sum(starts)) / (n + len(starts)), 1)
        costs["worker_starts"] = n + len(starts)
    for row in admitted:
        row = {**row, "wall_s": row["wall_s"] - (row.get("worker_start_s") or 0.0)}
        name, level = row["name"], str(max(1, round(row["sharing"])))
        per, n_per = costs["seconds"].setdefault(name, {}), counts.setdefault(name, {})
        graphed = costs.setdefault("graphed", {}).setdefault(name, {})
        devices = measured_on.setdefault(name, {})
        n = n_per.get(level, 1 if level in per else 0)
        if bool(row.get("cuda_graphs")) != bool(graphed.get(level)):
            if not row.get("cuda_graphs"):
                continue  # the table estimates graphed runs (the default): an eager time does not move it
            n = 0  # the first graphed time replaces the eager ones
            graphed[level] = True
            devices[level] = []
        if n and not devices.get(level):  # measured before devices were kept: the table's device then
            devices[level] = [costs.get("device") or "?"]
        device = row.get("device") or "?"
        devices[level] = sorted(set(devices.get(level, [])) | {device})
        per[level] = round((per.get(level, 0.0) * n + row["wall_s"]) / (n + 1), 1)
        n_per[level] = n + 1
        src = costs["sources"].get(name)
        src = src if isinstance(src, dict) else ({"1": src} if src else {})
        src[level] = (f"measured {row.get('date', '')} on {' and '.join(devices[level])}, mean of {n + 1} "
                      f"CUDA paper-profile run{'s' * (n > 0)}" + (" (graphed steps)" if row.get("cuda_graphs") else ""))
        costs["sources"][name] = src
    every = {d for per in measured_on.values() for ds in per.values() for d in ds} | {
        d for d in (costs.get("device") or "").split(" and ") if d}
    costs["device"] = " and ".join(sorted(every)) if every else None
    costs["folded"] = sorted(folded)
    Path(costs_path).write_text(json.dumps(costs, indent=1, sort_keys=True) + "\n")
    return costs
