"""Complete run records with made-up series, written as training writes them (no training): for
tests of what reads, packs and imports records."""
from pathlib import Path

import numpy as np

from mcr2.config import CODE_VERSION, config_key
from mcr2.experiments import experiment
from mcr2.records import write_record

#: A cost row of the runner (mcr2.paper) for a run that completed on a GPU.
ROW = {"returncode": 0, "wall_s": 120.0, "sharing": 1.0, "worker_start_s": 0.0, "device": "NVIDIA H200",
       "date": "2026-12-04", "cuda_graphs": True}


def fake_record(runs: Path, name: str = "cls_mnist_ce", seed: int = 0, device: str = "cuda", **overrides) -> Path:
    """A complete record of ``name`` as training writes one, its series made up (paper scale: 100
    epochs of classification are only rows here)."""
    exp = experiment(name, "paper", seed, **overrides)
    epochs, every = exp.optim.epochs, exp.eval.every
    history = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "loss": 1.0 / e, "R": 20.0 + e / 100, "Rc": 10.0, "delta_r": 10.0 + e / 100, "lr": 0.003,
               "mcr2_on": True}
        if e % every == 0 or e == epochs:
            row.update({"mnist_acc": 0.9 + e / 10_000, "usps_acc": 0.3})
        row["seconds"] = 1.5
        history.append(row)
    steps = [{"epoch": e, "step": e, "loss": 1.0 / e, "R": 20.0, "Rc": 10.0, "delta_r": 10.0, "mcr2_on": True}
             for e in range(1, epochs + 1)]
    record = {"status": "complete", "name": name, "profile": exp.profile, "seed": seed, "key": config_key(exp),
              "code_version": CODE_VERSION, "config": exp.to_dict(),
              "provenance": {"git_commit": "0" * 40, "device": {"type": device, "name": "NVIDIA H200"}},
              "summary": {k: v for k, v in history[-1].items() if k not in ("epoch", "seconds")},
              "events": {}, "wall_time_s": 110.0}
    return write_record(exp, runs, record, history, steps, {"previews": np.zeros((2, 3), np.float32)})
